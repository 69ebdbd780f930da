//! start / complete / rollback of structured migrations, with clients of the old and the
//! new version writing while the migration is open.

mod common;

use common::*;

/// A connection whose clients see `search_path` (a version schema, or the raw tables).
async fn client_on(db: &TestDb, search_path: &str) -> tokio_postgres::Client {
    let c = db.client().await;
    c.batch_execute(&format!(
        "SET search_path = {}",
        pgshift::quote::ident(search_path)
    ))
    .await
    .unwrap();
    c
}

use common::scalar_text as text;

#[tokio::test(flavor = "multi_thread")]
async fn add_column_with_up_serves_both_versions_rolls_back_and_completes() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    raw.batch_execute(
        "CREATE TABLE users (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL);
         INSERT INTO users (name) SELECT 'user' || g FROM generate_series(1, 2500) g;",
    )
    .await
    .unwrap();
    let m = Migrations::new(&[(
        "0001_add.yaml",
        "operations:\n  - add_column:\n      table: users\n      up: upper(name)\n      column:\n        name: shout\n        type: text\n        nullable: false\n",
    )]);
    let file = m.path().join("0001_add.yaml");
    let file = file.to_str().unwrap();
    let before = schema_dump(&db).await;

    let r = run_ok(&db, &m.path(), &["start", file]).await;
    assert!(r.stdout.contains("public_0001_add"), "{}", r.all());
    let latest = run_ok(&db, &m.path(), &["latest", "schema"]).await;
    assert_eq!(latest.stdout.trim(), "public_0001_add");
    let url = run_ok(&db, &m.path(), &["latest", "url"]).await;
    assert!(
        url.stdout.contains("search_path%3D%22public_0001_add%22"),
        "{}",
        url.stdout
    );

    // Existing rows were backfilled from `up`, in batches, past the first batch.
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM users WHERE shout IS DISTINCT FROM upper(name)"
        )
        .await,
        0
    );
    // Old version (the raw table): the new column comes from `up`, on insert and update.
    raw.batch_execute("INSERT INTO users (name) VALUES ('old client'); UPDATE users SET name = 'renamed' WHERE id = 1;")
        .await
        .unwrap();
    assert_eq!(
        text(&raw, "SELECT shout FROM users WHERE name = 'old client'")
            .await
            .as_deref(),
        Some("OLD CLIENT")
    );
    assert_eq!(
        text(&raw, "SELECT shout FROM users WHERE id = 1")
            .await
            .as_deref(),
        Some("RENAMED")
    );
    // New version: sees the column and sets it itself.
    let new = client_on(&db, "public_0001_add").await;
    new.batch_execute("INSERT INTO users (name, shout) VALUES ('new client', 'my own value')")
        .await
        .unwrap();
    assert_eq!(
        text(&new, "SELECT shout FROM users WHERE name = 'new client'")
            .await
            .as_deref(),
        Some("my own value")
    );
    // NOT NULL holds for the new version already (a CHECK, validated at complete).
    assert!(new
        .batch_execute("INSERT INTO users (name, shout) VALUES ('x', NULL)")
        .await
        .is_err());

    run_ok(&db, &m.path(), &["rollback"]).await;
    assert_eq!(
        schema_dump(&db).await,
        before,
        "rollback must restore the schema"
    );
    assert_eq!(scalar_i64(&raw, "SELECT count(*) FROM users").await, 2502);

    run_ok(&db, &m.path(), &["start", file]).await;
    run_ok(&db, &m.path(), &["complete"]).await;
    assert_eq!(
        scalar_i64(&raw, "SELECT count(*) FROM users WHERE shout IS NULL").await,
        0
    );
    let not_null: bool = raw
        .query_one("SELECT attnotnull FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'shout'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(not_null);
    assert_eq!(scalar_i64(&raw, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'users'::regclass AND NOT tgisinternal").await, 0);
    assert_eq!(scalar_i64(&raw, "SELECT count(*) FROM pg_constraint WHERE conrelid = 'users'::regclass AND contype = 'c'").await, 0);
    let status = run_ok(&db, &m.path(), &["status", "--output", "json"]).await;
    assert!(
        status.stdout.contains("\"status\":\"applied\""),
        "{}",
        status.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn alter_column_type_translates_writes_both_ways_and_keeps_constraints() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    raw.batch_execute(
        "CREATE TABLE orders (id serial PRIMARY KEY, price int NOT NULL CHECK (price >= 0), code text);
         CREATE INDEX orders_price_idx ON orders (price);
         INSERT INTO orders (price, code) SELECT g, 'c' || g FROM generate_series(1, 3000) g;",
    )
    .await
    .unwrap();
    let m = Migrations::new(&[(
        "0001_bigint.toml",
        "[[operations]]\n[operations.alter_column]\ntable = \"orders\"\ncolumn = \"price\"\ntype = \"bigint\"\nup = \"price * 10\"\ndown = \"price / 10\"\nmethod = \"in_place\"\n",
    )]);
    let file = m.path().join("0001_bigint.toml");
    let file = file.to_str().unwrap();
    run_ok(&db, &m.path(), &["start", file]).await;

    // The copy holds up(price) for existing rows and for old-version writes...
    assert_eq!(scalar_i64(&raw, "SELECT count(*) FROM orders WHERE _pgshift_new_price IS DISTINCT FROM price::bigint * 10").await, 0);
    raw.batch_execute("INSERT INTO orders (price) VALUES (7)")
        .await
        .unwrap();
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT _pgshift_new_price FROM orders WHERE price = 7 AND code IS NULL"
        )
        .await,
        70
    );
    // ...and new-version writes reach the old column through down.
    let new = client_on(&db, "public_0001_bigint").await;
    new.batch_execute("INSERT INTO orders (price, code) VALUES (5000000000, 'big')")
        .await
        .unwrap();
    assert_eq!(
        scalar_i64(&raw, "SELECT price::bigint FROM orders WHERE code = 'big'").await,
        500000000
    );
    let new_type: String = new
        .query_one("SELECT pg_typeof(price)::text FROM orders LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(new_type, "bigint");

    run_ok(&db, &m.path(), &["complete"]).await;
    let (ty, not_null): (String, bool) = {
        let r = raw
            .query_one("SELECT format_type(atttypid, atttypmod), attnotnull FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'price'", &[])
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((ty.as_str(), not_null), ("bigint", true));
    assert_eq!(
        scalar_i64(&raw, "SELECT price FROM orders WHERE code = 'big'").await,
        5000000000
    );
    assert_eq!(
        scalar_i64(&raw, "SELECT price FROM orders WHERE code = 'c42'").await,
        420
    );
    // The old column's CHECK and index live on, under their names, on the new column.
    assert_eq!(scalar_i64(&raw, "SELECT count(*) FROM pg_constraint WHERE conrelid = 'orders'::regclass AND conname = 'orders_price_check' AND convalidated").await, 1);
    let indexdef: String = raw
        .query_one("SELECT pg_get_indexdef('orders_price_idx'::regclass)", &[])
        .await
        .unwrap()
        .get(0);
    assert!(indexdef.contains("(price)"), "{indexdef}");
    assert!(
        raw.batch_execute("INSERT INTO orders (price) VALUES (-1)")
            .await
            .is_err(),
        "the CHECK still holds"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn drop_and_rename_column_hide_and_rename_for_the_new_version_only() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    raw.batch_execute("CREATE TABLE t (id int PRIMARY KEY, a text, b text NOT NULL); INSERT INTO t VALUES (1, 'a1', 'b1');")
        .await
        .unwrap();
    let m = Migrations::new(&[(
        "0001_shape.json",
        r#"{"operations": [
            {"drop_column": {"table": "t", "column": "b", "down": "'filled by down'"}},
            {"rename_column": {"table": "t", "from": "a", "to": "c"}}
        ]}"#,
    )]);
    let file = m.path().join("0001_shape.json");
    run_ok(&db, &m.path(), &["start", file.to_str().unwrap()]).await;
    let new = client_on(&db, "public_0001_shape").await;
    // The new version sees id and c, no b; its inserts get b from down.
    let cols: Vec<String> = new
        .query("SELECT column_name::text FROM information_schema.columns WHERE table_schema = 'public_0001_shape' AND table_name = 't' ORDER BY ordinal_position", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(cols, vec!["id", "c"]);
    new.batch_execute("INSERT INTO t (id, c) VALUES (2, 'c2')")
        .await
        .unwrap();
    assert_eq!(
        text(&raw, "SELECT b FROM t WHERE id = 2").await.as_deref(),
        Some("filled by down")
    );
    assert_eq!(
        text(&raw, "SELECT a FROM t WHERE id = 2").await.as_deref(),
        Some("c2")
    );
    // The old version still has both columns under their old names.
    raw.batch_execute("INSERT INTO t (id, a, b) VALUES (3, 'a3', 'b3')")
        .await
        .unwrap();

    run_ok(&db, &m.path(), &["complete"]).await;
    let cols: Vec<String> = raw
        .query("SELECT attname::text FROM pg_attribute WHERE attrelid = 't'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(cols, vec!["id", "c"]);
    assert_eq!(scalar_i64(&raw, "SELECT count(*) FROM t").await, 3);
    // The new version's views keep working after complete.
    assert_eq!(
        scalar_i64(&new, "SELECT count(*) FROM t WHERE c IS NOT NULL").await,
        3
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_migration_cannot_start_while_one_is_open_and_invalid_operations_exit_2() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    raw.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v int)")
        .await
        .unwrap();
    let m = Migrations::new(&[
        ("0001_a.yaml", "operations:\n  - create_index:\n      name: t_v\n      table: t\n      columns: [v]\n"),
        ("0002_b.yaml", "operations:\n  - add_column:\n      table: t\n      column:\n        name: w\n        type: int\n        nullable: true\n"),
        ("0003_bad.yaml", "operations:\n  - add_column:\n      table: t\n      column:\n        name: w\n        type: int\n        nullable: true\n  - drop_column:\n      table: nope\n      column: x\n"),
    ]);
    let dir = m.path();
    let p = |n: &str| dir.join(n).to_str().unwrap().to_owned();
    run_ok(&db, &dir, &["start", &p("0001_a.yaml")]).await;
    let r = run(&db, &dir, &["start", &p("0002_b.yaml")]).await;
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("0001_a is open"), "{}", r.all());
    run_ok(&db, &dir, &["complete"]).await;

    let before = schema_dump(&db).await;
    let r = run(
        &db,
        &dir,
        &["start", &p("0003_bad.yaml"), "--allow-out-of-order"],
    )
    .await;
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("0003_bad.yaml:8:3"), "{}", r.all());
    assert!(
        r.stderr
            .contains("operation 2 (drop_column): table \"nope\" does not exist"),
        "{}",
        r.all()
    );
    assert_eq!(schema_dump(&db).await, before, "nothing may change");
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_leaves_the_last_structured_migration_open_unless_complete() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    let m = Migrations::new(&[
        ("0001_t.yaml", "operations:\n  - create_table:\n      name: t\n      columns:\n        - name: id\n          type: bigint\n          pk: true\n"),
        ("0002_c.yaml", "operations:\n  - add_column:\n      table: t\n      column:\n        name: c\n        type: text\n        nullable: true\n"),
    ]);
    let r = run_ok(&db, &m.path(), &["migrate", "--output", "json"]).await;
    let v: serde_json::Value =
        serde_json::from_str(r.stdout.trim()).unwrap_or_else(|_| panic!("{}", r.all()));
    assert_eq!(v["left_open"], "0002_c", "{}", r.all());
    assert_eq!(migration_status(&raw, "0001_t").await, "applied");
    assert_eq!(migration_status(&raw, "0002_c").await, "started");
    let r = run_ok(&db, &m.path(), &["migrate", "--complete"]).await;
    assert!(r.stdout.contains("applied"), "{}", r.all());
    assert_eq!(migration_status(&raw, "0002_c").await, "applied");
}

/// Old-version writers update rows while start backfills them; new-version writers insert.
/// After complete every old-version row holds up(row) and every new-version row its own
/// value: no update is lost to the backfill.
#[tokio::test(flavor = "multi_thread")]
async fn writes_racing_the_backfill_are_not_lost() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let db = TestDb::new().await;
    let raw = db.client().await;
    raw.batch_execute(
        "CREATE TABLE items (id bigint PRIMARY KEY, price int NOT NULL);
         INSERT INTO items SELECT g, g FROM generate_series(1, 60000) g;",
    )
    .await
    .unwrap();
    let m = Migrations::new(&[(
        "0001_double.yaml",
        "operations:\n  - add_column:\n      table: items\n      up: price * 2\n      column:\n        name: doubled\n        type: bigint\n        nullable: true\n",
    )]);
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3i64 {
        let (db, stop) = (db.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let c = db.client().await;
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let id = (n * 7919 + w * 104_729) % 60000 + 1;
                c.execute("UPDATE items SET price = price + 1 WHERE id = $1", &[&id])
                    .await
                    .expect("old-version update");
                n += 1;
            }
            n
        }));
    }
    let inserter = {
        let (db, stop) = (db.clone(), stop.clone());
        tokio::spawn(async move {
            // The version schema appears part-way through start.
            let c = db.client().await;
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let ready: bool = c
                    .query_one(
                        "SELECT to_regnamespace('public_0001_double') IS NOT NULL",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                if ready {
                    c.batch_execute("SET search_path = public_0001_double")
                        .await
                        .unwrap();
                    let id = 1_000_000 + n;
                    c.execute(
                        "INSERT INTO items (id, price, doubled) VALUES ($1, 1, 12345)",
                        &[&id],
                    )
                    .await
                    .expect("new-version insert");
                    n += 1;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            n
        })
    };
    let file = m.path().join("0001_double.yaml");
    run_ok(&db, &m.path(), &["start", file.to_str().unwrap()]).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut updates = 0;
    for w in writers {
        updates += w.await.unwrap();
    }
    let inserts = inserter.await.unwrap();
    run_ok(&db, &m.path(), &["complete"]).await;
    eprintln!("{updates} old-version updates and {inserts} new-version inserts raced the backfill");
    assert!(updates > 100, "the writers barely ran: {updates}");
    assert_eq!(
        scalar_i64(&raw, "SELECT count(*) FROM items WHERE id <= 60000 AND doubled IS DISTINCT FROM price::bigint * 2").await,
        0
    );
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM items WHERE id > 60000 AND doubled <> 12345"
        )
        .await,
        0
    );
    assert_eq!(
        scalar_i64(&raw, "SELECT count(*) FROM items WHERE id > 60000").await,
        inserts
    );
}

