-- expect: clean
-- The index build ends the first transaction, so the UPDATE holds no schema lock.
CREATE INDEX CONCURRENTLY orders_status ON orders (status);
UPDATE orders SET status = 'open' WHERE status IS NULL AND id < 1000;
