//! The backfill engine against a real server: crashes, concurrent writers, control from a
//! second process, throttles.

mod common;

use common::*;
use std::time::Duration;

const ROWS: i64 = 200_000;

async fn big_table(db: &TestDb) -> tokio_postgres::Client {
    let raw = db.client().await;
    raw.batch_execute(&format!(
        "CREATE TABLE big (id bigint PRIMARY KEY, v int NOT NULL);
         INSERT INTO big SELECT g, g % 1000 FROM generate_series(1, {ROWS}) g;"
    ))
    .await
    .unwrap();
    // The insert's counts reach the statistics a moment after it commits; ANALYZE only once
    // they have, or they arrive after it and make the fresh statistics look stale.
    wait_until(
        "the insert's statistics",
        Duration::from_secs(20),
        || async {
            scalar_i64(
            &raw,
            "SELECT coalesce((SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'big'), 0)",
        )
        .await
            >= ROWS
        },
    )
    .await;
    raw.batch_execute("ANALYZE big").await.unwrap();
    // Before PostgreSQL 15 the ANALYZE reaches the statistics a moment later, too.
    wait_until(
        "the analyze in the statistics",
        Duration::from_secs(20),
        || async {
            scalar_i64(
                &raw,
                "SELECT coalesce((SELECT n_mod_since_analyze FROM pg_stat_user_tables WHERE relname = 'big'), 1)",
            )
            .await
                == 0
        },
    )
    .await;
    raw
}

/// The in-place backfill these tests exercise (without `method`, pgshift would copy the
/// table).
const ADD_W: &str = "operations:\n  - add_column:\n      table: big\n      up: v + 1\n      method: in_place\n      column:\n        name: w\n        type: int\n        nullable: true\n";

async fn rows_done(c: &tokio_postgres::Client) -> i64 {
    c.query_one(
        "SELECT coalesce(sum(rows_done), 0)::bigint FROM pgshift.backfills",
        &[],
    )
    .await
    .map(|r| r.get(0))
    .unwrap_or(0)
}

/// `n` clients updating, deleting and inserting rows of `big` until `stop`, each pausing
/// `pause` between statements; each returns how many statements it ran.
fn random_writers(
    db: &TestDb,
    n: i64,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    pause: Option<Duration>,
) -> Vec<tokio::task::JoinHandle<i64>> {
    (0..n)
        .map(|w| {
            let (db, stop) = (db.clone(), stop.clone());
            tokio::spawn(async move {
                let c = db.client().await;
                let mut n = 0i64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let id = (n * 7919 + w * 104_729) % ROWS + 1;
                    match n % 3 {
                        0 => c.execute("UPDATE big SET v = v + 7 WHERE id = $1", &[&id]).await,
                        1 => c.execute("DELETE FROM big WHERE id = $1", &[&id]).await,
                        _ => c.execute("INSERT INTO big (id, v) VALUES ($1, 5) ON CONFLICT (id) DO UPDATE SET v = excluded.v", &[&(id + ROWS * (w + 1))]).await,
                    }
                    .expect("writer");
                    n += 1;
                    if let Some(p) = pause {
                        tokio::time::sleep(p).await;
                    }
                }
                n
            })
        })
        .collect()
}

/// Small, fast batches so that a test sees many of them.
const SMALL_BATCHES: &[&str] = &["--backfill-batch-time", "5ms"];

/// One worker (the counts of these tests are of one backfill's one part), pausing 2 ms
/// after each batch.
const ONE_SLOW_WORKER: &[&str] = &["--backfill-delay", "2ms", "--backfill-workers", "1"];

