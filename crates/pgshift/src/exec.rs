//! The lock-safe executor: the only code that changes the database's schema.
//!
//! A DDL statement that waits for a lock makes every later query on its table queue behind
//! it, reads included. So every statement runs with a short `lock_timeout`; when the lock is
//! not granted in time the whole transaction rolls back (releasing every lock it held), waits
//! a capped, jittered, growing delay, and tries again, until a cap on the total wait. While a
//! statement waits, a second connection asks `pg_blocking_pids` who holds it up and reports
//! them. No statement ever runs without a lock timeout.
//!
//! Statements that PostgreSQL refuses inside a transaction (CONCURRENTLY, VACUUM) run on
//! their own. A concurrent index build that fails leaves an INVALID index behind; the
//! executor finds it, drops it (concurrently) and builds again.

use crate::conn::ConnectionSpec;
use crate::error::{Error, Result};
pub use crate::event::{abbreviate, BlockerReport, ExecEvent};
use crate::quote;
use crate::sql::{ConcurrentIndex, StatementKind};
use rand::Rng;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

/// How the executor waits and retries.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExecSettings {
    /// lock_timeout for DDL and data statements.
    #[serde(with = "millis")]
    pub lock_timeout: Duration,
    /// lock_timeout for statements that run outside a transaction. They take weaker locks
    /// (CREATE INDEX CONCURRENTLY takes SHARE UPDATE EXCLUSIVE, which queues no reader or
    /// writer), but they also wait for older transactions to end, so they get longer.
    #[serde(with = "millis")]
    pub concurrent_lock_timeout: Duration,
    /// Cap on the total time spent trying to get a step's locks, retries included.
    #[serde(with = "millis")]
    pub max_lock_wait: Duration,
    #[serde(with = "millis")]
    pub backoff_initial: Duration,
    #[serde(with = "millis")]
    pub backoff_max: Duration,
    /// statement_timeout per kind of statement; zero means none.
    #[serde(with = "millis")]
    pub ddl_statement_timeout: Duration,
    #[serde(with = "millis")]
    pub dml_statement_timeout: Duration,
    #[serde(with = "millis")]
    pub concurrent_statement_timeout: Duration,
    pub backfill: BackfillSettings,
    /// How many of the steps that may run at the same time (a table copy's index builds)
    /// do, at most.
    pub index_builds: u32,
}

/// How backfills pace themselves.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackfillSettings {
    /// Batches are sized so that each takes about this long.
    #[serde(with = "millis")]
    pub batch_time: Duration,
    pub first_batch_rows: i64,
    pub min_batch_rows: i64,
    pub max_batch_rows: i64,
    /// A pause after every batch.
    #[serde(with = "millis")]
    pub delay: Duration,
    /// Throttle while a replica's replay is this many bytes behind (pg_stat_replication).
    pub max_replica_lag_bytes: Option<i64>,
    /// Throttle while this query returns true.
    pub throttle_query: Option<String>,
    /// VACUUM the table after this many updated rows, so dead rows are reused instead of
    /// the table doubling in size.
    pub vacuum_every_rows: i64,
    /// Parallel workers, each over its own key (or block) range, each on its own connection.
    /// Decided when a backfill first starts; a resumed backfill keeps its number.
    pub workers: u32,
}

impl Default for BackfillSettings {
    fn default() -> Self {
        BackfillSettings {
            batch_time: Duration::from_millis(150),
            first_batch_rows: 1000,
            min_batch_rows: 100,
            max_batch_rows: 50_000,
            delay: Duration::ZERO,
            max_replica_lag_bytes: None,
            throttle_query: None,
            vacuum_every_rows: 100_000,
            workers: 1,
        }
    }
}

