-- expect: prefer-jsonb no-json
ALTER TABLE events ADD COLUMN payload json;
