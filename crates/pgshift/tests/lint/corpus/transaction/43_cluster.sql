-- expect: table-rewrite
CLUSTER orders USING orders_pkey;
