//! Issue 17's benchmark: the migration a user naturally writes (no `method`), through
//! pgshift, against the blocking statement on an identical table, under the same client load,
//! in one run. Prints figures; asserts nothing.
//!
//!   cargo build --release -p pgshift-cli --bins --examples && \
//!   cargo run --release -p pgshift-cli --example fast_bench
//!
//! Sections (all by default; `PGSHIFT_BENCH_ONLY=s2,s3,add_column,s2_big,pgbench` picks):
//! - `s2`: S2 (`orders.price int -> bigint`) at `PGSHIFT_BENCH_ROWS` rows (2,000,000), against
//!   `ALTER TABLE orders ALTER COLUMN price TYPE bigint`;
//! - `s3`: S3 (`alter_primary_key` of `orders.id`, `order_items.order_id` referencing it,
//!   the rows each), against the ALTERs of both key columns in one transaction;
//! - `add_column`: an `add_column` with `up: price * 100` on the S2 table, against
//!   `ADD COLUMN` and one `UPDATE`;
//! - `s2_big`: S2 at `PGSHIFT_BENCH_BIG_ROWS` rows (20,000,000): the time and peak RSS
//!   against the `s2` section's;
//! - `pgbench`: pgbench TPC-B (scale `PGSHIFT_BENCH_PGBENCH_SCALE`, 10; 4 clients, prepared
//!   statements) for 20 s before a migration and 20 s while it is open (`alter_column` of
//!   `pgbench_accounts.abalance` to bigint): the TPS before over while.
//!
//! Each section runs `PGSHIFT_BENCH_RUNS` times (5) and prints each run, then the min, median
//! and max of each figure. On a durable throwaway cluster (fsync on); each side on a fresh
//! database, after a CHECKPOINT. Client load: the scenario's statements at 100 per second per
//! version, 2 connections per version (the blocking statement has only the old version's).
//! pgshift's time is `start` plus `complete`; its peak RSS comes from GNU time (`%M`).
//! `PGSHIFT_BENCH_ARGS` passes flags to pgshift; `PGSHIFT_BENCH_VERBOSE=1` prints its step
//! lines.

use pgshift_testkit::scenario::{self, RunOptions, Scenario};
use pgshift_testkit::traffic::{PhaseReport, Traffic, TrafficConfig, Workload};
use pgshift_testkit::TestDb;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CLIENTS_PER_VERSION: usize = 2;
const RATE: u32 = 100;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn real_pgshift() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("pgshift")
}

/// A `pgshift` that runs the real one under GNU time, appending each command's peak RSS (kB)
/// to `rss`.
fn measured_pgshift(dir: &Path, rss: &Path) -> PathBuf {
    let script = dir.join("pgshift");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec /usr/bin/time -a -o '{}' -f %M '{}' \"$@\"\n",
            rss.display(),
            real_pgshift().display()
        ),
    )
    .expect("write the wrapper");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script
}

/// The largest peak RSS (MB) in `rss` since it was last emptied; empties it.
fn take_rss(rss: &Path) -> f64 {
    let text = std::fs::read_to_string(rss).unwrap_or_default();
    let _ = std::fs::write(rss, "");
    text.lines()
        .filter_map(|l| l.trim().parse::<f64>().ok())
        .fold(0.0, f64::max)
        / 1024.0
}

async fn size_mb(c: &tokio_postgres::Client, tables: &[&str]) -> f64 {
    let mut b = 0i64;
    for t in tables {
        b += c
            .query_one("SELECT pg_total_relation_size($1::text::regclass)", &[t])
            .await
            .unwrap()
            .get::<_, i64>(0);
    }
    b as f64 / 1_048_576.0
}

/// One side of one run.
#[derive(Clone, Copy, Default)]
struct Side {
    /// The tables' size before (MB).
    before_mb: f64,
    seconds: f64,
    p99_ms: f64,
    max_ms: f64,
    errors: usize,
    /// Size of the tables after, over their size before.
    size: f64,
}

