-- expect: clean
-- A failed concurrent build leaves an INVALID index: drop it first, so the file can run again.
DROP INDEX CONCURRENTLY IF EXISTS orders_customer_id;
CREATE INDEX CONCURRENTLY orders_customer_id ON orders (customer_id);
DROP INDEX CONCURRENTLY IF EXISTS orders_customer_id_old;
REINDEX INDEX CONCURRENTLY orders_created_at;
