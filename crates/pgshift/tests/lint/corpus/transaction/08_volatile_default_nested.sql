-- expect: adding-field-with-volatile-default
ALTER TABLE accounts
  ADD COLUMN bucket integer DEFAULT (random() * 100)::integer;
