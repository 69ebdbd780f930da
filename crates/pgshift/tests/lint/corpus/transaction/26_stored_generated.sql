-- expect: adding-stored-generated-column
ALTER TABLE orders
  ADD COLUMN total_cents bigint GENERATED ALWAYS AS (price * quantity) STORED;
