//! `pgshift plan <file>`: every step with its SQL, its locks by PostgreSQL's names, what it
//! rewrites or scans, which client statements it makes wait, and estimates from the table's
//! size; nothing changes, not even pgshift's state schema.

mod common;

use common::*;

async fn orders(db: &TestDb) -> tokio_postgres::Client {
    let raw = db.client().await;
    raw.batch_execute(
        "CREATE TABLE orders (id serial PRIMARY KEY, price int NOT NULL, note text);
         INSERT INTO orders (price, note) SELECT g, 'n' || g FROM generate_series(1, 50000) g;
         ANALYZE orders;",
    )
    .await
    .unwrap();
    raw
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_of_operations_names_locks_blocked_statements_and_estimates_and_changes_nothing() {
    let db = TestDb::new().await;
    let raw = orders(&db).await;
    let before = schema_dump(&db).await;
    let m = Migrations::new(&[(
        "0001_price.yaml",
        "operations:\n  - alter_column:\n      table: orders\n      column: price\n      type: bigint\n      up: price::bigint\n      down: price::int\n      method: in_place\n",
    )]);
    let file = m.path().join("0001_price.yaml");
    let r = run_ok(&db, &m.path(), &["plan", file.to_str().unwrap()]).await;
    for expected in [
        "start (about",
        "[ACCESS EXCLUSIVE on public.orders; about < 0.1 s]",
        "blocks SELECT, INSERT, UPDATE, DELETE on public.orders (ACCESS EXCLUSIVE): while queued at most",
        "[SHARE ROW EXCLUSIVE on public.orders; about < 0.1 s]",
        "ROW EXCLUSIVE on orders (blocks no statement)",
        "VALIDATE CONSTRAINT",
        "[SHARE UPDATE EXCLUSIVE on public.orders; scans;",
        "rollback (about",
    ] {
        assert!(r.stdout.contains(expected), "missing {expected:?} in:\n{}", r.stdout);
    }
    let j = run_ok(
        &db,
        &m.path(),
        &["plan", file.to_str().unwrap(), "--output", "json"],
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(j.stdout.trim()).unwrap();
    assert_eq!(v["methods"][0]["method"], "in_place", "{v}");
    assert_eq!(v["methods"][0]["what"], "alter_column orders.price", "{v}");
    let steps = v["steps"].as_array().unwrap();
    let backfill = steps.iter().find(|s| s["kind"] == "backfill").unwrap();
    // 50,000 rows at the in-place rate: about half a second.
    let estimate = backfill["estimate_s"].as_f64().unwrap();
    assert!(estimate > 0.1 && estimate < 5.0, "{backfill}");
    let swap = steps
        .iter()
        .find(|s| {
            s["phase"] == "complete" && s["description"].as_str().unwrap().starts_with("swap")
        })
        .unwrap();
    assert_eq!(swap["blocks"][0]["lock"], "ACCESS EXCLUSIVE", "{swap}");
    assert_eq!(swap["blocks"][0]["statements"][0], "SELECT", "{swap}");
    assert_eq!(schema_dump(&db).await, before);
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgshift'"
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_of_raw_sql_shows_the_rewrite_under_one_transaction_and_the_concurrent_build_apart() {
    let db = TestDb::new().await;
    orders(&db).await;
    let m = Migrations::new(&[(
        "0001_raw.sql",
        "ALTER TABLE orders ALTER COLUMN price TYPE bigint;\nCREATE INDEX orders_note ON orders (note);\nCREATE INDEX CONCURRENTLY orders_price ON orders (price);\n",
    )]);
    let file = m.path().join("0001_raw.sql");
    let r = run_ok(&db, &m.path(), &["plan", file.to_str().unwrap()]).await;
    for expected in [
        "1. the statements at lines 1 to 2 (one transaction)  [ACCESS EXCLUSIVE on orders, SHARE on orders; rewrites the table;",
        "blocks SELECT, INSERT, UPDATE, DELETE on orders (ACCESS EXCLUSIVE)",
        "2. the statement at line 3 (outside a transaction)  [SHARE UPDATE EXCLUSIVE on orders; scans;",
    ] {
        assert!(r.stdout.contains(expected), "missing {expected:?} in:\n{}", r.stdout);
    }
    let after_line_3 = r.stdout.split("line 3").nth(1).unwrap();
    assert!(
        after_line_3.contains("blocks no client statement"),
        "{}",
        r.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_of_a_bad_file_exits_2_naming_it() {
    let db = TestDb::new().await;
    orders(&db).await;
    let m = Migrations::new(&[(
        "0001_bad.yaml",
        "operations:\n  - drop_column:\n      table: nope\n      column: x\n",
    )]);
    let file = m.path().join("0001_bad.yaml");
    let r = run(&db, &m.path(), &["plan", file.to_str().unwrap()]).await;
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("0001_bad.yaml"), "{}", r.all());
    assert!(
        r.stderr.contains("table \"nope\" does not exist"),
        "{}",
        r.all()
    );
}
