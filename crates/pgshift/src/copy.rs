//! The catch-up of a table's copy (`alter_column` with `method: copy`, see
//! `plan/ops/copy_table.rs`): the keys a trigger logged since the copy began are replayed in
//! batches, each row copied again from its current state, until fewer than a batch's tenth
//! are left for the short switch transaction that replays the rest with writes blocked.
//!
//! Each batch is one transaction: the keys leave the log in the same transaction that
//! rewrites their rows, so a crash loses no key and a rerun replays nothing twice. A row
//! written again after its replay is logged again and replayed again; a write still in flight
//! is invisible to the batch, and so is its logged key: it is replayed once committed.

use crate::error::Result;
use crate::exec::{Executor, Policy};
use crate::plan::CatchUpSpec;
use crate::quote::ident;

const BATCH: i64 = 10_000;

/// Replays the log until a batch finds fewer than `BATCH / 10` keys.
pub async fn catch_up(exec: &Executor, spec: &CatchUpSpec) -> Result<u64> {
    let k = ident(&spec.key);
    let take = format!(
        "WITH taken AS (DELETE FROM {log} WHERE seq IN (SELECT seq FROM {log} ORDER BY seq LIMIT $1) RETURNING k)
         SELECT coalesce(array_agg(DISTINCT k::text), '{{}}') FROM taken",
        log = spec.log
    );
    let remove = format!(
        "DELETE FROM {} WHERE {k} = ANY($1::text[]::{}[])",
        spec.shadow, spec.key_type
    );
    let copy = format!(
        "INSERT INTO {} ({}) SELECT {} FROM {} WHERE {k} = ANY($1::text[]::{}[])",
        spec.shadow, spec.columns, spec.from_source, spec.source, spec.key_type
    );
    let what = format!("catching up {} with {}", spec.shadow, spec.source);
    let mut replayed = 0u64;
    loop {
        // Through the executor: a batch that meets a client's row lock or a deadlock is rolled
        // back and retried (the keys go back to the log with it), as every batch is.
        let n = exec
            .transaction(
                Policy::Batch {
                    statement_timeout: None,
                    settings: &[],
                },
                &what,
                |client| {
                    let (take, remove, copy) = (&take, &remove, &copy);
                    async move {
                        let keys: Vec<String> = client
                            .query_one(take.as_str(), &[&BATCH])
                            .await?
                            .try_get(0)?;
                        if !keys.is_empty() {
                            client.execute(remove.as_str(), &[&keys]).await?;
                            client.execute(copy.as_str(), &[&keys]).await?;
                        }
                        Ok(keys.len())
                    }
                },
            )
            .await?;
        replayed += n as u64;
        if (n as i64) < BATCH / 10 {
            return Ok(replayed);
        }
    }
}
