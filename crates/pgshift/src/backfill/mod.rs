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
use crate::exec::{BackfillSettings, Executor, Policy, Workers};
use crate::plan::BackfillSpec;
use crate::quote::qualified;
use crate::session::Session;
use crate::state::{self, BackfillState};

mod batch;
mod control;
mod parts;
mod status;
mod vacuum;
mod walk;

use batch::Write;
pub use parts::partitions_at_once;
use parts::{auto_workers, split};
use vacuum::Vacuum;

pub use control::{control, control_and_record, Control};
pub use status::status;

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
    /// This part's executor (the first part's is the command's own).
    exec: &'a Executor,
    settings: &'a BackfillSettings,
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
    state: BackfillState,
    batch_size: i64,
    position: Position,
    upper: Option<Vec<String>>,
    start_xid: i64,
}

/// Runs (or resumes) a backfill to the end; returns the rows updated over all runs.
pub async fn run(s: &Session<'_>, migration: &str, step: i32, spec: &BackfillSpec) -> Result<i64> {
    let exec = s.exec();
    run_on(
        exec,
        s.events(),
        migration,
        step,
        spec,
        exec.settings().backfill.workers,
    )
    .await
}

/// [`run`] on the executor `exec` (one of several backfills running at once), its parts
/// sized by `workers` the first time it runs.
pub async fn run_on(
    exec: &Executor,
    on_event: crate::session::EventSink<'_>,
    migration: &str,
    step: i32,
    spec: &BackfillSpec,
    workers: Workers,
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
    let target = qualified(&spec.schema, &spec.table).to_string();
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
                .try_get(0)?;
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
        exec,
        migration,
        step,
        spec,
        &spec_json,
        &target,
        &walk,
        first_size,
        total_estimate,
        workers,
    )
    .await?;
    let write = Write::of(spec, &target);
    let condition = spec
        .condition
        .as_deref()
        .map(|c| format!(" AND ({c})"))
        .unwrap_or_default();
    let pending: Vec<Part> = parts
        .into_iter()
        .filter(|p| p.state != BackfillState::Done)
        .collect();
    // One executor per pending part; the first is the command's own.
    let mut others = Vec::new();
    for _ in 1..pending.len() {
        others.push(exec.another().await?);
    }
    // And one per part for its vacuums, unless vacuuming is off.
    let mut vacuum_executors = Vec::new();
    if settings.vacuum_every_rows > 0 && write.leaves_dead_rows() {
        for _ in 0..pending.len() {
            vacuum_executors.push(exec.another().await?);
        }
    }
    let runs: Vec<(Run, Part)> = pending
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            let run = Run {
                exec: if i == 0 { exec } else { &others[i - 1] },
                settings,
                id: part.id,
                upper: part.upper.clone(),
                start_xid: part.start_xid,
                vacuum: Vacuum::new(vacuum_executors.pop()),
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
        .try_get(0)?;
    Ok(done)
}

/// Registers the parts of a backfill the first time it runs (one, or `workers` over
/// disjoint ranges of the key or of the pages), or picks up the parts an earlier,
/// interrupted run left, whatever their number. Returns them in order.
#[allow(clippy::too_many_arguments)]
async fn register(
    exec: &Executor,
    migration: &str,
    step: i32,
    spec: &BackfillSpec,
    spec_json: &serde_json::Value,
    target: &str,
    walk: &Walk,
    first_size: i64,
    total_estimate: i64,
    workers: Workers,
) -> Result<Vec<Part>> {
    let client = exec.client();
    let table = state::table("backfills");
    let existing: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM {table} WHERE migration = $1 AND step = $2"),
            &[&migration, &step],
        )
        .await?
        .try_get(0)?;
    if existing == 0 {
        // (start cursor, start page, upper bound) per part.
        let workers = match workers {
            Workers::Fixed(n) => n,
            Workers::Auto => auto_workers(client, target).await?,
        };
        let bounds = split(client, spec, target, walk, total_estimate, workers).await?;
        let insert = format!(
            "INSERT INTO {table} (migration, step, part, table_schema, table_name, spec, batch_size, state, total_estimate, cursor, pages_done, upper_bound, start_xid)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8, $9, $10, $11, pg_snapshot_xmax(pg_current_snapshot())::text::bigint)
             ON CONFLICT (migration, step, part) DO NOTHING"
        );
        let what = format!("registering the backfill of {target}");
        exec.transaction(Policy::Bookkeeping, &what, |client| {
            let (insert, bounds) = (&insert, &bounds);
            async move {
                for (part, (cursor, pages_done, upper)) in bounds.iter().enumerate() {
                    client
                        .execute(
                            insert.as_str(),
                            &[
                                &migration,
                                &step,
                                &(part as i32),
                                &spec.schema,
                                &spec.table,
                                spec_json,
                                &(first_size as i32),
                                &total_estimate,
                                cursor,
                                pages_done,
                                upper,
                            ],
                        )
                        .await?;
                }
                Ok(())
            }
        })
        .await?;
    }
    let rows = exec
        .bookkeeping_query(
            &format!(
                "UPDATE {table} AS b
                   SET state = CASE WHEN b.state = 'done' THEN 'done' ELSE 'running' END, updated_at = clock_timestamp()
                 WHERE migration = $1 AND step = $2
                 RETURNING part, id, state, batch_size, cursor, pages_done, upper_bound, start_xid"
            ),
            &[&migration, &step],
        )
        .await?;
    let mut parts = rows
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<_, i32>(0)?,
                Part {
                    id: r.try_get(1)?,
                    state: BackfillState::parse(r.try_get(2)?)?,
                    batch_size: r.try_get::<_, i32>(3)? as i64,
                    position: Position {
                        cursor: r.try_get(4)?,
                        pages_done: r.try_get(5)?,
                    },
                    upper: r.try_get(6)?,
                    start_xid: r.try_get(7)?,
                },
            ))
        })
        .collect::<Result<Vec<(i32, Part)>>>()?;
    parts.sort_by_key(|(n, _)| *n);
    Ok(parts.into_iter().map(|(_, p)| p).collect())
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