impl Default for ExecSettings {
    fn default() -> Self {
        ExecSettings {
            lock_timeout: Duration::from_millis(200),
            concurrent_lock_timeout: Duration::from_secs(60),
            max_lock_wait: Duration::from_secs(60),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            ddl_statement_timeout: Duration::from_secs(300),
            dml_statement_timeout: Duration::ZERO,
            concurrent_statement_timeout: Duration::ZERO,
            backfill: BackfillSettings::default(),
            index_builds: 2,
        }
    }
}

impl ExecSettings {
    fn timeouts(&self, kind: StatementKind) -> (Duration, Duration) {
        match kind {
            StatementKind::Ddl => (self.lock_timeout, self.ddl_statement_timeout),
            StatementKind::Dml => (self.lock_timeout, self.dml_statement_timeout),
            StatementKind::Concurrent => (
                self.concurrent_lock_timeout,
                self.concurrent_statement_timeout,
            ),
        }
    }

    /// Refuses settings that would let a statement wait for a lock without limit.
    pub fn validate(&self) -> Result<()> {
        if self.lock_timeout.is_zero() || self.concurrent_lock_timeout.is_zero() {
            return Err(Error::usage(
                "a lock timeout of zero would let a statement queue every client behind it without limit",
                Some("give --lock-timeout and --concurrent-lock-timeout a positive duration such as 200ms"),
            ));
        }
        if !(1..=64).contains(&self.backfill.workers) {
            return Err(Error::usage(
                format!("{} backfill workers: there must be between 1 and 64", self.backfill.workers),
                Some("give --backfill-workers a number such as 2 (one per spare CPU core of the server)"),
            ));
        }
        Ok(())
    }
}

mod millis {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}

/// One statement for the executor.
#[derive(Debug, Clone)]
pub struct Step {
    pub sql: String,
    pub kind: StatementKind,
    /// Set for concurrent index statements: what to look for when a build fails or resumes.
    pub concurrent_index: Option<ConcurrentIndex>,
    /// Where the user wrote the statement (`path:line` of a `.sql` migration), named when it
    /// fails. Set only for the user's own statements: the server's notices and warnings on
    /// them are passed on, while pgshift's own (`DROP ... IF EXISTS` and the like) keep
    /// theirs to themselves.
    pub origin: Option<String>,
}

impl Step {
    pub fn ddl(sql: impl Into<String>) -> Step {
        Step {
            sql: sql.into(),
            kind: StatementKind::Ddl,
            concurrent_index: None,
            origin: None,
        }
    }
}

/// Receives executor and runner events (the CLI prints them).
pub trait Observer: Send + Sync {
    fn exec_event(&self, event: &ExecEvent);
}

/// An observer that drops everything.
pub struct Silent;

impl Observer for Silent {
    fn exec_event(&self, _: &ExecEvent) {}
}

/// Runs statements on one connection, lock-safely, watching for blockers from a second.
pub struct Executor {
    spec: ConnectionSpec,
    client: Client,
    notices: crate::conn::Notices,
    monitor: Client,
    backend_pid: i32,
    server_version: i32,
    settings: ExecSettings,
    observer: Arc<dyn Observer>,
}

impl Executor {
    /// Opens the main and the monitor connections.
    pub async fn connect(
        spec: &ConnectionSpec,
        settings: ExecSettings,
        observer: Arc<dyn Observer>,
    ) -> Result<Executor> {
        settings.validate()?;
        let (client, notices) = spec.connect_with_notices().await?;
        let monitor = spec.connect().await?;
        let row = client
            .query_one(
                "SELECT pg_backend_pid(), current_setting('server_version_num')::int",
                &[],
            )
            .await?;
        let backend_pid: i32 = row.get(0);
        let server_version: i32 = row.get(1);
        // If pgshift dies, the server notices within a second and rolls back what this
        // session was doing, instead of holding its locks until the statement ends.
        if server_version >= 140000 {
            client
                .batch_execute("SET client_connection_check_interval = '1s'")
                .await?;
        }
        Ok(Executor {
            spec: spec.clone(),
            client,
            notices,
            monitor,
            backend_pid,
            server_version,
            settings,
            observer,
        })
    }

