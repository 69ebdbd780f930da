//! Filling new columns of existing rows, batch by batch, each batch its own short
//! transaction that writes the new values itself.
//!
//! Batches walk the primary key (or a unique NOT NULL key), any type, composite included,
//! by keyset: `WHERE (key) > (last key of the previous batch) ORDER BY key LIMIT n`. A table
//! with neither is walked by block ranges (`ctid`), up to the size it had when the backfill
//! began (rows written later go through the triggers). The session sets
//! `pgshift.backfill = on` so the dual-write triggers leave these updates alone.
//!
//! This is the simple loop; the throttled, resumable engine replaces `run` without changing
//! its callers.

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::plan::{expression, BackfillSpec};
use crate::quote::{ident, qualified};
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

/// Rows a batch updates.
pub const BATCH_ROWS: i64 = 1000;
/// Pages a block-range batch covers.
const BATCH_PAGES: i64 = 64;

/// Runs a backfill to the end; returns the rows updated.
pub async fn run(client: &Client, spec: &BackfillSpec, lock_timeout: Duration) -> Result<u64> {
    let catalog = Catalog::load(client, &spec.schema).await?;
    let Some(table) = catalog.table(&spec.table) else {
        return Err(Error::CannotResume(format!(
            "backfill: table {}.{} does not exist",
            spec.schema, spec.table
        )));
    };
    let assignments: Vec<String> = spec
        .set
        .iter()
        .map(|(col, expr)| format!("{} = {}", ident(col), expression(expr)))
        .collect();
    let target = qualified(&spec.schema, &spec.table);
    let lock = format!("{}ms", lock_timeout.as_millis().max(1));
    match table.backfill_key() {
        Some(key) => {
            let types: Vec<String> = key
                .iter()
                .map(|k| {
                    table
                        .column(k)
                        .map(|c| c.data_type.clone())
                        .unwrap_or_else(|| "text".to_owned())
                })
                .collect();
            keyset(client, &target, key, &types, &assignments, &lock).await
        }
        None => block_ranges(client, &target, &assignments, &lock).await,
    }
}

async fn keyset(
    client: &Client,
    target: &str,
    key: &[String],
    types: &[String],
    assignments: &[String],
    lock: &str,
) -> Result<u64> {
    let cols: Vec<String> = key.iter().map(|k| ident(k)).collect();
    let cols_list = cols.join(", ");
    let cursor_params: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, ty)| format!("${}::text::{ty}", i + 1))
        .collect();
    // The batch's columns get internal names: an `up` expression that mentions a key
    // column must see the table's, not the batch's.
    let aliases: Vec<String> = (0..cols.len()).map(|i| format!("_pgshift_k{i}")).collect();
    let select_list: Vec<String> = cols
        .iter()
        .zip(&aliases)
        .map(|(c, a)| format!("{c} AS {a}"))
        .collect();
    let join: Vec<String> = cols
        .iter()
        .zip(&aliases)
        .map(|(c, a)| format!("{target}.{c} = batch.{a}"))
        .collect();
    let last_key: Vec<String> = aliases.iter().map(|a| format!("{a}::text")).collect();
    let desc: Vec<String> = aliases.iter().map(|a| format!("{a} DESC")).collect();
    let statement = |with_cursor: bool| {
        format!(
            "WITH batch AS (SELECT {} FROM {target}{} ORDER BY {cols_list} LIMIT {BATCH_ROWS}),
                  upd AS (UPDATE {target} SET {} FROM batch WHERE {} RETURNING 1)
             SELECT (SELECT count(*) FROM upd), (SELECT ARRAY[{}] FROM batch ORDER BY {} LIMIT 1)",
            select_list.join(", "),
            if with_cursor {
                format!(" WHERE ({cols_list}) > ({})", cursor_params.join(", "))
            } else {
                String::new()
            },
            assignments.join(", "),
            join.join(" AND "),
            last_key.join(", "),
            desc.join(", ")
        )
    };
    let first = statement(false);
    let next = statement(true);
    let mut cursor: Option<Vec<String>> = None;
    let mut total = 0u64;
    loop {
        let row = with_retries(client, lock, || {
            let c = client;
            let cursor = cursor.clone();
            let (first, next) = (&first, &next);
            async move {
                match &cursor {
                    None => c.query_one(first.as_str(), &[]).await,
                    Some(values) => {
                        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = values
                            .iter()
                            .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
                            .collect();
                        c.query_one(next.as_str(), &params).await
                    }
                }
            }
        })
        .await?;
        let updated: i64 = row.get(0);
        let last: Option<Vec<Option<String>>> = row.get(1);
        total += updated as u64;
        match last {
            Some(values) if updated > 0 => {
                cursor = Some(values.into_iter().map(|v| v.unwrap_or_default()).collect());
            }
            _ => return Ok(total),
        }
        if updated < BATCH_ROWS {
            return Ok(total);
        }
    }
}

async fn block_ranges(
    client: &Client,
    target: &str,
    assignments: &[String],
    lock: &str,
) -> Result<u64> {
    let pages: i64 = client
        .query_one(
            "SELECT (pg_relation_size($1::text::regclass) / current_setting('block_size')::bigint)",
            &[&target],
        )
        .await?
        .get(0);
    let sql = format!(
        "UPDATE {target} SET {} WHERE ctid >= format('(%s,0)', $1::bigint)::tid AND ctid < format('(%s,0)', $2::bigint)::tid",
        assignments.join(", ")
    );
    let mut total = 0u64;
    let mut page = 0i64;
    while page <= pages {
        let (from, to) = (page, page + BATCH_PAGES);
        let n = with_retries(client, lock, || {
            let c = client;
            let sql = &sql;
            async move { c.execute(sql.as_str(), &[&from, &to]).await }
        })
        .await?;
        total += n;
        page = to;
    }
    Ok(total)
}

/// One batch in its own transaction, with the backfill marker and a lock timeout; a batch
/// that waits too long for a row lock rolls back and runs again.
async fn with_retries<T, F, Fut>(client: &Client, lock: &str, mut batch: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, tokio_postgres::Error>>,
{
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        client.batch_execute("BEGIN").await?;
        client
            .execute(
                "SELECT set_config('pgshift.backfill', 'on', true), set_config('lock_timeout', $1, true)",
                &[&lock],
            )
            .await?;
        match batch().await {
            Ok(v) => {
                client.batch_execute("COMMIT").await?;
                return Ok(v);
            }
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                let retryable = matches!(e.code(), Some(c) if *c == SqlState::LOCK_NOT_AVAILABLE || *c == SqlState::T_R_DEADLOCK_DETECTED);
                if !retryable || attempt >= 50 {
                    return Err(Error::Statement {
                        context: "backfill batch failed".to_owned(),
                        source: e,
                    });
                }
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt.min(20)))).await;
            }
        }
    }
}