struct Pair {
    blocking: Side,
    pgshift: Side,
    rss_mb: f64,
    mismatches: i64,
    /// pgshift's time split: start, complete.
    start_s: f64,
    finish_s: f64,
}

/// The blocking statements under the old version's load, on a fresh database.
async fn blocking(s: &Scenario, statements: &str, tables: &[&str]) -> Side {
    let db = TestDb::new().await;
    let c = db.client().await;
    for sql in &s.setup {
        c.batch_execute(sql).await.unwrap();
    }
    c.batch_execute("CHECKPOINT").await.unwrap();
    let before = size_mb(&c, tables).await;
    let traffic = Traffic::start(
        &TrafficConfig {
            url: db.url.clone(),
            clients_per_version: CLIENTS_PER_VERSION,
            rate: RATE,
            sample_every: Duration::from_millis(10),
        },
        &Workload {
            old: s.workload.old.clone(),
            new: Vec::new(),
            keys: s.rows,
        },
        "before",
    )
    .await
    .expect("traffic");
    tokio::time::sleep(Duration::from_secs(2)).await;
    traffic.phase("blocking");
    let t0 = Instant::now();
    c.batch_execute(statements).await.unwrap();
    let seconds = t0.elapsed().as_secs_f64();
    // A statement counts towards the phase it ends in: the clients' statements that waited
    // for the blocking statement end right after it, in this phase, not the next.
    tokio::time::sleep(Duration::from_millis(300)).await;
    traffic.phase("after");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let report = traffic.finish().await;
    let phase = report.phase("blocking").expect("the phase").clone();
    Side {
        before_mb: before,
        seconds,
        p99_ms: phase.p99_ms,
        max_ms: phase.max_ms,
        errors: report.errors.len(),
        size: size_mb(&c, tables).await / before,
    }
}

/// The scenario's natural migration file through pgshift, under both versions' load.
/// `before`: the tables' size before, as measured on the blocking side's identical data.
async fn through_pgshift(
    s: &Scenario,
    tables: &[&str],
    before: f64,
    pgshift: &Path,
    rss: &Path,
) -> Pair {
    let db = TestDb::new().await;
    let mut s = s.clone();
    s.setup.push("CHECKPOINT".into());
    take_rss(rss);
    let run = scenario::run(
        &db.url,
        &s,
        &RunOptions {
            pgshift: pgshift.to_owned(),
            pgshift_args: std::env::var("PGSHIFT_BENCH_ARGS")
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            clients_per_version: CLIENTS_PER_VERSION,
            rate: RATE,
            quiet: Duration::from_secs(2),
            rollback: false,
        },
    )
    .await
    .expect("pgshift run");
    let c = db.client().await;
    let during: Vec<&PhaseReport> = run
        .traffic
        .phases
        .iter()
        .filter(|p| !matches!(p.name.as_str(), "before" | "after" | "open"))
        .collect();
    if std::env::var_os("PGSHIFT_BENCH_VERBOSE").is_some() {
        for line in run
            .pgshift_output
            .lines()
            .filter(|l| !l.contains("backfill ") || l.contains(" done") || l.contains("workers"))
        {
            println!("    {line}");
        }
    }
    Pair {
        blocking: Side::default(),
        pgshift: Side {
            before_mb: before,
            seconds: run.start_s + run.finish_s,
            p99_ms: during.iter().map(|p| p.p99_ms).fold(0.0, f64::max),
            max_ms: during.iter().map(|p| p.max_ms).fold(0.0, f64::max),
            errors: run.traffic.errors.len(),
            size: size_mb(&c, tables).await / before,
        },
        rss_mb: take_rss(rss),
        mismatches: run.mismatches,
        start_s: run.start_s,
        finish_s: run.finish_s,
    }
}

