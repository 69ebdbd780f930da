//! Before a type change starts, every row must convert (SCENARIOS.md S1): otherwise exit 2
//! with the number of rows that do not and up to ten sample keys, and nothing changed.

mod common;

use common::*;
use std::time::Duration;

const TO_UUID: &str = "operations:\n  - alter_column:\n      table: incoming_faxes\n      column: box_file_id\n      type: uuid\n      up: box_file_id::uuid\n      down: box_file_id::text\n";

async fn faxes(db: &TestDb, extra: &str) -> tokio_postgres::Client {
    let raw = db.client().await;
    raw.batch_execute(&format!(
        "CREATE TABLE incoming_faxes (id bigserial PRIMARY KEY, box_file_id varchar, location_id int);
         INSERT INTO incoming_faxes (box_file_id, location_id)
           SELECT md5(g::text)::uuid::text, g % 50 FROM generate_series(1, 5000) g;
         INSERT INTO incoming_faxes (box_file_id, location_id) VALUES (NULL, 1);
         {extra}"
    ))
    .await
    .unwrap();
    raw
}

/// The refusal left no trace: no migration recorded, no trigger, no new column.
async fn unchanged(raw: &tokio_postgres::Client, before: &str, db: &TestDb) {
    assert_eq!(schema_dump(db).await, before);
    // Not even pgshift's own state schema was created.
    assert_eq!(
        scalar_i64(
            raw,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgshift'"
        )
        .await,
        0
    );
    assert_eq!(
        scalar_i64(
            raw,
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'incoming_faxes'::regclass"
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_that_raise_or_change_their_text_are_counted_with_sample_keys_and_nothing_changes() {
    let db = TestDb::new().await;
    // Three that fail: not a uuid (a cast error), an empty string (a cast error), and an
    // upper-case uuid (converts, but its text would change).
    let raw = faxes(
        &db,
        "INSERT INTO incoming_faxes (id, box_file_id, location_id) VALUES
           (90001, 'not-a-uuid', 1), (90002, '', 1), (90003, upper(md5('x')::uuid::text), 1);",
    )
    .await;
    let before = schema_dump(&db).await;
    let m = Migrations::new(&[("0001_uuid.yaml", TO_UUID)]);
    for command in [vec!["start", "0001_uuid.yaml"], vec!["migrate"]] {
        let file = m.path().join("0001_uuid.yaml");
        let args: Vec<&str> = command
            .iter()
            .map(|a| {
                if *a == "0001_uuid.yaml" {
                    file.to_str().unwrap()
                } else {
                    a
                }
            })
            .collect();
        let r = run(&db, &m.path(), &args).await;
        assert_eq!(r.code, 2, "{}", r.all());
        assert!(
            r.stderr
                .contains("3 of 5004 rows of \"public\".\"incoming_faxes\" do not convert to uuid"),
            "{}",
            r.all()
        );
        assert!(
            r.stderr.contains("sample keys: 90001, 90002, 90003"),
            "{}",
            r.all()
        );
        assert!(
            r.stderr
                .contains("0001_uuid.yaml:2:3: error: operation 1 (alter_column)"),
            "{}",
            r.all()
        );
        assert!(r.stderr.contains("\nnothing was changed"), "{}", r.all());
        unchanged(&raw, &before, &db).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_errors_rows_whose_text_would_change_are_counted_too() {
    let db = TestDb::new().await;
    let raw = faxes(
        &db,
        "UPDATE incoming_faxes SET box_file_id = upper(box_file_id) WHERE id IN (7, 11);",
    )
    .await;
    let before = schema_dump(&db).await;
    let m = Migrations::new(&[("0001_uuid.yaml", TO_UUID)]);
    let r = run(&db, &m.path(), &["migrate"]).await;
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("2 of 5001 rows"), "{}", r.all());
    assert!(r.stderr.contains("sample keys: 11, 7"), "{}", r.all());
    unchanged(&raw, &before, &db).await;
    // Fixed, the same migration runs.
    raw.batch_execute("UPDATE incoming_faxes SET box_file_id = lower(box_file_id)")
        .await
        .unwrap();
    run_ok(&db, &m.path(), &["migrate", "--complete"]).await;
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM incoming_faxes WHERE box_file_id IS NOT NULL"
        )
        .await,
        5000
    );
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'incoming_faxes' AND column_name = 'box_file_id' AND data_type = 'uuid'"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_up_the_cast_to_the_new_type_is_checked_on_every_row() {
    let db = TestDb::new().await;
    let raw = faxes(
        &db,
        "UPDATE incoming_faxes SET location_id = 40000 + id WHERE id IN (4, 9);",
    )
    .await;
    let before = schema_dump(&db).await;
    let m = Migrations::new(&[(
        "0001_small.yaml",
        "operations:\n  - alter_column:\n      table: incoming_faxes\n      column: location_id\n      type: smallint\n",
    )]);
    let r = run(&db, &m.path(), &["migrate"]).await;
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr
            .contains("2 of 5001 rows of \"public\".\"incoming_faxes\" do not convert to smallint"),
        "{}",
        r.all()
    );
    assert!(r.stderr.contains("sample keys: 4, 9"), "{}", r.all());
    // A script tells a refusal by the rows from bad input by its code.
    let j = run(&db, &m.path(), &["migrate", "--output", "json"]).await;
    assert_eq!(j.code, 2, "{}", j.all());
    let v: serde_json::Value =
        serde_json::from_str(j.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", j.all()));
    assert_eq!(v["error"]["code"], "precheck_refused", "{v}");
    assert_eq!(v["error"]["line"], 2, "{v}");
    unchanged(&raw, &before, &db).await;
}

/// Scans of incoming_faxes so far, as the statistics count them.
async fn scans(raw: &tokio_postgres::Client) -> i64 {
    raw.batch_execute("SELECT pg_stat_clear_snapshot()")
        .await
        .unwrap();
    scalar_i64(
        raw,
        "SELECT seq_scan + coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'incoming_faxes'",
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_widening_cast_cannot_fail_and_reads_no_row() {
    let db = TestDb::new().await;
    let raw = faxes(&db, "").await;
    let widen = Migrations::new(&[(
        "0001_big.yaml",
        "operations:\n  - alter_column:\n      table: incoming_faxes\n      column: location_id\n      type: bigint\n      up: CAST(location_id AS int8)\n      down: location_id::int\n",
    )]);
    let convert = Migrations::new(&[("0001_uuid.yaml", TO_UUID)]);
    let base = scans(&raw).await;
    for (m, name) in [(&widen, "0001_big.yaml"), (&convert, "0001_uuid.yaml")] {
        let file = m.path().join(name);
        run_ok(&db, &m.path(), &["plan", file.to_str().unwrap()]).await;
    }
    // The uuid check reads the table once; once its count shows, so would the widening's.
    wait_until(
        "the uuid check's scan in the statistics",
        Duration::from_secs(10),
        || async { scans(&raw).await > base },
    )
    .await;
    assert_eq!(scans(&raw).await, base + 1);
}

/// SQL fragments from a file are parsed as what their field holds when the file is read: an
/// injected statement is refused with the field's place (exit 2), and nothing runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_fragment_that_is_not_what_its_field_holds_is_refused_and_nothing_runs() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    raw.batch_execute(
        "CREATE TABLE victim (id bigint PRIMARY KEY); CREATE TABLE t (id bigint PRIMARY KEY, v int, note text);",
    )
    .await
    .unwrap();
    let injected = "'0; DROP TABLE victim'";
    let cases = [
        ("0001_default.yaml", format!("operations:\n  - add_column:\n      table: t\n      column:\n        name: c\n        type: int\n        nullable: true\n        default: {injected}\n"), "8:19"),
        ("0001_check.yaml", format!("operations:\n  - alter_column:\n      table: t\n      column: v\n      check:\n        name: v_positive\n        constraint: {injected}\n"), "7:22"),
        ("0001_predicate.yaml", format!("operations:\n  - create_index:\n      name: t_v\n      table: t\n      columns: [v]\n      predicate: {injected}\n"), "6:19"),
        ("0001_down.yaml", format!("operations:\n  - drop_column:\n      table: t\n      column: note\n      down: {injected}\n"), "5:14"),
        ("0001_where.yaml", format!("operations:\n  - update:\n      table: t\n      set:\n        v: \"1\"\n      where: {injected}\n"), "6:15"),
        ("0001_type.toml", "[[operations]]\n[operations.alter_primary_key]\ntable = \"t\"\ntype = \"bigint; DROP TABLE victim\"\n".to_owned(), "4:9"),
    ];
    for (name, body, at) in &cases {
        let m = Migrations::new(&[(name, body)]);
        let r = run(&db, &m.path(), &["migrate", "--no-lint"]).await;
        assert_eq!(r.code, 2, "{name}: {}", r.all());
        assert!(
            r.stderr.contains(&format!("{name}:{at}")) && r.stderr.contains("is refused"),
            "{name}: {}",
            r.all()
        );
        assert!(
            table_exists(&raw, "victim").await,
            "{name}: victim was dropped"
        );
        assert!(
            !table_exists(&raw, "pgshift.migrations").await,
            "{name}: nothing runs"
        );
    }
}

/// `pgshift plan` changes nothing, even when it evaluates an `up` that would write: the
/// sequence that `up` calls stays where it was.
#[tokio::test(flavor = "multi_thread")]
async fn plan_evaluates_user_expressions_read_only() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    raw.batch_execute(
        "CREATE SEQUENCE counter; CREATE TABLE t (id bigint PRIMARY KEY, code text);
         INSERT INTO t SELECT g, g::text FROM generate_series(1, 50) g;",
    )
    .await
    .unwrap();
    let m = Migrations::new(&[(
        "0001_code.yaml",
        "operations:\n  - alter_column:\n      table: t\n      column: code\n      type: bigint\n      up: code::bigint + nextval('counter')\n      down: code::text\n",
    )]);
    let before: i64 = raw
        .query_one("SELECT last_value FROM counter", &[])
        .await
        .unwrap()
        .get(0);
    let r = run(
        &db,
        &m.path(),
        &["plan", m.path().join("0001_code.yaml").to_str().unwrap()],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.all());
    let after: i64 = raw
        .query_one("SELECT last_value FROM counter", &[])
        .await
        .unwrap()
        .get(0);
    let called: bool = raw
        .query_one("SELECT is_called FROM counter", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!((after, called), (before, false), "plan moved the sequence");
    assert!(!table_exists(&raw, "pgshift.migrations").await);
}
