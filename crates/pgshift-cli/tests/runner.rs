//! `pgshift init`, `migrate` and `status` against a real PostgreSQL.

mod common;

use common::*;

const CREATE_ORDERS: &str = "CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, price int NOT NULL);\nINSERT INTO orders (price) SELECT g FROM generate_series(1, 100) g;\n";

#[tokio::test(flavor = "multi_thread")]
async fn migrate_applies_in_order_records_who_and_is_idempotent() {
    let db = TestDb::new().await;
    let m = Migrations::new(&[
        ("0002_index.sql", "CREATE INDEX CONCURRENTLY orders_price ON orders (price);\nALTER TABLE orders ADD COLUMN note text;\n"),
        ("0001_orders.sql", CREATE_ORDERS),
    ]);
    let r = run(&db, &m.path(), &["migrate"]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stderr.find("applying 0001_orders") < r.stderr.find("applying 0002_index"),
        "{}",
        r.all()
    );

    let c = db.client().await;
    assert_eq!(scalar_i64(&c, "SELECT count(*) FROM orders").await, 100);
    let valid = index_is_valid(&c, "orders_price").await;
    assert!(valid);
    let rows = c
        .query(
            "SELECT name, status, kind, applied_by, applied_from_host, application_name, duration_ms IS NOT NULL, completed_at >= started_at
             FROM pgshift.migrations ORDER BY name",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for (row, name) in rows.iter().zip(["0001_orders", "0002_index"]) {
        assert_eq!(row.get::<_, String>(0), name);
        assert_eq!(row.get::<_, String>(1), "applied");
        assert_eq!(row.get::<_, String>(2), "sql");
        assert!(!row.get::<_, String>(3).is_empty());
        assert!(!row.get::<_, String>(4).is_empty());
        assert_eq!(row.get::<_, String>(5), "pgshift");
        assert!(row.get::<_, bool>(6));
        assert!(row.get::<_, bool>(7));
    }
    assert_eq!(
        scalar_i64(&c, "SELECT count(*) FROM pgshift.events WHERE event = 'migration_applied' AND result = 'ok'").await,
        2
    );

    // Again: nothing to do, nothing re-run.
    let again = run(&db, &m.path(), &["migrate"]).await;
    assert_eq!(again.code, 0, "{}", again.all());
    assert!(again.stdout.contains("nothing to apply"), "{}", again.all());
    assert_eq!(scalar_i64(&c, "SELECT count(*) FROM orders").await, 100);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_lists_applied_pending_and_edited_as_json() {
    let db = TestDb::new().await;
    let m = Migrations::new(&[("0001_orders.sql", CREATE_ORDERS)]);
    let before = run(&db, &m.path(), &["status", "--output", "json"]).await;
    assert_eq!(before.code, 0, "{}", before.all());
    let v: serde_json::Value =
        serde_json::from_str(before.stdout.trim()).unwrap_or_else(|_| panic!("{}", before.stdout));
    assert_eq!(v["state_version"], serde_json::Value::Null);
    assert_eq!(v["migrations"][0]["status"], "pending");
    // status only reads: it created nothing.
    let c = db.client().await;
    assert!(!table_exists(&c, "pgshift.migrations").await);

    assert_eq!(run(&db, &m.path(), &["migrate"]).await.code, 0);
    m.write("0002_more.sql", "ALTER TABLE orders ADD COLUMN note text;");
    m.write(
        "0001_orders.sql",
        &format!("{CREATE_ORDERS}-- a comment added later\n"),
    );
    let after = run(&db, &m.path(), &["status", "--output", "json"]).await;
    assert_eq!(after.code, 0, "{}", after.all());
    assert_eq!(
        after.stdout.trim().lines().count(),
        1,
        "one JSON object: {}",
        after.stdout
    );
    let v: serde_json::Value = serde_json::from_str(after.stdout.trim()).unwrap();
    let statuses: Vec<(String, String)> = v["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("0001_orders".into(), "edited".into()),
            ("0002_more".into(), "pending".into())
        ]
    );
    assert_eq!(v["counts"]["edited"], 1);
    assert_eq!(
        v["migrations"][0]["applied_by"]
            .as_str()
            .map(|s| !s.is_empty()),
        Some(true)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn edited_applied_file_is_refused_with_exit_2_and_nothing_runs() {
    let db = TestDb::new().await;
    let m = Migrations::new(&[("0001_orders.sql", CREATE_ORDERS)]);
    assert_eq!(run(&db, &m.path(), &["migrate"]).await.code, 0);
    m.write("0001_orders.sql", &CREATE_ORDERS.replace("100", "200"));
    m.write("0002_more.sql", "CREATE TABLE should_not_exist (id int);");
    let r = run(&db, &m.path(), &["migrate"]).await;
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("0001_orders") && r.stderr.contains("edited after it was applied"),
        "{}",
        r.all()
    );
    let c = db.client().await;
    assert!(!table_exists(&c, "should_not_exist").await);
    assert_eq!(scalar_i64(&c, "SELECT count(*) FROM orders").await, 100);
}

/// For each syntax: a malformed file gets `file:line:col`, exit 2, and the valid migration
/// before it is not applied either (nor is the state schema created).
#[tokio::test(flavor = "multi_thread")]
async fn malformed_files_exit_2_with_location_and_nothing_applied() {
    let cases = [
        (
            "0002_bad.toml",
            "[[operations]]\n[operations.drop_table]\nname = \"t\"\ncascade = true\n",
            ":4:1",
        ),
        (
            "0002_bad.yaml",
            "operations:\n  - drop_table:\n      nme: t\n",
            ":3:7",
        ),
        (
            "0002_bad.json",
            "{\"operations\": [\n  {\"drop_table\": {\"name\": \"t\",}}\n]}\n",
            ":2:",
        ),
        (
            "0002_bad.sql",
            "CREATE TABLE ok (id int);\nALTER TABLE ok ADD COLUMN x innt nott null;\n",
            ":2:",
        ),
    ];
    for (name, body, location) in cases {
        let db = TestDb::new().await;
        let m = Migrations::new(&[
            ("0001_ok.sql", "CREATE TABLE first_one (id int);"),
            (name, body),
        ]);
        let r = run(&db, &m.path(), &["migrate"]).await;
        assert_eq!(r.code, 2, "{name}: {}", r.all());
        let located = format!("{name}{location}");
        assert!(
            r.stderr.contains(&located),
            "{name}: expected {located} in {}",
            r.all()
        );
        assert!(r.stderr.contains("hint:"), "{name}: {}", r.all());
        let c = db.client().await;
        assert!(
            !table_exists(&c, "first_one").await,
            "{name}: the valid migration ran"
        );
        assert_eq!(
            scalar_i64(
                &c,
                "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgshift'"
            )
            .await,
            0,
            "{name}: the state schema was created"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pending_migration_older_than_an_applied_one_needs_a_flag() {
    let db = TestDb::new().await;
    let m = Migrations::new(&[("0002_b.sql", "CREATE TABLE b (id int);")]);
    assert_eq!(run(&db, &m.path(), &["migrate"]).await.code, 0);
    m.write("0001_a.sql", "CREATE TABLE a (id int);");
    let r = run(&db, &m.path(), &["migrate"]).await;
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("--allow-out-of-order"), "{}", r.all());
    let c = db.client().await;
    assert!(!table_exists(&c, "a").await);
    let r = run(&db, &m.path(), &["migrate", "--allow-out-of-order"]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(table_exists(&c, "a").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn init_creates_upgrades_in_place_and_refuses_a_newer_state() {
    let current = pgshift::state::VERSION as i64;
    let db = TestDb::new().await;
    let m = Migrations::new(&[("0001_t.sql", "CREATE TABLE t (id int);")]);
    let r = run(&db, &m.path(), &["init", "--output", "json"]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["from_version"], serde_json::Value::Null);
    assert_eq!(v["version"], current);
    let c = db.client().await;

    // The audit is append-only.
    let update = c
        .batch_execute("UPDATE pgshift.events SET result = 'error'")
        .await;
    assert!(update.is_err(), "UPDATE on the audit log must fail");
    assert!(c.batch_execute("DELETE FROM pgshift.events").await.is_err());
    assert!(c.batch_execute("TRUNCATE pgshift.events").await.is_err());

    // A state schema at version 1, as pgshift 0.1 left it, with a migration recorded, is
    // upgraded in place: the record survives.
    run_ok(&db, &m.path(), &["migrate"]).await;
    c.batch_execute(
        "DROP TABLE pgshift.backfills;
         ALTER TABLE pgshift.migrations DROP COLUMN version_schema, DROP COLUMN plan, DROP COLUMN source, DROP COLUMN environment;
         DROP TABLE pgshift.data_migrations;
         DROP TABLE pgshift.validations;
         ALTER TABLE pgshift.migrations DROP CONSTRAINT migrations_status_check;
         ALTER TABLE pgshift.migrations ADD CONSTRAINT migrations_status_check CHECK (status IN ('running', 'failed', 'applied'));
         UPDATE pgshift.state_version SET version = 1;",
    )
    .await
    .unwrap();
    let r = run(&db, &m.path(), &["init"]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout.contains(&format!("from version 1 to {current}")),
        "{}",
        r.all()
    );
    assert_eq!(
        scalar_i64(&c, "SELECT version::bigint FROM pgshift.state_version").await,
        current
    );
    assert_eq!(migration_status(&c, "0001_t").await, "applied");
    assert_eq!(
        scalar_i64(&c, "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'pgshift' AND table_name = 'migrations' AND column_name = 'plan'").await,
        1
    );

    // A newer state schema is refused, and left alone.
    c.batch_execute("UPDATE pgshift.state_version SET version = 99")
        .await
        .unwrap();
    let r = run(&db, &m.path(), &["migrate"]).await;
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("version 99"), "{}", r.all());
}

/// A `.sql` migration that failed with nothing applied can be edited and run again; status
/// shows it FAILED (not EDITED) until then, and nothing is left MISSING. One that failed
/// part-way is refused once edited, and the hint says what to do.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_sql_migration_with_nothing_applied_can_be_edited_and_run_again() {
    let db = TestDb::new().await;
    let c = db.client().await;
    let m = Migrations::new(&[(
        "0001_orders.sql",
        "CREATE TABLE orders (id bigint PRIMARY KEY);\nALTER TABLE nope ADD COLUMN note text;\n",
    )]);
    let r = run(&db, &m.path(), &["migrate"]).await;
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        !table_exists(&c, "orders").await,
        "one transaction: nothing applied"
    );
    m.write(
        "0001_orders.sql",
        "CREATE TABLE orders (id bigint PRIMARY KEY);\nALTER TABLE orders ADD COLUMN note text;\n",
    );
    let s = run(&db, &m.path(), &["status"]).await;
    assert!(
        s.stdout.contains("FAILED") && !s.stdout.contains("EDITED"),
        "{}",
        s.all()
    );
    let r = run(&db, &m.path(), &["migrate"]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        scalar_i64(&c, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'note'").await,
        1
    );
    let s = run(&db, &m.path(), &["status"]).await;
    assert!(
        s.stdout.contains("applied")
            && !s.stdout.contains("MISSING")
            && !s.stdout.contains("FAILED"),
        "{}",
        s.all()
    );
    assert_eq!(
        scalar_i64(
            &c,
            "SELECT count(*) FROM pgshift.events WHERE event = 'migration_edited_after_failure'"
        )
        .await,
        1,
        "the audit log keeps the edit"
    );

    // Part-way: the concurrent build ran on its own before the failing statement.
    m.write(
        "0002_index.sql",
        "CREATE INDEX CONCURRENTLY orders_note ON orders (note);\nALTER TABLE nope ADD COLUMN x int;\n",
    );
    assert_eq!(run(&db, &m.path(), &["migrate"]).await.code, 1);
    m.write(
        "0002_index.sql",
        "CREATE INDEX CONCURRENTLY orders_note ON orders (note);\nALTER TABLE orders ADD COLUMN x int;\n",
    );
    let r = run(&db, &m.path(), &["migrate"]).await;
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("failed part-way")
            && r.stderr.contains("pgshift mark-applied 0002_index"),
        "{}",
        r.all()
    );
}

/// A structured migration whose start failed before any step was applied can be edited and
/// started again; one whose start stopped part-way says to roll back first, and after
/// rollback the edited file starts.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_structured_start_can_be_edited_and_run_again() {
    let db = TestDb::new().await;
    let c = db.client().await;
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, a int); INSERT INTO t VALUES (1, 1), (2, 1);",
    )
    .await
    .unwrap();
    let add = |name: &str| {
        format!("operations:\n  - add_column:\n      table: t\n      column:\n        name: {name}\n        type: int\n        nullable: true\n")
    };
    let m = Migrations::new(&[("0001_add.yaml", &add("b"))]);
    let file = m.path().join("0001_add.yaml");
    let file = file.to_str().unwrap();
    // The first step cannot get its lock: nothing is applied.
    let blocker = db.client().await;
    blocker
        .batch_execute("BEGIN; LOCK TABLE t IN ACCESS SHARE MODE;")
        .await
        .unwrap();
    let r = run(&db, &m.path(), &["start", file, "--max-lock-wait", "500ms"]).await;
    assert_eq!(r.code, 1, "{}", r.all());
    blocker.batch_execute("ROLLBACK").await.unwrap();
    m.write("0001_add.yaml", &add("c"));
    let r = run(&db, &m.path(), &["start", file]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    run_ok(&db, &m.path(), &["complete"]).await;
    assert_eq!(
        scalar_i64(&c, "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 't' AND column_name = 'c'").await,
        1
    );

    // Part-way: the column is added, then the unique index fails on duplicates.
    let unique = |name: &str| {
        format!("operations:\n  - add_column:\n      table: t\n      column:\n        name: {name}\n        type: int\n        nullable: true\n  - create_index:\n      table: t\n      name: t_a_unique\n      columns: [a]\n      unique: true\n")
    };
    m.write("0002_unique.yaml", &unique("d"));
    let file = m.path().join("0002_unique.yaml");
    let file = file.to_str().unwrap();
    assert_eq!(run(&db, &m.path(), &["start", file]).await.code, 1);
    let s = run(&db, &m.path(), &["status"]).await;
    assert!(
        s.stdout.contains("stopped:")
            && s.stdout.contains("could not create unique index")
            && !s.stdout.contains("interrupted"),
        "a start that failed is not an interrupted one: {}",
        s.all()
    );
    c.batch_execute("UPDATE t SET a = id").await.unwrap();
    m.write("0002_unique.yaml", &unique("e"));
    let r = run(&db, &m.path(), &["start", file]).await;
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("pgshift rollback first"), "{}", r.all());
    let s = run(&db, &m.path(), &["status"]).await;
    assert!(s.stdout.contains("edited since it ran"), "{}", s.all());
    run_ok(&db, &m.path(), &["rollback"]).await;
    run_ok(&db, &m.path(), &["start", file]).await;
    run_ok(&db, &m.path(), &["complete"]).await;
    assert_eq!(
        scalar_i64(&c, "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 't' AND column_name IN ('d', 'e')").await,
        1,
        "only the edited column"
    );
}

