//! The backfill engine: fills new columns (or applies a data change) to every existing row,
//! batch by batch, without hurting client traffic, and survives being killed.
//!
//! - Batches walk the primary key or a unique NOT NULL key by keyset (any type, composite
//!   included), never loading keys into memory; a table with neither is walked by block
//!   ranges up to its size at the start (TID range scans on PostgreSQL 14+, TID lists on 13).
//! - Each batch is one short transaction that writes the new values itself and, in the same
//!   transaction, saves the cursor and the counts in `pgshift.backfills`: after a crash the
//!   next run continues after the last committed batch, never redoing or skipping a row.
//! - Batch size follows a time target (150 ms by default), adapting as it goes.
//! - Between batches: pause / cancel from another terminal (`pgshift backfill ...`), and the
//!   throttles: a fixed delay, replica replay lag over a threshold, sessions waiting for
//!   locks on the table, and a custom query. A throttle check that fails counts as throttle;
//!   the reason is always recorded and shown.
//! - Every ~100,000 updated rows the table is vacuumed, so that the space of the old row
//!   versions is reused instead of the table growing to twice its size.

use crate::catalog::Catalog;
use crate::error::{Error, Result};
pub use crate::event::Progress;
use crate::event::RunEvent;
use crate::exec::{BackfillSettings, Executor};
use crate::plan::{expression, BackfillSpec};
use crate::quote::{ident, qualified};
use crate::state;
use std::time::{Duration, Instant};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

/// How the table is walked.
#[derive(Clone)]
enum Walk {
    Keyset {
        key: Vec<String>,
        types: Vec<String>,
    },
    Blocks {
        pages: i64,
        range_scan: bool,
    },
}

/// Where the walk stands: read once when a run begins or resumes, then kept here and saved
/// with every batch.
#[derive(Clone)]
struct Position {
    cursor: Option<Vec<String>>,
    pages_done: i64,
}

struct Run<'a> {
    client: &'a Client,
    settings: &'a BackfillSettings,
    lock_timeout: String,
    /// This part's row in `pgshift.backfills`.
    id: i64,
    /// Where this part ends: its last key (inclusive), or the page after its last (one
    /// element); `None`: the end of the table.
    upper: Option<Vec<String>>,
    /// The first transaction id after the backfill was registered (block walks skip row
    /// versions written since).
    start_xid: i64,
    /// Vacuums in the background on a connection of its own, while batches go on.
    vacuum: Vacuum,
    target: String,
    write: Write,
    condition: String,
    walk: Walk,
}

/// One part's row as registered: (id, state, rows_done, batch_size, position, upper bound).
struct Part {
    id: i64,
    state: String,
    batch_size: i64,
    position: Position,
    upper: Option<Vec<String>>,
    start_xid: i64,
}

