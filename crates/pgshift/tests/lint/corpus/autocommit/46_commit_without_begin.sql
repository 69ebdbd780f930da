-- expect: transaction-nesting
SET lock_timeout = '2s';
ALTER TABLE orders ADD COLUMN IF NOT EXISTS note text;
COMMIT;
