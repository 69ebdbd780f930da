//! The seed scenarios of SCENARIOS.md as data (schema, rows, migration file, client
//! statements, reference and check), and the driver that runs one through the `pgshift`
//! binary under client traffic. Used by the scenario tests and by `pgshift demo`.
//!
//! A run: load the data; start traffic (old-version clients); `pgshift start` (phases
//! `start`, then `backfill` while a backfill row is open, then `start` again for what comes
//! after); the new version's clients join (`open`); the old application leaves; traffic
//! pauses while the reference is computed from the final old data; `pgshift complete` under
//! new-version traffic that leaves the migrated columns alone (`complete`); a last quiet
//! `after` phase. Then the check compares every migrated row with the reference.
//!
//! A rollback run goes the same way up to `open`, then runs `pgshift rollback` under
//! old-version traffic and compares the schema with its state before start.

use crate::traffic::{Traffic, TrafficConfig, TrafficReport, Version, Workload};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the reference of a run is kept (dropped at the end of the run).
pub const REFERENCE_SCHEMA: &str = "scenario_reference";

#[derive(Debug, Clone)]
pub struct Scenario {
    /// `S1`, ...
    pub name: &'static str,
    pub title: String,
    pub rows: i64,
    /// Create and load the tables (run one by one, before anything else).
    pub setup: Vec<String>,
    pub file_name: &'static str,
    pub migration: String,
    /// Client statements while the migration is open (both versions).
    pub workload: Workload,
    /// New-version statements during complete: they must leave the migrated data alone, so
    /// that the check can compare it with the reference.
    pub complete_statements: Vec<String>,
    /// Statements creating tables in [`REFERENCE_SCHEMA`] from the final old data (run with
    /// no client traffic, just before complete).
    pub reference: String,
    /// A query returning one bigint: rows that differ from the reference after complete.
    pub check: String,
}

/// The four scenarios at `rows` rows of their main table (S1's 222,000 at seed scale).
pub fn all(rows: i64) -> Vec<Scenario> {
    vec![s1(rows), s2(rows), s3(rows), s4(rows)]
}

/// S1: a varchar id to uuid, unique, with a foreign key; the old column gone at complete.
pub fn s1(rows: i64) -> Scenario {
    Scenario {
        name: "S1",
        title: "incoming_faxes.box_file_id varchar -> box_file_uid uuid, unique, foreign key".into(),
        rows,
        setup: vec![
            format!(
            "CREATE TABLE box_files (id uuid PRIMARY KEY, name text NOT NULL);
             CREATE TABLE incoming_faxes (id bigserial PRIMARY KEY, box_file_id varchar,
                 location_id int, received_at timestamptz NOT NULL DEFAULT now());
             INSERT INTO box_files SELECT md5(g::text)::uuid, 'file ' || g FROM generate_series(1, {rows}) g;
             INSERT INTO incoming_faxes (box_file_id, location_id)
                 SELECT md5(g::text)::uuid::text, g % 50 FROM generate_series(1, {rows}) g;
             CREATE INDEX incoming_faxes_location_id ON incoming_faxes (location_id);"
            ),
            "VACUUM ANALYZE box_files".into(),
            "VACUUM ANALYZE incoming_faxes".into(),
        ],
        file_name: "0001_incoming_faxes_box_file_uid.yaml",
        migration: "operations:
  - alter_column:
      table: incoming_faxes
      column: box_file_id
      type: uuid
      up: box_file_id::uuid
      down: box_file_id::text
      unique:
        name: incoming_faxes_box_file_uid_key
      references:
        name: incoming_faxes_box_file_uid_fkey
        table: box_files
        column: id
  - alter_column:
      table: incoming_faxes
      column: box_file_id
      name: box_file_uid
"
        .into(),
        workload: Workload {
            old: vec![
                "SELECT box_file_id, location_id FROM incoming_faxes WHERE id = $1::bigint".into(),
                "UPDATE incoming_faxes SET location_id = ($1::bigint % 50)::int, received_at = now() WHERE id = $1::bigint".into(),
                "WITH b AS (INSERT INTO box_files (id, name) VALUES (md5(random()::text)::uuid, 'old ' || $1::bigint) RETURNING id)
                 INSERT INTO incoming_faxes (box_file_id, location_id) SELECT id::text, ($1::bigint % 50)::int FROM b".into(),
            ],
            new: vec![
                "SELECT box_file_uid, location_id FROM incoming_faxes WHERE id = $1::bigint".into(),
                "UPDATE incoming_faxes SET location_id = ($1::bigint % 50)::int, received_at = now() WHERE id = $1::bigint".into(),
                "WITH b AS (INSERT INTO box_files (id, name) VALUES (md5(random()::text)::uuid, 'new ' || $1::bigint) RETURNING id)
                 INSERT INTO incoming_faxes (box_file_uid, location_id) SELECT id, ($1::bigint % 50)::int FROM b".into(),
            ],
            keys: rows,
        },
        complete_statements: vec![
            "SELECT box_file_uid FROM incoming_faxes WHERE id = $1::bigint".into(),
            "UPDATE incoming_faxes SET location_id = ($1::bigint % 50)::int WHERE id = $1::bigint".into(),
        ],
        reference: format!(
            "CREATE TABLE {REFERENCE_SCHEMA}.faxes AS SELECT id, box_file_id::uuid AS box_file_uid FROM public.incoming_faxes"
        ),
        check: format!(
            "SELECT count(*) FROM public.incoming_faxes f FULL JOIN {REFERENCE_SCHEMA}.faxes r USING (id)
             WHERE f.box_file_uid IS DISTINCT FROM r.box_file_uid"
        ),
    }
}

