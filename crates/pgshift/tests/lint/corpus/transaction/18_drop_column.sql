-- expect: ban-drop-column
ALTER TABLE users DROP COLUMN legacy_flags;
