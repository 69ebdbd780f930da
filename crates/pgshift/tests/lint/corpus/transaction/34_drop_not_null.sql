-- expect: ban-drop-not-null
ALTER TABLE orders ALTER COLUMN customer_id DROP NOT NULL;