/// S2: orders.price int to bigint on a hot table, same name at the end.
pub fn s2(rows: i64) -> Scenario {
    Scenario {
        name: "S2",
        title: "orders.price int -> bigint on a hot table".into(),
        rows,
        setup: vec![
            format!(
            "CREATE TABLE orders (id serial PRIMARY KEY, price int NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now(), note text);
             INSERT INTO orders (price, note) SELECT (g::bigint * 7919 % 100000)::int, 'order ' || g
                 FROM generate_series(1, {rows}) g;
             CREATE INDEX orders_created_at ON orders (created_at);"
            ),
            "VACUUM ANALYZE orders".into(),
        ],
        file_name: "0001_orders_price_bigint.yaml",
        migration: "operations:
  - alter_column:
      table: orders
      column: price
      type: bigint
"
        .into(),
        workload: Workload {
            old: vec![
                "SELECT price FROM orders WHERE id = $1::bigint".into(),
                "UPDATE orders SET price = price + 1 WHERE id = $1::bigint".into(),
                "INSERT INTO orders (price, note) VALUES (($1::bigint % 1000)::int, 'old client')".into(),
            ],
            new: vec![
                "SELECT price FROM orders WHERE id = $1::bigint".into(),
                "UPDATE orders SET price = price + 2 WHERE id = $1::bigint".into(),
                "INSERT INTO orders (price, note) VALUES ($1::bigint % 1000, 'new client')".into(),
            ],
            keys: rows,
        },
        complete_statements: vec![
            "SELECT price FROM orders WHERE id = $1::bigint".into(),
            "UPDATE orders SET note = 'seen ' || $1::bigint WHERE id = $1::bigint".into(),
        ],
        reference: format!(
            "CREATE TABLE {REFERENCE_SCHEMA}.orders AS SELECT id, price::bigint AS price FROM public.orders"
        ),
        check: format!(
            "SELECT count(*) FROM public.orders o FULL JOIN {REFERENCE_SCHEMA}.orders r USING (id)
             WHERE o.price IS DISTINCT FROM r.price OR pg_typeof(o.price) <> 'bigint'::regtype"
        ),
    }
}