/// Rows of `big` that ADD_W has not filled.
async fn unfilled(raw: &tokio_postgres::Client) -> i64 {
    scalar_i64(
        raw,
        "SELECT count(*) FROM big WHERE w IS DISTINCT FROM v + 1",
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_random_points_then_rerun_neither_redoes_nor_skips() {
    kill_9_at_random_points_then_rerun("1").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_parallel_workers_kill_9_then_rerun_neither_redoes_nor_skips() {
    kill_9_at_random_points_then_rerun("3").await;
}

async fn kill_9_at_random_points_then_rerun(workers: &str) {
    let db = TestDb::new().await;
    let raw = big_table(&db).await;
    let m = Migrations::new(&[("0001_w.yaml", ADD_W)]);
    let file = m.path().join("0001_w.yaml");
    let file = file.to_str().unwrap();
    let mut args = vec!["start", file, "--backfill-workers", workers];
    args.extend(SMALL_BATCHES);
    // Kill points spread over the run, from a seed that changes with the clock.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as i64;
    let mut kills = Vec::new();
    for trial in 0..3i64 {
        let before = rows_done(&raw).await;
        let stop_at = before + 5_000 + (seed / (trial + 1)) % 40_000;
        let mut child = pgshift(&db.url, &m.path(), &args).spawn().unwrap();
        wait_until("the backfill to move", Duration::from_secs(60), || async {
            rows_done(&raw).await >= stop_at
        })
        .await;
        child.start_kill().unwrap();
        assert_eq!(child.wait().await.unwrap().code(), None);
        wait_for_pgshift_sessions_to_end(&raw).await;
        kills.push(rows_done(&raw).await);
    }
    eprintln!("killed at rows_done = {kills:?}");
    assert!(
        kills.windows(2).all(|w| w[1] >= w[0]),
        "progress went backwards: {kills:?}"
    );
    let r = run_ok(&db, &m.path(), &args).await;
    assert!(r.stderr.contains("resuming"), "{}", r.all());
    assert_eq!(unfilled(&raw).await, 0);
    // Each row counted once over four runs: no batch was applied twice or skipped.
    assert_eq!(rows_done(&raw).await, ROWS);
    // Every part finished, and the parts were decided once (the reruns kept them).
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM pgshift.backfills WHERE state = 'done'"
        )
        .await,
        workers.parse::<i64>().unwrap()
    );
    assert_eq!(
        scalar_i64(&raw, "SELECT count(*) FROM pgshift.backfills").await,
        workers.parse::<i64>().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_workers_split_composite_keys_and_keyless_tables_into_disjoint_ranges() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    raw.batch_execute(
        "CREATE TABLE pairs (a int NOT NULL, b text NOT NULL, v int NOT NULL, PRIMARY KEY (a, b));
         INSERT INTO pairs SELECT g % 997, g::text, g FROM generate_series(1, 180000) g;
         CREATE TABLE heap (v int NOT NULL);
         INSERT INTO heap SELECT g FROM generate_series(1, 180000) g;
         ANALYZE pairs; ANALYZE heap;",
    )
    .await
    .unwrap();
    let m = Migrations::new(&[(
        "0001_both.yaml",
        "operations:\n  - add_column:\n      table: pairs\n      up: v * 2\n      method: in_place\n      column:\n        name: w\n        type: int\n        nullable: true\n  - add_column:\n      table: heap\n      up: v * 3\n      method: in_place\n      column:\n        name: w\n        type: int\n        nullable: true\n",
    )]);
    let file = m.path().join("0001_both.yaml");
    let mut args = vec!["start", file.to_str().unwrap(), "--backfill-workers", "3"];
    args.extend(SMALL_BATCHES);
    let r = run_ok(&db, &m.path(), &args).await;
    assert!(r.stderr.contains("over 3 workers"), "{}", r.all());
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM pairs WHERE w IS DISTINCT FROM v * 2"
        )
        .await,
        0
    );
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM heap WHERE w IS DISTINCT FROM v * 3"
        )
        .await,
        0
    );
    // Three parts per table, each row counted by exactly one of them.
    for table in ["pairs", "heap"] {
        let (parts, rows): (i64, i64) = {
            let r = raw
                .query_one(
                    "SELECT count(*), sum(rows_done)::bigint FROM pgshift.backfills WHERE table_name = $1 AND state = 'done'",
                    &[&table],
                )
                .await
                .unwrap();
            (r.get(0), r.get(1))
        };
        assert_eq!((table, parts, rows), (table, 3, 180_000));
    }
}

/// Without `--backfill-workers`, pgshift sizes the workers from the table and the server's
/// settings: as many as a parallel scan of the table would get, at most the server's
/// max_parallel_maintenance_workers.
#[tokio::test(flavor = "multi_thread")]
async fn by_default_workers_are_sized_from_the_table_and_the_servers_settings() {
    let db = TestDb::new().await;
    let raw = big_table(&db).await;
    let pages = scalar_i64(&raw, "SELECT pg_relation_size('big') / 8192").await;
    assert!(pages > 216, "{pages} pages");
    let m = Migrations::new(&[("0001_w.yaml", ADD_W)]);
    let file = m.path().join("0001_w.yaml");
    let file = file.to_str().unwrap();
    let parts = || async {
        scalar_i64(
            &raw,
            "SELECT count(*) FROM pgshift.backfills WHERE table_name = 'big'",
        )
        .await
    };
    // 64 kB is 8 pages: a scan of the table would get 5 workers or more; the server allows 3.
    let db_name = pgshift::quote::ident(&db.name);
    raw.batch_execute(&format!(
        "ALTER DATABASE {db_name} SET min_parallel_table_scan_size = '64kB';
         ALTER DATABASE {db_name} SET max_parallel_maintenance_workers = 3"
    ))
    .await
    .unwrap();
    let r = run_ok(&db, &m.path(), &["start", file]).await;
    assert!(r.stderr.contains("over 3 workers"), "{}", r.all());
    assert_eq!(parts().await, 3);
    assert_eq!(unfilled(&raw).await, 0);
    run_ok(&db, &m.path(), &["rollback"]).await;
    // A server that allows no parallel maintenance gets one worker.
    raw.batch_execute(&format!(
        "ALTER DATABASE {db_name} SET max_parallel_maintenance_workers = 0"
    ))
    .await
    .unwrap();
    let r = run_ok(&db, &m.path(), &["start", file]).await;
    assert!(!r.stderr.contains("workers"), "{}", r.all());
    assert_eq!(parts().await, 1);
    // An explicit number is taken as given.
    run_ok(&db, &m.path(), &["rollback"]).await;
    let r = run_ok(&db, &m.path(), &["start", file, "--backfill-workers", "2"]).await;
    assert!(r.stderr.contains("over 2 workers"), "{}", r.all());
    assert_eq!(parts().await, 2);
}

