-- expect: table-rewrite require-timeout-settings
VACUUM (FULL, ANALYZE) orders;
