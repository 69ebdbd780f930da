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

mod concurrent;
mod transaction;

pub use transaction::backoff_delay;

use crate::conn::ConnectionSpec;
use crate::error::{Error, Result};
pub use crate::event::{abbreviate, BlockerReport, ExecEvent};
use crate::sql::StatementKind;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::Client;

/// What a transaction is for, and so the policy it runs under ([`Executor::transaction`]).
/// Schema changes run under the statement kinds' own timeouts ([`Executor::run_transaction`]),
/// and statements that cannot run in a transaction alone ([`Executor::run_alone`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// A batch of rows (a backfill's, a catch-up's): `lock_timeout` and the DML
    /// `statement_timeout`, or the batch's own cap; the sessions that block it are named.
    Batch {
        statement_timeout: Option<Duration>,
        /// Settings of the batch's own (`SET LOCAL name = 'value'`), sent with BEGIN:
        /// names pgshift writes, never a file's.
        settings: &'static [(&'static str, &'static str)],
    },
    /// pgshift's own bookkeeping (records, the journal, the audit log): `lock_timeout` and
    /// the DDL `statement_timeout`.
    Bookkeeping,
    /// A swap: schema changes under strong locks, read and written in one transaction
    /// (`lock_timeout` and the DDL `statement_timeout`); the sessions that block it are
    /// named.
    Swap,
}

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
    pub workers: Workers,
}

/// How many workers a backfill (or a table copy) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Workers {
    /// Sized when the backfill first starts, from the table's size and what the server
    /// allows (see `backfill::workers`).
    Auto,
    /// This many, whatever the table.
    Fixed(u32),
}

impl std::str::FromStr for Workers {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(Workers::Auto);
        }
        match s.parse::<u32>() {
            Ok(n) if (1..=64).contains(&n) => Ok(Workers::Fixed(n)),
            _ => Err(format!(
                "{s:?} is not a number of workers: give `auto` or a number from 1 to 64"
            )),
        }
    }
}

impl std::fmt::Display for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Workers::Auto => f.write_str("auto"),
            Workers::Fixed(n) => write!(f, "{n}"),
        }
    }
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
            workers: Workers::Auto,
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
        if let Workers::Fixed(n) = self.backfill.workers {
            if !(1..=64).contains(&n) {
                return Err(Error::usage(
                    format!("{n} backfill workers: there must be between 1 and 64"),
                    Some("give --backfill-workers `auto` or a number such as 2 (one per spare CPU core of the server)"),
                ));
            }
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
    /// Watches for sessions that block the main connection; shared by the executors that
    /// [`Executor::another`] makes (its queries are short and pipelined).
    monitor: Arc<Client>,
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
        let monitor = Arc::new(spec.connect().await?);
        Executor::connect_with_monitor(spec, settings, observer, monitor).await
    }

    async fn connect_with_monitor(
        spec: &ConnectionSpec,
        settings: ExecSettings,
        observer: Arc<dyn Observer>,
        monitor: Arc<Client>,
    ) -> Result<Executor> {
        settings.validate()?;
        let (client, notices) = spec.connect_with_notices().await?;
        let row = client
            .query_one(
                "SELECT pg_backend_pid(), current_setting('server_version_num')::int",
                &[],
            )
            .await?;
        let backend_pid: i32 = row.try_get(0)?;
        let server_version: i32 = row.try_get(1)?;
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

    /// A second executor on the same database with the same settings and the main
    /// connection's search_path (the plans' statements name tables as it resolves them),
    /// for steps that run at the same time. It shares this executor's monitor connection.
    pub async fn another(&self) -> Result<Executor> {
        let other = Executor::connect_with_monitor(
            &self.spec,
            self.settings.clone(),
            self.observer.clone(),
            self.monitor.clone(),
        )
        .await?;
        let path: String = self
            .client
            .query_one("SELECT current_setting('search_path')", &[])
            .await?
            .try_get(0)?;
        other
            .client
            .query_one("SELECT set_config('search_path', $1, false)", &[&path])
            .await?;
        Ok(other)
    }

    /// What the executor's connections connect to.
    pub fn spec(&self) -> &ConnectionSpec {
        &self.spec
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
