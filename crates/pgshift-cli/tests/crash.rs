//! kill -9 in the middle of a migration, then the same command again.
//!
//! What happens (docs/runner.md): a `.sql` migration whose statements can all share a
//! transaction runs as one transaction, so a kill leaves nothing of it and the next run
//! applies it whole. A migration with statements that cannot run in a transaction
//! (CONCURRENTLY) runs as journaled segments; the next run skips the segments that
//! committed, and redoes the interrupted one (a concurrent index build is checked first:
//! an INVALID leftover is dropped and rebuilt, a valid index is kept).

mod common;

use common::*;
use std::time::Duration;

/// Starts `pgshift migrate`, waits until its session runs a statement containing `marker`
/// (and `also_sql`, if given, returns true), then kills it with SIGKILL.
async fn kill_during(db: &TestDb, dir: &std::path::Path, marker: &str, also_sql: Option<&str>) {
    kill_command_during(db, dir, &["migrate"], marker, also_sql).await;
}

/// [`kill_during`] for the pgshift command `args`.
async fn kill_command_during(
    db: &TestDb,
    dir: &std::path::Path,
    args: &[&str],
    marker: &str,
    also_sql: Option<&str>,
) {
    let c = db.client().await;
    let mut child = pgshift(&db.url, dir, args).spawn().unwrap();
    let pattern = format!("%{marker}%");
    wait_until("pgshift to reach the marked statement", Duration::from_secs(30), || async {
        let running: bool = c
            .query_one(
                "SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'pgshift' AND datname = current_database() AND state = 'active' AND query LIKE $1",
                &[&pattern],
            )
            .await
            .unwrap()
            .get(0);
        let also = match also_sql {
            Some(sql) => c.query_one(sql, &[]).await.unwrap().get(0),
            None => true,
        };
        running && also
    })
    .await;
    child.start_kill().unwrap(); // SIGKILL
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), None, "pgshift should have died of SIGKILL");
    // The server notices the dead client (client_connection_check_interval) and rolls back.
    wait_for_pgshift_sessions_to_end(&c).await;
}

/// Two clients per version running `statements` (keys drawn from 1..=`keys`) at 100
/// statements/s per version, the lock waits behind pgshift sampled every 20 ms.
async fn writers(
    db: &TestDb,
    statements: Vec<String>,
    keys: i64,
) -> pgshift_testkit::traffic::Traffic {
    use pgshift_testkit::traffic::{Traffic, TrafficConfig, Workload};
    Traffic::start(
        &TrafficConfig {
            url: db.url.clone(),
            clients_per_version: 2,
            rate: 100,
            sample_every: Duration::from_millis(20),
        },
        &Workload {
            old: statements.clone(),
            new: statements,
            keys,
        },
        "migration",
    )
    .await
    .unwrap()
}