/// `start` checks what `migrate` checks: the file is in the migrations folder, no earlier
/// file waits; a raw SQL file says it has no version schema.
#[tokio::test(flavor = "multi_thread")]
async fn start_refuses_files_outside_the_folder_and_files_after_pending_ones() {
    let db = TestDb::new().await;
    let c = db.client().await;
    let m = Migrations::new(&[
        ("0001_a.sql", "CREATE TABLE a (id int);\n"),
        ("0002_b.sql", "CREATE TABLE b (id int);\n"),
    ]);
    let elsewhere = tempfile::tempdir().unwrap();
    let outside = elsewhere.path().join("0003_c.sql");
    std::fs::write(&outside, "CREATE TABLE c (id int);\n").unwrap();
    let r = run(&db, &m.path(), &["start", outside.to_str().unwrap()]).await;
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("is not in the migrations folder"),
        "{}",
        r.all()
    );
    assert!(!table_exists(&c, "c").await);

    let second = m.path().join("0002_b.sql");
    let r = run(&db, &m.path(), &["start", second.to_str().unwrap()]).await;
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("0001_a"), "{}", r.all());
    assert!(!table_exists(&c, "b").await);

    let first = m.path().join("0001_a.sql");
    let r = run_ok(&db, &m.path(), &["start", first.to_str().unwrap()]).await;
    assert!(
        r.stdout.contains("no version schema") && !r.stdout.contains("search_path  "),
        "{}",
        r.all()
    );
    run_ok(&db, &m.path(), &["start", second.to_str().unwrap()]).await;
    assert!(table_exists(&c, "b").await);

    // Out of order on purpose.
    m.write("0004_d.sql", "CREATE TABLE d (id int);\n");
    m.write("0003_c.sql", "CREATE TABLE c (id int);\n");
    let fourth = m.path().join("0004_d.sql");
    let r = run(&db, &m.path(), &["start", fourth.to_str().unwrap()]).await;
    assert_eq!(r.code, 2, "{}", r.all());
    run_ok(
        &db,
        &m.path(),
        &["start", fourth.to_str().unwrap(), "--allow-out-of-order"],
    )
    .await;
    assert!(table_exists(&c, "d").await);
}