/// S3: an int primary key to bigint together with the foreign keys that reference it.
pub fn s3(rows: i64) -> Scenario {
    let r = pgshift::quote::ident(REFERENCE_SCHEMA);
    Scenario {
        name: "S3",
        title: "orders.id serial -> bigint with order_items.order_id referencing it".into(),
        rows,
        setup: vec![
            format!(
                "CREATE TABLE orders (id serial PRIMARY KEY, price int NOT NULL,
                     created_at timestamptz NOT NULL DEFAULT now());
                 CREATE TABLE order_items (id bigserial PRIMARY KEY,
                     order_id int NOT NULL REFERENCES orders (id) ON DELETE CASCADE, qty int NOT NULL);
                 INSERT INTO orders (price) SELECT (g::bigint * 7919 % 100000)::int FROM generate_series(1, {rows}) g;
                 INSERT INTO order_items (order_id, qty) SELECT (g % {rows}) + 1, g % 7 + 1 FROM generate_series(1, {rows}) g;
                 CREATE INDEX order_items_order_id ON order_items (order_id);"
            ),
            "VACUUM ANALYZE orders".into(),
            "VACUUM ANALYZE order_items".into(),
        ],
        file_name: "0001_orders_id_bigint.yaml",
        migration: "operations:
  - alter_primary_key:
      table: orders
      type: bigint
"
        .into(),
        workload: Workload {
            old: order_statements(1),
            new: order_statements(2),
            keys: rows,
        },
        complete_statements: vec![
            "SELECT o.price, i.qty FROM orders o JOIN order_items i ON i.order_id = o.id WHERE o.id = $1::bigint".into(),
            "UPDATE orders SET price = price + 3 WHERE id = $1::bigint".into(),
            "UPDATE order_items SET qty = qty + 3 WHERE id = $1::bigint".into(),
        ],
        reference: format!(
            "CREATE TABLE {r}.orders AS SELECT id::bigint AS id FROM public.orders;
             CREATE TABLE {r}.items AS SELECT id, order_id::bigint AS order_id FROM public.order_items"
        ),
        // Rows whose key or reference differs, plus any column, sequence or foreign key not
        // in its final state.
        check: format!(
            "SELECT (SELECT count(*) FROM public.order_items i FULL JOIN {r}.items x USING (id)
                     WHERE i.order_id IS DISTINCT FROM x.order_id)
                  + (SELECT count(*) FROM public.orders o FULL JOIN {r}.orders x USING (id)
                     WHERE o.id IS NULL OR x.id IS NULL)
                  + (SELECT count(*) FROM pg_attribute
                     WHERE attrelid IN ('public.orders'::regclass, 'public.order_items'::regclass)
                       AND attname IN ('id', 'order_id') AND atttypid <> 'bigint'::regtype)
                  + (SELECT count(*) FROM pg_constraint WHERE conrelid = 'public.order_items'::regclass
                       AND contype = 'f' AND NOT convalidated)
                  + (SELECT 1 - count(*) FROM pg_constraint WHERE conrelid = 'public.orders'::regclass
                       AND contype = 'p')
                  + (SELECT count(*) FROM pg_sequence WHERE seqrelid = 'public.orders_id_seq'::regclass
                       AND seqtypid <> 'bigint'::regtype)"
        ),
    }
}

/// S4: a caterer's address columns extracted into a new 1:1 table `addresses`.
pub fn s4(rows: i64) -> Scenario {
    let r = pgshift::quote::ident(REFERENCE_SCHEMA);
    Scenario {
        name: "S4",
        title: "caterers' address columns -> a new addresses table (1:1, verified)".into(),
        rows,
        setup: vec![
            format!(
                "CREATE TABLE caterers (id serial PRIMARY KEY, name text NOT NULL, email text, phone text,
                     street1 varchar(255), street2 varchar(255), city varchar(255), state varchar(2),
                     zip varchar(10) CHECK (length(zip) >= 5),
                     created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());
                 INSERT INTO caterers (name, email, phone, street1, street2, city, state, zip)
                     SELECT 'caterer ' || g, 'c' || g || '@example.com', '555-' || lpad((g % 10000)::text, 4, '0'),
                            g || ' Main St', CASE WHEN g % 3 = 0 THEN 'Suite ' || g % 100 END,
                            'City ' || g % 500, 'MA', lpad((g % 100000)::text, 5, '0')
                     FROM generate_series(1, {rows}) g;
                 CREATE INDEX caterers_zip ON caterers (zip);"
            ),
            "VACUUM ANALYZE caterers".into(),
        ],
        file_name: "0001_caterers_addresses.yaml",
        migration: "operations:
  - extract:
      table: caterers
      columns: [street1, street2, city, state, zip]
      into: addresses
      reference_column: caterer_id
      id_column: id
  - add_column:
      table: addresses
      column:
        name: created_at
        type: timestamptz
        default: now()
  - add_column:
      table: addresses
      column:
        name: updated_at
        type: timestamptz
        default: now()
"
        .into(),
        workload: Workload {
            old: vec![
                "SELECT name, street1, city, zip FROM caterers WHERE id = $1::bigint".into(),
                "UPDATE caterers SET city = 'City ' || ($1::bigint % 500), zip = lpad(($1::bigint % 99999 + 1)::text, 5, '0'), updated_at = now() WHERE id = $1::bigint".into(),
                "INSERT INTO caterers (name, street1, city, state, zip) VALUES ('old ' || $1::bigint, $1::bigint || ' Old Rd', 'Oldtown', 'NY', '10001')".into(),
            ],
            new: vec![
                "SELECT c.name, a.street1, a.city, a.zip FROM caterers c JOIN addresses a ON a.caterer_id = c.id WHERE c.id = $1::bigint".into(),
                "UPDATE addresses SET street2 = 'Floor ' || ($1::bigint % 20), updated_at = now() WHERE caterer_id = $1::bigint".into(),
                "WITH c AS (INSERT INTO caterers (name) VALUES ('new ' || $1::bigint) RETURNING id)
                 INSERT INTO addresses (caterer_id, street1, city, state, zip) SELECT id, $1::bigint || ' New Ave', 'Newtown', 'CA', '94105' FROM c".into(),
            ],
            keys: rows,
        },
        complete_statements: vec![
            "SELECT c.name, a.city FROM caterers c JOIN addresses a ON a.caterer_id = c.id WHERE c.id = $1::bigint".into(),
            "UPDATE caterers SET phone = '555-' || ($1::bigint % 10000) WHERE id = $1::bigint".into(),
        ],
        reference: format!(
            "CREATE TABLE {r}.addresses AS SELECT id AS caterer_id, street1, street2, city, state, zip FROM public.caterers"
        ),
        // Addresses that differ from the reference, plus any moved column still in caterers
        // and any constraint of addresses left unvalidated.
        check: format!(
            "SELECT (SELECT count(*) FROM public.addresses a FULL JOIN {r}.addresses x USING (caterer_id)
                     WHERE a.id IS NULL OR x.caterer_id IS NULL
                        OR (a.street1, a.street2, a.city, a.state, a.zip) IS DISTINCT FROM (x.street1, x.street2, x.city, x.state, x.zip))
                  + (SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.caterers'::regclass
                       AND attnum > 0 AND NOT attisdropped AND attname IN ('street1', 'street2', 'city', 'state', 'zip'))
                  + (SELECT count(*) FROM pg_constraint WHERE conrelid = 'public.addresses'::regclass AND NOT convalidated)"
        ),
    }
}