fn print_pair(what: &str, p: &Pair) {
    println!(
        "  {what}: blocking {:.1} s (client p99 {:.1} ms, max {:.1} ms, errors {}, table {:.2}x); pgshift {:.1} s = start {:.1} + complete {:.1} (client p99 {:.1} ms, max {:.1} ms, errors {}, table {:.2}x, peak RSS {:.1} MB, rows differing {}); pgshift / blocking {:.2}",
        p.blocking.seconds,
        p.blocking.p99_ms,
        p.blocking.max_ms,
        p.blocking.errors,
        p.blocking.size,
        p.pgshift.seconds,
        p.start_s,
        p.finish_s,
        p.pgshift.p99_ms,
        p.pgshift.max_ms,
        p.pgshift.errors,
        p.pgshift.size,
        p.rss_mb,
        p.mismatches,
        p.pgshift.seconds / p.blocking.seconds
    );
}

/// min, median, max.
fn spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (v[0], median, v[n - 1])
}

fn print_spread(label: &str, v: Vec<f64>, unit: &str) -> f64 {
    let (lo, med, hi) = spread(v);
    println!("    {label}: min {lo:.2}{unit}, median {med:.2}{unit}, max {hi:.2}{unit}");
    med
}

fn summarize(section: &str, pairs: &[Pair]) {
    println!("  {section} over {} runs:", pairs.len());
    print_spread(
        "pgshift / blocking",
        pairs
            .iter()
            .map(|p| p.pgshift.seconds / p.blocking.seconds)
            .collect(),
        "",
    );
    print_spread(
        "pgshift time",
        pairs.iter().map(|p| p.pgshift.seconds).collect(),
        " s",
    );
    print_spread(
        "blocking time",
        pairs.iter().map(|p| p.blocking.seconds).collect(),
        " s",
    );
    print_spread(
        "client p99 under pgshift",
        pairs.iter().map(|p| p.pgshift.p99_ms).collect(),
        " ms",
    );
    print_spread(
        "client max under pgshift",
        pairs.iter().map(|p| p.pgshift.max_ms).collect(),
        " ms",
    );
    print_spread(
        "client max under the blocking statement",
        pairs.iter().map(|p| p.blocking.max_ms).collect(),
        " ms",
    );
    print_spread(
        "table after pgshift",
        pairs.iter().map(|p| p.pgshift.size).collect(),
        "x",
    );
    print_spread(
        "table after the blocking statement",
        pairs.iter().map(|p| p.blocking.size).collect(),
        "x",
    );
    print_spread(
        "pgshift peak RSS",
        pairs.iter().map(|p| p.rss_mb).collect(),
        " MB",
    );
    println!(
        "    client errors: {} under pgshift, {} under the blocking statement; rows differing from the reference: {}",
        pairs.iter().map(|p| p.pgshift.errors).sum::<usize>(),
        pairs.iter().map(|p| p.blocking.errors).sum::<usize>(),
        pairs.iter().map(|p| p.mismatches).sum::<i64>()
    );
}

async fn section(
    name: &str,
    runs: usize,
    s: &Scenario,
    statements: &str,
    tables: &[&str],
    pgshift: &Path,
    rss: &Path,
) -> Vec<Pair> {
    println!("\n{name}: {} ({} rows)", s.title, s.rows);
    let mut pairs = Vec::new();
    for run in 1..=runs {
        let b = blocking(s, statements, tables).await;
        let mut p = through_pgshift(s, tables, b.before_mb, pgshift, rss).await;
        p.blocking = b;
        print_pair(&format!("run {run}"), &p);
        pairs.push(p);
    }
    summarize(name, &pairs);
    pairs
}