/// Sleeps long on the first run and not at all once the test has created `rerun_marker`,
/// so the file (and its checksum) stays the same for the rerun.
const SLEEP_UNTIL_RERUN: &str =
    "SELECT pg_sleep(CASE WHEN to_regclass('rerun_marker') IS NULL THEN 60 ELSE 0 END) AS crash_here;";

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_in_a_transactional_migration_then_rerun_applies_it_whole() {
    let db = TestDb::new().await;
    let m = Migrations::new(&[(
        "0001_multi.sql",
        &format!("CREATE TABLE a (id bigint PRIMARY KEY);\nINSERT INTO a SELECT generate_series(1, 100);\n{SLEEP_UNTIL_RERUN}\nCREATE TABLE b (id int);\n"),
    )]);
    kill_during(&db, &m.path(), "crash_here", None).await;
    let c = db.client().await;
    assert!(
        !table_exists(&c, "a").await,
        "a killed transaction leaves nothing"
    );
    let status = run(&db, &m.path(), &["status", "--output", "json"]).await;
    let v: serde_json::Value =
        serde_json::from_str(status.stdout.trim()).unwrap_or_else(|_| panic!("{}", status.all()));
    assert_eq!(v["migrations"][0]["status"], "running", "{}", status.all());
    assert_eq!(
        v["runner"],
        serde_json::Value::Null,
        "nobody runs it now: {}",
        status.all()
    );
    let human = run(&db, &m.path(), &["status"]).await;
    assert!(
        human
            .stdout
            .contains("interrupted: pgshift migrate resumes it"),
        "{}",
        human.all()
    );

    c.batch_execute("CREATE TABLE rerun_marker ()")
        .await
        .unwrap();
    let r = run(&db, &m.path(), &["migrate"]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("resuming"), "{}", r.all());
    assert_eq!(scalar_i64(&c, "SELECT count(*) FROM a").await, 100);
    assert!(table_exists(&c, "b").await);
    assert_eq!(
        scalar_i64(&c, "SELECT attempts::bigint FROM pgshift.migrations WHERE name = '0001_multi' AND status = 'applied'").await,
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_after_a_concurrent_step_resumes_from_the_journal() {
    let db = TestDb::new().await;
    let m = Migrations::new(&[(
        "0001_mixed.sql",
        &format!(
            "CREATE TABLE a (id bigint PRIMARY KEY, v int);\nINSERT INTO a SELECT g, g FROM generate_series(1, 100) g;\n\
             CREATE INDEX CONCURRENTLY a_v ON a (v);\n\
             INSERT INTO a SELECT g, g FROM generate_series(101, 110) g;\n{SLEEP_UNTIL_RERUN}\nCREATE TABLE c (id int);\n"
        ),
    )]);
    kill_during(&db, &m.path(), "crash_here", None).await;
    let c = db.client().await;
    // Segments 1 (table and rows) and 2 (the index) committed; segment 3 rolled back.
    assert_eq!(scalar_i64(&c, "SELECT count(*) FROM a").await, 100);
    assert!(!table_exists(&c, "c").await);

    c.batch_execute("CREATE TABLE rerun_marker ()")
        .await
        .unwrap();
    let r = run(&db, &m.path(), &["migrate"]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        r.stderr.matches("skipped, done in an earlier run").count(),
        2,
        "{}",
        r.all()
    );
    // Not redone (CREATE TABLE a would have failed), not skipped.
    assert_eq!(scalar_i64(&c, "SELECT count(*) FROM a").await, 110);
    assert!(table_exists(&c, "c").await);
    let valid = index_is_valid(&c, "a_v").await;
    assert!(valid);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_a_concurrent_index_build_leaves_an_invalid_index_that_the_rerun_rebuilds() {
    let db = TestDb::new().await;
    let c = db.client().await;
    c.batch_execute("CREATE TABLE a (id int PRIMARY KEY, v int); INSERT INTO a SELECT g, g FROM generate_series(1, 1000) g;")
        .await
        .unwrap();
    // An open snapshot makes CREATE INDEX CONCURRENTLY wait after it has created the
    // (still INVALID) index.
    let old_snapshot = db.client().await;
    old_snapshot
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM pg_class;")
        .await
        .unwrap();
    let m = Migrations::new(&[("0001_ix.sql", "CREATE INDEX CONCURRENTLY a_v ON a (v);\n")]);
    kill_during(
        &db,
        &m.path(),
        "CONCURRENTLY",
        Some("SELECT to_regclass('a_v') IS NOT NULL"),
    )
    .await;
    old_snapshot.batch_execute("COMMIT").await.unwrap();
    let valid = index_is_valid(&c, "a_v").await;
    assert!(
        !valid,
        "the interrupted build should have left an INVALID index"
    );

    let r = run(&db, &m.path(), &["migrate"]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stderr.contains("dropped the INVALID index public.a_v"),
        "{}",
        r.all()
    );
    let valid = index_is_valid(&c, "a_v").await;
    assert!(valid);
    assert_eq!(
        scalar_i64(
            &c,
            "SELECT count(*) FROM pg_index WHERE indrelid = 'a'::regclass"
        )
        .await,
        2
    );
}

/// Killed after the last step of start committed (every step journaled done, the status
/// left as the interrupted run's "running"): start again finds nothing to do and leaves the
/// migration started, ready for complete. (Found by the copy crash test in CI.)
#[tokio::test(flavor = "multi_thread")]
async fn start_again_after_its_last_step_committed_leaves_the_migration_started() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    raw.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v int)")
        .await
        .unwrap();
    let m = Migrations::new(&[(
        "0001_w.yaml",
        "operations:\n  - add_column:\n      table: t\n      up: v + 1\n      column:\n        name: w\n        type: int\n        nullable: true\n",
    )]);
    let file = m.path().join("0001_w.yaml");
    run_ok(&db, &m.path(), &["start", file.to_str().unwrap()]).await;
    raw.batch_execute("UPDATE pgshift.migrations SET status = 'running' WHERE name = '0001_w'")
        .await
        .unwrap();
    let r = run_ok(&db, &m.path(), &["start", file.to_str().unwrap()]).await;
    assert!(r.stderr.contains("done in an earlier run"), "{}", r.all());
    assert_eq!(migration_status(&raw, "0001_w").await, "started");
    run_ok(&db, &m.path(), &["complete"]).await;
    assert_eq!(migration_status(&raw, "0001_w").await, "applied");
}

/// Issue 18: `create_index` on a table of 2,000,000 rows in 20 partitions, under clients
/// that insert and update all along, killed with SIGKILL once eight partitions have their
/// index (built or being built), then run again: every partition's index valid and attached,
/// the partitioned table's valid, no client error, and no client waited on pgshift much
/// longer than its lock_timeout (200 ms) plus the moment it holds a lock it got.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_an_index_build_on_20_partitions_under_writes_then_rerun_indexes_every_partition(
) {
    let db = TestDb::new().await;
    let c = db.client().await;
    c.batch_execute(
        "CREATE TABLE events (id bigserial, at timestamptz NOT NULL, v int NOT NULL, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
         DO $$ BEGIN FOR d IN 0..19 LOOP
           EXECUTE format('CREATE TABLE events_%s PARTITION OF events FOR VALUES FROM (%L) TO (%L)', d,
             timestamptz '2026-01-01' + d * interval '1 day', timestamptz '2026-01-01' + (d + 1) * interval '1 day');
         END LOOP; END $$;
         INSERT INTO events (at, v) SELECT timestamptz '2026-01-01' + (g % 20) * interval '1 day' + interval '1 hour', g
           FROM generate_series(1, 2000000) g;",
    )
    .await
    .unwrap();
    c.batch_execute("VACUUM ANALYZE events").await.unwrap();
    let statements = vec![
        "INSERT INTO events (at, v) VALUES (timestamptz '2026-01-01' + ($1::bigint % 20) * interval '1 day', ($1::bigint % 1000)::int)".to_owned(),
        "UPDATE events SET v = v + 1 WHERE id = $1::bigint".to_owned(),
        "SELECT v FROM events WHERE id = $1::bigint".to_owned(),
    ];
    let traffic = writers(&db, statements, 2_000_000).await;
    let m = Migrations::new(&[(
        "0001_events_v.yaml",
        "operations:\n  - create_index:\n      name: events_v\n      table: events\n      columns: [v]\n",
    )]);
    kill_during(
        &db,
        &m.path(),
        "events",
        Some("SELECT count(*) >= 8 FROM pg_class WHERE relname LIKE 'events\\_%\\_events\\_v'"),
    )
    .await;
    let r = run(&db, &m.path(), &["migrate"]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    let report = traffic.finish().await;
    assert!(
        report.errors.is_empty(),
        "client errors: {:?}",
        report.errors
    );
    assert!(
        report.total.max_behind_pgshift_ms < 500.0,
        "a client waited {} ms behind pgshift",
        report.total.max_behind_pgshift_ms
    );
    assert_eq!(
        scalar_text(
            &c,
            "SELECT count(*) || ':' || bool_and(i.indisvalid) FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid WHERE x.relname LIKE '%events\\_v'"
        )
        .await
        .as_deref(),
        Some("21:true")
    );
    assert_eq!(
        scalar_i64(
            &c,
            "SELECT count(*) FROM pg_inherits h WHERE h.inhparent = 'events_v'::regclass"
        )
        .await,
        20
    );
    // Nothing of the killed run's builds left: one index on v per partition.
    assert_eq!(
        scalar_i64(
            &c,
            "SELECT count(*) FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid WHERE t.relname LIKE 'events\\_%' AND pg_get_indexdef(i.indexrelid) LIKE '%(v)'"
        )
        .await,
        20
    );
}

/// Issue 18: the backfill of a partitioned table's partitions runs several at once (seen
/// here: two partitions' batches active together), under clients that update all along;
/// killed with SIGKILL while they run, then run again: every partition resumes where it
/// stopped, every row gets `up`, the clients' writes included, and no client errs.
#[tokio::test(flavor = "multi_thread")]
async fn partitions_backfill_several_at_once_and_resume_each_after_kill_9() {
    let db = TestDb::new().await;
    let c = db.client().await;
    c.batch_execute(
        "CREATE TABLE events (id bigint NOT NULL, region int NOT NULL, n int NOT NULL, t int NOT NULL DEFAULT 0, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
         DO $$ BEGIN FOR r IN 0..11 LOOP
           EXECUTE format('CREATE TABLE events_%s PARTITION OF events FOR VALUES IN (%s)', r, r);
         END LOOP; END $$;
         INSERT INTO events (id, region, n) SELECT g, g % 12, g % 1000 FROM generate_series(1, 600000) g;",
    )
    .await
    .unwrap();
    c.batch_execute("VACUUM ANALYZE events").await.unwrap();
    // (Not `n`: a new-version client's change of `n` rightly leaves `n2` as it was.)
    let statements = vec![
        "UPDATE events SET t = t + 1 WHERE id = $1::bigint AND region = ($1::bigint % 12)::int"
            .to_owned(),
        "SELECT n FROM events WHERE id = $1::bigint".to_owned(),
    ];
    let traffic = writers(&db, statements, 600_000).await;
    let m = Migrations::new(&[(
        "0001_n2.yaml",
        "operations:\n  - add_column:\n      table: events\n      up: n * 2\n      column:\n        name: n2\n        type: bigint\n",
    )]);
    kill_during(
        &db,
        &m.path(),
        "events_",
        Some("SELECT count(DISTINCT substring(query from 'events_[0-9]+')) >= 2 FROM pg_stat_activity WHERE application_name = 'pgshift' AND state = 'active' AND query LIKE '%UPDATE%events\\_%'"),
    )
    .await;
    // The killed run left some partitions' backfills done or halfway, not all.
    let done_before = scalar_i64(
        &c,
        "SELECT count(*) FROM pgshift.backfills WHERE migration = '0001_n2' AND state = 'done'",
    )
    .await;
    assert!(
        done_before < 12,
        "{done_before} partitions done before the kill"
    );
    run_ok(&db, &m.path(), &["migrate"]).await;
    run_ok(&db, &m.path(), &["complete"]).await;
    let report = traffic.finish().await;
    assert!(
        report.errors.is_empty(),
        "client errors: {:?}",
        report.errors
    );
    assert_eq!(
        scalar_text(&c, "SELECT string_agg(tableoid::regclass || ':' || id, ',') FROM events WHERE n2 IS DISTINCT FROM n * 2").await,
        None
    );
    assert_eq!(scalar_i64(&c, "SELECT count(*) FROM events").await, 600_000);
    assert!(scalar_i64(&c, "SELECT sum(t) FROM events").await > 0);
}

/// Issue 18: `detach_partition` runs DETACH PARTITION ... CONCURRENTLY, whose first
/// transaction marks the partition pending and whose second waits for every transaction
/// that may still see it. Killed in that wait, the partition stays pending; the rerun
/// finishes it (FINALIZE) and the migration completes, the partition a table of its own
/// with its rows.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_a_concurrent_detach_then_rerun_finalizes_it() {
    let db = TestDb::new().await;
    let c = db.client().await;
    c.batch_execute(
        "CREATE TABLE h (id bigint PRIMARY KEY, v int) PARTITION BY HASH (id);
         CREATE TABLE h_0 PARTITION OF h FOR VALUES WITH (MODULUS 2, REMAINDER 0);
         CREATE TABLE h_1 PARTITION OF h FOR VALUES WITH (MODULUS 2, REMAINDER 1);
         INSERT INTO h SELECT g, g FROM generate_series(1, 1000) g;",
    )
    .await
    .unwrap();
    let rows_1 = scalar_i64(&c, "SELECT count(*) FROM h_1").await;
    let m = Migrations::new(&[(
        "0001_detach.yaml",
        "operations:\n  - detach_partition:\n      table: h\n      partition: h_1\n",
    )]);
    if scalar_i64(&c, "SELECT current_setting('server_version_num')::bigint").await < 140000 {
        // PostgreSQL 13 has no DETACH CONCURRENTLY: the plain detach, one transaction.
        run_ok(&db, &m.path(), &["migrate"]).await;
        run_ok(&db, &m.path(), &["complete"]).await;
        assert_eq!(
            scalar_i64(&c, "SELECT count(*) FROM h").await,
            1000 - rows_1
        );
        return;
    }
    // A transaction that saw the partitioned table keeps the detach waiting.
    let reader = db.client().await;
    reader
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM h;")
        .await
        .unwrap();
    run_ok(
        &db,
        &m.path(),
        &["start", m.path().join("0001_detach.yaml").to_str().unwrap()],
    )
    .await;
    kill_command_during(
        &db,
        &m.path(),
        &["complete"],
        "DETACH PARTITION",
        Some("SELECT coalesce((SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = 'h_1'::regclass), false)"),
    )
    .await;
    reader.batch_execute("COMMIT").await.unwrap();
    assert!(
        scalar_text(
            &c,
            "SELECT inhdetachpending::text FROM pg_inherits WHERE inhrelid = 'h_1'::regclass"
        )
        .await
        .as_deref()
            == Some("true"),
        "the killed detach should have left h_1 pending"
    );
    let r = run(&db, &m.path(), &["complete"]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        scalar_i64(
            &c,
            "SELECT count(*) FROM pg_inherits WHERE inhrelid = 'h_1'::regclass"
        )
        .await,
        0
    );
    assert_eq!(scalar_i64(&c, "SELECT count(*) FROM h_1").await, rows_1);
    assert_eq!(
        scalar_i64(&c, "SELECT count(*) FROM h").await,
        1000 - rows_1
    );
}

