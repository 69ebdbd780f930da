-- expect: table-rewrite
VACUUM (FULL, ANALYZE) orders;