/// S2's table with a new column filled by `up`.
fn add_column(rows: i64) -> Scenario {
    let mut s = scenario::s2(rows);
    s.name = "add_column";
    s.title = "orders.price_cents bigint added, filled from price * 100".into();
    s.file_name = "0001_price_cents.yaml";
    s.migration = "operations:
  - add_column:
      table: orders
      up: price * 100
      column:
        name: price_cents
        type: bigint
        nullable: true
"
    .into();
    s.reference = format!(
        "CREATE TABLE {}.unused AS SELECT 1 AS one",
        scenario::REFERENCE_SCHEMA
    );
    // The new version writes the column itself (an application that added it would), so
    // every row, old or new, must hold price * 100.
    s.workload.new = vec![
        "SELECT price, price_cents FROM orders WHERE id = $1::bigint".into(),
        "UPDATE orders SET price = price + 2, price_cents = (price + 2)::bigint * 100 WHERE id = $1::bigint".into(),
        "INSERT INTO orders (price, price_cents, note) VALUES ($1::bigint % 1000, ($1::bigint % 1000) * 100, 'new client')".into(),
    ];
    s.check =
        "SELECT count(*) FROM public.orders WHERE price_cents IS DISTINCT FROM price::bigint * 100"
            .into();
    s
}

fn pgbench_bin() -> PathBuf {
    PathBuf::from(
        String::from_utf8(
            std::process::Command::new("pg_config")
                .arg("--bindir")
                .output()
                .expect("pg_config")
                .stdout,
        )
        .expect("utf-8")
        .trim(),
    )
    .join("pgbench")
}

/// (TPS, failed transactions, average latency in ms) of a 20 s pgbench TPC-B run.
fn pgbench_run(url: &str) -> (f64, u64, f64) {
    let out = std::process::Command::new(pgbench_bin())
        .args([
            "-n", "-T", "20", "-c", "4", "-j", "2", "-M", "prepared", url,
        ])
        .output()
        .expect("pgbench");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "pgbench: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let number = |prefix: &str| -> Option<f64> {
        let line = text.lines().find(|l| l.trim_start().starts_with(prefix))?;
        line[line.find(prefix)? + prefix.len()..]
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    (
        number("tps = ").unwrap_or(0.0),
        number("number of failed transactions: ").unwrap_or(0.0) as u64,
        number("latency average = ").unwrap_or(0.0),
    )
}