/// The server's notices and warnings on a `.sql` migration's statements reach the user;
/// a name longer than PostgreSQL keeps is refused as in a structured file.
#[tokio::test(flavor = "multi_thread")]
async fn sql_migrations_pass_on_notices_and_refuse_names_that_would_be_cut() {
    let db = TestDb::new().await;
    let c = db.client().await;
    let m = Migrations::new(&[(
        "0001_t.sql",
        "CREATE TABLE t (id int);\nDO $$ BEGIN RAISE NOTICE 'hello from the migration'; RAISE WARNING 'careful now'; END $$;\n",
    )]);
    let r = run_ok(&db, &m.path(), &["migrate"]).await;
    let all = r.all();
    assert!(
        all.contains("NOTICE from the server: hello from the migration"),
        "{all}"
    );
    assert!(
        all.contains("WARNING from the server: careful now"),
        "{all}"
    );
    assert!(
        !all.contains("skipping"),
        "pgshift's own notices stay hidden: {all}"
    );

    let long = "x".repeat(70);
    m.write(
        "0002_long.sql",
        &format!("ALTER TABLE t ADD COLUMN {long} int;\n"),
    );
    let r = run(&db, &m.path(), &["migrate"]).await;
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("0002_long.sql:1:") && r.stderr.contains("70 bytes"),
        "{}",
        r.all()
    );
    assert_eq!(
        scalar_i64(
            &c,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 't'"
        )
        .await,
        1
    );
}

