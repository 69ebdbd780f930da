-- expect: prefer-attach-partition
SET lock_timeout = '2s';
CREATE TABLE IF NOT EXISTS measurements_2027 PARTITION OF measurements FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
