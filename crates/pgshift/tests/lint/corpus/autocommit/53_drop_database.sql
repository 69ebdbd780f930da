-- expect: ban-drop-database
DROP DATABASE IF EXISTS shop_staging;
