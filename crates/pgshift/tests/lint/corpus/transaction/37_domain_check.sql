-- expect: ban-create-domain-with-constraint
CREATE DOMAIN positive_cents AS bigint CHECK (VALUE > 0);
