//! The backfill benchmark (issue 4): prints figures; asserts nothing.
//!
//!   cargo run --release -p pgshift-cli --example backfill_bench [rows]
//!
//! On a durable throwaway cluster (fsync on), in one run:
//! 1. an add_column backfill through `pgshift start` against one plain `UPDATE ... SET new =
//!    expr` on an identical table: time, ratio, and table size after; and the same add_column
//!    with `method: copy` (the table copied with its new column, swapped in at complete);
//! 2. S1: varchar to uuid on 222,000 rows, pgshift against one UPDATE;
//! 3. client reads and writes of random keys at a fixed rate, p99 and max latency, during the
//!    backfill and without one;
//! 4. peak RSS of pgshift at the full row count against a tenth of it.

use pgshift_testkit::TestDb;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn pgshift_bin() -> std::path::PathBuf {
    // Built by `cargo run --example` into the same profile folder as the examples.
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("pgshift")
}

async fn exec(c: &tokio_postgres::Client, sql: &str) {
    c.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
}

/// (whole table with its indexes, heap alone) in MB.
async fn size_mb(c: &tokio_postgres::Client, table: &str) -> (f64, f64) {
    let row = c
        .query_one(
            "SELECT pg_total_relation_size($1::text::regclass), pg_relation_size($1::text::regclass)",
            &[&table],
        )
        .await
        .unwrap();
    let mb = |b: i64| b as f64 / 1_048_576.0;
    (mb(row.get(0)), mb(row.get(1)))
}

fn growth(before: (f64, f64), after: (f64, f64)) -> String {
    format!(
        "table {:.0} MB -> {:.0} MB ({:.2}x; heap {:.2}x, indexes {:.2}x)",
        before.0,
        after.0,
        after.0 / before.0,
        after.1 / before.1,
        (after.0 - after.1) / (before.0 - before.1)
    )
}

async fn load_orders(c: &tokio_postgres::Client, table: &str, rows: i64) {
    exec(
        c,
        &format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, price int NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), note text);
             INSERT INTO {table} (id, price, note) SELECT g, (g::bigint * 7919 % 100000)::int, 'order ' || g FROM generate_series(1, {rows}) g;
             CREATE INDEX {table}_created_at ON {table} (created_at);"
        ),
    )
    .await;
    exec(c, &format!("VACUUM ANALYZE {table}")).await;
}

