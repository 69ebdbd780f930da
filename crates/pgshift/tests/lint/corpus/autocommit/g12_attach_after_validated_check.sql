-- expect: clean
SET lock_timeout = '2s';
ALTER TABLE measurements_2025 ADD CONSTRAINT measurements_2025_bound CHECK (at IS NOT NULL AND at >= '2025-01-01' AND at < '2026-01-01') NOT VALID;
ALTER TABLE measurements_2025 VALIDATE CONSTRAINT measurements_2025_bound;
ALTER TABLE measurements ATTACH PARTITION measurements_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
