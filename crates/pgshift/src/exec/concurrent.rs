//! Statements outside a transaction block (CONCURRENTLY, VACUUM): run alone, and after an
//! interrupted run, checked for work already done and for INVALID leftovers, which are
//! dropped (concurrently) before the statement runs again.

use super::transaction::{failed_context, is_lock_failure};
use super::Executor;
use crate::error::{Error, Result};
use crate::event::{abbreviate, ExecEvent};
use crate::quote;
use crate::sql::ConcurrentIndex;
use crate::sql::Statement;
use std::time::Instant;

impl Executor {
    /// Maintenance that may be skipped (a backfill's VACUUM with SKIP_LOCKED): outside a
    /// transaction, under `lock_timeout` and the concurrent statement timeout, one attempt;
    /// a failure is returned for the caller to note, never retried.
    pub async fn maintenance(&self, sql: &str) -> Result<()> {
        let (lock_timeout, statement_timeout) = (
            self.settings.lock_timeout,
            self.settings.concurrent_statement_timeout,
        );
        let outcome = async {
            // Two round trips: a multi-statement string would run as one implicit
            // transaction, and VACUUM refuses to run inside one.
            self.set_timeouts(lock_timeout, statement_timeout, false)
                .await?;
            self.client.batch_execute(sql).await
        }
        .await;
        outcome.map_err(|e| Error::Statement {
            context: failed_context(None, sql),
            source: e,
        })
    }

    /// interrupted run may already have done (part of) this statement's work.
    pub async fn run_alone(&self, step: &Statement, resuming: bool) -> Result<()> {
        if resuming {
            if let Some(reason) = self.already_done(step).await? {
                self.observer.exec_event(&ExecEvent::AlreadyDone {
                    statement: abbreviate(&step.sql, 200),
                    reason,
                });
                return Ok(());
            }
        }
        if self.finish_pending_detach(step).await? {
            return Ok(());
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
                    // A detach stopped after its first transaction (a statement timeout in
                    // its wait, a cancel) leaves the partition pending: finished here.
                    if self.finish_pending_detach(step).await? {
                        return Ok(());
                    }
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

    /// For a resumed concurrent statement: has it already done its work?
    pub(super) async fn already_done(&self, step: &Statement) -> Result<Option<String>> {
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
            Some(ConcurrentIndex::DetachPartition {
                schema,
                table,
                partition,
            }) => Ok(
                match self.partition_state(schema, table, partition).await? {
                    None => Some(format!("{partition} is no longer a partition of {table}")),
                    Some(_) => None,
                },
            ),
            _ => Ok(None),
        }
    }

    /// `Some(pending)` while `partition` is a partition of `table` (pending: an interrupted
    /// DETACH ... CONCURRENTLY left it half detached).
    async fn partition_state(
        &self,
        schema: &str,
        table: &str,
        partition: &str,
    ) -> Result<Option<bool>> {
        let row = self
            .client
            .query_opt(
                "SELECT h.inhdetachpending FROM pg_inherits h \
                 WHERE h.inhrelid = to_regclass(quote_ident($1) || '.' || quote_ident($3)) \
                   AND h.inhparent = to_regclass(quote_ident($1) || '.' || quote_ident($2))",
                &[&schema, &table, &partition],
            )
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// For a DETACH ... CONCURRENTLY whose partition an interrupted attempt left pending:
    /// `DETACH PARTITION ... FINALIZE`, and true.
    async fn finish_pending_detach(&self, step: &Statement) -> Result<bool> {
        let Some(ConcurrentIndex::DetachPartition {
            schema,
            table,
            partition,
        }) = &step.concurrent_index
        else {
            return Ok(false);
        };
        if self.partition_state(schema, table, partition).await? != Some(true) {
            return Ok(false);
        }
        let finalize = Statement::concurrent(
            format!(
                "ALTER TABLE {} DETACH PARTITION {} FINALIZE",
                quote::qualified(schema, table),
                quote::qualified(schema, partition)
            ),
            None,
        );
        Box::pin(self.run_alone(&finalize, false)).await?;
        Ok(true)
    }

    /// `Some(valid)` if the index exists.
    pub(super) async fn index_validity(
        &self,
        schema: Option<&str>,
        name: &str,
    ) -> Result<Option<bool>> {
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
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// The INVALID indexes on the table a concurrent statement works on, as
    /// (schema, index name).
    pub(super) async fn invalid_indexes_of_target(
        &self,
        step: &Statement,
    ) -> Result<Vec<(String, String)>> {
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
        Ok(rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, tokio_postgres::Error>>()?)
    }

    /// Drops what a failed concurrent statement left behind: for CREATE INDEX CONCURRENTLY
    /// the INVALID index of that name, for REINDEX CONCURRENTLY its INVALID
    /// `_ccnew`/`_ccold` copies. An unnamed build's leftover can only be told apart from
    /// other INVALID indexes (another session's build in progress) by comparing with the
    /// list taken before the attempt, so before the first attempt (`invalid_before` None)
    /// nothing is dropped for it.
    pub(super) async fn drop_leftovers(
        &self,
        step: &Statement,
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
            let drop = Statement::concurrent(
                format!(
                    "DROP INDEX CONCURRENTLY IF EXISTS {}",
                    quote::qualified(&schema, &name)
                ),
                None,
            );
            Box::pin(self.run_alone(&drop, false)).await?;
            self.observer.exec_event(&ExecEvent::InvalidIndexDropped {
                index: format!("{schema}.{name}"),
            });
        }
        Ok(())
    }

    pub(super) async fn current_schema(&self) -> Result<String> {
        let row = self
            .client
            .query_one("SELECT coalesce(current_schema()::text, 'public')", &[])
            .await?;
        Ok(row.try_get(0)?)
    }
}

/// REINDEX CONCURRENTLY names its temporary copies `<index>_ccnew[N]` and `<index>_ccold[N]`.
pub(super) fn is_reindex_copy(name: &str) -> bool {
    ["_ccnew", "_ccold"].iter().any(|suffix| {
        name.rfind(suffix)
            .map(|i| name[i + suffix.len()..].chars().all(|c| c.is_ascii_digit()))
            .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reindex_copies_are_recognised() {
        assert!(is_reindex_copy("orders_pkey_ccnew"));
        assert!(is_reindex_copy("orders_pkey_ccnew1"));
        assert!(is_reindex_copy("ix_ccold12"));
        assert!(!is_reindex_copy("ccnew_orders"));
        assert!(!is_reindex_copy("orders_ccnewx"));
    }
}
