-- expect: adding-not-nullable-field
ALTER TABLE orders ALTER COLUMN customer_id SET NOT NULL;