async fn pgbench_section(runs: usize, pgshift: &Path, rss: &Path) {
    let scale: u32 = env_or("PGSHIFT_BENCH_PGBENCH_SCALE", 10);
    println!("\npgbench: TPC-B, scale {scale} (--foreign-keys), 4 clients, prepared statements, 20 s before a migration and 20 s while it is open (alter_column pgbench_accounts.abalance to bigint, start then complete)");
    let mut ratios = Vec::new();
    let mut failures = 0;
    for run in 1..=runs {
        let db = TestDb::new().await;
        let init = std::process::Command::new(pgbench_bin())
            .args([
                "-i",
                "-q",
                "--foreign-keys",
                "-s",
                &scale.to_string(),
                &db.url,
            ])
            .output()
            .expect("pgbench -i");
        assert!(
            init.status.success(),
            "{}",
            String::from_utf8_lossy(&init.stderr)
        );
        let c = db.client().await;
        c.batch_execute("VACUUM ANALYZE").await.unwrap();
        c.batch_execute("CHECKPOINT").await.unwrap();
        let (before, failed_before, lat_before) = pgbench_run(&db.url);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("0001_abalance.yaml"),
            "operations:\n  - alter_column:\n      table: pgbench_accounts\n      column: abalance\n      type: bigint\n",
        )
        .unwrap();
        let pgshift_cmd = |args: &[&str]| {
            let out = std::process::Command::new(pgshift)
                .args(
                    std::env::var("PGSHIFT_BENCH_ARGS")
                        .unwrap_or_default()
                        .split_whitespace(),
                )
                .arg("--dir")
                .arg(dir.path())
                .args(args)
                .env("DATABASE_URL", &db.url)
                .output()
                .expect("pgshift");
            assert!(
                out.status.success(),
                "pgshift {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        take_rss(rss);
        let t0 = Instant::now();
        pgshift_cmd(&["init"]);
        let file = dir.path().join("0001_abalance.yaml");
        pgshift_cmd(&["start", file.to_str().unwrap()]);
        let start_s = t0.elapsed().as_secs_f64();
        // Each window begins right after a checkpoint, so that both pay the same full-page
        // writes and neither meets the checkpoint that the start's WAL would bring on.
        c.batch_execute("CHECKPOINT").await.unwrap();
        let (open, failed_open, lat_open) = pgbench_run(&db.url);
        pgshift_cmd(&["complete"]);
        failures += failed_before + failed_open;
        let ratio = before / open;
        println!(
            "  run {run}: TPS before {before:.0} (latency {lat_before:.2} ms, {failed_before} failed), while open {open:.0} (latency {lat_open:.2} ms, {failed_open} failed); before / while open {ratio:.3}; start {start_s:.1} s"
        );
        ratios.push(ratio);
    }
    println!("  pgbench over {runs} runs:");
    print_spread("TPS before / while open", ratios, "");
    println!("    failed pgbench transactions: {failures}");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    std::env::set_var("PGSHIFT_TESTKIT_DURABLE", "1");
    let runs: usize = env_or("PGSHIFT_BENCH_RUNS", 5usize).max(1);
    let rows: i64 = env_or("PGSHIFT_BENCH_ROWS", 2_000_000);
    let big_rows: i64 = env_or("PGSHIFT_BENCH_BIG_ROWS", 20_000_000);
    let only = std::env::var("PGSHIFT_BENCH_ONLY").unwrap_or_default();
    let wanted = |s: &str| only.is_empty() || only.split(',').any(|o| o.trim() == s);
    let cluster = pgshift_testkit::cluster();
    let work = tempfile::tempdir().unwrap();
    let rss = work.path().join("rss");
    let pgshift = measured_pgshift(work.path(), &rss);
    println!(
        "fast_bench: PostgreSQL {} (durable: fsync on), {runs} runs per section, clients {CLIENTS_PER_VERSION} per version at {RATE} statements/s per version; pgshift flags: {:?}",
        cluster.version_num / 10000,
        std::env::var("PGSHIFT_BENCH_ARGS").unwrap_or_default()
    );
    let mut small: Option<Vec<Pair>> = None;
    if wanted("s2") || wanted("s2_big") {
        small = Some(
            section(
                "s2",
                runs,
                &scenario::s2(rows),
                "ALTER TABLE orders ALTER COLUMN price TYPE bigint",
                &["orders"],
                &pgshift,
                &rss,
            )
            .await,
        );
    }
    if wanted("s3") {
        section(
            "s3",
            runs,
            &scenario::s3(rows),
            "BEGIN; ALTER TABLE orders ALTER COLUMN id TYPE bigint; ALTER TABLE order_items ALTER COLUMN order_id TYPE bigint; COMMIT",
            &["orders", "order_items"],
            &pgshift,
            &rss,
        )
        .await;
    }
    if wanted("add_column") {
        section(
            "add_column",
            runs,
            &add_column(rows),
            "BEGIN; ALTER TABLE orders ADD COLUMN price_cents bigint; UPDATE orders SET price_cents = price::bigint * 100; COMMIT",
            &["orders"],
            &pgshift,
            &rss,
        )
        .await;
    }
    if wanted("s2_big") {
        let big = section(
            "s2_big",
            runs,
            &scenario::s2(big_rows),
            "ALTER TABLE orders ALTER COLUMN price TYPE bigint",
            &["orders"],
            &pgshift,
            &rss,
        )
        .await;
        if let Some(small) = &small {
            let med = |v: &[Pair], f: fn(&Pair) -> f64| spread(v.iter().map(f).collect()).1;
            println!(
                "  s2_big against s2 (medians): pgshift time {:.2}x for {:.1}x the rows; peak RSS {:.2}x",
                med(&big, |p| p.pgshift.seconds) / med(small, |p| p.pgshift.seconds),
                big_rows as f64 / rows as f64,
                med(&big, |p| p.rss_mb) / med(small, |p| p.rss_mb)
            );
        }
    }
    if wanted("pgbench") {
        pgbench_section(runs, &pgshift, &rss).await;
    }
}