/// Starts ADD_W with three workers; returns the backfill's parts: (upper bound, rows
/// done), in order, once every row was filled.
async fn add_w_over_three_workers(
    db: &TestDb,
    raw: &tokio_postgres::Client,
) -> Vec<(Option<String>, i64)> {
    let m = Migrations::new(&[("0001_w.yaml", ADD_W)]);
    let file = m.path().join("0001_w.yaml");
    let mut args = vec!["start", file.to_str().unwrap(), "--backfill-workers", "3"];
    args.extend(SMALL_BATCHES);
    run_ok(db, &m.path(), &args).await;
    assert_eq!(
        scalar_i64(
            raw,
            "SELECT count(*) FROM big WHERE w IS DISTINCT FROM v + 1"
        )
        .await,
        0
    );
    raw.query(
        "SELECT upper_bound[1], rows_done FROM pgshift.backfills WHERE table_name = 'big' ORDER BY part",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_workers_split_a_one_column_key_by_its_histogram_when_the_statistics_are_fresh() {
    let db = TestDb::new().await;
    let raw = big_table(&db).await;
    let histogram: Vec<String> = raw
        .query_one(
            "SELECT histogram_bounds::text::text[] FROM pg_stats WHERE tablename = 'big' AND attname = 'id'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let parts = add_w_over_three_workers(&db, &raw).await;
    assert_eq!(parts.len(), 3, "{parts:?}");
    // Each split is a histogram bound, and each part holds about a third of the rows.
    for (upper, _) in &parts[..2] {
        assert!(histogram.contains(upper.as_ref().unwrap()), "{parts:?}");
    }
    for (_, rows) in &parts {
        assert!((ROWS / 3 - rows).abs() < ROWS / 20, "{parts:?}");
    }
    assert_eq!(parts.iter().map(|p| p.1).sum::<i64>(), ROWS);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_stale_statistics_parallel_workers_split_by_walking_the_key() {
    let db = TestDb::new().await;
    let raw = big_table(&db).await;
    // Half the rows go after the ANALYZE: the histogram still starts at key 1, and a split
    // read from it would leave the first part empty.
    raw.batch_execute(&format!(
        "DELETE FROM big WHERE id <= {};
         DO $$BEGIN IF current_setting('server_version_num')::int >= 150000 THEN PERFORM pg_stat_force_next_flush(); END IF; END$$;",
        ROWS / 2
    ))
    .await
    .unwrap();
    raw.batch_execute("SELECT 1").await.unwrap();
    wait_until(
        "the deletes in the statistics",
        Duration::from_secs(10),
        || async {
            scalar_i64(
                &raw,
                "SELECT n_mod_since_analyze FROM pg_stat_user_tables WHERE relname = 'big'",
            )
            .await
                >= ROWS / 2
        },
    )
    .await;
    let parts = add_w_over_three_workers(&db, &raw).await;
    assert!(parts.len() >= 2, "{parts:?}");
    assert!(parts.iter().all(|(_, rows)| *rows > 0), "{parts:?}");
    assert_eq!(parts.iter().map(|p| p.1).sum::<i64>(), ROWS / 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn random_inserts_updates_and_deletes_during_the_backfill_end_equal_to_the_reference() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let db = TestDb::new().await;
    let raw = big_table(&db).await;
    let m = Migrations::new(&[("0001_w.yaml", ADD_W)]);
    let stop = Arc::new(AtomicBool::new(false));
    let writers = random_writers(&db, 3, &stop, None);
    let file = m.path().join("0001_w.yaml");
    let mut args = vec!["start", file.to_str().unwrap()];
    args.extend(SMALL_BATCHES);
    run_ok(&db, &m.path(), &args).await;
    stop.store(true, Ordering::Relaxed);
    let mut writes = 0;
    for w in writers {
        writes += w.await.unwrap();
    }
    run_ok(&db, &m.path(), &["complete"]).await;
    eprintln!("{writes} random writes during the backfill");
    assert!(writes > 300, "the writers barely ran: {writes}");
    assert_eq!(unfilled(&raw).await, 0);
}

/// `method: copy` killed at random points of its start (copy, index builds, catch-up) while
/// writers insert, update and delete; the same start again, then complete: the table that
/// replaced the old one holds exactly the old table's final rows, each with its new column.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_a_table_copy_under_writes_then_rerun_and_complete_equal_the_table() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    let db = TestDb::new().await;
    let raw = big_table(&db).await;
    let m = Migrations::new(&[(
        "0001_w.yaml",
        &ADD_W.replace("method: in_place", "method: copy"),
    )]);
    let stop = Arc::new(AtomicBool::new(false));
    let writers = random_writers(&db, 2, &stop, Some(Duration::from_millis(1)));
    // 50 to 650 ms into each run: the copy, and in later runs what follows it.
    start_killed_three_times_then_whole(&db, &raw, &m, "0001_w.yaml", 600).await;
    // Writes through the triggers while the migration is open, too.
    stop_writers(stop, writers).await;
    raw.batch_execute("CREATE TABLE reference AS SELECT id, v FROM big")
        .await
        .unwrap();
    run_ok(&db, &m.path(), &["complete"]).await;
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM big b FULL JOIN reference r USING (id)
             WHERE b.id IS NULL OR r.id IS NULL OR b.v IS DISTINCT FROM r.v OR b.w IS DISTINCT FROM r.v + 1"
        )
        .await,
        0
    );
    assert!(scalar_i64(&raw, "SELECT count(*) FROM big").await > ROWS / 2);
}

/// A table `t` of `rows` rows whose index a_slow takes about a millisecond per row to
/// build (b_quick and the primary key take none), and a `method: copy` migration of it.
async fn slow_index_table(db: &TestDb, rows: i64) -> (tokio_postgres::Client, Migrations) {
    let raw = db.client().await;
    raw.batch_execute(&format!(
        "CREATE TABLE t (id bigint PRIMARY KEY, v int NOT NULL);
         INSERT INTO t SELECT g, g % 100 FROM generate_series(1, {rows}) g;
         CREATE FUNCTION slow(x int) RETURNS int IMMUTABLE LANGUAGE plpgsql
           AS $$ BEGIN PERFORM pg_sleep(0.001); RETURN x; END $$;
         CREATE INDEX a_slow ON t (slow(v));
         CREATE INDEX b_quick ON t (v);
         ANALYZE t;"
    ))
    .await
    .unwrap();
    let m = Migrations::new(&[(
        "0001_w.yaml",
        "operations:\n  - add_column:\n      table: t\n      up: v + 1\n      method: copy\n      column:\n        name: w\n        type: int\n        nullable: true\n",
    )]);
    (raw, m)
}

#[tokio::test(flavor = "multi_thread")]
async fn with_index_builds_1_a_copys_indexes_build_one_after_the_other() {
    let db = TestDb::new().await;
    let (raw, m) = slow_index_table(&db, 1000).await;
    let file = m.path().join("0001_w.yaml");
    run_ok(
        &db,
        &m.path(),
        &["start", file.to_str().unwrap(), "--index-builds", "1"],
    )
    .await;
    // Finished in plan order (a_slow, b_quick, the key): two at once, b_quick would finish
    // while a_slow still builds.
    let finished: Vec<String> = raw
        .query(
            "SELECT description FROM pgshift.steps WHERE description LIKE 'index %' ORDER BY finished_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0).split(' ').nth(1).unwrap().to_owned())
        .collect();
    assert_eq!(finished, ["a_slow", "b_quick", "t_pkey"]);
}

/// The copy's indexes are built at once, each journaled on its own: killed while a slow
/// build runs and after the quick one committed, the rerun builds only the slow one.
#[tokio::test(flavor = "multi_thread")]
async fn a_copys_indexes_build_at_once_and_a_kill_between_them_rebuilds_only_the_unfinished() {
    let db = TestDb::new().await;
    let (raw, m) = slow_index_table(&db, 3000).await;
    let file = m.path().join("0001_w.yaml");
    let args = ["start", file.to_str().unwrap()];
    let done = |what: &'static str| {
        let raw = &raw;
        async move {
            scalar_i64(
                raw,
                &format!("SELECT count(*) FROM pgshift.steps WHERE status = 'done' AND description LIKE 'index {what} %'"),
            )
            .await
        }
    };
    let mut child = pgshift(&db.url, &m.path(), &args).spawn().unwrap();
    // a_slow comes first: built one after the other, b_quick would wait for it.
    wait_until("b_quick built", Duration::from_secs(60), || async {
        raw.query_one("SELECT to_regclass('pgshift.steps') IS NOT NULL", &[])
            .await
            .unwrap()
            .get::<_, bool>(0)
            && done("b_quick").await == 1
    })
    .await;
    assert_eq!(done("a_slow").await, 0, "a_slow was built first");
    child.start_kill().unwrap();
    let _ = child.wait().await;
    wait_for_pgshift_sessions_to_end(&raw).await;
    assert_eq!(done("a_slow").await, 0);

    let quick_step = scalar_i64(
        &raw,
        "SELECT step::bigint FROM pgshift.steps WHERE description LIKE 'index b_quick %'",
    )
    .await;
    let r = run_ok(&db, &m.path(), &args).await;
    assert!(r.stderr.contains("(index a_slow built on"), "{}", r.all());
    assert!(!r.stderr.contains("(index b_quick built on"), "{}", r.all());
    assert!(
        r.stderr.contains(&format!(
            "step {quick_step}: skipped, done in an earlier run"
        )),
        "{}",
        r.all()
    );
    run_ok(&db, &m.path(), &["complete"]).await;
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM pg_indexes WHERE tablename = 't' AND indexname IN ('a_slow', 'b_quick', 't_pkey')"
        )
        .await,
        3
    );
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM t WHERE w IS DISTINCT FROM v + 1"
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_and_resume_from_a_second_process_and_status_shows_it() {
    let db = TestDb::new().await;
    let raw = big_table(&db).await;
    let m = Migrations::new(&[("0001_w.yaml", ADD_W)]);
    let file = m.path().join("0001_w.yaml");
    let mut args = vec!["start", file.to_str().unwrap()];
    args.extend(ONE_SLOW_WORKER);
    args.extend(SMALL_BATCHES);
    let runner = pgshift(&db.url, &m.path(), &args).spawn().unwrap();
    wait_until("the backfill to start", Duration::from_secs(60), || async {
        rows_done(&raw).await > 0
    })
    .await;

    let r = run_ok(&db, &m.path(), &["backfill", "pause"]).await;
    assert!(r.stdout.contains("1 backfill(s) now paused"), "{}", r.all());
    // Pause takes effect within one batch.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let paused_at = rows_done(&raw).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        rows_done(&raw).await,
        paused_at,
        "rows kept changing while paused"
    );
    assert!(paused_at < ROWS);
    let st = run_ok(&db, &m.path(), &["backfill", "status", "--output", "json"]).await;
    assert_eq!(st.stdout.trim().lines().count(), 1, "{}", st.stdout);
    let v: serde_json::Value = serde_json::from_str(st.stdout.trim()).unwrap();
    let b = &v["backfills"][0];
    assert_eq!(b["table"], "public.big");
    assert_eq!(b["state"], "paused");
    assert_eq!(b["rows_done"], paused_at);
    assert!(
        b["total_estimate"].as_i64().unwrap() >= ROWS * 9 / 10,
        "{b}"
    );
    assert!(
        b["throttle_reason"].as_str().unwrap().starts_with("paused"),
        "{b}"
    );
    assert!(b["rows_per_second"].as_f64().unwrap() > 0.0, "{b}");

    let r = run_ok(&db, &m.path(), &["backfill", "resume"]).await;
    assert!(
        r.stdout.contains("1 backfill(s) now running"),
        "{}",
        r.all()
    );
    let out = runner.wait_with_output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(unfilled(&raw).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttle_query_holds_the_backfill_and_says_why() {
    let db = TestDb::new().await;
    let raw = big_table(&db).await;
    raw.batch_execute("CREATE TABLE hold_backfill ()")
        .await
        .unwrap();
    let m = Migrations::new(&[("0001_w.yaml", ADD_W)]);
    let file = m.path().join("0001_w.yaml");
    let args = vec![
        "start",
        file.to_str().unwrap(),
        "--throttle-query",
        "SELECT to_regclass('hold_backfill') IS NOT NULL",
        "--backfill-workers",
        "1",
    ];
    let runner = pgshift(&db.url, &m.path(), &args).spawn().unwrap();
    wait_until("the throttle to show", Duration::from_secs(60), || async {
        raw.query_one("SELECT count(*) FROM pgshift.backfills WHERE throttle_reason LIKE 'the throttle query says so%'", &[])
            .await
            .map(|r| r.get::<_, i64>(0) == 1)
            .unwrap_or(false)
    })
    .await;
    assert_eq!(rows_done(&raw).await, 0);
    let st = run_ok(&db, &m.path(), &["backfill", "status"]).await;
    assert!(
        st.stdout.contains("throttled: the throttle query says so"),
        "{}",
        st.all()
    );
    raw.batch_execute("DROP TABLE hold_backfill").await.unwrap();
    let out = runner.wait_with_output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("throttled: the throttle query says so"));
    assert_eq!(rows_done(&raw).await, ROWS);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_stops_the_run_and_resume_from_another_process_finishes_it() {
    let db = TestDb::new().await;
    let raw = big_table(&db).await;
    let m = Migrations::new(&[("0001_w.yaml", ADD_W)]);
    let file = m.path().join("0001_w.yaml");
    let mut args = vec!["start", file.to_str().unwrap()];
    args.extend(ONE_SLOW_WORKER);
    args.extend(SMALL_BATCHES);
    let runner = pgshift(&db.url, &m.path(), &args).spawn().unwrap();
    wait_until("the backfill to start", Duration::from_secs(60), || async {
        rows_done(&raw).await > 0
    })
    .await;
    run_ok(&db, &m.path(), &["backfill", "cancel"]).await;
    let out = runner.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cancelled"), "{stderr}");
    assert!(rows_done(&raw).await < ROWS);

    let r = run_ok(&db, &m.path(), &["backfill", "resume"]).await;
    assert!(
        r.stdout
            .contains("continued and finished the start of 0001_w"),
        "{}",
        r.all()
    );
    assert_eq!(migration_status(&raw, "0001_w").await, "started");
    assert_eq!(rows_done(&raw).await, ROWS);
    assert_eq!(unfilled(&raw).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_update_operation_changes_data_in_batches_beside_a_column_backfill() {
    let db = TestDb::new().await;
    let raw = big_table(&db).await;
    let m = Migrations::new(&[(
        "0001_data.yaml",
        "operations:\n  - add_column:\n      table: big\n      up: v + 1\n      method: in_place\n      column:\n        name: w\n        type: int\n        nullable: true\n  - update:\n      table: big\n      set:\n        v: v + 1000\n      where: v < 500\n",
    )]);
    let file = m.path().join("0001_data.yaml");
    // One worker per pass: two passes, two parts.
    let mut args = vec!["start", file.to_str().unwrap(), "--backfill-workers", "1"];
    args.extend(SMALL_BATCHES);
    run_ok(&db, &m.path(), &args).await;
    run_ok(&db, &m.path(), &["complete"]).await;
    // The update touched exactly the rows its `where` selects: half of them.
    assert_eq!(
        scalar_i64(&raw, "SELECT count(*) FROM big WHERE v >= 1000").await,
        ROWS / 2
    );
    assert_eq!(
        scalar_i64(&raw, "SELECT count(*) FROM big WHERE v < 500").await,
        0
    );
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM pgshift.backfills WHERE state = 'done'"
        )
        .await,
        2,
        "the column backfill and the update are two separate, resumable passes"
    );
    assert_eq!(
        scalar_i64(&raw, "SELECT sum(rows_done)::bigint FROM pgshift.backfills").await,
        ROWS + ROWS / 2
    );
}

/// Against a real streaming replica: while its replay is paused and it falls behind the
/// limit, the backfill holds and says why; when the replica catches up, it goes on by itself.
#[tokio::test(flavor = "multi_thread")]
async fn replica_lag_over_the_limit_holds_the_backfill_until_the_replica_catches_up() {
    let db = TestDb::new().await;
    let raw = big_table(&db).await;
    let replica = pgshift_testkit::start_replica().expect("start a replica");
    let standby = pgshift_testkit::connect_url(&replica.url(&db.name)).await;
    wait_until(
        "the replica to have the table",
        Duration::from_secs(60),
        || async {
            standby
                .query_one("SELECT count(*) FROM big", &[])
                .await
                .map(|r| r.get::<_, i64>(0) == ROWS)
                .unwrap_or(false)
        },
    )
    .await;
    standby
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    // Some WAL the paused replica will not replay: it is now behind by more than the limit.
    raw.batch_execute(
        "CREATE TABLE filler AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 20000) g",
    )
    .await
    .unwrap();
    let m = Migrations::new(&[("0001_w.yaml", ADD_W)]);
    let file = m.path().join("0001_w.yaml");
    let args = vec![
        "start",
        file.to_str().unwrap(),
        "--max-replica-lag-bytes",
        "1000000",
    ];
    let runner = pgshift(&db.url, &m.path(), &args).spawn().unwrap();
    wait_until("the lag throttle to show", Duration::from_secs(60), || async {
        // Every part of it, however many workers it has.
        raw.query_one("SELECT count(*) FILTER (WHERE throttle_reason NOT LIKE 'a replica''s replay is % bytes behind (limit 1000000)' OR throttle_reason IS NULL) - (count(*) = 0)::int FROM pgshift.backfills", &[])
            .await
            .map(|r| r.get::<_, i64>(0) == 0)
            .unwrap_or(false)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        rows_done(&raw).await,
        0,
        "no batch may run while the replica is behind"
    );
    standby
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    let out = runner.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("throttled: a replica's replay is"),
        "{stderr}"
    );
    assert_eq!(rows_done(&raw).await, ROWS);
}

/// On a terminal the progress is a bar that redraws in place (rows, rate, ETA); piped, it is
/// lines. `script` (util-linux, in every Debian) gives pgshift a pseudo-terminal.
#[tokio::test(flavor = "multi_thread")]
async fn on_a_terminal_progress_is_a_bar_with_rows_rate_and_eta() {
    let db = TestDb::new().await;
    big_table(&db).await;
    let m = Migrations::new(&[("0001_w.yaml", ADD_W)]);
    let file = m.path().join("0001_w.yaml");
    let command = format!(
        "{} --dir {} start {} --backfill-delay 20ms",
        env!("CARGO_BIN_EXE_pgshift"),
        m.path().display(),
        file.display()
    );
    let out = tokio::process::Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env("DATABASE_URL", &db.url)
        .env("COLUMNS", "160")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run script (util-linux)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // Redrawn in place: carriage returns or cursor moves, a bar, the counts and the rate.
    assert!(text.contains("backfill big ["), "{text}");
    // The total is the planner's estimate (reltuples), near 200,000 but not always on it.
    assert!(text.contains("/~200,") || text.contains("/~199,"), "{text}");
    assert!(text.contains("rows/s"), "{text}");
    assert!(text.contains("ETA"), "{text}");
    assert!(
        text.contains("\u{1b}["),
        "no terminal control sequences: {text}"
    );
    // Not the line format of a pipe.
    assert!(!text.contains("backfill big: "), "{text}");
    // And piped, the same run prints lines.
    run_ok(&db, &m.path(), &["rollback"]).await;
    let piped = run_ok(&db, &m.path(), &["start", file.to_str().unwrap()]).await;
    assert!(
        piped.stderr.contains("backfill big: ") && piped.stderr.contains(" rows/s"),
        "{}",
        piped.all()
    );
    assert!(!piped.stderr.contains('\u{1b}'), "{}", piped.all());
}

/// A batch slower than its time target allows (a loaded server, an expensive `up`) is cut
/// short by its statement time cap and runs again smaller, so no batch holds its row locks
/// for long; the data ends right.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_over_its_time_cap_runs_again_smaller() {
    let db = TestDb::new().await;
    let raw = db.client().await;
    raw.batch_execute(
        "CREATE TABLE slow (id bigint PRIMARY KEY, v int NOT NULL);
         INSERT INTO slow SELECT g, g FROM generate_series(1, 300) g;
         ANALYZE slow;",
    )
    .await
    .unwrap();
    // A millisecond or more a row: the first batch (all 300 rows) would take a second.
    let m = Migrations::new(&[(
        "0001_w.yaml",
        "operations:\n  - add_column:\n      table: slow\n      up: (SELECT v + 1 FROM pg_sleep(0.001 + v * 0))\n      method: in_place\n      column:\n        name: w\n        type: int\n        nullable: true\n",
    )]);
    let file = m.path().join("0001_w.yaml");
    let t0 = std::time::Instant::now();
    run_ok(
        &db,
        &m.path(),
        &[
            "start",
            file.to_str().unwrap(),
            "--backfill-batch-time",
            "100ms",
        ],
    )
    .await;
    eprintln!("start took {:?}", t0.elapsed());
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT count(*) FROM slow WHERE w IS DISTINCT FROM v + 1"
        )
        .await,
        0
    );
    // It settled on batches that fit the cap, well under the first one.
    let size = scalar_i64(
        &raw,
        "SELECT max(batch_size)::bigint FROM pgshift.backfills",
    )
    .await;
    assert!(size < 300, "batch size {size}");
}

