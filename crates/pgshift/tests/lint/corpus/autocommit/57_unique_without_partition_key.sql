-- expect: unique-without-partition-key concurrent-index-on-partitioned-table
SET lock_timeout = '2s';
CREATE TABLE IF NOT EXISTS events (id bigint NOT NULL, at timestamptz NOT NULL) PARTITION BY RANGE (at);
DROP INDEX CONCURRENTLY IF EXISTS events_id;
CREATE UNIQUE INDEX CONCURRENTLY events_id ON events (id);
