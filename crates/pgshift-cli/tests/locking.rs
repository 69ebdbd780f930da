//! The lock-safe executor facing a real blocker, and two pgshift runs at once.

mod common;

use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs `SELECT count(*) FROM t` in a loop on its own connection and returns the slowest.
fn spawn_reader(db: &TestDb, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(Duration, usize)> {
    let db = db.clone();
    tokio::spawn(async move {
        let c = db.client().await;
        let mut worst = Duration::ZERO;
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            let t0 = Instant::now();
            c.query_one("SELECT count(*) FROM t", &[])
                .await
                .expect("reader query");
            worst = worst.max(t0.elapsed());
            n += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (worst, n)
    })
}

async fn setup_table(db: &TestDb) -> tokio_postgres::Client {
    let c = db.client().await;
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 1000);",
    )
    .await
    .unwrap();
    c
}

/// A transaction that has read `t` holds ACCESS SHARE until it ends, so ALTER TABLE waits.
async fn open_blocker(db: &TestDb) -> (tokio_postgres::Client, i32) {
    let blocker = db.client().await;
    let pid: i32 = blocker
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    blocker
        .batch_execute("BEGIN; SELECT count(*) FROM t;")
        .await
        .unwrap();
    (blocker, pid)
}

#[tokio::test(flavor = "multi_thread")]
async fn waits_behind_a_blocker_without_stalling_readers_and_succeeds_once_it_commits() {
    let db = TestDb::new().await;
    let c = setup_table(&db).await;
    let (blocker, blocker_pid) = open_blocker(&db).await;
    let stop = Arc::new(AtomicBool::new(false));
    let reader = spawn_reader(&db, stop.clone());
    let m = Migrations::new(&[("0001_alter.sql", "ALTER TABLE t ADD COLUMN x int;")]);

    let lock_timeout_ms = 100;
    let child = pgshift(
        &db.url,
        &m.path(),
        &[
            "migrate",
            "--lock-timeout",
            "100ms",
            "--max-lock-wait",
            "60s",
        ],
    )
    .spawn()
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !table_has_column(&c, "x").await,
        "the ALTER must not get past a blocker that still holds its lock"
    );
    blocker.batch_execute("COMMIT").await.unwrap();
    let out = child.wait_with_output().await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let (worst, reads) = reader.await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);

    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(table_has_column(&c, "x").await);
    assert!(
        stderr.contains(&format!("blocked by pid {blocker_pid}")),
        "pgshift must name the blocker: {stderr}"
    );
    assert!(stderr.contains("lock not granted in time"), "{stderr}");
    eprintln!(
        "readers: {reads} queries, slowest {} ms (lock_timeout {lock_timeout_ms} ms)",
        worst.as_millis()
    );
    assert!(reads > 20, "the reader barely ran: {reads}");
    // A reader queued behind the waiting ALTER waits at most until the ALTER's lock_timeout
    // fires; the slack covers scheduling on a loaded 2-core CI machine.
    assert!(
        worst < Duration::from_millis(lock_timeout_ms + 150),
        "a reader waited {} ms behind pgshift",
        worst.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stops_at_the_cap_with_exit_1_and_a_report_then_succeeds_later() {
    let db = TestDb::new().await;
    let c = setup_table(&db).await;
    let (blocker, blocker_pid) = open_blocker(&db).await;
    let m = Migrations::new(&[("0001_alter.sql", "ALTER TABLE t ADD COLUMN x int;")]);
    let t0 = Instant::now();
    let r = finish(&mut pgshift(
        &db.url,
        &m.path(),
        &[
            "migrate",
            "--lock-timeout",
            "100ms",
            "--max-lock-wait",
            "2s",
        ],
    ))
    .await;
    let took = t0.elapsed();
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("gave up after"), "{}", r.all());
    assert!(
        r.stderr
            .contains(&format!("pid {blocker_pid} (idle in transaction")),
        "{}",
        r.all()
    );
    assert!(
        r.stderr.contains("SELECT count(*) FROM t"),
        "the report shows the blocker's query: {}",
        r.all()
    );
    assert!(
        took < Duration::from_secs(10),
        "the cap was not honoured: {took:?}"
    );
    assert!(!table_has_column(&c, "x").await);
    let row = c
        .query_one(
            "SELECT status, last_error FROM pgshift.migrations WHERE name = '0001_alter'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "failed");
    assert!(row
        .get::<_, Option<String>>(1)
        .unwrap_or_default()
        .contains("gave up"));
    assert_eq!(
        scalar_i64(
            &c,
            "SELECT count(*) FROM pgshift.events WHERE event = 'migration_failed'"
        )
        .await,
        1
    );

    blocker.batch_execute("COMMIT").await.unwrap();
    let r = run(&db, &m.path(), &["migrate", "--lock-timeout", "100ms"]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(table_has_column(&c, "x").await);
    let status = migration_status(&c, "0001_alter").await;
    assert_eq!(status, "applied");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_runners_at_once_one_applies_the_other_exits_3() {
    let db = TestDb::new().await;
    let c = db.client().await;
    let m = Migrations::new(&[
        (
            "0001_a.sql",
            "CREATE TABLE a (id int);\nSELECT pg_sleep(3);\nINSERT INTO a VALUES (1);\n",
        ),
        ("0002_b.sql", "INSERT INTO a VALUES (2);\n"),
    ]);
    // Started together: exactly one gets the lock.
    let first = pgshift(&db.url, &m.path(), &["migrate"]).spawn().unwrap();
    let second = pgshift(&db.url, &m.path(), &["migrate"]).spawn().unwrap();
    let (a, b) = tokio::join!(first.wait_with_output(), second.wait_with_output());
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut codes = vec![a.status.code(), b.status.code()];
    codes.sort();
    let loser = if a.status.code() == Some(3) { &a } else { &b };
    let loser_err = String::from_utf8_lossy(&loser.stderr);
    assert_eq!(
        codes,
        vec![Some(0), Some(3)],
        "{}\n{}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    assert!(
        loser_err.contains("another pgshift is running") && loser_err.contains("pid "),
        "{loser_err}"
    );
    // Consistent state: each migration applied once, in order.
    assert_eq!(scalar_i64(&c, "SELECT count(*) FROM a").await, 2);
    assert_eq!(
        scalar_i64(
            &c,
            "SELECT count(*) FROM pgshift.migrations WHERE status = 'applied'"
        )
        .await,
        2
    );

    // A runner that arrives while another holds the lock exits 3 at once, naming it.
    m.write("0003_c.sql", "SELECT pg_sleep(2);\n");
    let holder = pgshift(&db.url, &m.path(), &["migrate"]).spawn().unwrap();
    wait_until(
        "the first runner to hold the lock",
        Duration::from_secs(20),
        || async {
            scalar_i64(
                &c,
                &format!("SELECT count(*) FROM pg_locks WHERE {OUR_ADVISORY_LOCKS}"),
            )
            .await
                > 0
        },
    )
    .await;
    let holder_pid = scalar_i64(
        &c,
        &format!("SELECT pid::bigint FROM pg_locks WHERE {OUR_ADVISORY_LOCKS} LIMIT 1"),
    )
    .await;
    let st = run(&db, &m.path(), &["status", "--output", "json"]).await;
    let v: serde_json::Value =
        serde_json::from_str(st.stdout.trim()).unwrap_or_else(|_| panic!("{}", st.all()));
    assert_eq!(
        v["runner"]["pid"],
        holder_pid,
        "status names the running pgshift: {}",
        st.all()
    );
    let t0 = Instant::now();
    let r = run(&db, &m.path(), &["migrate"]).await;
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "exit 3 must be immediate"
    );
    assert!(
        r.stderr.contains(&format!("pid {holder_pid}")),
        "{}",
        r.all()
    );
    let done = holder.wait_with_output().await.unwrap();
    assert_eq!(done.status.code(), Some(0));
}

/// pg_locks shows the whole cluster; other tests run in other databases at the same time.
const OUR_ADVISORY_LOCKS: &str = "locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";

async fn table_has_column(c: &tokio_postgres::Client, column: &str) -> bool {
    c.query_one(
        "SELECT count(*) > 0 FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = $1 AND NOT attisdropped",
        &[&column],
    )
    .await
    .unwrap()
    .get(0)
}