/// Runs (or resumes) a backfill to the end; returns the rows updated over all runs.
pub async fn run(
    exec: &Executor,
    migration: &str,
    step: i32,
    spec: &BackfillSpec,
    on_event: &(dyn Fn(&RunEvent) + Sync),
) -> Result<i64> {
    let client = exec.client();
    let settings = &exec.settings().backfill;
    let catalog = Catalog::load(client, &spec.schema).await?;
    let Some(table) = catalog.table(&spec.table) else {
        return Err(Error::CannotResume(format!(
            "backfill: table {}.{} does not exist",
            spec.schema, spec.table
        )));
    };
    let target = qualified(&spec.schema, &spec.table);
    let walk = match table.backfill_key() {
        Some(key) => Walk::Keyset {
            key: key.to_vec(),
            types: key
                .iter()
                .map(|k| {
                    table
                        .column(k)
                        .map(|c| c.data_type.clone())
                        .unwrap_or_else(|| "text".to_owned())
                })
                .collect(),
        },
        None => {
            let pages: i64 = client
                .query_one(
                    "SELECT pg_relation_size($1::text::regclass) / current_setting('block_size')::bigint",
                    &[&target],
                )
                .await?
                .get(0);
            Walk::Blocks {
                pages,
                range_scan: catalog.server_version_num >= 140000,
            }
        }
    };
    let first_size = match walk {
        Walk::Keyset { .. } => settings.first_batch_rows,
        Walk::Blocks { .. } => 8,
    };
    let spec_json = serde_json::to_value(spec).map_err(|e| Error::CannotResume(e.to_string()))?;
    let total_estimate = match table.estimated_rows {
        // Never analyzed (a table just loaded): the planner's own guess from the table's
        // size, which EXPLAIN reads without scanning.
        0 => planner_rows(client, &target).await.unwrap_or(0),
        n => n,
    };
    let parts = register(
        client,
        migration,
        step,
        spec,
        &spec_json,
        &target,
        &walk,
        first_size,
        total_estimate,
        settings.workers,
    )
    .await?;
    let write = Write::of(spec, &target);
    let condition = spec
        .condition
        .as_deref()
        .map(|c| format!(" AND ({c})"))
        .unwrap_or_default();
    let lock_timeout = format!("{}ms", exec.settings().lock_timeout.as_millis().max(1));
    let pending: Vec<Part> = parts.into_iter().filter(|p| p.state != "done").collect();
    // One connection per pending part; the first uses the executor's own.
    let mut others = Vec::new();
    for _ in 1..pending.len() {
        others.push(exec.connect_another().await?);
    }
    // And one per part for its vacuums, unless vacuuming is off.
    let mut vacuum_clients = Vec::new();
    if settings.vacuum_every_rows > 0 && write.leaves_dead_rows() {
        for _ in 0..pending.len() {
            vacuum_clients.push(exec.connect_another().await?);
        }
    }
    let runs: Vec<(Run, Part)> = pending
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            let run = Run {
                client: if i == 0 { client } else { &others[i - 1] },
                settings,
                lock_timeout: lock_timeout.clone(),
                id: part.id,
                upper: part.upper.clone(),
                start_xid: part.start_xid,
                vacuum: Vacuum::new(vacuum_clients.pop()),
                target: target.clone(),
                write: write.clone(),
                condition: condition.clone(),
                walk: walk.clone(),
            };
            (run, part)
        })
        .collect();
    // All parts run at once; the first error stops the others (their open batches roll
    // back with their connections, and each part's saved cursor stays exact).
    futures_util::future::try_join_all(runs.iter().map(|(run, part)| {
        run.go(
            migration,
            &spec.table,
            on_event,
            part.batch_size,
            part.position.clone(),
        )
    }))
    .await?;
    let done: i64 = client
        .query_one(
            &format!(
                "SELECT coalesce(sum(rows_done), 0)::bigint FROM {} WHERE migration = $1 AND step = $2",
                state::table("backfills")
            ),
            &[&migration, &step],
        )
        .await?
        .get(0);
    Ok(done)
}

/// Registers the parts of a backfill the first time it runs (one, or `workers` over
/// disjoint ranges of the key or of the pages), or picks up the parts an earlier,
/// interrupted run left, whatever their number. Returns them in order.
#[allow(clippy::too_many_arguments)]
async fn register(
    client: &Client,
    migration: &str,
    step: i32,
    spec: &BackfillSpec,
    spec_json: &serde_json::Value,
    target: &str,
    walk: &Walk,
    first_size: i64,
    total_estimate: i64,
    workers: u32,
) -> Result<Vec<Part>> {
    let table = state::table("backfills");
    let existing: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM {table} WHERE migration = $1 AND step = $2"),
            &[&migration, &step],
        )
        .await?
        .get(0);
    if existing == 0 {
        // (start cursor, start page, upper bound) per part.
        let bounds = split(client, spec, target, walk, total_estimate, workers).await?;
        client.batch_execute("BEGIN").await?;
        for (part, (cursor, pages_done, upper)) in bounds.iter().enumerate() {
            let inserted = client
                .execute(
                    &format!(
                        "INSERT INTO {table} (migration, step, part, table_schema, table_name, spec, batch_size, state, total_estimate, cursor, pages_done, upper_bound, start_xid)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8, $9, $10, $11, pg_snapshot_xmax(pg_current_snapshot())::text::bigint)
                         ON CONFLICT (migration, step, part) DO NOTHING"
                    ),
                    &[&migration, &step, &(part as i32), &spec.schema, &spec.table, spec_json, &(first_size as i32), &total_estimate, cursor, pages_done, upper],
                )
                .await;
            if let Err(e) = inserted {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(e.into());
            }
        }
        client.batch_execute("COMMIT").await?;
    }
    let rows = client
        .query(
            &format!(
                "UPDATE {table} AS b
                   SET state = CASE WHEN b.state = 'done' THEN 'done' ELSE 'running' END, updated_at = clock_timestamp()
                 WHERE migration = $1 AND step = $2
                 RETURNING part, id, state, batch_size, cursor, pages_done, upper_bound, start_xid"
            ),
            &[&migration, &step],
        )
        .await?;
    let mut parts: Vec<(i32, Part)> = rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                Part {
                    id: r.get(1),
                    state: r.get(2),
                    batch_size: r.get::<_, i32>(3) as i64,
                    position: Position {
                        cursor: r.get(4),
                        pages_done: r.get(5),
                    },
                    upper: r.get(6),
                    start_xid: r.get(7),
                },
            )
        })
        .collect();
    parts.sort_by_key(|(n, _)| *n);
    Ok(parts.into_iter().map(|(_, p)| p).collect())
}