/// kill -9 while start backfills; the same start again finishes the job.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_start_then_start_again_finishes_or_rollback_cleans_up() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    raw.batch_execute(
        "CREATE TABLE big (id int PRIMARY KEY, v int NOT NULL);
         INSERT INTO big SELECT g, g FROM generate_series(1, 200000) g;",
    )
    .await
    .unwrap();
    let m = Migrations::new(&[(
        "0001_slow.yaml",
        "operations:\n  - add_column:\n      table: big\n      up: v + 1\n      method: in_place\n      column:\n        name: w\n        type: int\n        nullable: true\n",
    )]);
    let file = m.path().join("0001_slow.yaml");
    let file = file.to_str().unwrap();
    let mut child = pgshift(&db.url, &m.path(), &["start", file])
        .spawn()
        .unwrap();
    wait_until(
        "the backfill to be under way",
        std::time::Duration::from_secs(60),
        || async {
            // Until start has added the column, the query fails: not under way yet.
            raw.query_one("SELECT count(*) FROM big WHERE w IS NOT NULL", &[])
                .await
                .map(|r| r.get::<_, i64>(0) > 20000)
                .unwrap_or(false)
        },
    )
    .await;
    child.start_kill().unwrap();
    assert_eq!(child.wait().await.unwrap().code(), None);
    wait_for_pgshift_sessions_to_end(&raw).await;
    let filled = scalar_i64(&raw, "SELECT count(*) FROM big WHERE w IS NOT NULL").await;
    assert!(
        filled < 200000,
        "killed too late to prove anything: {filled}"
    );

    let r = run_ok(&db, &m.path(), &["start", file]).await;
    assert!(
        r.stderr.contains("resuming") && r.stderr.contains("skipped, done in an earlier run"),
        "{}",
        r.all()
    );
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM big WHERE w IS DISTINCT FROM v + 1"
        )
        .await,
        0
    );

    run_ok(&db, &m.path(), &["rollback"]).await;
    assert_eq!(scalar_i64(&raw, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'big'::regclass AND attname = 'w' AND NOT attisdropped").await, 0);
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'public_0001_slow'"
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_types_and_bad_up_expressions_exit_2_before_anything_changes() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    raw.batch_execute("CREATE TABLE t (id int PRIMARY KEY, name text)")
        .await
        .unwrap();
    // serial is shorthand, not a type, yet valid in a column definition.
    let ok = Migrations::new(&[(
        "0000_serial.yaml",
        "operations:\n  - create_table:\n      name: s\n      columns:\n        - name: id\n          type: serial\n          pk: true\n",
    )]);
    // Lint would rightly refuse an int key; this test is about the type check.
    run_ok(&db, &ok.path(), &["migrate", "--complete", "--no-lint"]).await;
    let m = Migrations::new(&[
        ("0001_type.yaml", "operations:\n  - add_column:\n      table: t\n      column:\n        name: x\n        type: intt\n        nullable: true\n"),
        ("0002_up.yaml", "operations:\n  - add_column:\n      table: t\n      up: upper(nmae)\n      column:\n        name: y\n        type: text\n        nullable: true\n"),
        ("0003_types.yaml", "operations:\n  - add_column:\n      table: t\n      up: id + 'a'\n      column:\n        name: z\n        type: int\n        nullable: true\n"),
    ]);
    let before = schema_dump(&db).await;
    // Each error points at the field, with a hint about that field.
    for (file, expected, at, hint) in [
        (
            "0001_type.yaml",
            "type \"intt\" does not exist",
            "6:9",
            "a type this server knows",
        ),
        (
            "0002_up.yaml",
            "column \"nmae\" does not exist",
            "4:7",
            "`up` is an expression",
        ),
        (
            "0003_types.yaml",
            "invalid input syntax for type integer",
            "4:7",
            "`up` is an expression",
        ),
    ] {
        let path = m.path().join(file);
        let r = run(
            &db,
            &m.path(),
            &["start", path.to_str().unwrap(), "--allow-out-of-order"],
        )
        .await;
        assert_eq!(r.code, 2, "{file}: {}", r.all());
        assert!(r.stderr.contains(expected), "{file}: {}", r.all());
        assert!(
            r.stderr.contains(&format!("{file}:{at}")) && r.stderr.contains(hint),
            "{file}: {}",
            r.all()
        );
        assert_eq!(schema_dump(&db).await, before, "{file}: nothing may change");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn backfill_walks_composite_keys_and_tables_without_a_key() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    raw.batch_execute(
        "CREATE TABLE pairs (a int, b text, v int NOT NULL, PRIMARY KEY (a, b));
         INSERT INTO pairs SELECT g % 7, 'k' || g, g FROM generate_series(1, 5000) g;
         CREATE TABLE heap (v int NOT NULL);
         INSERT INTO heap SELECT g FROM generate_series(1, 5000) g;",
    )
    .await
    .unwrap();
    let m = Migrations::new(&[(
        "0001_fill.yaml",
        "operations:\n  - add_column:\n      table: pairs\n      up: v * 3\n      column:\n        name: w\n        type: int\n        nullable: true\n  - add_column:\n      table: heap\n      up: v * 5\n      column:\n        name: w\n        type: int\n        nullable: true\n",
    )]);
    let path = m.path().join("0001_fill.yaml");
    run_ok(&db, &m.path(), &["start", path.to_str().unwrap()]).await;
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM pairs WHERE w IS DISTINCT FROM v * 3"
        )
        .await,
        0
    );
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM heap WHERE w IS DISTINCT FROM v * 5"
        )
        .await,
        0
    );
    run_ok(&db, &m.path(), &["complete"]).await;
}

