//! The seed scenarios (SCENARIOS.md) end to end under client traffic, at a small scale:
//! no client error, no client statement waiting 250 ms or more behind a pgshift lock, every
//! migrated row equal to the reference computed from the final old data, and a rollback
//! before complete that leaves the schema as it was.

use pgshift_testkit::scenario::{self, RunOptions, Scenario, ScenarioRun};
use pgshift_testkit::TestDb;
use std::time::Duration;

const ROWS: i64 = 20_000;

fn options(rollback: bool) -> RunOptions {
    RunOptions {
        pgshift: env!("CARGO_BIN_EXE_pgshift").into(),
        pgshift_args: Vec::new(),
        clients_per_version: 2,
        rate: 100,
        quiet: Duration::from_millis(700),
        rollback,
    }
}

async fn run(s: Scenario, rollback: bool) -> ScenarioRun {
    let db = TestDb::new().await;
    let run = scenario::run(&db.url, &s, &options(rollback))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let t = &run.traffic;
    for p in &t.phases {
        eprintln!(
            "{} {:>9}: {:>5} ops, {} errors, p99 {:.1} ms, max {:.1} ms, behind pgshift {} (max {:.1} ms)",
            run.name, p.name, p.ops, p.errors, p.p99_ms, p.max_ms, p.behind_pgshift, p.max_behind_pgshift_ms
        );
    }
    assert!(
        t.errors.is_empty(),
        "{}: client errors: {:#?}",
        run.name,
        &t.errors[..t.errors.len().min(10)]
    );
    assert!(
        t.max_behind_pgshift_ms() < 250.0,
        "{}: a client waited {:.1} ms behind a pgshift lock",
        run.name,
        t.max_behind_pgshift_ms()
    );
    // The clients really ran in both versions while the migration was open.
    let open = t.phase("open").expect("an open phase");
    assert!(
        open.ops > 20,
        "{}: only {} statements while open",
        run.name,
        open.ops
    );
    assert!(
        t.samples
            .iter()
            .any(|s| s.version == pgshift_testkit::traffic::Version::New),
        "{}: no new-version client ran",
        run.name
    );
    run
}

async fn completes(s: Scenario) {
    let run = run(s, false).await;
    assert_eq!(
        run.mismatches, 0,
        "{}: rows differ from the reference",
        run.name
    );
    assert!(
        run.traffic.phase("complete").is_some_and(|p| p.ops > 0),
        "{}: no traffic during complete",
        run.name
    );
    assert_ne!(
        run.schema_before, run.schema_after,
        "{}: complete changed nothing",
        run.name
    );
}

async fn rolls_back(s: Scenario) {
    let run = run(s, true).await;
    assert_eq!(
        run.schema_restored,
        Some(true),
        "{}: the schema after rollback differs:\nbefore:\n{}\nafter:\n{}",
        run.name,
        run.schema_before,
        run.schema_after
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s1_uuid_completes_under_traffic() {
    completes(scenario::s1(ROWS)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s1_uuid_rolls_back_under_traffic() {
    rolls_back(scenario::s1(ROWS)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_price_bigint_completes_under_traffic() {
    completes(scenario::s2(ROWS)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_price_bigint_rolls_back_under_traffic() {
    rolls_back(scenario::s2(ROWS)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_primary_key_bigint_completes_under_traffic() {
    completes(scenario::s3(ROWS)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_primary_key_bigint_rolls_back_under_traffic() {
    rolls_back(scenario::s3(ROWS)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_extract_completes_under_traffic() {
    completes(scenario::s4(ROWS)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_extract_rolls_back_under_traffic() {
    rolls_back(scenario::s4(ROWS)).await;
}

/// The method `pgshift plan` takes for each scenario's file, as a user writes it (no
/// `method`): S2's type change copies the table; S1's (with a unique key and a foreign key)
/// and S3's key change go in place, with the reason; S4 rewrites nothing in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_scenarios_plan_says_which_method_it_takes_and_why() {
    for (s, want) in [
        (
            scenario::s1(1000),
            vec![(
                "alter_column incoming_faxes.box_file_id",
                "in_place",
                "not a copy of the table, because",
            )],
        ),
        (
            scenario::s2(1000),
            vec![(
                "alter_column orders.price",
                "copy",
                "the type change rewrites every row",
            )],
        ),
        (
            scenario::s3(1000),
            vec![(
                "alter_primary_key orders",
                "copy",
                "one copy for each of orders, order_items",
            )],
        ),
        (scenario::s4(1000), vec![]),
        (
            // A referencing table without a primary key cannot be copied (its changes
            // could not be replayed by key): the key changes in place, and the plan says why.
            {
                let mut s = scenario::s3(1000);
                s.setup
                    .push("ALTER TABLE order_items DROP CONSTRAINT order_items_pkey".into());
                s
            },
            vec![(
                "alter_primary_key orders",
                "in_place",
                "not a copy of the tables, because order_items: a copy of the table needs a one-column primary key",
            )],
        ),
    ] {
        let db = TestDb::new().await;
        let c = db.client().await;
        for sql in &s.setup {
            c.batch_execute(sql).await.unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(s.file_name);
        std::fs::write(&file, &s.migration).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgshift"))
            .args(["--dir", dir.path().to_str().unwrap()])
            .args(["plan", file.to_str().unwrap(), "--output", "json"])
            .env("DATABASE_URL", &db.url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            s.name,
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let methods: Vec<(String, String, String)> = v["methods"]
            .as_array()
            .map(|m| {
                m.iter()
                    .map(|m| {
                        (
                            m["what"].as_str().unwrap().to_owned(),
                            m["method"].as_str().unwrap().to_owned(),
                            m["why"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(methods.len(), want.len(), "{}: {methods:#?}", s.name);
        for ((what, method, why), (w, m, y)) in methods.iter().zip(&want) {
            assert!(
                what == w && method == m && why.contains(y),
                "{}: {what}: {method}: {why}",
                s.name
            );
        }
    }
}
