-- expect: backfill-in-schema-transaction
ALTER TABLE orders ADD COLUMN status text;
UPDATE orders SET status = 'paid' WHERE paid_at IS NOT NULL;