/// `alter_primary_key` by copies of the key's table and of the table that references it,
/// killed at random points of its start (the two copies, their index builds, the catch-ups)
/// while writers add orders with their items in one transaction, change both and delete
/// orders (their items going by the cascade); the same start again, then complete: both
/// tables hold exactly their final rows, the keys are bigint, and the foreign key between
/// them is valid and still cascades.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_a_key_copy_of_two_tables_under_writes_then_rerun_and_complete() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    const ORDERS: i64 = 20_000;
    let db = TestDb::new().await;
    let raw = db.client().await;
    raw.batch_execute(&format!(
        "CREATE TABLE orders (id serial PRIMARY KEY, v int NOT NULL);
         CREATE TABLE items (id bigserial PRIMARY KEY,
             order_id int NOT NULL REFERENCES orders ON DELETE CASCADE, q int NOT NULL);
         INSERT INTO orders (v) SELECT g FROM generate_series(1, {ORDERS}) g;
         INSERT INTO items (order_id, q) SELECT 1 + g % {ORDERS}, g FROM generate_series(1, 2 * {ORDERS}) g;
         CREATE INDEX items_order_id ON items (order_id);
         ANALYZE orders, items;"
    ))
    .await
    .unwrap();
    let m = Migrations::new(&[(
        "0001_key.yaml",
        "operations:\n  - alter_primary_key:\n      table: orders\n      type: bigint\n",
    )]);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2i64)
        .map(|w| {
            let (db, stop) = (db.clone(), stop.clone());
            tokio::spawn(async move {
                let c = db.client().await;
                let mut n = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    let id = ((n * 7919 + w * 104_729) % ORDERS + 1) as i32;
                    let sql = match n % 4 {
                        0 => "BEGIN; WITH o AS (INSERT INTO orders (v) VALUES (1) RETURNING id)
                              INSERT INTO items (order_id, q) SELECT id, 1 FROM o; COMMIT"
                            .to_owned(),
                        1 => format!("UPDATE items SET q = q + 1 WHERE order_id = {id}"),
                        2 => format!("UPDATE orders SET v = v + 1 WHERE id = {id}"),
                        _ => format!("DELETE FROM orders WHERE id = {}", id + 1),
                    };
                    if let Err(e) = c.batch_execute(&sql).await {
                        // Two writers can deadlock with each other (a cascade against an
                        // update of the same items); never with pgshift.
                        assert_eq!(
                            e.code(),
                            Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED),
                            "writer: {e:?}"
                        );
                        let _ = c.batch_execute("ROLLBACK").await;
                    }
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                n
            })
        })
        .collect();
    start_killed_three_times_then_whole(&db, &raw, &m, "0001_key.yaml", 800).await;
    stop_writers(stop, writers).await;
    raw.batch_execute(
        "CREATE TABLE ref_orders AS SELECT id, v FROM orders;
         CREATE TABLE ref_items AS SELECT id, order_id, q FROM items;",
    )
    .await
    .unwrap();
    run_ok(&db, &m.path(), &["complete"]).await;
    assert_eq!(
        scalar_i64(
            &raw,
            "SELECT (SELECT count(*) FROM orders o FULL JOIN ref_orders r USING (id)
                      WHERE o.id IS NULL OR r.id IS NULL OR o.v IS DISTINCT FROM r.v)
                  + (SELECT count(*) FROM items i FULL JOIN ref_items r USING (id)
                      WHERE i.id IS NULL OR r.id IS NULL OR i.order_id IS DISTINCT FROM r.order_id
                         OR i.q IS DISTINCT FROM r.q)"
        )
        .await,
        0
    );
    assert_eq!(
        common::scalar_text(
            &raw,
            "SELECT format_type(o.atttypid, NULL) || ',' || format_type(i.atttypid, NULL) || ',' || c.convalidated
               FROM pg_attribute o, pg_attribute i, pg_constraint c
              WHERE o.attrelid = 'orders'::regclass AND o.attname = 'id'
                AND i.attrelid = 'items'::regclass AND i.attname = 'order_id'
                AND c.conrelid = 'items'::regclass AND c.contype = 'f'"
        )
        .await
        .as_deref(),
        Some("bigint,bigint,true")
    );
    let some: i64 = scalar_i64(&raw, "SELECT min(order_id) FROM items").await;
    raw.batch_execute(&format!("DELETE FROM orders WHERE id = {some}"))
        .await
        .unwrap();
    assert_eq!(
        scalar_i64(
            &raw,
            &format!("SELECT count(*) FROM items WHERE order_id = {some}")
        )
        .await,
        0
    );
    assert!(scalar_i64(&raw, "SELECT count(*) FROM orders").await > ORDERS / 2);
}

