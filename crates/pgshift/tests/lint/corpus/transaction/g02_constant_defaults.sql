-- expect: clean
SET LOCAL lock_timeout = '2s';
ALTER TABLE orders ADD COLUMN priority integer DEFAULT 0;
ALTER TABLE orders ADD COLUMN imported_at timestamptz DEFAULT now();
