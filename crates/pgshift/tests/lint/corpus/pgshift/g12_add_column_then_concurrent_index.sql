-- expect: clean
ALTER TABLE orders ADD COLUMN note text;
CREATE INDEX CONCURRENTLY orders_note ON orders (note);
UPDATE orders SET note = '' WHERE id = 1;
