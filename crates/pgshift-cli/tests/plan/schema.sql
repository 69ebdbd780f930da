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
