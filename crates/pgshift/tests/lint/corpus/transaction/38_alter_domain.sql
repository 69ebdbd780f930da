-- expect: ban-alter-domain-with-add-constraint
ALTER DOMAIN positive_cents ADD CONSTRAINT below_limit CHECK (VALUE < 100000000);
