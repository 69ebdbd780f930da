-- expect: constraint-missing-not-valid adding-not-nullable-field
-- The CHECK is added NOT VALID but never validated, so SET NOT NULL still scans.
ALTER TABLE orders ADD CONSTRAINT orders_customer_nn CHECK (customer_id IS NOT NULL) NOT VALID;
ALTER TABLE orders ALTER COLUMN customer_id SET NOT NULL;
ALTER TABLE orders ADD CONSTRAINT orders_qty CHECK (quantity > 0);