/// S3's client statements; `n` tells the versions' writes apart.
fn order_statements(n: i32) -> Vec<String> {
    vec![
        "SELECT o.price, i.qty FROM orders o JOIN order_items i ON i.order_id = o.id WHERE o.id = $1::bigint".into(),
        format!("UPDATE orders SET price = price + {n} WHERE id = $1::bigint"),
        format!(
            "WITH o AS (INSERT INTO orders (price) VALUES (($1::bigint % 1000)::int) RETURNING id)
             INSERT INTO order_items (order_id, qty) SELECT id, {n} FROM o"
        ),
        format!("UPDATE order_items SET qty = qty + {n} WHERE id = $1::bigint"),
    ]
}

/// How a run is driven.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The `pgshift` binary.
    pub pgshift: PathBuf,
    /// Extra flags for every pgshift command (before the subcommand).
    pub pgshift_args: Vec<String>,
    pub clients_per_version: usize,
    /// Statements per second per version.
    pub rate: u32,
    /// How long the quiet phases (`before`, `open`, `after`) last.
    pub quiet: Duration,
    /// Roll back instead of completing.
    pub rollback: bool,
}

#[derive(Debug, Clone)]
pub struct ScenarioRun {
    pub name: String,
    pub title: String,
    pub rows: i64,
    pub load_s: f64,
    /// Wall time of `pgshift start`, of its backfill (as recorded in pgshift.backfills),
    /// and of `pgshift complete` (or `rollback`).
    pub start_s: f64,
    pub backfill_s: f64,
    pub finish_s: f64,
    pub traffic: TrafficReport,
    /// Rows that differ from the reference after complete (0 for a rollback run).
    pub mismatches: i64,
    /// For a rollback run: whether the schema equals its state before start.
    pub schema_restored: Option<bool>,
    pub schema_before: String,
    pub schema_after: String,
    /// What `pgshift start` and then `complete` (or `rollback`) printed: their step lines
    /// with each step's time.
    pub pgshift_output: String,
}

