-- expect: clean
UPDATE orders SET currency = 'EUR' WHERE id BETWEEN 1 AND 10000 AND currency IS NULL;
