-- expect: require-timeout-settings
ALTER TABLE orders ADD COLUMN note text;
