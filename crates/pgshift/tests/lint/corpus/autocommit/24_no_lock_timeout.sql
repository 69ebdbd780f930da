-- expect: require-timeout-settings
ALTER TABLE orders ADD COLUMN IF NOT EXISTS note text;
