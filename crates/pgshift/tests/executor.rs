//! The executor's policy for data transactions, at the library level: a transaction that
//! meets a held row lock is rolled back and retried with backoff until the lock is free,
//! and gives up at the cap naming the session that held it.

use pgshift::conn::ConnectionSpec;
use pgshift::exec::{ExecEvent, ExecSettings, Executor, Observer, Policy};
use pgshift_testkit::TestDb;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Keeps what the executor reports.
#[derive(Default)]
struct Seen(Mutex<Vec<ExecEvent>>);

impl Seen {
    /// How many retries after a lock timeout were reported.
    fn lock_timeouts(&self) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, ExecEvent::LockTimeout { .. }))
            .count()
    }
}

impl Observer for Seen {
    fn exec_event(&self, event: &ExecEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

async fn setup(max_lock_wait: Duration) -> (TestDb, Executor, Arc<Seen>, tokio_postgres::Client) {
    let db = TestDb::new().await;
    let holder = db.client().await;
    holder
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 0);")
        .await
        .unwrap();
    let seen = Arc::new(Seen::default());
    let settings = ExecSettings {
        lock_timeout: Duration::from_millis(50),
        max_lock_wait,
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
        ..ExecSettings::default()
    };
    let spec = ConnectionSpec::resolve(Some(&db.url)).unwrap();
    let exec = Executor::connect(&spec, settings, seen.clone())
        .await
        .unwrap();
    (db, exec, seen, holder)
}

/// A batch under the executor's own timeouts.
const BATCH: Policy = Policy::Batch {
    statement_timeout: None,
    settings: &[],
};

async fn bump(client: &tokio_postgres::Client) -> Result<u64, tokio_postgres::Error> {
    client
        .execute("UPDATE t SET v = v + 1 WHERE id = 1", &[])
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_row_lock_is_waited_out_by_retries_not_by_queueing() {
    let (_db, exec, seen, holder) = setup(Duration::from_secs(10)).await;
    holder
        .batch_execute("BEGIN; SELECT * FROM t WHERE id = 1 FOR UPDATE;")
        .await
        .unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(600)).await;
        holder.batch_execute("COMMIT").await.unwrap();
        holder
    });
    let t0 = Instant::now();
    let rows = exec.transaction(BATCH, "bump t", bump).await.unwrap();
    assert_eq!(rows, 1);
    assert!(
        t0.elapsed() >= Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );
    let holder = release.await.unwrap();
    let v: i32 = holder
        .query_one("SELECT v FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 1, "the work ran once, in the attempt that committed");
    let retries = seen.lock_timeouts();
    assert!(retries >= 2, "{retries} retries reported");
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_cap_it_gives_up_naming_the_blocker() {
    let (_db, exec, _seen, holder) = setup(Duration::from_millis(400)).await;
    holder
        .batch_execute("BEGIN; SELECT * FROM t WHERE id = 1 FOR UPDATE;")
        .await
        .unwrap();
    let pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let err = exec.transaction(BATCH, "bump t", bump).await.unwrap_err();
    match &err {
        pgshift::Error::LockWaitExceeded {
            attempts, blockers, ..
        } => {
            assert!(*attempts >= 2, "{err}");
            assert!(blockers.iter().any(|b| b.pid == pid), "{err}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(err.exit_code(), 1);
    holder.batch_execute("ROLLBACK").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn bookkeeping_waits_out_a_held_lock_by_retries_too() {
    let (_db, exec, seen, holder) = setup(Duration::from_secs(10)).await;
    holder
        .batch_execute("BEGIN; SELECT * FROM t WHERE id = 1 FOR UPDATE;")
        .await
        .unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        holder.batch_execute("COMMIT").await.unwrap();
    });
    let rows = exec
        .bookkeeping_query("UPDATE t SET v = v + 10 WHERE id = 1 RETURNING v", &[])
        .await
        .unwrap();
    release.await.unwrap();
    assert_eq!(rows[0].get::<_, i32>(0), 10);
    let retries = seen.lock_timeouts();
    assert!(retries >= 1, "{retries} retries reported");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_over_its_own_cap_is_cancelled_and_says_so() {
    let (_db, exec, _seen, _holder) = setup(Duration::from_secs(10)).await;
    let policy = Policy::Batch {
        statement_timeout: Some(Duration::from_millis(50)),
        settings: &[],
    };
    let err = exec
        .transaction(policy, "slow batch", |client| async move {
            client.batch_execute("SELECT pg_sleep(2)").await
        })
        .await
        .unwrap_err();
    match &err {
        pgshift::Error::Statement { source, .. } => assert_eq!(
            source.code(),
            Some(&tokio_postgres::error::SqlState::QUERY_CANCELED),
            "{err}"
        ),
        other => panic!("{other}"),
    }
    // The connection is usable again: the transaction was rolled back.
    let v: i32 = exec
        .client()
        .query_one("SELECT v FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 0);
}
