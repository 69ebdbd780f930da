-- expect: adding-foreign-key-constraint
ALTER TABLE orders ADD COLUMN coupon_id bigint REFERENCES coupons (id);
