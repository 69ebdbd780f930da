//! The S2 benchmark (issue 5): `orders.price int -> bigint` through pgshift against the
//! blocking `ALTER TABLE ... ALTER COLUMN price TYPE bigint` on an identical table, both under
//! the same client load, in one run. Prints figures; asserts nothing.
//!
//!   cargo build --release -p pgshift-cli && \
//!   cargo run --release -p pgshift-cli --example s2_bench [rows] [migration file]
//!
//! On a durable throwaway cluster (fsync on). The client load is the S2 scenario's old-version
//! statements (random-key reads, updates, inserts) for the ALTER, and the same plus the new
//! version's for pgshift, at the scenario driver's rate. pgshift's time is its start plus its
//! complete; the ALTER's is the statement's.
//! A second argument names another migration file for S2 (a YAML with the same shape as
//! the scenario's), to compare methods. `PGSHIFT_BENCH_RUNS=N` repeats the pair N times and
//! prints the ratio's minimum, median and maximum (this machine's speed varies a lot from
//! one run to the next); `PGSHIFT_BENCH_VERBOSE=1` prints pgshift's step lines.

use pgshift_testkit::scenario::{self, RunOptions};
use pgshift_testkit::traffic::{Traffic, TrafficConfig, Workload};
use pgshift_testkit::TestDb;
use std::path::Path;
use std::time::{Duration, Instant};

fn pgshift_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("pgshift")
}

async fn size_mb(c: &tokio_postgres::Client, table: &str) -> f64 {
    let b: i64 = c
        .query_one(
            "SELECT pg_total_relation_size($1::text::regclass)",
            &[&table],
        )
        .await
        .unwrap()
        .get(0);
    b as f64 / 1_048_576.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    std::env::set_var("PGSHIFT_TESTKIT_DURABLE", "1");
    let rows: i64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let mut s2 = scenario::s2(rows);
    if let Some(file) = std::env::args().nth(2) {
        s2.migration = std::fs::read_to_string(&file).expect("read the migration file");
    }
    // Both runs begin from a checkpoint: the data just loaded is on disk, and no checkpoint
    // started by the loading's WAL runs during the timed work.
    s2.setup.push("CHECKPOINT".into());
    let cluster = pgshift_testkit::cluster();
    let clients_per_version = 2;
    let rate = 100;
    println!(
        "S2 benchmark: orders.price int -> bigint, {rows} rows, PostgreSQL {} (durable: fsync on), clients: {clients_per_version} per version at {rate} statements/s per version",
        cluster.version_num / 10000
    );
    let runs: usize = std::env::var("PGSHIFT_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1)
        .max(1);
    let mut ratios = Vec::new();
    for run in 1..=runs {
        if runs > 1 {
            println!("\nrun {run} of {runs}");
        }
        ratios.push(run_once(rows, &s2, clients_per_version, rate).await);
    }
    if runs > 1 {
        ratios.sort_by(f64::total_cmp);
        let median = if runs % 2 == 1 {
            ratios[runs / 2]
        } else {
            (ratios[runs / 2 - 1] + ratios[runs / 2]) / 2.0
        };
        println!(
            "\npgshift time / ALTER time over {runs} runs: min {:.2}, median {median:.2}, max {:.2}; at most 1.5 in {} of {runs}",
            ratios[0],
            ratios[runs - 1],
            ratios.iter().filter(|r| **r <= 1.5).count()
        );
    }
}

/// One ALTER and one pgshift run, each on a fresh database; prints their figures and
/// returns pgshift time / ALTER time.
async fn run_once(
    rows: i64,
    s2: &scenario::Scenario,
    clients_per_version: usize,
    rate: u32,
) -> f64 {
    // The blocking ALTER, under the old version's load (the only version there is).
    let db = TestDb::new().await;
    let c = db.client().await;
    for sql in &s2.setup {
        c.batch_execute(sql).await.unwrap();
    }
    let before_alter = size_mb(&c, "orders").await;
    let config = TrafficConfig {
        url: db.url.clone(),
        clients_per_version,
        rate,
        sample_every: Duration::from_millis(10),
    };
    let workload = Workload {
        old: s2.workload.old.clone(),
        new: Vec::new(),
        keys: rows,
    };
    let traffic = Traffic::start(&config, &workload, "before")
        .await
        .expect("traffic");
    tokio::time::sleep(Duration::from_secs(2)).await;
    traffic.phase("alter");
    let t0 = Instant::now();
    c.batch_execute("ALTER TABLE orders ALTER COLUMN price TYPE bigint")
        .await
        .unwrap();
    let alter_s = t0.elapsed().as_secs_f64();
    traffic.phase("after");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let alter_report = traffic.finish().await;
    let after_alter = size_mb(&c, "orders").await;
    drop(c);
    drop(db);
    let alter_phase = alter_report.phase("alter").expect("alter phase").clone();

    // pgshift, under both versions' load, through the scenario driver.
    let db = TestDb::new().await;
    let run = scenario::run(
        &db.url,
        s2,
        &RunOptions {
            pgshift: pgshift_bin(),
            pgshift_args: std::env::var("PGSHIFT_BENCH_ARGS")
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            clients_per_version,
            rate,
            quiet: Duration::from_secs(2),
            rollback: false,
        },
    )
    .await
    .expect("pgshift run");
    let c = db.client().await;
    let after_pgshift = size_mb(&c, "orders").await;
    let pgshift_s = run.start_s + run.finish_s;
    let t = &run.traffic;
    let max_during = t
        .phases
        .iter()
        .filter(|p| !matches!(p.name.as_str(), "before" | "after"))
        .map(|p| p.max_ms)
        .fold(0.0, f64::max);

    println!("\n                       time      client max   client errors   table after (before {before_alter:.0} MB)");
    println!(
        "blocking ALTER     {alter_s:>7.1} s   {:>9.1} ms   {:>13}   {after_alter:.0} MB ({:.2}x)",
        alter_phase.max_ms,
        alter_report.errors.len(),
        after_alter / before_alter
    );
    println!(
        "pgshift            {pgshift_s:>7.1} s   {max_during:>9.1} ms   {:>13}   {after_pgshift:.0} MB ({:.2}x)",
        t.errors.len(),
        after_pgshift / before_alter
    );
    println!(
        "  pgshift start {:.1} s (backfill {:.1} s), complete {:.1} s; longest client wait behind pgshift {:.1} ms; rows differing from the reference: {}",
        run.start_s,
        run.backfill_s,
        run.finish_s,
        t.max_behind_pgshift_ms(),
        run.mismatches
    );
    println!(
        "  client statements during the ALTER: {} (p50 {:.1} ms); during pgshift's start and complete: {}",
        alter_phase.ops,
        alter_phase.p50_ms,
        t.phases
            .iter()
            .filter(|p| !matches!(p.name.as_str(), "before" | "after" | "open"))
            .map(|p| p.ops)
            .sum::<u64>()
    );
    if std::env::var_os("PGSHIFT_BENCH_VERBOSE").is_some() {
        println!("what pgshift printed:");
        for line in run
            .pgshift_output
            .lines()
            .filter(|l| !l.contains("backfill orders:"))
        {
            println!("  {line}");
        }
    }
    println!("pgshift time / ALTER time: {:.2}", pgshift_s / alter_s);
    pgshift_s / alter_s
}
