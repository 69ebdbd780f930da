-- expect: clean
CREATE INDEX CONCURRENTLY orders_customer_id ON orders (customer_id);
DROP INDEX CONCURRENTLY orders_customer_id_old;
REINDEX INDEX CONCURRENTLY orders_created_at;