/// Part bounds: (start cursor, start page, upper bound). One part when `workers` is 1 or
/// the table is too small to be worth splitting. Key splits of a one-column key come from
/// the column's histogram when the statistics are fresh (one catalog read); otherwise, and
/// for composite keys, from index-only walks to evenly spaced offsets (a walk to the
/// middle of 2,000,000 keys takes about 0.25 s here). Page splits are even.
async fn split(
    client: &Client,
    spec: &BackfillSpec,
    target: &str,
    walk: &Walk,
    total_estimate: i64,
    workers: u32,
) -> Result<Vec<PartBounds>> {
    let n = workers.max(1) as i64;
    if n == 1 {
        return Ok(vec![(None, 0, None)]);
    }
    match walk {
        Walk::Keyset { key, .. } => {
            if total_estimate < n * MIN_ROWS_PER_WORKER {
                return Ok(vec![(None, 0, None)]);
            }
            if let [column] = key.as_slice() {
                if let Some(splits) =
                    histogram_splits(client, &spec.schema, &spec.table, column, n).await?
                {
                    return Ok(bounds_between(splits));
                }
            }
            let cols: Vec<String> = key.iter().map(|k| ident(k)).collect();
            let as_text: Vec<String> = cols.iter().map(|c| format!("{c}::text")).collect();
            let sql = format!(
                "SELECT ARRAY[{}] FROM {target} ORDER BY {} OFFSET $1 LIMIT 1",
                as_text.join(", "),
                cols.join(", ")
            );
            let mut splits: Vec<Vec<String>> = Vec::new();
            for i in 1..n {
                let offset = total_estimate * i / n;
                match client.query_opt(sql.as_str(), &[&offset]).await? {
                    Some(r) => splits.push(r.get(0)),
                    None => break,
                }
            }
            Ok(bounds_between(splits))
        }
        Walk::Blocks { pages, .. } => {
            if *pages < n * MIN_PAGES_PER_WORKER {
                return Ok(vec![(None, 0, None)]);
            }
            Ok((0..n)
                .map(|i| {
                    let from = pages * i / n;
                    let to = (i + 1 < n).then(|| vec![(pages * (i + 1) / n).to_string()]);
                    (None, from, to)
                })
                .collect())
        }
    }
}

type PartBounds = (Option<Vec<String>>, i64, Option<Vec<String>>);

/// The parts between increasing split keys: up to the first, between each two, from the last.
fn bounds_between(splits: Vec<Vec<String>>) -> Vec<PartBounds> {
    let mut bounds = Vec::new();
    let mut lower: Option<Vec<String>> = None;
    for s in splits {
        bounds.push((lower.clone(), 0, Some(s.clone())));
        lower = Some(s);
    }
    bounds.push((lower, 0, None));
    bounds
}

