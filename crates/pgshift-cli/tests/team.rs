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

#[tokio::test(flavor = "multi_thread")]
async fn migrate_stops_before_a_manual_migration_and_a_person_runs_it() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    raw.batch_execute("CREATE TABLE orders (id bigint PRIMARY KEY, price int)")
        .await
        .unwrap();
    let m = Migrations::new(&[
        (
            "0001_note.yaml",
            "operations:\n  - add_column:\n      table: orders\n      column:\n        name: note\n        type: text\n        nullable: true\n",
        ),
        (
            "0002_price_index.sql",
            "-- Long on production: run by hand at night.\n-- pgshift: mode = manual\nCREATE INDEX CONCURRENTLY orders_price ON orders (price);\n",
        ),
        (
            "0003_tag.yaml",
            "mode: manual\noperations:\n  - add_column:\n      table: orders\n      column:\n        name: tag\n        type: text\n        nullable: true\n",
        ),
    ]);
    let r = run_ok(&db, &m.path(), &["migrate", "--complete"]).await;
    assert!(
        r.stdout
            .contains("0002_price_index is a manual migration: it waits for a person"),
        "{}",
        r.all()
    );
    assert_eq!(migration_status(&raw, "0001_note").await, "applied");
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM pgshift.migrations WHERE name <> '0001_note'"
        )
        .await,
        0,
        "nothing after the manual migration ran"
    );
    // Again: the same stop, exit 0.
    let r = run_ok(
        &db,
        &m.path(),
        &["migrate", "--complete", "--output", "json"],
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(r.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["waiting_for_person"], "0002_price_index", "{}", r.stdout);
    // A person runs it.
    let file = m.path().join("0002_price_index.sql");
    run_ok(&db, &m.path(), &["start", file.to_str().unwrap()]).await;
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'orders_price'"
        )
        .await,
        1
    );
    // The next one is manual too: migrate stops before it; --include-manual runs it.
    let r = run_ok(&db, &m.path(), &["migrate", "--complete"]).await;
    assert!(
        r.stdout.contains("0003_tag is a manual migration"),
        "{}",
        r.all()
    );
    run_ok(
        &db,
        &m.path(),
        &["migrate", "--complete", "--include-manual"],
    )
    .await;
    assert_eq!(migration_status(&raw, "0003_tag").await, "applied");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_migration_is_skipped_in_the_environments_it_names() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    raw.batch_execute("CREATE TABLE orders (id bigint PRIMARY KEY, price int)")
        .await
        .unwrap();
    let m = Migrations::new(&[
        (
            "0001_seed.sql",
            "-- pgshift: skip_environments = production\nINSERT INTO orders VALUES (1, 100);\n",
        ),
        (
            "0002_fixture.yaml",
            "skip_environments: [production, staging]\noperations:\n  - sql:\n      up: INSERT INTO orders VALUES (2, 200)\n",
        ),
        (
            "0003_note.yaml",
            "operations:\n  - add_column:\n      table: orders\n      column:\n        name: note\n        type: text\n        nullable: true\n",
        ),
    ]);
    let r = run_ok(
        &db,
        &m.path(),
        &["migrate", "--complete", "--environment", "production"],
    )
    .await;
    assert!(
        r.stdout
            .contains("skipped 0001_seed in environment production"),
        "{}",
        r.all()
    );
    assert!(
        r.stdout
            .contains("skipped 0002_fixture in environment production"),
        "{}",
        r.all()
    );
    assert_eq!(scalar_i64(&raw, "SELECT count(*) FROM orders").await, 0);
    assert_eq!(migration_status(&raw, "0001_seed").await, "skipped");
    assert_eq!(migration_status(&raw, "0003_note").await, "applied");
    let s = run_ok(&db, &m.path(), &["status"]).await;
    assert!(s.stdout.contains("skipped"), "{}", s.stdout);
    let h = run_ok(&db, &m.path(), &["status", "--history", "--output", "json"]).await;
    let v: serde_json::Value = serde_json::from_str(h.stdout.trim()).unwrap();
    assert!(
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "migration_skipped"
                && e["migration"] == "0002_fixture"
                && e["detail"]["environment"] == "production"),
        "{}",
        h.stdout
    );
    // Another database in staging, through PGSHIFT_ENV: only 0002 is skipped there.
    let staging = TestDb::new().await;
    let sraw = staging.client().await;
    sraw.batch_execute("CREATE TABLE orders (id bigint PRIMARY KEY, price int)")
        .await
        .unwrap();
    let out = pgshift(&staging.url, &m.path(), &["migrate", "--complete"])
        .env("PGSHIFT_ENV", "staging")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(scalar_i64(&sraw, "SELECT count(*) FROM orders").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_refuses_a_migration_over_the_deploy_budget_before_changing_anything() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    raw.batch_execute(
        "CREATE TABLE orders (id bigint PRIMARY KEY, price int NOT NULL);
         INSERT INTO orders SELECT g, g FROM generate_series(1, 300000) g;
         ANALYZE orders;",
    )
    .await
    .unwrap();
    let before = schema_dump(&db).await;
    let m = Migrations::new(&[(
        "0001_price.yaml",
        "operations:\n  - alter_column:\n      table: orders\n      column: price\n      type: bigint\n      up: price::bigint\n      down: price::int\n",
    )]);
    let r = run(&db, &m.path(), &["migrate", "--deploy-budget", "1s"]).await;
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("over the deploy budget of 1 s"),
        "{}",
        r.all()
    );
    assert!(r.stderr.contains("its longest step: start"), "{}", r.all());
    assert!(r.stderr.contains("backfill"), "{}", r.all());
    assert_eq!(schema_dump(&db).await, before);
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgshift'"
        )
        .await,
        0
    );
    run_ok(&db, &m.path(), &["migrate", "--deploy-budget", "10m"]).await;
    assert_eq!(migration_status(&raw, "0001_price").await, "started");
}

