-- expect: constraint-missing-not-valid
ALTER TABLE orders ADD CONSTRAINT orders_price_positive CHECK (price > 0);
