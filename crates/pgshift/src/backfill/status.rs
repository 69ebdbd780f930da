//! `pgshift backfill status`: the progress of every backfill, read from the state schema.

use crate::error::Result;
use crate::event::Progress;
use crate::state;
use tokio_postgres::Client;

pub(super) fn progress_row(r: &tokio_postgres::Row) -> Result<Progress> {
    let rows_done: i64 = r.try_get(3)?;
    let total_estimate: i64 = r.try_get(4)?;
    let elapsed: f64 = r.try_get(5)?;
    let rate = if elapsed > 0.0 {
        rows_done as f64 / elapsed
    } else {
        0.0
    };
    let state: String = r.try_get(2)?;
    Ok(Progress {
        migration: r.try_get(0)?,
        table: r.try_get(1)?,
        eta_seconds: (rate > 0.0 && state != "done")
            .then(|| ((total_estimate - rows_done).max(0) as f64) / rate),
        state,
        rows_done,
        total_estimate,
        rows_per_second: (rate * 10.0).round() / 10.0,
        elapsed_seconds: (elapsed * 10.0).round() / 10.0,
        batch_size: r.try_get::<_, i32>(6)? as i64,
        throttle_reason: r.try_get(7)?,
        workers: r.try_get::<_, i32>(8)? as i64,
    })
}

/// Progress of whole backfills, their parts summed, from `pgshift.backfills` rows that
/// match `filter`.
pub(super) fn progress_sql(filter: &str) -> String {
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

pub(super) async fn status_of(client: &Client, id: i64) -> Result<Option<Progress>> {
    let row = client
        .query_opt(
            &progress_sql(&format!(
                "(migration, step) = (SELECT migration, step FROM {} WHERE id = $1)",
                state::table("backfills")
            )),
            &[&id],
        )
        .await?;
    row.as_ref().map(progress_row).transpose()
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
    rows.iter().map(progress_row).collect()
}
