//! One batch: a short transaction that writes the rows between the cursor and the batch's
//! last key (or a range of pages) and saves the cursor with the counts, so that a run killed
//! at any moment continues after the last committed batch.

use super::{Position, Run, Walk};
use crate::error::{Error, Result};
use crate::exec::{BackfillSettings, Policy};
use crate::plan::{expression, BackfillSpec};
use crate::quote::{ident, qualified, Quoted};
use crate::state;
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

impl Run<'_> {
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
    pub(super) async fn batch(
        &self,
        size: i64,
        position: &Position,
    ) -> Result<(i64, bool, Position, i64)> {
        let mut size = size;
        let mut cap = (self.settings.batch_time.as_millis() as u64 * 3 / 2).max(100);
        let what = format!("backfill batch on {}", self.target);
        for _ in 0..50 {
            let policy = Policy::Batch {
                statement_timeout: Some(Duration::from_millis(cap)),
                // The dual-write triggers know a backfill's own writes by it.
                settings: &[("pgshift.backfill", "on")],
            };
            // The executor retries the batch while a row lock is not granted in time.
            let outcome = self
                .exec
                .transaction(policy, &what, |client| {
                    self.batch_in_transaction(client, size, position)
                })
                .await;
            match outcome {
                Ok((rows, finished, next)) => return Ok((rows, finished, next, size)),
                Err(Error::Statement { source, .. })
                    if source.code() == Some(&SqlState::QUERY_CANCELED) =>
                {
                    if size > 1 {
                        size = (size / 4).max(1);
                    } else {
                        // One row (or one page) still over the cap: the server is loaded,
                        // not the batch too big. Allow it longer, up to 30 s, rather than
                        // end the run.
                        cap = (cap * 2).min(30_000);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::CannotResume(format!(
            "{what}: 50 batches in a row were cut short by their time cap, the last of {size} row(s) or page(s) at {cap} ms; pgshift backfill resume continues when the server is less loaded"
        )))
    }

    pub(super) async fn batch_in_transaction(
        &self,
        client: &Client,
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
                let upper: Option<Vec<String>> = client
                    .query_opt(upper_sql.as_str(), &upper_params)
                    .await?
                    .map(|r| r.try_get(0))
                    .transpose()?;
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
                let updated = client.execute(update_sql.as_str(), &update_params).await? as i64;
                client
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
                let updated = client
                    .execute(sql.as_str(), &[&from, &to, &self.start_xid])
                    .await? as i64;
                client
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
}

/// What a batch does to the rows it selects.
#[derive(Clone)]
pub(super) enum Write {
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
    pub(super) fn of(spec: &BackfillSpec, target: &str) -> Write {
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
                into: qualified(&spec.schema, &insert.table).into(),
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
    pub(super) fn sql(&self, filter: &str) -> String {
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
    pub(super) fn leaves_dead_rows(&self) -> bool {
        matches!(self, Write::Update { .. })
    }
}

/// Batch size for the next batch: scaled towards the time target, at most doubling or
/// halving at a time, within the configured bounds.
pub(super) fn next_batch_size(
    size: i64,
    took: Duration,
    s: &BackfillSettings,
    blocks: bool,
) -> i64 {
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
pub(super) fn keyset_sql(
    target: &str,
    key: &[String],
    types: &[String],
    write: &Write,
    condition: &str,
    with_cursor: bool,
    bounded: bool,
) -> (String, (String, String)) {
    let cols: Vec<Quoted> = key.iter().map(|k| ident(k)).collect();
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

#[cfg(test)]
mod tests {
    use super::*;

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
