-- expect: adding-required-field
ALTER TABLE orders ADD COLUMN currency text NOT NULL;
