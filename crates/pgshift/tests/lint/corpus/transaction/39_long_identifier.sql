-- expect: identifier-too-long
CREATE TABLE audit_entries (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  the_identifier_of_the_customer_account_that_made_the_change_to_the_record bigint
);
