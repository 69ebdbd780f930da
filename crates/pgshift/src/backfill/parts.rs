//! Parallel workers: the table cut into parts of about equal size, by the key's histogram
//! (or by walking the key when the statistics are stale), or by page ranges.

use super::Walk;
use crate::error::Result;
use crate::plan::BackfillSpec;
use crate::quote::{ident, Quoted};
use tokio_postgres::Client;

/// Part bounds: (start cursor, start page, upper bound). One part when `workers` is 1 or
/// the table is too small to be worth splitting. Key splits of a one-column key come from
/// the column's histogram when the statistics are fresh (one catalog read); otherwise, and
/// for composite keys, from index-only walks to evenly spaced offsets (a walk to the
/// middle of 2,000,000 keys takes about 0.25 s here). Page splits are even.
pub(super) async fn split(
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
            let cols: Vec<Quoted> = key.iter().map(|k| ident(k)).collect();
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
                    Some(r) => splits.push(r.try_get(0)?),
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

pub(super) type PartBounds = (Option<Vec<String>>, i64, Option<Vec<String>>);

/// The parts between increasing split keys: up to the first, between each two, from the last.
pub(super) fn bounds_between(splits: Vec<Vec<String>>) -> Vec<PartBounds> {
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
pub(super) async fn histogram_splits(
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
    let histogram: Vec<String> = row.try_get(0)?;
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

/// How many workers `auto` gives a backfill of `target` (quoted and qualified), the way
/// PostgreSQL sizes a parallel scan: none past the first below `min_parallel_table_scan_size`,
/// then one more each time the table is three times larger; at most the server's
/// `max_parallel_maintenance_workers` (the processes a DBA lets one parallel index build
/// take, so a copy takes no more of the machine than a CREATE INDEX would); and at most half
/// the connections still free, so the application keeps the rest.
pub(super) async fn auto_workers(client: &Client, target: &str) -> Result<u32> {
    let row = client
        .query_one(
            "SELECT pg_relation_size($1::text::regclass) / current_setting('block_size')::bigint,
                    (SELECT setting::bigint FROM pg_catalog.pg_settings WHERE name = 'min_parallel_table_scan_size'),
                    current_setting('max_parallel_maintenance_workers')::bigint,
                    current_setting('max_connections')::bigint
                      - current_setting('superuser_reserved_connections')::bigint
                      - (SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE backend_type = 'client backend')",
            &[&target],
        )
        .await?;
    Ok(workers_for(
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
    ))
}

/// How many partitions' backfills run at once, one worker each, when the workers are sized
/// automatically: as many as one parallel maintenance command may use
/// (`max_parallel_maintenance_workers`, at least one), within half the free connections, as
/// for the workers of one table.
pub async fn partitions_at_once(client: &Client) -> Result<u32> {
    let row = client
        .query_one(
            "SELECT current_setting('max_parallel_maintenance_workers')::bigint,
                    current_setting('max_connections')::bigint
                      - current_setting('superuser_reserved_connections')::bigint
                      - (SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE backend_type = 'client backend')",
            &[],
        )
        .await?;
    Ok(at_once_for(row.try_get(0)?, row.try_get(1)?))
}

/// `partitions_at_once`' rule over `max_parallel_maintenance_workers` and the connections
/// free.
pub(super) fn at_once_for(max_maintenance: i64, free: i64) -> u32 {
    max_maintenance.max(1).min((free / 2).max(1)).clamp(1, 64) as u32
}

/// `auto_workers`' rule over the numbers it reads: the table's pages, the server's
/// `min_parallel_table_scan_size` (in pages), `max_parallel_maintenance_workers`, and the
/// connections free.
pub(super) fn workers_for(pages: i64, min_pages: i64, max_maintenance: i64, free: i64) -> u32 {
    let mut n: i64 = 1;
    let mut threshold = min_pages.max(1);
    if pages >= threshold {
        n = 2;
        threshold = threshold.saturating_mul(3);
        while pages >= threshold {
            n += 1;
            threshold = threshold.saturating_mul(3);
        }
    }
    n.min(max_maintenance.max(1))
        .min((free / 2).max(1))
        .clamp(1, 64) as u32
}

/// Below these, one worker does the whole table.
pub(super) const MIN_ROWS_PER_WORKER: i64 = 50_000;

pub(super) const MIN_PAGES_PER_WORKER: i64 = 100;

#[cfg(test)]
mod tests {
    use super::{at_once_for, workers_for};

    #[test]
    fn partitions_at_once_follow_the_maintenance_workers_within_the_free_connections() {
        assert_eq!(at_once_for(2, 90), 2, "the default");
        assert_eq!(at_once_for(8, 90), 8);
        assert_eq!(
            at_once_for(0, 90),
            1,
            "no parallel maintenance: one at a time"
        );
        assert_eq!(at_once_for(8, 6), 3, "few connections free");
        assert_eq!(at_once_for(8, 0), 1);
    }

    #[test]
    fn auto_workers_grow_with_the_table_within_what_the_server_allows() {
        // Defaults: min_parallel_table_scan_size 8 MB (1024 pages), 2 maintenance workers.
        assert_eq!(workers_for(100, 1024, 2, 90), 1, "a small table");
        assert_eq!(workers_for(1024, 1024, 2, 90), 2);
        assert_eq!(workers_for(21_900, 1024, 2, 90), 2, "S2's 171 MB, capped");
        assert_eq!(
            workers_for(21_900, 1024, 8, 90),
            4,
            "as PostgreSQL would scan it"
        );
        assert_eq!(workers_for(250_000, 1024, 8, 90), 7);
        assert_eq!(
            workers_for(250_000, 1024, 0, 90),
            1,
            "no parallel maintenance allowed"
        );
        assert_eq!(workers_for(250_000, 1024, 8, 5), 2, "few connections free");
        assert_eq!(workers_for(250_000, 1024, 8, 0), 1);
    }
}