/// A step of complete (or rollback) fails part-way; once the cause is fixed, the same
/// command continues from the failed step, skipping the steps already done.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_complete_or_rollback_resumes_where_it_stopped() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    raw.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, v int);
         CREATE FUNCTION must_have_marker() RETURNS void LANGUAGE plpgsql AS $$
         BEGIN IF to_regclass('marker') IS NULL THEN RAISE EXCEPTION 'no marker yet'; END IF; END $$;",
    )
    .await
    .unwrap();
    let m = Migrations::new(&[
        (
            "0001_c.yaml",
            "operations:\n  - add_column:\n      table: t\n      column:\n        name: w\n        type: int\n        nullable: true\n  - rename_column:\n      table: t\n      from: v\n      to: v2\n  - sql:\n      up: SELECT must_have_marker()\n      onComplete: true\n",
        ),
        (
            "0002_r.yaml",
            "operations:\n  - create_index:\n      name: t_w\n      table: t\n      columns: [w]\n  - sql:\n      up: CREATE TABLE side (id int)\n      down: SELECT must_have_marker(); DROP TABLE side\n",
        ),
    ]);
    let dir = m.path();
    let p = |n: &str| dir.join(n).to_str().unwrap().to_owned();

    run_ok(&db, &dir, &["start", &p("0001_c.yaml")]).await;
    let r = run(&db, &dir, &["complete"]).await;
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("no marker yet"), "{}", r.all());
    assert_eq!(migration_status(&raw, "0001_c").await, "completing");
    let r = run(&db, &dir, &["rollback"]).await;
    assert_eq!(
        r.code,
        2,
        "a half-completed migration cannot be rolled back: {}",
        r.all()
    );
    raw.batch_execute("CREATE TABLE marker ()").await.unwrap();
    let r = run_ok(&db, &dir, &["complete"]).await;
    assert!(
        r.stderr.contains("skipped, done in an earlier run"),
        "{}",
        r.all()
    );
    assert_eq!(migration_status(&raw, "0001_c").await, "applied");
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'v2'"
        )
        .await,
        1
    );

    raw.batch_execute("DROP TABLE marker").await.unwrap();
    run_ok(&db, &dir, &["start", &p("0002_r.yaml")]).await;
    let r = run(&db, &dir, &["rollback"]).await;
    assert_eq!(r.code, 1, "{}", r.all());
    assert_eq!(migration_status(&raw, "0002_r").await, "rolling_back");
    raw.batch_execute("CREATE TABLE marker ()").await.unwrap();
    run_ok(&db, &dir, &["rollback"]).await;
    assert!(!table_exists(&raw, "side").await);
    assert!(!table_exists(&raw, "t_w").await);
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM pgshift.migrations WHERE name = '0002_r'"
        )
        .await,
        0
    );
}

