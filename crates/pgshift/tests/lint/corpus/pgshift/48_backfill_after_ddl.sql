-- expect: backfill-in-schema-transaction
ALTER TABLE orders ADD COLUMN price_cents bigint;
UPDATE orders SET price_cents = price * 100;
