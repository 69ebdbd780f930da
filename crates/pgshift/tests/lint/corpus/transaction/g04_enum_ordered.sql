-- expect: clean
ALTER TYPE order_status ADD VALUE 'refunded' AFTER 'paid';
