-- expect: table-rewrite
ALTER TABLE import_staging SET LOGGED;
