-- expect: changing-column-type
ALTER TABLE orders ALTER COLUMN price TYPE bigint;
