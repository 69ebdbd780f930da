#!/usr/bin/env bash
# The demo's script; pgshift-sandbox runs it with DATABASE_URL set to a throwaway database.
set -uo pipefail
psql() { "$PGSHIFT_SANDBOX_PSQL" "$DATABASE_URL" -v ON_ERROR_STOP=1 -q "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; printf '(exit code %s)\n' "$?"; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
mkdir migrations

step "1. Raw SQL migrations, applied in file-name order"
cat > migrations/0001_orders.sql <<'SQL'
CREATE TABLE orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    price int NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO orders (price) SELECT (random() * 10000)::int FROM generate_series(1, 200000);
SQL
cat > migrations/0002_orders_price_index.sql <<'SQL'
-- Runs outside a transaction, as PostgreSQL requires; a failed build's INVALID index is
-- found, dropped and rebuilt.
CREATE INDEX CONCURRENTLY orders_price ON orders (price);
SQL
show pgshift status
show pgshift migrate
show pgshift status

step "2. A long transaction holds a lock: pgshift waits politely, names the blocker, retries"
cat > migrations/0003_orders_note.sql <<'SQL'
ALTER TABLE orders ADD COLUMN note text;
SQL
psql -c "BEGIN; SELECT count(*) FROM orders; SELECT pg_sleep(2.5); COMMIT;" >/dev/null &
sleep 0.5
echo "(a session holds a transaction open on orders for 2.5 s; readers are never queued behind pgshift for more than its 200 ms lock_timeout)"
show pgshift migrate --lock-timeout 200ms
wait

step "3. Two pgshift at once: the second exits 3 at once, naming the first"
cat > migrations/0004_slow.sql <<'SQL'
SELECT pg_sleep(2);
SQL
pgshift migrate > first.log 2>&1 &
sleep 0.7
show pgshift migrate
wait
cat first.log

step "4. A malformed migration: exit 2, file:line:col, nothing changed"
cat > migrations/0005_bad.yaml <<'YAML'
operations:
  - add_column:
      table: orders
      column:
        name: discount
        type: int
        nulable: true
YAML
show pgshift migrate
rm migrations/0005_bad.yaml

step "5. A migration edited after it was applied: exit 2, nothing runs"
echo "-- an innocent-looking edit" >> migrations/0001_orders.sql
show pgshift migrate
show pgshift status

step "6. Expand/contract: orders.price int -> bigint, old and new clients both writing"
cat > migrations/0006_price_bigint.yaml <<'YAML'
operations:
  - alter_column:
      table: orders
      column: price
      type: bigint
      up: price
      down: price
YAML
show pgshift start migrations/0006_price_bigint.yaml
new_schema=$(pgshift latest schema)
echo "(new clients use search_path $new_schema; old clients keep using the table)"
psql -c "INSERT INTO orders (price) VALUES (42)"
psql -c "SET search_path = $new_schema; INSERT INTO orders (price) VALUES (77)"
psql -c "SELECT id, price, _pgshift_new_price FROM orders ORDER BY id DESC LIMIT 2"
show pgshift complete
psql -c "SELECT format_type(atttypid, atttypmod) AS price_type FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'price'"

step "7. The record: who applied what, when, for how long (pgshift.migrations, pgshift.events)"
psql -c "SELECT name, status, applied_by, applied_from_host, duration_ms FROM pgshift.migrations ORDER BY name"
psql -c "SELECT id, command, event, migration, result, duration_ms, os_user FROM pgshift.events ORDER BY id"
