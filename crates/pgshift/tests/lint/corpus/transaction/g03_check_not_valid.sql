-- expect: clean
SET LOCAL lock_timeout = '2s';
ALTER TABLE orders ADD CONSTRAINT orders_price_positive CHECK (price > 0) NOT VALID;