/// `start` of `file` (small batches) killed three times, 50 ms to `spread` + 50 ms into
/// each run (each pgshift session gone before the next), then run to its end.
async fn start_killed_three_times_then_whole(
    db: &TestDb,
    raw: &tokio_postgres::Client,
    m: &Migrations,
    file: &str,
    spread: u64,
) {
    let file = m.path().join(file);
    let file = file.to_str().unwrap();
    let mut args = vec!["start", file];
    args.extend(SMALL_BATCHES);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    for trial in 0..3u64 {
        let mut child = pgshift(&db.url, &m.path(), &args).spawn().unwrap();
        let after = 50 + (seed / (trial + 1)) % spread;
        tokio::time::sleep(Duration::from_millis(after)).await;
        let _ = child.start_kill();
        let _ = child.wait().await;
        wait_for_pgshift_sessions_to_end(raw).await;
    }
    run_ok(db, &m.path(), &args).await;
}

/// Lets the writers run 300 ms more (through the open migration's triggers), stops them
/// and checks that they wrote.
async fn stop_writers(
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    writers: Vec<tokio::task::JoinHandle<i64>>,
) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut writes = 0;
    for w in writers {
        writes += w.await.unwrap();
    }
    assert!(writes > 100, "the writers barely ran: {writes}");
}
