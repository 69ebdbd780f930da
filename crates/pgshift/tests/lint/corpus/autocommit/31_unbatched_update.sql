-- expect: unbatched-data-change
UPDATE orders SET currency = 'EUR';