#[tokio::test(flavor = "multi_thread")]
async fn data_migrations_run_apart_once_each_and_say_who_ran_them() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    raw.batch_execute(
        "CREATE TABLE orders (id bigint PRIMARY KEY, price int NOT NULL, status text);
         INSERT INTO orders SELECT g, g, NULL FROM generate_series(1, 20000) g;
         ANALYZE orders;",
    )
    .await
    .unwrap();
    let m = Migrations::new(&[(
        "0001_note.yaml",
        "operations:\n  - add_column:\n      table: orders\n      column:\n        name: note\n        type: text\n        nullable: true\n",
    )]);
    std::fs::create_dir(m.path().join("data")).unwrap();
    m.write(
        "data/0001_status.yaml",
        "operations:\n  - update:\n      table: orders\n      set:\n        status: \"CASE WHEN price % 2 = 0 THEN 'even' ELSE 'odd' END\"\n      where: status IS NULL\n",
    );
    m.write(
        "data/0002_fix.sql",
        "UPDATE orders SET price = 0 WHERE id = 1;\n",
    );

    // migrate applies the schema migration and never the data ones.
    run_ok(&db, &m.path(), &["migrate", "--complete"]).await;
    assert_eq!(
        scalar_i64(&raw, "SELECT count(*) FROM orders WHERE status IS NOT NULL").await,
        0
    );
    let s = run_ok(&db, &m.path(), &["data", "status", "--output", "json"]).await;
    let v: serde_json::Value = serde_json::from_str(s.stdout.trim()).unwrap();
    assert_eq!(v["data_migrations"][0]["status"], "pending", "{}", s.stdout);

    let r = run_ok(&db, &m.path(), &["data", "run"]).await;
    assert!(
        r.stdout
            .contains("ran data migration 0001_status: 20000 rows"),
        "{}",
        r.all()
    );
    assert!(
        r.stdout.contains("ran data migration 0002_fix"),
        "{}",
        r.all()
    );
    assert_eq!(
        scalar_i64(&raw, "SELECT count(*) FROM orders WHERE status IS NULL").await,
        0
    );
    assert_eq!(
        scalar_i64(&raw, "SELECT price::bigint FROM orders WHERE id = 1").await,
        0
    );

    // Once: a second run finds nothing, even after the data changed again.
    raw.batch_execute("UPDATE orders SET price = 5 WHERE id = 1")
        .await
        .unwrap();
    let r = run_ok(&db, &m.path(), &["data", "run"]).await;
    assert!(
        r.stdout.contains("no pending data migrations"),
        "{}",
        r.all()
    );
    assert_eq!(
        scalar_i64(&raw, "SELECT price::bigint FROM orders WHERE id = 1").await,
        5
    );

    let s = run_ok(&db, &m.path(), &["data", "status", "--output", "json"]).await;
    let v: serde_json::Value = serde_json::from_str(s.stdout.trim()).unwrap();
    let first = &v["data_migrations"][0];
    assert_eq!(first["status"], "applied", "{}", s.stdout);
    assert_eq!(first["rows"], 20000, "{}", s.stdout);
    assert!(!first["run_by"].as_str().unwrap().is_empty());
    assert!(first["duration_ms"].as_i64().is_some());
    // They are not schema migrations.
    assert_eq!(
        scalar_i64(&raw, "SELECT count(*) FROM pgshift.migrations WHERE name LIKE '%status%' OR name LIKE '%fix%'").await,
        0
    );

    // A data migration that changes the schema is refused before anything runs.
    m.write(
        "data/0003_bad.yaml",
        "operations:\n  - drop_column:\n      table: orders\n      column: note\n",
    );
    let r = run(&db, &m.path(), &["data", "run"]).await;
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("0003_bad.yaml"), "{}", r.all());
    assert!(r.stderr.contains("`update` operations only"), "{}", r.all());
}