/// `down` fills the rows the new version inserts; an UPDATE through the new version keeps
/// the old column's value unless it changes a column `down` reads. The same for `up` and
/// old-version updates. Old clients read their values back while the migration is open and
/// after rollback.
#[tokio::test(flavor = "multi_thread")]
async fn updates_through_one_version_keep_the_other_versions_values() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    raw.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY, external_ref text, name text, notes text, label text);
         INSERT INTO orders SELECT g, 'ref' || g, 'n' || g, 'note ' || g, 'label ' || g FROM generate_series(1, 5) g;",
    )
    .await
    .unwrap();
    let m = Migrations::new(&[(
        "0001_drop.yaml",
        "operations:\n  - drop_column:\n      table: orders\n      column: notes\n      down: \"NULL\"\n  - drop_column:\n      table: orders\n      column: label\n      down: \"upper(name)\"\n  - add_column:\n      table: orders\n      up: \"'from up'\"\n      column:\n        name: flag\n        type: text\n        nullable: true\n",
    )]);
    let file = m.path().join("0001_drop.yaml");
    run_ok(&db, &m.path(), &["start", file.to_str().unwrap()]).await;
    let new = client_on(&db, "public_0001_drop").await;
    let old = client_on(&db, "public").await;
    new.batch_execute(
        "UPDATE orders SET external_ref = 'changed' WHERE id <= 3;
         UPDATE orders SET name = 'renamed' WHERE id = 4;
         UPDATE orders SET flag = 'set by new' WHERE id IN (1, 5);
         INSERT INTO orders (id, external_ref, name) VALUES (6, 'r6', 'six');",
    )
    .await
    .unwrap();
    let row = |id: i32| {
        let old = &old;
        async move {
            let r = old
                .query_one(
                    "SELECT notes, label, flag FROM orders WHERE id = $1",
                    &[&id],
                )
                .await
                .unwrap();
            (
                r.get::<_, Option<String>>(0),
                r.get::<_, Option<String>>(1),
                r.get::<_, Option<String>>(2),
            )
        }
    };
    let (notes, label, _) = row(2).await;
    assert_eq!(
        notes.as_deref(),
        Some("note 2"),
        "a constant down overwrote an UPDATE's row"
    );
    assert_eq!(
        label.as_deref(),
        Some("label 2"),
        "down reads name, which did not change"
    );
    let (notes, label, _) = row(4).await;
    assert_eq!(notes.as_deref(), Some("note 4"));
    assert_eq!(
        label.as_deref(),
        Some("RENAMED"),
        "name changed: down is recomputed"
    );
    let (notes, label, _) = row(6).await;
    assert_eq!(
        (notes, label.as_deref()),
        (None, Some("SIX")),
        "inserts get down"
    );
    // An old client's UPDATE of another column keeps what the new version wrote.
    old.batch_execute("UPDATE orders SET external_ref = 'old' WHERE id IN (1, 5)")
        .await
        .unwrap();
    let (notes, _, flag) = row(1).await;
    assert_eq!(notes.as_deref(), Some("note 1"));
    assert_eq!(
        flag.as_deref(),
        Some("set by new"),
        "up overwrote a new-version write"
    );

    run_ok(&db, &m.path(), &["rollback"]).await;
    let kept: Vec<(i32, Option<String>)> = raw
        .query("SELECT id, notes FROM orders ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let expected: Vec<(i32, Option<String>)> = (1..=6)
        .map(|i| (i, (i <= 5).then(|| format!("note {i}"))))
        .collect();
    assert_eq!(kept, expected, "rollback keeps the old clients' values");
}

