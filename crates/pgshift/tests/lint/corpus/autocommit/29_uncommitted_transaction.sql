-- expect: ban-uncommitted-transaction
SET lock_timeout = '2s';
BEGIN;
ALTER TABLE orders ADD COLUMN note text;
