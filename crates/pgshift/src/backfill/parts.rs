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

/// Below these, one worker does the whole table.
pub(super) const MIN_ROWS_PER_WORKER: i64 = 50_000;

pub(super) const MIN_PAGES_PER_WORKER: i64 = 100;