/// `latest` with only raw SQL migrations prints the base schema and the plain URL; after a
/// raw SQL migration on top of an open version schema it says that the views do not show it;
/// the URL keeps the user's parameters.
#[tokio::test(flavor = "multi_thread")]
async fn latest_without_a_version_schema_and_after_raw_sql() {
    let db = TestDb::new().await;
    let m = Migrations::new(&[("0001_t.sql", "CREATE TABLE t (id bigint PRIMARY KEY);\n")]);
    run_ok(&db, &m.path(), &["migrate"]).await;
    let r = run_ok(&db, &m.path(), &["latest", "schema"]).await;
    assert_eq!(r.stdout.trim(), "public", "{}", r.all());
    assert!(r.stderr.contains("no version schema exists"), "{}", r.all());
    let r = run_ok(&db, &m.path(), &["latest", "url"]).await;
    assert!(!r.stdout.contains("search_path"), "{}", r.all());

    m.write(
        "0002_add.yaml",
        "operations:\n  - add_column:\n      table: t\n      column:\n        name: a\n        type: int\n        nullable: true\n",
    );
    run_ok(
        &db,
        &m.path(),
        &["start", m.path().join("0002_add.yaml").to_str().unwrap()],
    )
    .await;
    m.write("0003_raw.sql", "ALTER TABLE t ADD COLUMN b int;\n");
    run_ok(
        &db,
        &m.path(),
        &["start", m.path().join("0003_raw.sql").to_str().unwrap()],
    )
    .await;
    let r = run_ok(&db, &m.path(), &["latest", "schema"]).await;
    assert_eq!(r.stdout.trim(), "public_0002_add");
    assert!(
        r.stderr.contains("0003_raw") && r.stderr.contains("do not show"),
        "{}",
        r.all()
    );

    let url = format!(
        "{}{}application_name=web",
        db.url,
        if db.url.contains('?') { "&" } else { "?" }
    );
    let out = finish(&mut pgshift(&url, &m.path(), &["latest", "url"])).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("application_name=web")
            && out.stdout.contains("search_path%3D%22public_0002_add%22"),
        "{}",
        out.stdout
    );
}