/// Issue 18: `partition_table` by attach under clients that insert, update and read all
/// along, killed with SIGKILL during start and run again, then completed: no client error,
/// the table partitioned with every row (old and written meanwhile) in it, none lost.
#[tokio::test(flavor = "multi_thread")]
async fn partition_table_under_writes_killed_during_start_then_completed_loses_nothing() {
    partition_under_writes(
        "operations:
  - partition_table:
      table: orders
      by: RANGE (created_at)
      existing:
        name: orders_2026
        bound: FOR VALUES FROM (MINVALUE) TO ('2027-01-01')
      partitions:
        - name: orders_2027
          bound: FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')
",
        // The concurrent build of the new key's index: long enough to be seen (the
        // validation of 300,000 rows can end between two looks).
        "CREATE UNIQUE INDEX CONCURRENTLY",
        None,
    )
    .await;
}

/// The same by copy (no `existing`: the rows are copied into the partitions), killed in
/// the middle of the copy: the rerun goes on from where it stopped, and the copy holds
/// every row and every client's write.
#[tokio::test(flavor = "multi_thread")]
async fn partition_table_by_copy_under_writes_killed_during_the_copy_loses_nothing() {
    partition_under_writes(
        "operations:
  - partition_table:
      table: orders
      by: RANGE (created_at)
      partitions:
        - name: orders_2026
          bound: FOR VALUES FROM (MINVALUE) TO ('2027-01-01')
        - name: orders_2027
          bound: FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')
",
        "_pgshift_part_orders",
        // Some batches copied (their rows' pages written), not all.
        Some("SELECT coalesce(sum(pg_relation_size(oid)), 0) > 2000000 FROM pg_class WHERE relname IN ('orders_2026', 'orders_2027')"),
    )
    .await;
}