/// A fingerprint of the schema `public` as clients see it: tables, columns, constraints,
/// indexes, triggers, and the schemas that exist (pgshift's own state schema aside).
pub const SCHEMA_FINGERPRINT: &str = "
SELECT concat_ws(E'\\n',
  (SELECT string_agg(format('column %s.%s %s%s default %s', c.relname, a.attname,
                            format_type(a.atttypid, a.atttypmod),
                            CASE WHEN a.attnotnull THEN ' not null' ELSE '' END,
                            coalesce(pg_get_expr(d.adbin, d.adrelid), '-')), E'\\n' ORDER BY c.relname, a.attnum)
   FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
   LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
   WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped),
  (SELECT string_agg(format('constraint %s %s %s', k.conname, pg_get_constraintdef(k.oid),
                            CASE WHEN k.convalidated THEN 'valid' ELSE 'not valid' END), E'\\n' ORDER BY k.conname)
   FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace WHERE n.nspname = 'public'),
  (SELECT string_agg(format('index %s', pg_get_indexdef(i.indexrelid)), E'\\n' ORDER BY 1)
   FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = 'public'),
  (SELECT string_agg(format('trigger %s on %s', t.tgname, t.tgrelid::regclass), E'\\n' ORDER BY 1)
   FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = 'public' AND NOT t.tgisinternal),
  (SELECT string_agg(format('sequence %s %s', s.seqrelid::regclass, format_type(s.seqtypid, NULL)), E'\\n' ORDER BY 1)
   FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = 'public'),
  (SELECT string_agg(format('schema %s', nspname), E'\\n' ORDER BY 1) FROM pg_namespace
   WHERE nspname NOT LIKE 'pg\\_%' AND nspname NOT IN ('information_schema', 'pgshift'))
)";

/// Runs one scenario on the database at `url` (which must be empty).
pub async fn run(
    url: &str,
    scenario: &Scenario,
    options: &RunOptions,
) -> Result<ScenarioRun, String> {
    let admin = crate::traffic::connect(url, "pgshift-scenario").await?;
    let t0 = Instant::now();
    for sql in &scenario.setup {
        admin.batch_execute(sql).await.map_err(|e| {
            format!(
                "{}: loading the data: {}",
                scenario.name,
                pgshift::error::pg_error_text(&e)
            )
        })?;
    }
    let load_s = t0.elapsed().as_secs_f64();
    let schema_before = fingerprint(&admin).await?;

    let dir = tempfile::tempdir().map_err(|e| format!("a folder for the migration file: {e}"))?;
    let dir = dir.path();
    let file = dir.join(scenario.file_name);
    std::fs::write(&file, &scenario.migration).map_err(|e| format!("{}: {e}", file.display()))?;
    let pgshift = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new(&options.pgshift);
        cmd.args(&options.pgshift_args)
            .arg("--dir")
            .arg(dir)
            .args(args)
            .env("DATABASE_URL", url)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        cmd
    };

    let traffic = Traffic::start(
        &TrafficConfig {
            url: url.to_owned(),
            clients_per_version: options.clients_per_version,
            rate: options.rate,
            sample_every: Duration::from_millis(10),
        },
        &scenario.workload,
        "before",
    )
    .await?;
    let outcome = drive(scenario, options, &admin, &traffic, &file, &pgshift).await;
    let report = traffic.finish().await;
    let (start_s, backfill_s, finish_s, pgshift_output) = outcome?;

    let (mismatches, schema_restored, schema_after) = if options.rollback {
        let after = fingerprint(&admin).await?;
        (0, Some(after == schema_before), after)
    } else {
        let n: i64 = admin
            .query_one(scenario.check.as_str(), &[])
            .await
            .map_err(|e| {
                format!(
                    "{}: the check failed: {}",
                    scenario.name,
                    pgshift::error::pg_error_text(&e)
                )
            })?
            .get(0);
        (n, None, fingerprint(&admin).await?)
    };
    let _ = admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            pgshift::quote::ident(REFERENCE_SCHEMA)
        ))
        .await;
    Ok(ScenarioRun {
        name: scenario.name.to_owned(),
        title: scenario.title.clone(),
        rows: scenario.rows,
        load_s,
        start_s,
        backfill_s,
        finish_s,
        traffic: report,
        mismatches,
        schema_restored,
        schema_before,
        schema_after,
        pgshift_output,
    })
}

type PgshiftCommand<'a> = dyn Fn(&[&str]) -> tokio::process::Command + 'a;