/// An `up` that says what the constant default says adds the column with the default only
/// (no trigger, no backfill, NOT NULL at once); a NULL written through the new version to a
/// column whose NOT NULL is still a CHECK fails as a NOT NULL column does (23502, naming the
/// column), while old clients' writes get `up`.
#[tokio::test(flavor = "multi_thread")]
async fn needless_backfills_are_skipped_and_nulls_fail_as_not_null_violations() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    raw.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY, price int NOT NULL);
         INSERT INTO orders SELECT g, g FROM generate_series(1, 3000) g;",
    )
    .await
    .unwrap();
    let updates = || async {
        scalar_i64(
            &raw,
            "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'orders'",
        )
        .await
    };
    let before = updates().await;
    let m = Migrations::new(&[(
        "0001_status.yaml",
        "operations:\n  - add_column:\n      table: orders\n      up: \"'pending'\"\n      column:\n        name: status\n        type: text\n        default: \"'pending'\"\n        nullable: false\n",
    )]);
    let r = run_ok(
        &db,
        &m.path(),
        &["start", m.path().join("0001_status.yaml").to_str().unwrap()],
    )
    .await;
    assert!(!r.all().contains("backfill"), "{}", r.all());
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass"
        )
        .await,
        0
    );
    assert!(
        raw.query_one("SELECT attnotnull FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'status'", &[])
            .await
            .unwrap()
            .get::<_, bool>(0)
    );
    // Give the statistics collector a moment, then check no row was rewritten.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert_eq!(updates().await, before, "no row was updated");
    assert_eq!(
        scalar_i64(&raw, "SELECT count(*) FROM orders WHERE status = 'pending'").await,
        3000
    );
    run_ok(&db, &m.path(), &["complete"]).await;

    m.write(
        "0002_cents.yaml",
        "operations:\n  - add_column:\n      table: orders\n      up: price * 100\n      method: in_place\n      column:\n        name: cents\n        type: bigint\n        nullable: false\n",
    );
    run_ok(
        &db,
        &m.path(),
        &["start", m.path().join("0002_cents.yaml").to_str().unwrap()],
    )
    .await;
    let new = client_on(&db, "public_0002_cents").await;
    let err = new
        .batch_execute("INSERT INTO orders (id, price, status, cents) VALUES (5001, 1, 'x', NULL)")
        .await
        .unwrap_err();
    let db_err = err.as_db_error().expect("a server error");
    assert_eq!(db_err.code().code(), "23502", "{db_err:?}");
    assert_eq!(db_err.column(), Some("cents"), "{db_err:?}");
    assert!(db_err.message().contains("\"cents\""), "{db_err:?}");
    // Old clients do not know the column: up fills it, no error.
    raw.batch_execute("INSERT INTO orders (id, price) VALUES (5002, 7)")
        .await
        .unwrap();
    assert_eq!(
        scalar_i64(&raw, "SELECT cents FROM orders WHERE id = 5002").await,
        700
    );
    run_ok(&db, &m.path(), &["complete"]).await;
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass"
        )
        .await,
        0,
        "complete drops the guard"
    );
}

