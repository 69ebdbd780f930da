-- expect: clean
-- The column has been unused since release 41 (ticket OPS-112).
-- pgshift-lint: ignore ban-drop-column
ALTER TABLE users DROP COLUMN legacy_flags;