async fn partition_under_writes(migration: &str, marker: &str, also: Option<&str>) {
    let db = TestDb::new().await;
    let c = db.client().await;
    c.batch_execute(
        "CREATE TABLE orders (id serial PRIMARY KEY, price int NOT NULL, created_at timestamptz NOT NULL DEFAULT '2026-06-01', note text);
         INSERT INTO orders (price, created_at) SELECT g % 1000, timestamptz '2026-01-01' + (g % 360) * interval '1 day' FROM generate_series(1, 300000) g;
         CREATE INDEX orders_created_at ON orders (created_at);
         CREATE TABLE written (id bigint PRIMARY KEY);",
    )
    .await
    .unwrap();
    // Each insert is recorded in `written` in the same statement: the rows that must exist.
    let statements = vec![
        "WITH i AS (INSERT INTO orders (price) VALUES (($1::bigint % 1000)::int) RETURNING id) INSERT INTO written SELECT id FROM i".to_owned(),
        "UPDATE orders SET price = price + 1 WHERE id = $1::bigint".to_owned(),
        "SELECT price FROM orders WHERE id = $1::bigint".to_owned(),
    ];
    let traffic = writers(&db, statements, 300_000).await;
    let m = Migrations::new(&[("0001_partition.yaml", migration)]);
    kill_during(&db, &m.path(), marker, also).await;
    run_ok(&db, &m.path(), &["migrate"]).await;
    run_ok(&db, &m.path(), &["complete"]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = traffic.finish().await;
    assert!(
        report.errors.is_empty(),
        "client errors: {:?}",
        report.errors
    );
    assert!(
        report.total.max_behind_pgshift_ms < 500.0,
        "a client waited {} ms behind pgshift",
        report.total.max_behind_pgshift_ms
    );
    assert_eq!(
        scalar_text(
            &c,
            "SELECT relkind::text FROM pg_class WHERE oid = 'orders'::regclass"
        )
        .await
        .as_deref(),
        Some("p")
    );
    assert_eq!(
        scalar_i64(&c, "SELECT count(*) FROM orders WHERE id <= 300000").await,
        300_000
    );
    assert_eq!(
        scalar_i64(&c, "SELECT count(*) FROM written w WHERE NOT EXISTS (SELECT FROM orders o WHERE o.id = w.id)").await,
        0
    );
    assert!(scalar_i64(&c, "SELECT count(*) FROM written").await > 0);
    assert_eq!(
        scalar_i64(
            &c,
            "SELECT count(*) FROM pg_class WHERE relname LIKE '\\_pgshift\\_%'"
        )
        .await,
        0
    );
}
