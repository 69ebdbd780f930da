-- The schema every case in this folder is planned against (pgshift plan reads it from a
-- fresh database): an orders table with a check, an index, a comment and a foreign key to
-- customers, whose key comes from a sequence.
CREATE TABLE customers (
    id serial PRIMARY KEY,
    name text NOT NULL
);
CREATE TABLE orders (
    id integer PRIMARY KEY,
    price integer NOT NULL CONSTRAINT orders_price_check CHECK (price >= 0),
    note varchar(50),
    customer_id integer CONSTRAINT orders_customer_id_fkey REFERENCES customers (id) ON DELETE CASCADE
);
COMMENT ON COLUMN orders.price IS 'in cents';
CREATE INDEX orders_price_idx ON orders (price);
-- A partitioned table (issue 18): by range of `at`, a partition per half year and a
-- default one, with an index on the partitioned table.
CREATE TABLE events (
    id bigint NOT NULL,
    at timestamptz NOT NULL,
    customer_id integer,
    kind text,
    PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
CREATE TABLE events_2026a PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2026-07-01');
CREATE TABLE events_2026b PARTITION OF events FOR VALUES FROM ('2026-07-01') TO ('2027-01-01');
CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE INDEX events_kind ON events (kind);
