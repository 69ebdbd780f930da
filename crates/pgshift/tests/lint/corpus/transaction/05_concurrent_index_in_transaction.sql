-- expect: ban-concurrent-index-creation-in-transaction
CREATE INDEX CONCURRENTLY orders_created_at ON orders (created_at);
