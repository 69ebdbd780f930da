//! pgroll's 56 example migrations (../shared/compat/pgroll-examples), read unchanged, in
//! `.ledger` order.

mod common;

use common::*;
use std::path::PathBuf;

fn examples() -> Option<(PathBuf, Vec<String>)> {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/compat/pgroll-examples");
    let ledger = std::fs::read_to_string(dir.join(".ledger")).ok()?;
    Some((
        dir,
        ledger
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn pgroll_examples_start_and_complete_in_ledger_order() {
    let Some((dir, files)) = examples() else {
        eprintln!("skipped: ../shared/compat/pgroll-examples is not here");
        return;
    };
    assert_eq!(files.len(), 56);
    let db = TestDb::new().await;
    // Each file is added to the migrations folder in the ledger's order, as a team would.
    // pgroll's examples make serial keys, which lint refuses by default (prefer-bigint-keys):
    // they run with --no-lint, unchanged.
    let empty = Migrations::new(&[]);
    for f in &files {
        let path = empty.path().join(f);
        std::fs::copy(dir.join(f), &path).unwrap();
        let path = path.to_str().unwrap();
        run_ok(&db, &empty.path(), &["start", path, "--no-lint"]).await;
        run_ok(&db, &empty.path(), &["complete"]).await;
    }
    let c = db.client().await;
    assert_eq!(
        scalar_i64(
            &c,
            "SELECT count(*) FROM pgshift.migrations WHERE status = 'applied'"
        )
        .await,
        56
    );
    // A few end states that only hold if the operations did their work.
    assert!(
        table_exists(&c, "clients").await,
        "04 renamed customers to clients"
    );
    assert!(!table_exists(&c, "customers").await);
    assert!(
        !table_exists(&c, "products").await
            || table_exists(&c, "with_version_schema.products").await
    );
    let rating_type: String = c
        .query_one("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'reviews'::regclass AND attname = 'rating'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        rating_type, "integer",
        "18 changed reviews.rating to integer"
    );
    let name_not_null: bool = c
        .query_one("SELECT attnotnull FROM pg_attribute WHERE attrelid = 'events'::regclass AND attname = 'name'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(name_not_null, "35 made events.name NOT NULL");
    assert_eq!(
        scalar_i64(&c, "SELECT count(*) FROM pg_constraint WHERE conname IN ('events_event_name_unique', 'event_name_length', 'unique_zip_name', 'fk_sellers', 'tasks_pkey')").await,
        5
    );
    assert_eq!(
        scalar_i64(&c, "SELECT count(*) FROM pg_attribute a JOIN pg_class r ON r.oid = a.attrelid WHERE r.relkind IN ('r', 'p', 'v') AND a.attname LIKE '\\_pgshift\\_%' AND NOT a.attisdropped").await,
        0,
        "no internal column is left behind (index attributes keep their creation-time names; they are not columns)"
    );
    assert_eq!(
        scalar_i64(
            &c,
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE '\\_pgshift\\_%'"
        )
        .await,
        0,
        "no trigger is left behind"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pgroll_examples_start_roll_back_start_again_and_complete() {
    let Some((dir, files)) = examples() else {
        eprintln!("skipped: ../shared/compat/pgroll-examples is not here");
        return;
    };
    let db = TestDb::new().await;
    let empty = Migrations::new(&[]);
    // The state schema exists before the first dump, so that dumps compare like with like.
    run_ok(&db, &empty.path(), &["init"]).await;
    for f in &files {
        let path = empty.path().join(f);
        std::fs::copy(dir.join(f), &path).unwrap();
        let path = path.to_str().unwrap();
        let before = schema_dump(&db).await;
        run_ok(&db, &empty.path(), &["start", path, "--no-lint"]).await;
        run_ok(&db, &empty.path(), &["rollback"]).await;
        let after = schema_dump(&db).await;
        assert!(
            before == after,
            "{f}: rollback did not restore the schema:\n{}",
            diff(&before, &after)
        );
        run_ok(&db, &empty.path(), &["start", path, "--no-lint"]).await;
        run_ok(&db, &empty.path(), &["complete"]).await;
    }
}

fn diff(a: &str, b: &str) -> String {
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    let only_a: Vec<&&str> = a.iter().filter(|l| !b.contains(l)).collect();
    let only_b: Vec<&&str> = b.iter().filter(|l| !a.contains(l)).collect();
    format!("before only: {only_a:#?}\nafter only: {only_b:#?}")
}
