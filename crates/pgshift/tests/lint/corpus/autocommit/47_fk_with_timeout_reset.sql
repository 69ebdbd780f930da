-- expect: require-timeout-settings
SET lock_timeout = '2s';
RESET lock_timeout;
ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id) NOT VALID;
