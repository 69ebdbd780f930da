-- expect: adding-auto-increment-column prefer-identity
ALTER TABLE legacy_rows ADD COLUMN id bigserial;