/// Rows of `orders` whose `price_cents` is not `price * 100`.
async fn rows_left_wrong(c: &tokio_postgres::Client) -> i64 {
    c.query_one(
        "SELECT count(*) FROM orders WHERE price_cents IS DISTINCT FROM price::bigint * 100",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// Runs `pgshift start <migration>`; returns (seconds, peak RSS in kB).
fn pgshift_start(db: &TestDb, dir: &Path, file: &str) -> (f64, u64) {
    let t0 = Instant::now();
    let out = std::process::Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(pgshift_bin())
        // Extra flags to try a setting, e.g. PGSHIFT_BENCH_ARGS="--vacuum-every-rows 50000".
        .args(
            std::env::var("PGSHIFT_BENCH_ARGS")
                .unwrap_or_default()
                .split_whitespace(),
        )
        .args(["--dir"])
        .arg(dir)
        .args(["start", file])
        .env("DATABASE_URL", &db.url)
        .output()
        .expect("run pgshift (needs /usr/bin/time: apt-get install time)");
    let secs = t0.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pgshift start failed:\n{stderr}");
    let rss = stderr
        .lines()
        .last()
        .and_then(|l| l.trim().parse::<u64>().ok())
        .unwrap_or(0);
    (secs, rss)
}

async fn backfill_seconds(c: &tokio_postgres::Client) -> f64 {
    c.query_one(
        "SELECT extract(epoch FROM max(finished_at) - min(started_at))::float8 FROM pgshift.backfills",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// Clients doing random-key reads and writes at `rate` ops/s until `stop`; latencies in µs.
fn traffic(
    db: &TestDb,
    table: &'static str,
    rows: i64,
    rate: u64,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<u64>> {
    let db = db.clone();
    tokio::spawn(async move {
        let clients = 4;
        let mut tasks = Vec::new();
        for w in 0..clients {
            let (db, stop) = (db.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let c = db.client().await;
                let read = c
                    .prepare(&format!("SELECT price FROM {table} WHERE id = $1"))
                    .await
                    .unwrap();
                let write = c
                    .prepare(&format!(
                        "UPDATE {table} SET price = price + 1 WHERE id = $1"
                    ))
                    .await
                    .unwrap();
                let interval = Duration::from_micros(1_000_000 * clients / rate);
                let mut next = Instant::now();
                let mut lat = Vec::new();
                let mut n: i64 = w as i64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let id = (n * 104_729 + 17) % rows + 1;
                    let t0 = Instant::now();
                    if n % 2 == 0 {
                        c.query_opt(&read, &[&id]).await.expect("read");
                    } else {
                        c.execute(&write, &[&id]).await.expect("write");
                    }
                    lat.push(t0.elapsed().as_micros() as u64);
                    next += interval;
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        tokio::time::sleep(wait).await;
                    }
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    })
}

fn percentiles(mut lat: Vec<u64>) -> (usize, f64, f64, f64) {
    lat.sort_unstable();
    let at = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    (
        lat.len(),
        at(0.5),
        at(0.99),
        lat.last().copied().unwrap_or(0) as f64 / 1000.0,
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    std::env::set_var("PGSHIFT_TESTKIT_DURABLE", "1");
    let rows: i64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let cluster = pgshift_testkit::cluster();
    println!(
        "backfill benchmark: {rows} rows, PostgreSQL {} (durable: fsync on), pgshift {}",
        cluster.version_num / 10000,
        pgshift_bin().display()
    );

    // 1. pgshift against one UPDATE, identical tables, same run.
    let db = TestDb::new().await;
    let c = db.client().await;
    load_orders(&c, "orders_update", rows).await;
    load_orders(&c, "orders", rows).await;
    let before_update = size_mb(&c, "orders_update").await;
    let before = size_mb(&c, "orders").await;
    exec(
        &c,
        "ALTER TABLE orders_update ADD COLUMN price_cents bigint",
    )
    .await;
    exec(&c, "CHECKPOINT").await;
    let t0 = Instant::now();
    exec(&c, "UPDATE orders_update SET price_cents = price * 100").await;
    let update_s = t0.elapsed().as_secs_f64();
    let after_update = size_mb(&c, "orders_update").await;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("0001_cents.yaml");
    std::fs::write(&file, "operations:\n  - add_column:\n      table: orders\n      up: price * 100\n      column:\n        name: price_cents\n        type: bigint\n        nullable: true\n").unwrap();
    exec(&c, "CHECKPOINT").await;
    let (start_s, rss_full) = pgshift_start(&db, dir.path(), file.to_str().unwrap());
    let backfill_s = backfill_seconds(&c).await;
    let after = size_mb(&c, "orders").await;
    // (After pgshift, so that its WAL does not fall into pgshift's or the UPDATE's run.)
    // The same UPDATE with a dual-write trigger present, as any online change must have one
    // while old clients write: a BEFORE UPDATE row trigger makes PostgreSQL lock each row
    // before updating it, whether or not the trigger's WHEN lets it fire.
    load_orders(&c, "orders_trigger", rows).await;
    exec(
        &c,
        "ALTER TABLE orders_trigger ADD COLUMN price_cents bigint;
         CREATE FUNCTION bench_dual_write() RETURNS trigger LANGUAGE plpgsql AS
           $$BEGIN NEW.price_cents := NEW.price * 100; RETURN NEW; END$$;
         CREATE TRIGGER dual_write BEFORE INSERT OR UPDATE ON orders_trigger FOR EACH ROW
           WHEN (current_setting('pgshift.backfill', true) IS DISTINCT FROM 'on')
           EXECUTE FUNCTION bench_dual_write();
         CHECKPOINT",
    )
    .await;
    let t0 = Instant::now();
    exec(
        &c,
        "BEGIN; SET LOCAL pgshift.backfill = on; UPDATE orders_trigger SET price_cents = price * 100; COMMIT",
    )
    .await;
    let trigger_s = t0.elapsed().as_secs_f64();
    // The size the table has when written compactly with its new column (the floor for any
    // method: every row is 8 bytes wider).
    exec(
        &c,
        "CREATE TABLE orders_compact AS SELECT * FROM orders_update;
         ALTER TABLE orders_compact ADD PRIMARY KEY (id);
         CREATE INDEX ON orders_compact (created_at);",
    )
    .await;
    let compact = size_mb(&c, "orders_compact").await;
    exec(&c, "DROP TABLE orders_compact; DROP TABLE orders_trigger").await;
    let wrong = rows_left_wrong(&c).await;
    println!("\n1. add_column backfill, {rows} rows (same run, identical tables)");
    println!(
        "   one UPDATE:        {update_s:>7.1} s   {}",
        growth(before_update, after_update)
    );
    println!(
        "   pgshift backfill:  {backfill_s:>7.1} s   {}   (pgshift start in all: {start_s:.1} s)",
        growth(before, after)
    );
    println!("   one UPDATE, dual-write trigger present: {trigger_s:.1} s");
    // The same add_column by copying the table, on a fourth identical table: start, then
    // complete (which swaps the copy in); size of the table that results.
    let copied = TestDb::new().await;
    let cc = copied.client().await;
    load_orders(&cc, "orders", rows).await;
    let before_copy = size_mb(&cc, "orders").await;
    let copy_dir = tempfile::tempdir().unwrap();
    let copy_file = copy_dir.path().join("0001_cents.yaml");
    std::fs::write(&copy_file, "operations:\n  - add_column:\n      table: orders\n      up: price * 100\n      method: copy\n      column:\n        name: price_cents\n        type: bigint\n        nullable: true\n").unwrap();
    exec(&cc, "CHECKPOINT").await;
    let (copy_start_s, _) = pgshift_start(&copied, copy_dir.path(), copy_file.to_str().unwrap());
    let copy_backfill_s = backfill_seconds(&cc).await;
    let t0 = Instant::now();
    let out = std::process::Command::new(pgshift_bin())
        .args(["--dir"])
        .arg(copy_dir.path())
        .arg("complete")
        .env("DATABASE_URL", &copied.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copy_complete_s = t0.elapsed().as_secs_f64();
    let after_copy = size_mb(&cc, "orders").await;
    let copy_wrong = rows_left_wrong(&cc).await;
    drop(cc);
    drop(copied);
    println!(
        "   pgshift, method: copy: start {copy_start_s:.1} s (copy {copy_backfill_s:.1} s) + complete {copy_complete_s:.1} s = {:.1} s   {}   rows left wrong: {copy_wrong}",
        copy_start_s + copy_complete_s,
        growth(before_copy, after_copy)
    );
    println!(
        "   pgshift (method: copy, start + complete) / UPDATE: {:.2}",
        (copy_start_s + copy_complete_s) / update_s
    );
    println!(
        "   the table rewritten compactly with its new column: {:.0} MB ({:.2}x; heap {:.2}x, indexes {:.2}x)",
        compact.0,
        compact.0 / before.0,
        compact.1 / before.1,
        (compact.0 - compact.1) / (before.0 - before.1)
    );
    println!(
        "   pgshift / UPDATE:  {:.2}   pgshift / (UPDATE with the trigger): {:.2}   rows left wrong: {wrong}",
        backfill_s / update_s,
        backfill_s / trigger_s
    );

    // 3. Client latency during the same backfill on a third identical table, then without
    // a backfill for as long, same load, same table. (Section 1 runs without clients so that
    // both sides of its ratio see the same machine.)
    let loaded = TestDb::new().await;
    let cl = loaded.client().await;
    load_orders(&cl, "orders", rows).await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(&loaded, "orders", rows, 200, stop.clone());
    let (loaded_s, _) = pgshift_start(&loaded, dir.path(), file.to_str().unwrap());
    stop.store(true, Ordering::Relaxed);
    let during = percentiles(load.await.unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(&loaded, "orders", rows, 200, stop.clone());
    tokio::time::sleep(Duration::from_secs_f64(loaded_s.clamp(5.0, 30.0))).await;
    stop.store(true, Ordering::Relaxed);
    let quiet = percentiles(load.await.unwrap());
    drop(cl);
    drop(loaded);
    println!("\n3. clients: random-key reads and writes at 200 ops/s (4 connections); pgshift start took {loaded_s:.1} s under this load");
    println!(
        "   without backfill: {:>6} ops  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        quiet.0, quiet.1, quiet.2, quiet.3
    );
    println!(
        "   during backfill:  {:>6} ops  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        during.0, during.1, during.2, during.3
    );

    // 4. Peak RSS at a tenth of the rows.
    let small = TestDb::new().await;
    let cs = small.client().await;
    load_orders(&cs, "orders", rows / 10).await;
    let (_, rss_small) = pgshift_start(&small, dir.path(), file.to_str().unwrap());
    println!(
        "\n4. peak RSS of pgshift start: {} rows {} kB, {} rows {} kB, ratio {:.2}",
        rows,
        rss_full,
        rows / 10,
        rss_small,
        rss_full as f64 / rss_small.max(1) as f64
    );

    // 2. S1: 222,000 rows, varchar to uuid.
    let s1 = TestDb::new().await;
    let c1 = s1.client().await;
    for t in ["incoming_faxes", "incoming_faxes_update"] {
        exec(&c1, &format!(
            "CREATE TABLE {t} (id bigserial PRIMARY KEY, box_file_id varchar, location_id int, received_at timestamptz DEFAULT now());
             INSERT INTO {t} (box_file_id, location_id) SELECT md5(g::text)::uuid::text, g % 50 FROM generate_series(1, 222000) g;"
        )).await;
        exec(&c1, &format!("VACUUM ANALYZE {t}")).await;
    }
    exec(
        &c1,
        "ALTER TABLE incoming_faxes_update ADD COLUMN box_file_uid uuid",
    )
    .await;
    let t0 = Instant::now();
    exec(
        &c1,
        "UPDATE incoming_faxes_update SET box_file_uid = box_file_id::uuid",
    )
    .await;
    let s1_update = t0.elapsed().as_secs_f64();
    let dir1 = tempfile::tempdir().unwrap();
    let f1 = dir1.path().join("0001_uuid.yaml");
    std::fs::write(&f1, "operations:\n  - alter_column:\n      table: incoming_faxes\n      column: box_file_id\n      type: uuid\n      up: box_file_id::uuid\n      down: box_file_id::text\n").unwrap();
    pgshift_start(&s1, dir1.path(), f1.to_str().unwrap());
    let s1_backfill = backfill_seconds(&c1).await;
    println!("\n2. S1 varchar -> uuid, 222000 rows: pgshift backfill {s1_backfill:.2} s, one UPDATE {s1_update:.2} s, ratio {:.2}", s1_backfill / s1_update);
}
