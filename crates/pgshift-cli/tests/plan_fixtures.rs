//! What `pgshift plan` prints for each case of `tests/plan/`: one folder per case, its
//! `migration.yaml` beside `plan.txt`, the output of `pgshift plan migration.yaml` against a
//! fresh database made from `tests/plan/schema.sql` (standard output; on a refusal, the exit
//! code and standard error). A reviewer reads a change to what pgshift runs, views included,
//! in the diff of `plan.txt`.
//!
//! A `plan.txt` that differs from what pgshift prints now fails the suite (so does a case
//! without one). After a change that is meant, write them again with
//! `PGSHIFT_UPDATE_PLANS=1 cargo test -p pgshift-cli --test plan_fixtures`, and review the diff.

mod common;

use common::{finish, pgshift, TestDb};
use std::path::{Path, PathBuf};

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plan");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/plan")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    cases
}

/// What `pgshift plan` prints for one case.
async fn plan_of(case: &Path, schema: &str) -> String {
    let db = TestDb::new().await;
    db.client()
        .await
        .batch_execute(schema)
        .await
        .expect("schema.sql");
    let mut cmd = pgshift(&db.url, case, &["plan", "migration.yaml"]);
    cmd.current_dir(case);
    let run = finish(&mut cmd).await;
    let mut out = run.stdout;
    if run.code != 0 {
        out.push_str(&format!("exit {}\n{}", run.code, run.stderr));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_case_plans_as_its_plan_txt_says() {
    let cases = cases();
    assert!(cases.len() >= 30, "the cases were not found: {cases:?}");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plan");
    let schema = std::fs::read_to_string(root.join("schema.sql")).expect("schema.sql");
    let update = std::env::var_os("PGSHIFT_UPDATE_PLANS").is_some();
    // The plan.txt files are PostgreSQL 15's: before 15, version views are made without
    // security_invoker (docs/fidelity.md), and the files are read so.
    let version: i32 = TestDb::new()
        .await
        .client()
        .await
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        !(update && version < 150000),
        "write the plan.txt files against PostgreSQL 15 or later"
    );
    let as_this_server = |expected: String| {
        if version < 150000 {
            expected.replace(" WITH (security_invoker = true)", "")
        } else {
            expected
        }
    };
    // Four at a time, each on its own database.
    let mut results: Vec<(PathBuf, String)> = Vec::new();
    for chunk in cases.chunks(4) {
        let runs: Vec<_> = chunk
            .iter()
            .cloned()
            .map(|case| {
                let schema = schema.clone();
                tokio::spawn(async move {
                    let printed = plan_of(&case, &schema).await;
                    (case, printed)
                })
            })
            .collect();
        for run in runs {
            results.push(run.await.expect("a case panicked"));
        }
    }
    let mut stale = Vec::new();
    for (case, printed) in results {
        let file = case.join("plan.txt");
        if update {
            std::fs::write(&file, &printed).expect("write plan.txt");
            continue;
        }
        match std::fs::read_to_string(&file).map(as_this_server) {
            Ok(expected) if expected == printed => {}
            Ok(expected) => stale.push(format!(
                "{}: pgshift plan now prints\n{printed}\n--- where plan.txt says\n{expected}",
                case.display()
            )),
            Err(_) => stale.push(format!("{}: no plan.txt", case.display())),
        }
    }
    assert!(
        stale.is_empty(),
        "{} case(s) differ from their plan.txt (PGSHIFT_UPDATE_PLANS=1 writes them again; review the diff):\n\n{}",
        stale.len(),
        stale.join("\n\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_plan_txt_is_noticed() {
    // The comparison above is of whole texts: one case planned against a schema that lacks
    // a column prints something else than its plan.txt.
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plan/rename_column");
    let expected = std::fs::read_to_string(case.join("plan.txt")).expect("plan.txt");
    let other = plan_of(
        &case,
        "CREATE TABLE orders (id int PRIMARY KEY, note text, extra int)",
    )
    .await;
    assert_ne!(other, expected);
    assert!(expected.contains("CREATE VIEW"), "{expected}");
}
