-- expect: ban-drop-table
DROP TABLE old_sessions;