/// Every time in JSON output is RFC 3339 in UTC with milliseconds, whichever table it
/// comes from; `data status` and `data run` without a data folder say there is nothing.
#[tokio::test(flavor = "multi_thread")]
async fn json_times_are_rfc3339_and_no_data_folder_means_no_data_migrations() {
    let db = TestDb::new().await;
    let m = Migrations::new(&[("0001_t.sql", "CREATE TABLE t (id int);\n")]);
    let r = run_ok(&db, &m.path(), &["data", "status"]).await;
    assert!(r.stdout.contains("no data migrations"), "{}", r.all());
    let r = run_ok(&db, &m.path(), &["data", "run"]).await;
    assert!(
        r.stdout.contains("no pending data migrations"),
        "{}",
        r.all()
    );
    run_ok(&db, &m.path(), &["migrate"]).await;
    let is_rfc3339 = |s: &str| {
        let b = s.as_bytes();
        s.len() == 24
            && b[4] == b'-'
            && b[10] == b'T'
            && b[19] == b'.'
            && s.ends_with('Z')
            && [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22]
                .iter()
                .all(|i| b[*i].is_ascii_digit())
    };
    let h = run_ok(&db, &m.path(), &["status", "--history", "--output", "json"]).await;
    let v: serde_json::Value = serde_json::from_str(h.stdout.trim()).unwrap();
    for e in v["events"].as_array().unwrap() {
        let at = e["at"].as_str().unwrap();
        assert!(is_rfc3339(at), "history: {at}");
    }
    let s = run_ok(&db, &m.path(), &["status", "--output", "json"]).await;
    let v: serde_json::Value = serde_json::from_str(s.stdout.trim()).unwrap();
    let record = &v["migrations"][0];
    for key in ["started_at", "completed_at"] {
        let t = record[key]
            .as_str()
            .unwrap_or_else(|| panic!("{}", s.stdout));
        assert!(is_rfc3339(t), "status {key}: {t}");
    }
}

/// What migrate and start print: a failed statement of a `.sql` file named by file and
/// line (its first token, past the comments), the migration left open said as such, and a
/// heading for the open migration an earlier run left that migrate now completes.
#[tokio::test(flavor = "multi_thread")]
async fn migrate_names_failed_lines_open_migrations_and_what_it_completes() {
    let db = TestDb::new().await;
    let m = Migrations::new(&[(
        "0001_t.sql",
        "CREATE TABLE t (id bigint PRIMARY KEY);\n\n-- the reason for the next one\n-- spans two lines\nALTER TABLE nope ADD COLUMN x int;\n",
    )]);
    let r = run(&db, &m.path(), &["migrate"]).await;
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("0001_t.sql:5: statement failed"),
        "{}",
        r.all()
    );
    m.write(
        "0001_t.sql",
        "CREATE TABLE t (id bigint PRIMARY KEY);\n\n-- the reason for the next one\n-- spans two lines\nALTER TABLE t ADD COLUMN x int;\n",
    );
    m.write(
        "0002_add.yaml",
        "operations:\n  - add_column:\n      table: t\n      column:\n        name: y\n        type: int\n        nullable: true\n",
    );
    let r = run_ok(&db, &m.path(), &["migrate"]).await;
    let out = r.all();
    assert!(out.contains("applied 0001_t"), "{out}");
    assert!(
        out.contains("started 0002_add") && out.contains("stays open"),
        "{out}"
    );
    assert!(!out.contains("applied 0002_add"), "{out}");
    m.write("0003_more.sql", "ALTER TABLE t ADD COLUMN z int;\n");
    let r = run_ok(&db, &m.path(), &["migrate"]).await;
    assert!(r.all().contains("completing 0002_add"), "{}", r.all());
}

/// With DATABASE_URL set, usage lines do not show --database-url as required; `demo
/// --help` lists only the flags the demo uses.
#[tokio::test(flavor = "multi_thread")]
async fn usage_and_help_show_only_what_applies() {
    let dir = tempfile::tempdir().unwrap();
    let out = finish(&mut pgshift(
        "postgres://u@localhost/d",
        dir.path(),
        &["start"],
    ))
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("Usage: pgshift start"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("--database-url <"), "{}", out.stderr);
    let help = finish(&mut pgshift(
        "postgres://u@localhost/d",
        dir.path(),
        &["demo", "--help"],
    ))
    .await;
    assert_eq!(help.code, 0, "{help:?}");
    assert!(
        help.stdout.contains("--rows") && help.stdout.contains("--output"),
        "{}",
        help.stdout
    );
    for ignored in [
        "--database-url",
        "--lock-timeout",
        "--schema",
        "--max-lock-wait",
    ] {
        assert!(
            !help.stdout.contains(ignored),
            "{ignored} in demo --help:\n{}",
            help.stdout
        );
    }
}
