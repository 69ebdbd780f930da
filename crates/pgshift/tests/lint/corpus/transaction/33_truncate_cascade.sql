-- expect: ban-truncate-cascade
TRUNCATE customers CASCADE;
