-- expect: prefer-robust-stmts
SET lock_timeout = '2s';
CREATE TABLE IF NOT EXISTS refunds (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, order_id bigint NOT NULL);
ALTER TABLE orders ADD COLUMN refunded_at timestamptz;
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_refunded_at ON orders (refunded_at);
