-- expect: require-concurrent-index-deletion
DROP INDEX orders_customer_id;