/// The trigger paths of this change (a dual write that recomputes only what changed, the NOT
/// NULL guard, a constant `down`) on a table shaped like a production one, run by a
/// non-superuser owner: grants for an application role, row-level security with a tenant
/// policy, an `updated_at` trigger, a publication, a view and a foreign key pointing in.
#[tokio::test(flavor = "multi_thread")]
async fn dual_writes_and_the_not_null_guard_on_a_production_shaped_table_as_its_owner() {
    let db = TestDb::new().await;
    let admin = db.client().await;
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shop_owner') THEN CREATE ROLE shop_owner LOGIN; END IF;
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shop_app') THEN CREATE ROLE shop_app LOGIN; END IF;
             END $$;
             GRANT CREATE ON DATABASE {db} TO shop_owner;
             GRANT CREATE, USAGE ON SCHEMA public TO shop_owner;
             CREATE TABLE customers (id bigint PRIMARY KEY);
             CREATE TABLE orders (
                 id bigint PRIMARY KEY, tenant text NOT NULL, customer_id bigint REFERENCES customers,
                 price int NOT NULL, notes text, updated_at timestamptz);
             CREATE TABLE order_items (id bigint PRIMARY KEY, order_id bigint REFERENCES orders);
             INSERT INTO customers VALUES (1);
             INSERT INTO orders SELECT g, CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, 1, g, 'note ' || g, NULL
               FROM generate_series(1, 200) g;
             INSERT INTO order_items VALUES (1, 1);
             CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $f$BEGIN NEW.updated_at := now(); RETURN NEW; END$f$;
             CREATE TRIGGER orders_touch BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION touch();
             ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
             CREATE POLICY tenant ON orders USING (tenant = current_setting('app.tenant', true))
               WITH CHECK (tenant = current_setting('app.tenant', true));
             CREATE PUBLICATION orders_pub FOR TABLE orders;
             CREATE VIEW order_prices AS SELECT id, price FROM orders;
             GRANT SELECT, INSERT, UPDATE ON orders TO shop_app;
             ALTER TABLE customers OWNER TO shop_owner;
             ALTER TABLE orders OWNER TO shop_owner;
             ALTER TABLE order_items OWNER TO shop_owner;
             ALTER VIEW order_prices OWNER TO shop_owner;
             ALTER FUNCTION touch() OWNER TO shop_owner;",
            db = pgshift::quote::ident(&db.name)
        ))
        .await
        .unwrap();
    let as_role = |role: &str| db.url.replacen("postgres@", &format!("{role}@"), 1);
    let m = Migrations::new(&[(
        "0001_cents.yaml",
        "operations:\n  - add_column:\n      table: orders\n      up: price * 100\n      column:\n        name: price_cents\n        type: bigint\n        nullable: false\n  - drop_column:\n      table: orders\n      column: notes\n      down: \"'n/a'\"\n",
    )]);
    let file = m.path().join("0001_cents.yaml");
    let owner_url = as_role("shop_owner");
    let start = finish(&mut pgshift(
        &owner_url,
        &m.path(),
        &["start", file.to_str().unwrap()],
    ))
    .await;
    assert_eq!(start.code, 0, "{}", start.all());

    // The application role writes through the old version, under its tenant policy.
    let (app, conn) = tokio_postgres::connect(&as_role("shop_app"), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    app.batch_execute(
        "SET app.tenant = 'a'; UPDATE orders SET price = 7 WHERE id = 2; UPDATE orders SET tenant = 'a' WHERE id = 4;",
    )
    .await
    .unwrap();
    let row = admin
        .query_one(
            "SELECT price_cents, notes, updated_at IS NOT NULL FROM orders WHERE id = 2",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, i64>(0),
        700,
        "up follows the price the old version changed"
    );
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("note 2"));
    assert!(row.get::<_, bool>(2), "the table's own trigger still fires");
    assert_eq!(
        scalar_i64(&admin, "SELECT price_cents FROM orders WHERE id = 4").await,
        400,
        "an update of another column keeps up's value"
    );

    // The owner writes through the new version: a constant down keeps the old clients'
    // notes, an insert gets it, and a NULL is a NOT NULL violation naming the column.
    let (owner, conn) = tokio_postgres::connect(&owner_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    owner
        .batch_execute(
            "SET search_path = public_0001_cents;
             UPDATE orders SET price = 9, price_cents = 900 WHERE id = 3;
             INSERT INTO orders (id, tenant, customer_id, price, price_cents) VALUES (500, 'a', 1, 1, 100);",
        )
        .await
        .unwrap();
    assert_eq!(
        text(&admin, "SELECT notes FROM orders WHERE id = 3")
            .await
            .as_deref(),
        Some("note 3")
    );
    assert_eq!(
        text(&admin, "SELECT notes FROM orders WHERE id = 500")
            .await
            .as_deref(),
        Some("n/a")
    );
    let err = owner
        .batch_execute("UPDATE orders SET price_cents = NULL WHERE id = 5")
        .await
        .unwrap_err();
    let db_err = err.as_db_error().unwrap();
    assert_eq!(
        (db_err.code().code(), db_err.column()),
        ("23502", Some("price_cents"))
    );

    let done = finish(&mut pgshift(&owner_url, &m.path(), &["complete"])).await;
    assert_eq!(done.code, 0, "{}", done.all());
    // Everything that hung on the table is still there.
    let kept = text(
        &admin,
        "SELECT concat_ws(',',
            has_table_privilege('shop_app', 'orders', 'UPDATE'),
            (SELECT relrowsecurity FROM pg_class WHERE oid = 'orders'::regclass),
            (SELECT count(*) FROM pg_policy WHERE polrelid = 'orders'::regclass),
            (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass AND NOT tgisinternal),
            (SELECT count(*) FROM pg_publication_tables WHERE pubname = 'orders_pub' AND tablename = 'orders'),
            (SELECT count(*) FROM order_prices),
            (SELECT attnotnull FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'price_cents'))",
    )
    .await;
    assert_eq!(kept.as_deref(), Some("t,t,1,1,1,201,t"));
}