/// migrate and start lint what they are about to run: an error-level finding refuses with
/// exit 2 before anything changes (unless an ignore comment or --no-lint), warnings are
/// printed and the run goes on; `plan` without a file plans every pending migration.
#[tokio::test(flavor = "multi_thread")]
async fn migrate_lints_what_it_runs_and_plan_without_a_file_is_a_dry_run() {
    let db = TestDb::new().await;
    let c = db.client().await;
    c.batch_execute("CREATE TABLE orders (id bigint PRIMARY KEY, price int)")
        .await
        .unwrap();
    let m = Migrations::new(&[
        (
            "0001_note.sql",
            "ALTER TABLE orders ADD COLUMN note varchar(20);\n",
        ),
        (
            "0002_index.sql",
            "CREATE INDEX orders_price ON orders (price);\n",
        ),
    ]);
    // plan: both pending, nothing changes.
    let r = run_ok(&db, &m.path(), &["plan"]).await;
    assert!(
        r.stdout.contains("== 0001_note (1 of 2 pending)")
            && r.stdout.contains("== 0002_index (2 of 2 pending)"),
        "{}",
        r.all()
    );
    assert!(
        !table_exists(&c, "pgshift.migrations").await,
        "plan changes nothing"
    );

    let r = run(&db, &m.path(), &["migrate"]).await;
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("0002_index.sql:1:")
            && r.stderr.contains("require-concurrent-index-creation"),
        "{}",
        r.all()
    );
    assert!(
        !table_exists(&c, "pgshift.migrations").await,
        "nothing was changed"
    );
    assert_eq!(
        scalar_i64(&c, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'note'").await,
        0
    );

    m.write(
        "0002_index.sql",
        "-- pgshift-lint: ignore require-concurrent-index-creation\nCREATE INDEX orders_price ON orders (price);\n",
    );
    let r = run_ok(&db, &m.path(), &["migrate"]).await;
    assert!(
        r.stderr.contains("warning[prefer-text-field]"),
        "warnings are shown: {}",
        r.all()
    );
    m.write(
        "0003_index.sql",
        "CREATE INDEX orders_note ON orders (note);\n",
    );
    let third = m.path().join("0003_index.sql");
    let r = run(&db, &m.path(), &["start", third.to_str().unwrap()]).await;
    assert_eq!(r.code, 2, "{}", r.all());
    run_ok(
        &db,
        &m.path(),
        &["start", third.to_str().unwrap(), "--no-lint"],
    )
    .await;
    assert!(table_exists(&c, "orders_note").await);
}

