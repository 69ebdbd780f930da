-- expect: ban-drop-database
DROP DATABASE shop_staging;
