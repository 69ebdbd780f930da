-- expect: no-json
CREATE TABLE caterer_settings (
  caterer_id bigint PRIMARY KEY,
  settings jsonb NOT NULL
);
