//! A part's walk: batch after batch to the end, with the control from another terminal,
//! the throttles, the background vacuum and the progress reports between batches.

use super::batch::next_batch_size;
use super::status::status_of;
use super::{Position, Run, Walk};
use crate::error::{Error, Result};
use crate::event::RunEvent;
use crate::state::{self, BackfillState};
use std::time::{Duration, Instant};

impl Run<'_> {
    pub(super) async fn go(
        &self,
        migration: &str,
        table: &str,
        on_event: &(dyn Fn(&RunEvent) + Sync),
        mut batch_size: i64,
        mut position: Position,
    ) -> Result<i64> {
        let started = Instant::now();
        let mut last_report = Instant::now() - Duration::from_secs(10);
        let mut since_vacuum = 0i64;
        loop {
            // Control from another terminal, checked before every batch.
            let control: String = self
                .exec
                .client()
                .query_one(
                    &format!(
                        "SELECT state FROM {} WHERE id = $1",
                        state::table("backfills")
                    ),
                    &[&self.id],
                )
                .await?
                .try_get(0)?;
            match BackfillState::parse(&control)? {
                BackfillState::Cancelled => {
                    return Err(Error::Cancelled(format!(
                        "the backfill of {table} was cancelled (pgshift backfill cancel); pgshift rollback undoes the migration, pgshift backfill resume continues it"
                    )))
                }
                BackfillState::Paused => {
                    self.note_throttle("paused (pgshift backfill resume continues)").await?;
                    self.report(migration, table, started, &mut last_report, on_event, true).await?;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
                _ => {}
            }
            if let Some(reason) = self.throttle(table).await {
                self.note_throttle(&reason).await?;
                self.report(migration, table, started, &mut last_report, on_event, true)
                    .await?;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            let t0 = Instant::now();
            let (rows, finished, next, used) = self.batch(batch_size, &position).await?;
            position = next;
            let took = t0.elapsed();
            // A batch cut short by its time cap ran again smaller: go on from that size.
            if used < batch_size {
                batch_size = used;
            }
            since_vacuum += rows;
            batch_size = next_batch_size(
                batch_size,
                took,
                self.settings,
                matches!(self.walk, Walk::Blocks { .. }),
            );
            if finished {
                if let Some(why) = self.vacuum.wait().await {
                    self.note_throttle(&format!("vacuum skipped: {why}"))
                        .await?;
                }
                let done = self
                    .exec
                    .bookkeeping_query(
                        &format!(
                            "UPDATE {} SET state = 'done', finished_at = clock_timestamp(), throttle_reason = NULL WHERE id = $1 RETURNING rows_done",
                            state::table("backfills")
                        ),
                        &[&self.id],
                    )
                    .await?;
                let done: i64 = match done.first() {
                    Some(row) => row.try_get(0)?,
                    None => 0,
                };
                self.report(migration, table, started, &mut last_report, on_event, true)
                    .await?;
                return Ok(done);
            }
            if self.settings.vacuum_every_rows > 0
                && self.write.leaves_dead_rows()
                && since_vacuum >= self.settings.vacuum_every_rows
            {
                // Started in the background; while the last one still runs, this waits for
                // a later batch.
                let (started, skipped) = self.vacuum.start(&self.target);
                if started {
                    since_vacuum = 0;
                }
                if let Some(why) = skipped {
                    self.note_throttle(&format!("vacuum skipped: {why}"))
                        .await?;
                }
            }
            self.report(migration, table, started, &mut last_report, on_event, false)
                .await?;
            if !self.settings.delay.is_zero() {
                tokio::time::sleep(self.settings.delay).await;
            }
        }
    }

    /// The first throttle that applies, if any. A check that fails throttles too.
    pub(super) async fn throttle(&self, table: &str) -> Option<String> {
        if let Some(max) = self.settings.max_replica_lag_bytes {
            match self.exec
                .client()
                .query_one(
                    "SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)), 0)::bigint FROM pg_stat_replication",
                    &[],
                )
                .await
            {
                Ok(r) => {
                    let lag: i64 = r.try_get(0).unwrap_or(0);
                    if lag > max {
                        return Some(format!("a replica's replay is {lag} bytes behind (limit {max})"));
                    }
                }
                Err(e) => return Some(format!("replica lag check failed: {}", crate::error::pg_error_text(&e))),
            }
        }
        match self
            .exec
            .client()
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = $1::text::regclass",
                &[&self.target],
            )
            .await
        {
            Ok(r) => {
                let waiting: i64 = r.try_get(0).unwrap_or(0);
                if waiting > 0 {
                    return Some(format!("{waiting} session(s) wait for a lock on {table}"));
                }
            }
            Err(e) => {
                return Some(format!(
                    "lock check failed: {}",
                    crate::error::pg_error_text(&e)
                ))
            }
        }
        if let Some(q) = &self.settings.throttle_query {
            match self.exec.client().query_one(q.as_str(), &[]).await {
                Ok(r) => match r.try_get::<_, Option<bool>>(0) {
                    Ok(Some(true)) => return Some(format!("the throttle query says so: {q}")),
                    Ok(_) => {}
                    Err(e) => {
                        return Some(format!("the throttle query must return one boolean: {e}"))
                    }
                },
                Err(e) => {
                    return Some(format!(
                        "throttle query failed: {}",
                        crate::error::pg_error_text(&e)
                    ))
                }
            }
        }
        None
    }

    pub(super) async fn note_throttle(&self, reason: &str) -> Result<()> {
        self.exec
            .bookkeeping_query(
                &format!(
                    "UPDATE {} SET throttle_reason = $2, updated_at = clock_timestamp() WHERE id = $1",
                    state::table("backfills")
                ),
                &[&self.id, &reason],
            )
            .await?;
        Ok(())
    }

    pub(super) async fn report(
        &self,
        migration: &str,
        table: &str,
        started: Instant,
        last: &mut Instant,
        on_event: &(dyn Fn(&RunEvent) + Sync),
        force: bool,
    ) -> Result<()> {
        if !force && last.elapsed() < Duration::from_secs(1) {
            return Ok(());
        }
        *last = Instant::now();
        if let Some(mut p) = status_of(self.exec.client(), self.id).await? {
            p.migration = migration.to_owned();
            p.table = table.to_owned();
            // The rate of this run, not of all runs.
            if p.elapsed_seconds > started.elapsed().as_secs_f64() {
                p.elapsed_seconds = started.elapsed().as_secs_f64();
            }
            on_event(&RunEvent::Backfill(p));
        }
        Ok(())
    }
}
