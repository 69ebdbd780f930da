//! The team workflow (SCENARIOS.md S5): a change made by hand is recorded as applied without
//! running, with who and why; every command that changes something leaves an audit event,
//! which `status --history` shows.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn mark_applied_records_without_running_and_the_history_says_who_and_why() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    raw.batch_execute("CREATE TABLE orders (id bigint PRIMARY KEY, price int)")
        .await
        .unwrap();
    let m = Migrations::new(&[
        (
            "0001_price_index.sql",
            "CREATE INDEX CONCURRENTLY orders_price ON orders (price);\n",
        ),
        (
            "0002_note.yaml",
            "operations:\n  - add_column:\n      table: orders\n      column:\n        name: note\n        type: text\n        nullable: true\n",
        ),
    ]);
    let r = run_ok(
        &db,
        &m.path(),
        &[
            "mark-applied",
            "0001_price_index",
            "--reason",
            "built by hand during incident 42",
        ],
    )
    .await;
    assert!(
        r.stdout
            .contains("marked applied (not run) 0001_price_index"),
        "{}",
        r.all()
    );
    // Not run: no index.
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'orders_price'"
        )
        .await,
        0
    );
    assert_eq!(migration_status(&raw, "0001_price_index").await, "applied");
    // migrate skips it and applies the next one.
    let r = run_ok(&db, &m.path(), &["migrate", "--complete"]).await;
    assert!(r.all().contains("0002_note"), "{}", r.all());
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'orders_price'"
        )
        .await,
        0
    );
    assert_eq!(migration_status(&raw, "0002_note").await, "applied");

    // Refusals: already applied, unknown name, empty reason; exit 2 each.
    for (args, expected) in [
        (
            vec!["mark-applied", "0001_price_index", "--reason", "again"],
            "already applied",
        ),
        (
            vec!["mark-applied", "0009_nope", "--reason", "x"],
            "no migration named 0009_nope",
        ),
        (
            vec!["mark-applied", "0002_note", "--reason", " "],
            "mark-applied needs --reason",
        ),
    ] {
        let r = run(&db, &m.path(), &args).await;
        assert_eq!(r.code, 2, "{args:?}: {}", r.all());
        assert!(r.stderr.contains(expected), "{args:?}: {}", r.all());
    }

    let h = run_ok(&db, &m.path(), &["status", "--history", "--output", "json"]).await;
    let v: serde_json::Value = serde_json::from_str(h.stdout.trim()).unwrap();
    let events = v["events"].as_array().unwrap();
    let marked = events
        .iter()
        .find(|e| e["event"] == "migration_marked_applied")
        .unwrap_or_else(|| panic!("{}", h.stdout));
    assert_eq!(marked["migration"], "0001_price_index");
    assert_eq!(
        marked["detail"]["reason"],
        "built by hand during incident 42"
    );
    assert_eq!(marked["result"], "ok");
    assert!(!marked["os_user"].as_str().unwrap().is_empty());
    assert!(!marked["host"].as_str().unwrap().is_empty());
    // Newest first: the migrate of 0002 came after.
    let position = |event: &str, migration: &str| {
        events
            .iter()
            .position(|e| e["event"] == event && e["migration"] == migration)
    };
    assert!(
        position("migration_completed", "0002_note").unwrap_or(usize::MAX)
            < position("migration_marked_applied", "0001_price_index").unwrap(),
        "{}",
        h.stdout
    );
    let human = run_ok(&db, &m.path(), &["status", "--history"]).await;
    assert!(human.stdout.contains("mark-applied"), "{}", human.stdout);
    assert!(
        human.stdout.contains("built by hand during incident 42"),
        "{}",
        human.stdout
    );
}