/// `n - 1` keys that split a one-column key into `n` parts of about equal rows, read from
/// the column's histogram (each bucket holds about as many rows as the next). `None` when
/// there is no histogram, or when the statistics are stale: more than a tenth of the rows
/// changed since the last ANALYZE (new keys past the histogram's end would all fall to the
/// last part).
async fn histogram_splits(
    client: &Client,
    schema: &str,
    table: &str,
    column: &str,
    n: i64,
) -> Result<Option<Vec<Vec<String>>>> {
    let row = client
        .query_opt(
            "SELECT s.histogram_bounds::text::text[]
               FROM pg_catalog.pg_stats s
               JOIN pg_catalog.pg_stat_all_tables t
                 ON t.schemaname = s.schemaname AND t.relname = s.tablename
               JOIN pg_catalog.pg_class c ON c.oid = t.relid
              WHERE s.schemaname = $1 AND s.tablename = $2 AND s.attname = $3 AND NOT s.inherited
                AND s.histogram_bounds IS NOT NULL
                AND t.n_mod_since_analyze <= 0.1 * greatest(c.reltuples, 0)",
            &[&schema, &table, &column],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let histogram: Vec<String> = row.get(0);
    let buckets = histogram.len() as i64 - 1;
    if buckets < 2 * n {
        return Ok(None);
    }
    let mut splits: Vec<Vec<String>> = Vec::new();
    for i in 1..n {
        let key = &histogram[(buckets * i / n) as usize];
        if splits.last().is_none_or(|last| &last[0] != key) {
            splits.push(vec![key.clone()]);
        }
    }
    Ok(Some(splits))
}

/// Below these, one worker does the whole table.
const MIN_ROWS_PER_WORKER: i64 = 50_000;
const MIN_PAGES_PER_WORKER: i64 = 100;

/// A part's vacuums: `VACUUM (INDEX_CLEANUP OFF, SKIP_LOCKED)` (outside a transaction) so that
/// later batches reuse the space of the row versions this backfill left dead, run on a
/// connection of its own so that batches do not wait for it. INDEX_CLEANUP OFF: the heap pages
/// are pruned without scanning every index each time (autovacuum cleans the indexes later);
/// SKIP_LOCKED: never wait behind another vacuum. A vacuum that fails (its lock not granted in
/// time) is skipped, and says so in the progress record.
struct Vacuum {
    client: Option<std::sync::Arc<Client>>,
    running: std::sync::Mutex<Option<tokio::task::JoinHandle<Option<String>>>>,
}

impl Vacuum {
    fn new(client: Option<Client>) -> Vacuum {
        Vacuum {
            client: client.map(std::sync::Arc::new),
            running: std::sync::Mutex::new(None),
        }
    }

    /// Starts a vacuum unless one still runs: (started, why the previous one failed).
    fn start(&self, target: &str, lock_timeout: &str) -> (bool, Option<String>) {
        let Some(client) = &self.client else {
            return (false, None);
        };
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.as_ref().is_some_and(|h| !h.is_finished()) {
            return (false, None);
        }
        // Finished: its outcome is ready without waiting.
        let previous = running.take().and_then(|h| {
            use futures_util::FutureExt;
            match h.now_or_never() {
                Some(Ok(outcome)) => outcome,
                Some(Err(e)) => Some(e.to_string()),
                None => None,
            }
        });
        let client = client.clone();
        let set = format!("SET lock_timeout = {}", crate::quote::literal(lock_timeout));
        let sql = format!("VACUUM (INDEX_CLEANUP OFF, SKIP_LOCKED) {target}");
        *running = Some(tokio::spawn(async move {
            // Two round trips: a multi-statement string would run as one implicit
            // transaction, and VACUUM refuses to run inside one.
            let result = match client.batch_execute(&set).await {
                Ok(()) => client.batch_execute(&sql).await,
                Err(e) => Err(e),
            };
            result.err().map(|e| crate::error::pg_error_text(&e))
        }));
        (true, previous)
    }

    /// Waits for the running vacuum, if any: why it failed, if it did.
    async fn wait(&self) -> Option<String> {
        let handle = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match handle {
            Some(h) => h.await.unwrap_or_else(|e| Some(e.to_string())),
            None => None,
        }
    }
}

impl Run<'_> {
    async fn go(
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
                .client
                .query_one(
                    &format!(
                        "SELECT state FROM {} WHERE id = $1",
                        state::table("backfills")
                    ),
                    &[&self.id],
                )
                .await?
                .get(0);
            match control.as_str() {
                "cancelled" => {
                    return Err(Error::CannotResume(format!(
                        "the backfill of {table} was cancelled (pgshift backfill cancel); pgshift rollback undoes the migration, pgshift backfill resume continues it"
                    )))
                }
                "paused" => {
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
                let done: i64 = self
                    .client
                    .query_one(
                        &format!(
                            "UPDATE {} SET state = 'done', finished_at = clock_timestamp(), throttle_reason = NULL WHERE id = $1 RETURNING rows_done",
                            state::table("backfills")
                        ),
                        &[&self.id],
                    )
                    .await?
                    .get(0);
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
                let (started, skipped) = self.vacuum.start(&self.target, &self.lock_timeout);
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
    async fn throttle(&self, table: &str) -> Option<String> {
        if let Some(max) = self.settings.max_replica_lag_bytes {
            match self
                .client
                .query_one(
                    "SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)), 0)::bigint FROM pg_stat_replication",
                    &[],
                )
                .await
            {
                Ok(r) => {
                    let lag: i64 = r.get(0);
                    if lag > max {
                        return Some(format!("a replica's replay is {lag} bytes behind (limit {max})"));
                    }
                }
                Err(e) => return Some(format!("replica lag check failed: {}", crate::error::pg_error_text(&e))),
            }
        }
        match self
            .client
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = $1::text::regclass",
                &[&self.target],
            )
            .await
        {
            Ok(r) => {
                let waiting: i64 = r.get(0);
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
            match self.client.query_one(q.as_str(), &[]).await {
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

    async fn note_throttle(&self, reason: &str) -> Result<()> {
        self.client
            .execute(
                &format!(
                    "UPDATE {} SET throttle_reason = $2, updated_at = clock_timestamp() WHERE id = $1",
                    state::table("backfills")
                ),
                &[&self.id, &reason],
            )
            .await?;
        Ok(())
    }

    /// One batch and its bookkeeping, in one transaction; retried when a row lock is not
    /// granted in time. Returns (rows updated, whether the walk is over, the next position,
    /// the batch size used).
    ///
    /// A batch's rows stay locked until it commits, so a client writing one of them waits
    /// for the rest of the batch. Batches are sized to the time target from the last ones'
    /// speed, but a loaded server can make one much slower: each statement is capped at
    /// 1.5 times the target (`statement_timeout`), and a batch cut short runs again with a
    /// quarter of its rows; a batch of one row or page cut short runs again with twice the
    /// time, up to 30 s.
    async fn batch(&self, size: i64, position: &Position) -> Result<(i64, bool, Position, i64)> {
        let mut attempt = 0u32;
        let mut size = size;
        let mut cap = (self.settings.batch_time.as_millis() * 3 / 2).max(100);
        loop {
            attempt += 1;
            // One round trip: BEGIN and this transaction's settings.
            self.client
                .batch_execute(&format!(
                    "BEGIN; SET LOCAL pgshift.backfill = 'on'; SET LOCAL lock_timeout = {}; SET LOCAL statement_timeout = '{cap}ms'",
                    crate::quote::literal(&self.lock_timeout)
                ))
                .await?;
            let outcome = self.batch_in_transaction(size, position).await;
            match outcome {
                Ok((rows, finished, next)) => {
                    self.client.batch_execute("COMMIT").await?;
                    return Ok((rows, finished, next, size));
                }
                Err(e) => {
                    let _ = self.client.batch_execute("ROLLBACK").await;
                    if e.code() == Some(&SqlState::QUERY_CANCELED) && attempt < 50 {
                        if size > 1 {
                            size = (size / 4).max(1);
                        } else {
                            // One row (or one page) still over the cap: the server is
                            // loaded, not the batch too big. Allow it longer, up to 30 s,
                            // rather than end the run.
                            cap = (cap * 2).min(30_000);
                        }
                        continue;
                    }
                    let retryable = matches!(e.code(), Some(c) if *c == SqlState::LOCK_NOT_AVAILABLE || *c == SqlState::T_R_DEADLOCK_DETECTED);
                    if !retryable || attempt >= 50 {
                        return Err(Error::Statement {
                            context: format!("backfill batch on {} failed", self.target),
                            source: e,
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt.min(20))))
                        .await;
                }
            }
        }
    }

    async fn batch_in_transaction(
        &self,
        size: i64,
        position: &Position,
    ) -> std::result::Result<(i64, bool, Position), tokio_postgres::Error> {
        let progress = state::table("backfills");
        match &self.walk {
            Walk::Keyset { key, types } => {
                let cursor = &position.cursor;
                // The batch's last key, by an index-only walk of `size` keys past the cursor...
                let (upper_sql, update_sql) = keyset_sql(
                    &self.target,
                    key,
                    types,
                    &self.write,
                    &self.condition,
                    cursor.is_some(),
                    self.upper.is_some(),
                );
                let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = Vec::new();
                for values in [cursor, &self.upper].into_iter().flatten() {
                    params.extend(
                        values
                            .iter()
                            .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync)),
                    );
                }
                let offset = size - 1;
                let mut upper_params = params.clone();
                upper_params.push(&offset);
                let upper: Option<Vec<String>> = self
                    .client
                    .query_opt(upper_sql.as_str(), &upper_params)
                    .await?
                    .map(|r| r.get(0));
                // ...then one range update between the cursor and that key (to the end of
                // the table when fewer than `size` keys are left).
                let finished = upper.is_none();
                let mut update_params = params;
                if let Some(u) = &upper {
                    update_params.extend(
                        u.iter()
                            .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync)),
                    );
                }
                let update_sql = if finished { update_sql.0 } else { update_sql.1 };
                let updated = self
                    .client
                    .execute(update_sql.as_str(), &update_params)
                    .await? as i64;
                self.client
                    .execute(
                        &format!(
                            "UPDATE {progress} SET cursor = coalesce($2, cursor), rows_done = rows_done + $3, batch_size = $4,
                                 throttle_reason = NULL, updated_at = clock_timestamp() WHERE id = $1"
                        ),
                        &[&self.id, &upper, &updated, &(size as i32)],
                    )
                    .await?;
                let next = Position {
                    cursor: upper.or_else(|| position.cursor.clone()),
                    pages_done: position.pages_done,
                };
                Ok((updated, finished, next))
            }
            Walk::Blocks { pages, range_scan } => {
                // Only row versions written before the backfill began: a later version was
                // written through the triggers or by this backfill (possibly by another
                // worker, into pages not walked yet), and is right already. `age` counts
                // back from this transaction; frozen versions count as oldest.
                // (0: registered before pgshift recorded it; no filter.)
                const OLDER: &str =
                    "($3::bigint = 0 OR age(xmin)::bigint > pg_current_xact_id()::text::bigint - $3::bigint)";
                let from = position.pages_done;
                // A part with an end stops there; the last part runs past the pages the
                // table had when this run began (later rows got their values from the
                // triggers) until a batch starts beyond them.
                let end = self
                    .upper
                    .as_ref()
                    .and_then(|u| u.first())
                    .and_then(|p| p.parse::<i64>().ok());
                let to = match end {
                    Some(end) => (from + size).min(end),
                    None => from + size,
                };
                let finished = match end {
                    Some(end) => to >= end,
                    None => to > *pages,
                };
                let sql = if *range_scan {
                    self.write.sql(&format!(
                        "ctid >= format('(%s,0)', $1::bigint)::tid AND ctid < format('(%s,0)', $2::bigint)::tid AND {OLDER}{}",
                        self.condition
                    ))
                } else {
                    // PostgreSQL 13 has no TID range scan: name the TIDs of the pages.
                    self.write.sql(&format!(
                        "ctid = ANY (ARRAY(SELECT format('(%s,%s)', p, o)::tid
                             FROM generate_series($1::bigint, $2::bigint - 1) p,
                                  generate_series(1, (current_setting('block_size')::int / 28)) o)) AND {OLDER}{}",
                        self.condition
                    ))
                };
                let updated = self
                    .client
                    .execute(sql.as_str(), &[&from, &to, &self.start_xid])
                    .await? as i64;
                self.client
                    .execute(
                        &format!(
                            "UPDATE {progress} SET pages_done = $2, rows_done = rows_done + $3, batch_size = $4,
                                 throttle_reason = NULL, updated_at = clock_timestamp() WHERE id = $1"
                        ),
                        &[&self.id, &to, &updated, &(size as i32)],
                    )
                    .await?;
                let next = Position {
                    cursor: None,
                    pages_done: to,
                };
                Ok((updated, finished, next))
            }
        }
    }

    async fn report(
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
        if let Some(mut p) = status_of(self.client, self.id).await? {
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

/// What a batch does to the rows it selects.
#[derive(Clone)]
enum Write {
    /// `UPDATE target SET assignments`.
    Update { target: String, assignments: String },
    /// `INSERT INTO into (columns) SELECT select FROM target ... FOR SHARE ON CONFLICT
    /// (conflict) DO NOTHING`: the source rows are locked against deletes and updates until
    /// the batch commits, so that a row the triggers write meanwhile is not overwritten by
    /// an older copy, and no copy is made of a row deleted meanwhile. Without `conflict`, a
    /// plain INSERT ... SELECT (a table copy, whose later changes a log replays).
    Insert {
        target: String,
        into: String,
        columns: String,
        select: String,
        conflict: String,
    },
}

impl Write {
    fn of(spec: &BackfillSpec, target: &str) -> Write {
        match &spec.insert {
            None => Write::Update {
                target: target.to_owned(),
                assignments: spec
                    .set
                    .iter()
                    .map(|(col, expr)| format!("{} = {}", ident(col), expression(expr)))
                    .collect::<Vec<_>>()
                    .join(", "),
            },
            Some(insert) => Write::Insert {
                target: target.to_owned(),
                into: qualified(&spec.schema, &insert.table),
                columns: crate::quote::ident_list(insert.columns.iter().map(|(c, _)| c.as_str())),
                select: insert
                    .columns
                    .iter()
                    .map(|(_, expr)| expression(expr))
                    .collect::<Vec<_>>()
                    .join(", "),
                conflict: crate::quote::ident_list(insert.conflict.iter().map(String::as_str)),
            },
        }
    }

    /// The statement over the rows that match `filter`.
    fn sql(&self, filter: &str) -> String {
        match self {
            Write::Update {
                target,
                assignments,
            } => format!("UPDATE {target} SET {assignments} WHERE {filter}"),
            Write::Insert {
                target,
                into,
                columns,
                select,
                conflict,
            } => {
                let insert = format!(
                    "INSERT INTO {into} ({columns}) SELECT {select} FROM {target} WHERE {filter}"
                );
                if conflict.is_empty() {
                    insert
                } else {
                    format!("{insert} FOR SHARE ON CONFLICT ({conflict}) DO NOTHING")
                }
            }
        }
    }

    /// Whether the batches leave dead row versions in the table they walk (then it is
    /// vacuumed as they go).
    fn leaves_dead_rows(&self) -> bool {
        matches!(self, Write::Update { .. })
    }
}

/// Batch size for the next batch: scaled towards the time target, at most doubling or
/// halving at a time, within the configured bounds.
fn next_batch_size(size: i64, took: Duration, s: &BackfillSettings, blocks: bool) -> i64 {
    let target = s.batch_time.as_secs_f64();
    let took = took.as_secs_f64().max(0.001);
    let scaled = (size as f64 * (target / took)).clamp(size as f64 / 2.0, size as f64 * 2.0) as i64;
    if blocks {
        scaled.clamp(1, 10_000)
    } else {
        scaled.clamp(s.min_batch_rows, s.max_batch_rows)
    }
}

/// The statements of a keyset batch: the query for the batch's last key (`OFFSET size - 1`
/// past the cursor), and the range UPDATE to the part's end (last batch) and to that key.
/// Parameters, as text: the cursor's values (if any), the part's upper bound's (if any),
/// then the offset or the batch's last key.
fn keyset_sql(
    target: &str,
    key: &[String],
    types: &[String],
    write: &Write,
    condition: &str,
    with_cursor: bool,
    bounded: bool,
) -> (String, (String, String)) {
    let cols: Vec<String> = key.iter().map(|k| ident(k)).collect();
    let cols_list = cols.join(", ");
    let n = cols.len();
    let params = |from: usize| -> String {
        types
            .iter()
            .enumerate()
            .map(|(i, ty)| format!("${}::text::{ty}", from + i))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut next = 1;
    let mut filters = Vec::new();
    if with_cursor {
        filters.push(format!("({cols_list}) > ({})", params(next)));
        next += n;
    }
    if bounded {
        filters.push(format!("({cols_list}) <= ({})", params(next)));
        next += n;
    }
    let within = if filters.is_empty() {
        "true".to_owned()
    } else {
        filters.join(" AND ")
    };
    let as_text: Vec<String> = cols.iter().map(|c| format!("{c}::text")).collect();
    let upper = format!(
        "SELECT ARRAY[{}] FROM {target} WHERE {within} ORDER BY {cols_list} OFFSET ${next} LIMIT 1",
        as_text.join(", ")
    );
    let update_to_end = write.sql(&format!("{within}{condition}"));
    let update_range = write.sql(&format!(
        "{within} AND ({cols_list}) <= ({}){condition}",
        params(next)
    ));
    (upper, (update_to_end, update_range))
}

fn progress_row(r: &tokio_postgres::Row) -> Progress {
    let rows_done: i64 = r.get(3);
    let total_estimate: i64 = r.get(4);
    let elapsed: f64 = r.get(5);
    let rate = if elapsed > 0.0 {
        rows_done as f64 / elapsed
    } else {
        0.0
    };
    let state: String = r.get(2);
    Progress {
        migration: r.get(0),
        table: r.get(1),
        eta_seconds: (rate > 0.0 && state != "done")
            .then(|| ((total_estimate - rows_done).max(0) as f64) / rate),
        state,
        rows_done,
        total_estimate,
        rows_per_second: (rate * 10.0).round() / 10.0,
        elapsed_seconds: (elapsed * 10.0).round() / 10.0,
        batch_size: r.get::<_, i32>(6) as i64,
        throttle_reason: r.get(7),
        workers: r.get::<_, i32>(8) as i64,
    }
}

/// Progress of whole backfills, their parts summed, from `pgshift.backfills` rows that
/// match `filter`.
fn progress_sql(filter: &str) -> String {
    format!(
        "SELECT migration, table_schema || '.' || table_name,
                CASE WHEN bool_and(state = 'done') THEN 'done'
                     WHEN bool_or(state = 'cancelled') THEN 'cancelled'
                     WHEN bool_or(state = 'paused') THEN 'paused'
                     ELSE 'running' END,
                sum(rows_done)::bigint, max(total_estimate),
                extract(epoch FROM CASE WHEN bool_and(finished_at IS NOT NULL) THEN max(finished_at) ELSE clock_timestamp() END
                                   - min(started_at))::float8,
                sum(batch_size)::int, min(throttle_reason), count(*)::int
         FROM {} WHERE {filter}
         GROUP BY migration, step, table_schema, table_name
         ORDER BY min(id)",
        state::table("backfills")
    )
}

async fn status_of(client: &Client, id: i64) -> Result<Option<Progress>> {
    let row = client
        .query_opt(
            &progress_sql(&format!(
                "(migration, step) = (SELECT migration, step FROM {} WHERE id = $1)",
                state::table("backfills")
            )),
            &[&id],
        )
        .await?;
    Ok(row.as_ref().map(progress_row))
}

/// `pgshift backfill status`: the backfills of the open (or most recent) migration.
pub async fn status(client: &Client) -> Result<Vec<Progress>> {
    if state::installed_version(client).await?.unwrap_or(0) < 4 {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            &progress_sql(&format!(
                "migration = (SELECT migration FROM {} ORDER BY updated_at DESC LIMIT 1)",
                state::table("backfills")
            )),
            &[],
        )
        .await?;
    Ok(rows.iter().map(progress_row).collect())
}

/// The planner's row estimate for a whole table (`target` quoted and qualified).
async fn planner_rows(client: &tokio_postgres::Client, target: &str) -> Option<i64> {
    let row = client
        .query_one(
            &format!("EXPLAIN (FORMAT JSON) SELECT 1 FROM {target}"),
            &[],
        )
        .await
        .ok()?;
    let plan: serde_json::Value = row.try_get(0).ok()?;
    plan.get(0)?
        .get("Plan")?
        .get("Plan Rows")?
        .as_f64()
        .map(|r| r as i64)
}

/// What `pgshift backfill pause|resume|cancel` asks of the unfinished backfills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Pause,
    Resume,
    Cancel,
}

impl Control {
    /// The state the backfills are set to, and the states they may be in before.
    fn transition(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Control::Pause => ("paused", &["running"]),
            Control::Resume => ("running", &["paused", "cancelled"]),
            Control::Cancel => ("cancelled", &["running", "paused"]),
        }
    }

    /// The state the backfills end in, for output.
    pub fn state(self) -> &'static str {
        self.transition().0
    }

    /// (command, audit event) for the audit log.
    pub fn audit(self) -> (&'static str, &'static str) {
        match self {
            Control::Pause => ("backfill pause", "backfills_paused"),
            Control::Resume => ("backfill resume", "backfills_resumed"),
            Control::Cancel => ("backfill cancel", "backfills_cancelled"),
        }
    }
}

/// `pgshift backfill pause|cancel` from another terminal: [`control`], then the audit
/// event that says who did it and to how many backfills; returns how many.
pub async fn control_and_record(
    client: &Client,
    who: &crate::conn::Who,
    c: Control,
) -> Result<u64> {
    let n = control(client, c).await?;
    let (command, event) = c.audit();
    state::record_event(
        client,
        who,
        &state::Event {
            command,
            event,
            migration: None,
            ok: true,
            duration_ms: Some(0),
            detail: serde_json::json!({ "backfills": n }),
        },
    )
    .await?;
    Ok(n)
}

/// `pgshift backfill pause|resume|cancel`: sets the state of every unfinished backfill;
/// returns how many it changed.
pub async fn control(client: &Client, control: Control) -> Result<u64> {
    let (to, from) = control.transition();
    if state::installed_version(client).await?.unwrap_or(0) < 3 {
        return Ok(0);
    }
    Ok(client
        .execute(
            &format!(
                "UPDATE {} SET state = $1, updated_at = clock_timestamp() WHERE state = ANY($2)",
                state::table("backfills")
            ),
            &[&to, &from],
        )
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_resume_and_cancel_move_only_from_where_they_can() {
        assert_eq!(Control::Pause.transition(), ("paused", &["running"][..]));
        assert_eq!(
            Control::Resume.transition(),
            ("running", &["paused", "cancelled"][..])
        );
        assert_eq!(
            Control::Cancel.transition(),
            ("cancelled", &["running", "paused"][..])
        );
        // Nothing moves a finished backfill.
        for c in [Control::Pause, Control::Resume, Control::Cancel] {
            assert!(!c.transition().1.contains(&"done"));
        }
    }

    #[test]
    fn batch_size_follows_the_time_target_within_bounds() {
        let s = BackfillSettings::default();
        let ms = Duration::from_millis;
        assert_eq!(next_batch_size(1000, ms(75), &s, false), 2000);
        assert_eq!(next_batch_size(1000, ms(300), &s, false), 500);
        assert_eq!(next_batch_size(1000, ms(150), &s, false), 1000);
        assert_eq!(next_batch_size(40_000, ms(1), &s, false), 50_000);
        assert_eq!(next_batch_size(150, ms(10_000), &s, false), 100);
    }
}