/// Errors are data in JSON: a stable code, the message, the hint and, for bad input, the
/// file, line and column.
#[tokio::test(flavor = "multi_thread")]
async fn json_errors_carry_a_code_message_hint_and_place() {
    let db = TestDb::new().await;
    let m = Migrations::new(&[(
        "0001_bad.yaml",
        "operations:\n  - add_column:\n      tabel: t\n",
    )]);
    let error = |r: &Run| -> serde_json::Value {
        let line = r
            .stdout
            .lines()
            .find(|l| l.contains("\"error\""))
            .unwrap_or_else(|| panic!("{}", r.all()));
        serde_json::from_str(line).unwrap()
    };
    let r = run(&db, &m.path(), &["complete", "--output", "json"]).await;
    assert_eq!(r.code, 2, "{}", r.all());
    let v = error(&r);
    assert_eq!(v["exit_code"], 2);
    assert_eq!(v["error"]["code"], "no_migration_open", "{v}");
    assert_eq!(v["error"]["message"], "no migration is open", "{v}");
    assert!(
        v["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("pgshift status"),
        "{v}"
    );

    let r = run(&db, &m.path(), &["migrate", "--output", "json"]).await;
    assert_eq!(r.code, 2, "{}", r.all());
    let v = error(&r);
    assert_eq!(v["error"]["code"], "invalid_input", "{v}");
    assert!(
        v["error"]["file"]
            .as_str()
            .unwrap()
            .ends_with("0001_bad.yaml"),
        "{v}"
    );
    assert_eq!(
        (v["error"]["line"].as_u64(), v["error"]["column"].as_u64()),
        (Some(3), Some(7)),
        "{v}"
    );
    assert!(
        v["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("did you mean `table`"),
        "{v}"
    );
}

/// A state schema edited by hand (a status pgshift never writes, a column of another type)
/// is an error that names what is wrong, never a panic.
#[tokio::test(flavor = "multi_thread")]
async fn a_state_schema_edited_by_hand_is_an_error_not_a_panic() {
    let db = TestDb::new().await;
    let m = Migrations::new(&[("0001_t.sql", "CREATE TABLE t (id bigint PRIMARY KEY);\n")]);
    run_ok(&db, &m.path(), &["migrate"]).await;
    let raw = db.client().await;
    raw.batch_execute(
        "ALTER TABLE pgshift.migrations DROP CONSTRAINT migrations_status_check;
         UPDATE pgshift.migrations SET status = 'half-done';",
    )
    .await
    .unwrap();
    let st = run(&db, &m.path(), &["status"]).await;
    assert_eq!(st.code, 1, "{}", st.all());
    assert!(
        st.stderr.contains("\"half-done\"") && st.stderr.contains("never writes"),
        "{}",
        st.all()
    );
    raw.batch_execute(
        "UPDATE pgshift.migrations SET status = 'applied';
         ALTER TABLE pgshift.events DISABLE TRIGGER USER;
         ALTER TABLE pgshift.events ALTER COLUMN duration_ms TYPE text;",
    )
    .await
    .unwrap();
    let history = run(&db, &m.path(), &["status", "--history"]).await;
    assert_eq!(history.code, 1, "{}", history.all());
    assert!(!history.stderr.contains("panicked"), "{}", history.all());
}