/// The phases; returns (start, backfill, complete or rollback) seconds and what pgshift
/// printed.
async fn drive(
    scenario: &Scenario,
    options: &RunOptions,
    admin: &tokio_postgres::Client,
    traffic: &Traffic,
    file: &Path,
    pgshift: &PgshiftCommand<'_>,
) -> Result<(f64, f64, f64, String), String> {
    tokio::time::sleep(options.quiet).await;
    traffic.phase("start");
    let t0 = Instant::now();
    let file = file.to_string_lossy().into_owned();
    let mut start = pgshift(&["start", &file]);
    let child = start
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("run {}: {e}", options.pgshift.display()))?;
    let mut waiting = Box::pin(child.wait_with_output());
    let mut in_backfill = false;
    // Each part of start gets a name of its own, so that the report's table and chart tell
    // them apart: "start", "backfill", "start after backfill" (numbered when there are more).
    let mut backfills = 0;
    let output = loop {
        tokio::select! {
            out = &mut waiting => break out.map_err(|e| e.to_string())?,
            _ = tokio::time::sleep(Duration::from_millis(25)) => {
                let open = backfill_open(admin).await;
                if open != in_backfill {
                    if open {
                        backfills += 1;
                    }
                    let n = if backfills > 1 { format!(" {backfills}") } else { String::new() };
                    let name = if open {
                        format!("backfill{n}")
                    } else {
                        format!("start after backfill{n}")
                    };
                    traffic.phase(&name);
                    in_backfill = open;
                }
            }
        }
    };
    let start_s = t0.elapsed().as_secs_f64();
    if !output.status.success() {
        return Err(format!(
            "{}: pgshift start failed:\n{}{}",
            scenario.name,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let backfill_s: f64 = admin
        .query_one(
            "SELECT coalesce(extract(epoch FROM max(finished_at) - min(started_at)), 0)::float8 FROM pgshift.backfills",
            &[],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or(0.0);
    let latest = run_ok(scenario.name, pgshift(&["latest", "schema"])).await?;
    let latest = String::from_utf8_lossy(&latest.stdout);
    traffic.set_new_version(latest.trim());
    traffic.phase("open");
    tokio::time::sleep(options.quiet).await;

    let mut said = printed(&output);
    let finish_s = if options.rollback {
        // The new application version goes away; the old one stays.
        traffic.clear_new_version();
        traffic.quiesce().await;
        traffic.phase("rollback");
        let t = Instant::now();
        said.push_str(&printed(
            &run_ok(scenario.name, pgshift(&["rollback"])).await?,
        ));
        t.elapsed().as_secs_f64()
    } else {
        // The old application version is gone; the reference is computed from the final
        // old data with no client writing.
        traffic.retire_old();
        traffic.clear_new_version();
        traffic.quiesce().await;
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; {}",
                scenario.reference,
                schema = pgshift::quote::ident(REFERENCE_SCHEMA)
            ))
            .await
            .map_err(|e| {
                format!(
                    "{}: computing the reference: {}",
                    scenario.name,
                    pgshift::error::pg_error_text(&e)
                )
            })?;
        traffic.set_statements(Version::New, scenario.complete_statements.clone());
        traffic.set_new_version(latest.trim());
        traffic.phase("complete");
        let t = Instant::now();
        said.push_str(&printed(
            &run_ok(scenario.name, pgshift(&["complete"])).await?,
        ));
        t.elapsed().as_secs_f64()
    };
    traffic.phase("after");
    tokio::time::sleep(options.quiet).await;
    Ok((start_s, backfill_s, finish_s, said))
}

async fn backfill_open(admin: &tokio_postgres::Client) -> bool {
    admin
        .query_one(
            "SELECT to_regclass('pgshift.backfills') IS NOT NULL
                AND EXISTS (SELECT 1 FROM pgshift.backfills WHERE finished_at IS NULL)",
            &[],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or(false)
}

/// Runs a pgshift command that must succeed; returns its output.
async fn run_ok(
    name: &str,
    mut cmd: tokio::process::Command,
) -> Result<std::process::Output, String> {
    let out = cmd.output().await.map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "{name}: {:?} failed:\n{}{}",
            cmd.as_std().get_args().collect::<Vec<_>>(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out)
}

/// What a pgshift command printed: its step lines (stderr), then its result (stdout).
fn printed(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    )
}

async fn fingerprint(c: &tokio_postgres::Client) -> Result<String, String> {
    c.query_one(SCHEMA_FINGERPRINT, &[])
        .await
        .map(|r| r.get(0))
        .map_err(|e| format!("reading the schema: {}", pgshift::error::pg_error_text(&e)))
}
