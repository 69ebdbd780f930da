//! The executor's policy for transactions: each statement under its lock_timeout and
//! statement_timeout, the whole transaction retried with capped, jittered backoff while a
//! lock is not granted in time, and the sessions that block it named.

use super::{Executor, Policy};
use crate::error::{Error, Result};
use crate::event::{abbreviate, BlockerReport, ExecEvent};
use crate::sql::Statement;
use crate::sql::StatementKind;
use rand::Rng;
use std::time::{Duration, Instant};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

impl Executor {
    /// Runs `work` in one transaction on the main connection under `policy`: the policy's
    /// `lock_timeout` and `statement_timeout` set locally (with BEGIN, in one round trip), the
    /// whole transaction retried with capped, jittered backoff while a lock is not granted in
    /// time or a deadlock is detected (naming the blockers seen, up to `--max-lock-wait`), any
    /// other error rolled back and returned with `what`. `work` may run more than once: it
    /// must do everything from the start each time.
    pub async fn transaction<'c, T, F, Fut>(
        &'c self,
        policy: Policy,
        what: &str,
        mut work: F,
    ) -> Result<T>
    where
        F: FnMut(&'c Client) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, tokio_postgres::Error>>,
    {
        let started = Instant::now();
        let mut attempt = 0u32;
        let mut blockers_seen: Vec<BlockerReport> = Vec::new();
        let (lock_timeout, statement_timeout) = self.policy_timeouts(policy);
        let mut begin = format!(
            "BEGIN; SET LOCAL lock_timeout = '{}ms'; SET LOCAL statement_timeout = '{}ms'",
            lock_timeout.as_millis().max(1),
            statement_timeout.as_millis()
        );
        if let Policy::Batch { settings, .. } = policy {
            for (name, value) in settings {
                debug_assert!(name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_'));
                begin.push_str(&format!(
                    "; SET LOCAL {name} = {}",
                    crate::quote::literal(value)
                ));
            }
        }
        let client: &'c Client = &self.client;
        loop {
            attempt += 1;
            let outcome = async {
                client.batch_execute(&begin).await?;
                let value = work(client).await?;
                client.batch_execute("COMMIT").await?;
                Ok::<T, tokio_postgres::Error>(value)
            };
            // Bookkeeping touches only pgshift's tables: nobody to name, nothing to watch.
            let outcome = match policy {
                Policy::Bookkeeping => outcome.await,
                Policy::Swap => {
                    self.watched(what, outcome, Duration::from_millis(30), &mut blockers_seen)
                        .await
                }
                // A batch is looked at only once it may be waiting for a lock: most end
                // well before, and a blocker poll per batch would load the hot loop.
                Policy::Batch { .. } => {
                    let first_poll = lock_timeout.mul_f64(0.8).max(Duration::from_millis(30));
                    self.watched(what, outcome, first_poll, &mut blockers_seen)
                        .await
                }
            };
            match outcome {
                Ok(value) => return Ok(value),
                Err(e) => {
                    let _ = client.batch_execute("ROLLBACK").await;
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

    /// pgshift's own bookkeeping (a record, the journal, the audit log): `sql` in one
    /// transaction under [`Policy::Bookkeeping`].
    pub async fn bookkeeping(&self, what: &str, sql: &[String]) -> Result<()> {
        self.transaction(Policy::Bookkeeping, what, |client| async move {
            for s in sql {
                client.batch_execute(s).await?;
            }
            Ok(())
        })
        .await
    }

    /// One bookkeeping statement with parameters, under [`Policy::Bookkeeping`]; its rows.
    pub async fn bookkeeping_query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>> {
        self.transaction(Policy::Bookkeeping, sql, |client| client.query(sql, params))
            .await
    }

    /// (lock_timeout, statement_timeout) of a transaction under `policy`.
    fn policy_timeouts(&self, policy: Policy) -> (Duration, Duration) {
        match policy {
            Policy::Batch {
                statement_timeout, ..
            } => {
                let (lock, statement) = self.settings.timeouts(StatementKind::Dml);
                (lock, statement_timeout.unwrap_or(statement))
            }
            Policy::Bookkeeping | Policy::Swap => (
                self.settings.lock_timeout,
                self.settings.ddl_statement_timeout,
            ),
        }
    }

    /// Runs `steps` and then `finish` (pgshift's own bookkeeping, e.g. the journal entry that
    /// says these steps are done) in one transaction, retrying the whole transaction when a
    /// lock is not granted in time.
    pub async fn run_transaction(&self, steps: &[Statement], finish: &[String]) -> Result<()> {
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

    pub(super) async fn transaction_attempt(
        &self,
        steps: &[Statement],
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

    pub(super) async fn set_timeouts(
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
    pub(super) async fn execute_watched(
        &self,
        step: &Statement,
        blockers_seen: &mut Vec<BlockerReport>,
    ) -> std::result::Result<(), tokio_postgres::Error> {
        let sql = step.sql.as_str();
        // Notices of pgshift's own statements before this one are not the user's.
        self.notices.take();
        let result = self
            .watched(
                sql,
                self.client.batch_execute(sql),
                Duration::from_millis(30),
                blockers_seen,
            )
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
    pub(super) async fn watched<T, E>(
        &self,
        what: &str,
        work: impl std::future::Future<Output = std::result::Result<T, E>>,
        first_poll: Duration,
        blockers_seen: &mut Vec<BlockerReport>,
    ) -> std::result::Result<T, E> {
        let started = Instant::now();
        tokio::pin!(work);
        let mut next_poll = first_poll;
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

    pub(super) async fn blockers(&self) -> Result<Vec<BlockerReport>> {
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
            .map(|r| {
                Ok(BlockerReport {
                    pid: r.try_get(0)?,
                    state: r.try_get(1)?,
                    query: r.try_get(2)?,
                    xact_age_s: r.try_get(3)?,
                    user: r.try_get(4)?,
                    application_name: r.try_get(5)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()?)
    }

    pub(super) async fn pause_before_retry(
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
}

/// `path:line: statement failed: <the statement>` (the place when the user wrote it).
pub(super) fn failed_context(origin: Option<&str>, sql: &str) -> String {
    match origin {
        Some(at) => format!("{at}: statement failed: {}", abbreviate(sql, 200)),
        None => format!("statement failed: {}", abbreviate(sql, 200)),
    }
}

/// A lock that was not granted in time (55P03) or a deadlock (40P01): the transaction rolled
/// back and can be tried again.
pub(super) fn is_lock_failure(e: &tokio_postgres::Error) -> bool {
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
}