    /// One more connection to the same database (a parallel backfill worker's), with the same
    /// dead-client check as the main one.
    pub async fn connect_another(&self) -> Result<Client> {
        let client = self.spec.connect().await?;
        if self.server_version >= 140000 {
            client
                .batch_execute("SET client_connection_check_interval = '1s'")
                .await?;
        }
        Ok(client)
    }

    /// A second executor on the same database with the same settings and the main
    /// connection's search_path (the plans' statements name tables as it resolves them),
    /// for steps that run at the same time.
    pub async fn another(&self) -> Result<Executor> {
        let other =
            Executor::connect(&self.spec, self.settings.clone(), self.observer.clone()).await?;
        let path: String = self
            .client
            .query_one("SELECT current_setting('search_path')", &[])
            .await?
            .get(0);
        other
            .client
            .query_one("SELECT set_config('search_path', $1, false)", &[&path])
            .await?;
        Ok(other)
    }

    /// `server_version_num` of the server, read at connect.
    pub fn server_version(&self) -> i32 {
        self.server_version
    }

    /// The main connection, for reads and for writes to pgshift's own state tables.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn settings(&self) -> &ExecSettings {
        &self.settings
    }

    pub fn observer(&self) -> &Arc<dyn Observer> {
        &self.observer
    }

    /// Runs `work` in one transaction on the main connection with the executor's policy for
    /// data batches: `lock_timeout` and the DML `statement_timeout` set locally, the whole
    /// transaction retried with capped, jittered backoff while a lock is not granted in time
    /// or a deadlock is detected (naming the blockers seen, up to `--max-lock-wait`), any other
    /// error rolled back and returned with `what`. `work` may run more than once: it must do
    /// everything from the start each time.
    pub async fn data_transaction<T, F>(&self, what: &str, mut work: F) -> Result<T>
    where
        F: for<'c> FnMut(
            &'c Client,
        ) -> std::pin::Pin<
            Box<
                dyn std::future::Future<Output = std::result::Result<T, tokio_postgres::Error>>
                    + Send
                    + 'c,
            >,
        >,
    {
        let started = Instant::now();
        let mut attempt = 0u32;
        let mut blockers_seen: Vec<BlockerReport> = Vec::new();
        let (lock_timeout, statement_timeout) = self.settings.timeouts(StatementKind::Dml);
        loop {
            attempt += 1;
            let outcome = async {
                self.client.batch_execute("BEGIN").await?;
                self.set_timeouts(lock_timeout, statement_timeout, true)
                    .await?;
                let value = work(&self.client).await?;
                self.client.batch_execute("COMMIT").await?;
                Ok::<T, tokio_postgres::Error>(value)
            };
            let outcome = self.watched(what, outcome, &mut blockers_seen).await;
            match outcome {
                Ok(value) => return Ok(value),
                Err(e) => {
                    let _ = self.client.batch_execute("ROLLBACK").await;
                    if is_lock_failure(&e) {
                        self.pause_before_retry(what, attempt, started, &blockers_seen)
                            .await?;
                        continue;
                    }
                    return Err(Error::Statement {
                        context: what.to_owned(),
                        source: e,
                    });
                }
            }
        }
    }

    /// Runs `steps` and then `finish` (pgshift's own bookkeeping, e.g. the journal entry that
    /// says these steps are done) in one transaction, retrying the whole transaction when a
    /// lock is not granted in time.
    pub async fn run_transaction(&self, steps: &[Step], finish: &[String]) -> Result<()> {
        if let Some(step) = steps.iter().find(|s| s.kind == StatementKind::Concurrent) {
            return Err(Error::usage(
                format!(
                    "cannot run inside a transaction: {}",
                    abbreviate(&step.sql, 120)
                ),
                None,
            ));
        }
        let started = Instant::now();
        let mut attempt = 0u32;
        let mut blockers_seen: Vec<BlockerReport> = Vec::new();
        loop {
            attempt += 1;
            let outcome = self
                .transaction_attempt(steps, finish, &mut blockers_seen)
                .await;
            match outcome {
                Ok(()) => return Ok(()),
                Err((failed_sql, origin, e)) => {
                    // The transaction is aborted (or gone, if COMMIT failed); roll it back so
                    // the connection is usable and every lock is released before we wait.
                    let _ = self.client.batch_execute("ROLLBACK").await;
                    if is_lock_failure(&e) {
                        self.pause_before_retry(&failed_sql, attempt, started, &blockers_seen)
                            .await?;
                        continue;
                    }
                    return Err(Error::Statement {
                        context: failed_context(origin.as_deref(), &failed_sql),
                        source: e,
                    });
                }
            }
        }
    }

    async fn transaction_attempt(
        &self,
        steps: &[Step],
        finish: &[String],
        blockers_seen: &mut Vec<BlockerReport>,
    ) -> std::result::Result<(), (String, Option<String>, tokio_postgres::Error)> {
        self.client
            .batch_execute("BEGIN")
            .await
            .map_err(|e| ("BEGIN".to_owned(), None, e))?;
        for step in steps {
            let (lock_timeout, statement_timeout) = self.settings.timeouts(step.kind);
            self.set_timeouts(lock_timeout, statement_timeout, true)
                .await
                .map_err(|e| (step.sql.clone(), step.origin.clone(), e))?;
            self.execute_watched(step, blockers_seen)
                .await
                .map_err(|e| (step.sql.clone(), step.origin.clone(), e))?;
        }
        // Bookkeeping writes touch only pgshift's tables, but they too get a lock timeout.
        self.set_timeouts(
            self.settings.lock_timeout,
            self.settings.ddl_statement_timeout,
            true,
        )
        .await
        .map_err(|e| ("SET".to_owned(), None, e))?;
        for sql in finish {
            self.client
                .batch_execute(sql)
                .await
                .map_err(|e| (sql.clone(), None, e))?;
        }
        self.client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| ("COMMIT".to_owned(), None, e))
    }

    /// Runs one statement outside a transaction block. `resuming` says that an earlier,
    /// interrupted run may already have done (part of) this statement's work.
    pub async fn run_alone(&self, step: &Step, resuming: bool) -> Result<()> {
        if resuming {
            if let Some(reason) = self.already_done(step).await? {
                self.observer.exec_event(&ExecEvent::AlreadyDone {
                    statement: abbreviate(&step.sql, 200),
                    reason,
                });
                return Ok(());
            }
        }
        self.drop_leftovers(step, None).await?;
        let started = Instant::now();
        let mut attempt = 0u32;
        let mut blockers_seen = Vec::new();
        loop {
            attempt += 1;
            let invalid_before = self.invalid_indexes_of_target(step).await?;
            let (lock_timeout, statement_timeout) = self.settings.timeouts(step.kind);
            let result = match self
                .set_timeouts(lock_timeout, statement_timeout, false)
                .await
            {
                Ok(()) => self.execute_watched(step, &mut blockers_seen).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e) => {
                    // A failed concurrent build leaves an INVALID index: drop it whatever the
                    // reason, so that the next attempt (now or in a later run) starts clean.
                    self.drop_leftovers(step, Some(&invalid_before)).await?;
                    if is_lock_failure(&e) {
                        self.pause_before_retry(&step.sql, attempt, started, &blockers_seen)
                            .await?;
                        continue;
                    }
                    return Err(Error::Statement {
                        context: failed_context(step.origin.as_deref(), &step.sql),
                        source: e,
                    });
                }
            }
        }
    }

    async fn set_timeouts(
        &self,
        lock_timeout: Duration,
        statement_timeout: Duration,
        local: bool,
    ) -> std::result::Result<(), tokio_postgres::Error> {
        debug_assert!(!lock_timeout.is_zero());
        let lock = format!("{}ms", lock_timeout.as_millis().max(1));
        let stmt = format!("{}ms", statement_timeout.as_millis());
        self.client
            .execute(
                "SELECT set_config('lock_timeout', $1, $3), set_config('statement_timeout', $2, $3)",
                &[&lock, &stmt, &local],
            )
            .await
            .map(|_| ())
    }

    /// Runs `sql` while the monitor connection watches for sessions that block it.
    async fn execute_watched(
        &self,
        step: &Step,
        blockers_seen: &mut Vec<BlockerReport>,
    ) -> std::result::Result<(), tokio_postgres::Error> {
        let sql = step.sql.as_str();
        // Notices of pgshift's own statements before this one are not the user's.
        self.notices.take();
        let result = self
            .watched(sql, self.client.batch_execute(sql), blockers_seen)
            .await;
        // The connection hands a notice over before the statement's own end.
        let notices = self.notices.take();
        if step.origin.is_some() {
            for n in notices {
                self.observer.exec_event(&ExecEvent::Notice {
                    statement: abbreviate(sql, 200),
                    severity: n.severity,
                    message: n.message,
                    hint: n.hint,
                });
            }
        }
        result
    }

    /// Awaits `work` while the monitor connection watches for sessions that block the main
    /// one: each is kept in `blockers_seen` (for the report if the wait gives up) and
    /// reported as it appears.
    async fn watched<T, E>(
        &self,
        what: &str,
        work: impl std::future::Future<Output = std::result::Result<T, E>>,
        blockers_seen: &mut Vec<BlockerReport>,
    ) -> std::result::Result<T, E> {
        let started = Instant::now();
        tokio::pin!(work);
        let mut next_poll = Duration::from_millis(30);
        let mut last_reported: Vec<i32> = Vec::new();
        loop {
            tokio::select! {
                result = &mut work => return result,
                _ = tokio::time::sleep(next_poll) => {
                    // Poll often at first (lock timeouts are short), then back off so that a
                    // long concurrent build is not watched at 10 Hz for hours.
                    next_poll = (next_poll * 3 / 2).min(Duration::from_secs(2));
                    let Ok(blockers) = self.blockers().await else { continue };
                    if blockers.is_empty() {
                        continue;
                    }
                    let pids: Vec<i32> = blockers.iter().map(|b| b.pid).collect();
                    for b in &blockers {
                        match blockers_seen.iter_mut().find(|s| s.pid == b.pid) {
                            Some(seen) => *seen = b.clone(),
                            None => blockers_seen.push(b.clone()),
                        }
                    }
                    if pids != last_reported {
                        last_reported = pids;
                        self.observer.exec_event(&ExecEvent::Waiting {
                            statement: abbreviate(what, 200),
                            waited_ms: started.elapsed().as_millis() as u64,
                            blockers,
                        });
                    }
                }
            }
        }
    }

    async fn blockers(&self) -> Result<Vec<BlockerReport>> {
        let rows = self
            .monitor
            .query(
                "SELECT a.pid, coalesce(a.state, ''), left(coalesce(a.query, ''), 500), \
                        extract(epoch FROM now() - a.xact_start)::float8, \
                        coalesce(a.usename::text, ''), coalesce(a.application_name, '') \
                 FROM pg_stat_activity a \
                 WHERE a.pid = ANY (pg_blocking_pids($1)) \
                 ORDER BY a.xact_start NULLS LAST, a.pid",
                &[&self.backend_pid],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| BlockerReport {
                pid: r.get(0),
                state: r.get(1),
                query: r.get(2),
                xact_age_s: r.get(3),
                user: r.get(4),
                application_name: r.get(5),
            })
            .collect())
    }

    async fn pause_before_retry(
        &self,
        sql: &str,
        attempt: u32,
        started: Instant,
        blockers_seen: &[BlockerReport],
    ) -> Result<()> {
        let delay = backoff_delay(
            attempt,
            self.settings.backoff_initial,
            self.settings.backoff_max,
            rand::thread_rng().gen_range(0.5..=1.0),
        );
        let waited = started.elapsed();
        if waited + delay > self.settings.max_lock_wait {
            return Err(Error::LockWaitExceeded {
                statement: sql.to_owned(),
                attempts: attempt,
                waited,
                blockers: blockers_seen.to_vec(),
            });
        }
        self.observer.exec_event(&ExecEvent::LockTimeout {
            statement: abbreviate(sql, 200),
            attempt,
            retry_in_ms: delay.as_millis() as u64,
            blockers: blockers_seen.to_vec(),
        });
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// For a resumed concurrent statement: has it already done its work?
    async fn already_done(&self, step: &Step) -> Result<Option<String>> {
        match &step.concurrent_index {
            Some(ConcurrentIndex::Create {
                schema,
                name: Some(name),
                ..
            }) => Ok(match self.index_validity(schema.as_deref(), name).await? {
                Some(true) => Some(format!("index {name} exists and is valid")),
                _ => None,
            }),
            Some(ConcurrentIndex::Drop { schema, name }) => {
                Ok(match self.index_validity(schema.as_deref(), name).await? {
                    None => Some(format!("index {name} is already gone")),
                    Some(_) => None,
                })
            }
            _ => Ok(None),
        }
    }

    /// `Some(valid)` if the index exists.
    async fn index_validity(&self, schema: Option<&str>, name: &str) -> Result<Option<bool>> {
        let row = self
            .client
            .query_opt(
                "SELECT i.indisvalid FROM pg_index i \
                 JOIN pg_class c ON c.oid = i.indexrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relname = $1 AND n.nspname = coalesce($2, current_schema())",
                &[&name, &schema],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// The INVALID indexes on the table a concurrent statement works on, as
    /// (schema, index name).
    async fn invalid_indexes_of_target(&self, step: &Step) -> Result<Vec<(String, String)>> {
        let (schema, table, index) = match &step.concurrent_index {
            Some(ConcurrentIndex::Create { schema, table, .. }) => (schema, Some(table), None),
            Some(ConcurrentIndex::Reindex {
                schema,
                table,
                index,
            }) => (schema, table.as_ref(), index.as_ref()),
            _ => return Ok(Vec::new()),
        };
        let rows = self
            .client
            .query(
                "SELECT n.nspname::text, c.relname::text FROM pg_index i \
                 JOIN pg_class c ON c.oid = i.indexrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_class t ON t.oid = i.indrelid \
                 WHERE NOT i.indisvalid \
                   AND n.nspname = coalesce($1, current_schema()) \
                   AND (t.relname = $2 OR i.indrelid = (SELECT x.indrelid FROM pg_index x \
                        JOIN pg_class xc ON xc.oid = x.indexrelid \
                        WHERE xc.relname = $3 AND xc.relnamespace = n.oid))",
                &[schema, &table, &index],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Drops what a failed concurrent statement left behind: for CREATE INDEX CONCURRENTLY
    /// the INVALID index of that name, for REINDEX CONCURRENTLY its INVALID
    /// `_ccnew`/`_ccold` copies. An unnamed build's leftover can only be told apart from
    /// other INVALID indexes (another session's build in progress) by comparing with the
    /// list taken before the attempt, so before the first attempt (`invalid_before` None)
    /// nothing is dropped for it.
    async fn drop_leftovers(
        &self,
        step: &Step,
        invalid_before: Option<&[(String, String)]>,
    ) -> Result<()> {
        let leftovers: Vec<(String, String)> = match &step.concurrent_index {
            Some(ConcurrentIndex::Create {
                schema,
                name: Some(name),
                ..
            }) => match self.index_validity(schema.as_deref(), name).await? {
                Some(false) => {
                    let schema = match schema {
                        Some(s) => s.clone(),
                        None => self.current_schema().await?,
                    };
                    vec![(schema, name.clone())]
                }
                _ => Vec::new(),
            },
            Some(ConcurrentIndex::Create { name: None, .. }) => match invalid_before {
                None => Vec::new(),
                Some(before) => self
                    .invalid_indexes_of_target(step)
                    .await?
                    .into_iter()
                    .filter(|ix| !before.contains(ix))
                    .collect(),
            },
            Some(ConcurrentIndex::Reindex { .. }) => self
                .invalid_indexes_of_target(step)
                .await?
                .into_iter()
                .filter(|(_, name)| is_reindex_copy(name))
                .collect(),
            _ => Vec::new(),
        };
        for (schema, name) in leftovers {
            let drop = Step {
                sql: format!(
                    "DROP INDEX CONCURRENTLY IF EXISTS {}",
                    quote::qualified(&schema, &name)
                ),
                kind: StatementKind::Concurrent,
                concurrent_index: None,
                origin: None,
            };
            Box::pin(self.run_alone(&drop, false)).await?;
            self.observer.exec_event(&ExecEvent::InvalidIndexDropped {
                index: format!("{schema}.{name}"),
            });
        }
        Ok(())
    }

    async fn current_schema(&self) -> Result<String> {
        let row = self
            .client
            .query_one("SELECT coalesce(current_schema()::text, 'public')", &[])
            .await?;
        Ok(row.get(0))
    }
}

/// REINDEX CONCURRENTLY names its temporary copies `<index>_ccnew[N]` and `<index>_ccold[N]`.
fn is_reindex_copy(name: &str) -> bool {
    ["_ccnew", "_ccold"].iter().any(|suffix| {
        name.rfind(suffix)
            .map(|i| name[i + suffix.len()..].chars().all(|c| c.is_ascii_digit()))
            .unwrap_or(false)
    })
}

/// A lock that was not granted in time (55P03) or a deadlock (40P01): the transaction rolled
/// back and can be tried again.
/// `path:line: statement failed: <the statement>` (the place when the user wrote it).
fn failed_context(origin: Option<&str>, sql: &str) -> String {
    match origin {
        Some(at) => format!("{at}: statement failed: {}", abbreviate(sql, 200)),
        None => format!("statement failed: {}", abbreviate(sql, 200)),
    }
}

fn is_lock_failure(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::LOCK_NOT_AVAILABLE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// Exponential backoff, capped, scaled by `jitter` (0.5 to 1.0) so that several waiting
/// clients do not retry in step.
pub fn backoff_delay(attempt: u32, initial: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = initial.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    exp.min(max).mul_f64(jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let ms = Duration::from_millis;
        assert_eq!(backoff_delay(1, ms(100), ms(5000), 1.0), ms(100));
        assert_eq!(backoff_delay(2, ms(100), ms(5000), 1.0), ms(200));
        assert_eq!(backoff_delay(4, ms(100), ms(5000), 1.0), ms(800));
        assert_eq!(backoff_delay(30, ms(100), ms(5000), 1.0), ms(5000));
        assert_eq!(backoff_delay(2, ms(100), ms(5000), 0.5), ms(100));
    }

    #[test]
    fn reindex_copies_are_recognised() {
        assert!(is_reindex_copy("orders_pkey_ccnew"));
        assert!(is_reindex_copy("orders_pkey_ccnew1"));
        assert!(is_reindex_copy("ix_ccold12"));
        assert!(!is_reindex_copy("ccnew_orders"));
        assert!(!is_reindex_copy("orders_ccnewx"));
    }

    #[test]
    fn zero_lock_timeout_is_refused() {
        let s = ExecSettings {
            lock_timeout: Duration::ZERO,
            ..ExecSettings::default()
        };
        assert_eq!(s.validate().unwrap_err().exit_code(), 2);
    }

    #[test]
    fn abbreviation_is_one_line() {
        assert_eq!(
            abbreviate("ALTER TABLE\n  t ADD x int", 100),
            "ALTER TABLE t ADD x int"
        );
        assert_eq!(abbreviate("abcdef", 3), "abc…");
    }
}
