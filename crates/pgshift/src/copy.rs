//! The catch-up of a table's copy (see `plan/ops/copy_table.rs`): the keys a trigger logged
//! since the copy began are replayed in batches, each row copied again from its current
//! state.
//!
//! Before the switch to the sync triggers, the replay goes in rounds: each round replays the
//! log as it stood when the round began. Rounds end when one finds few keys, or when one
//! finds no fewer than the round before (clients write as fast as the replay goes), so the
//! catch-up ends however much clients write. The switch then takes its short lock only to
//! swap the log trigger for the sync triggers, whatever is left in the log; from then on no
//! key is logged, and the replay after the switch empties the log with clients writing
//! through the sync triggers. Each batch after the switch locks the source rows it reads
//! (FOR SHARE SKIP LOCKED), so a client's write of one of them waits for the batch and the
//! copy's row ends as the source's; a row a client holds goes back in the log for a later
//! batch, so the batch never waits for a client and never deadlocks with a client's
//! transaction.
//!
//! Each batch is one transaction: the keys leave the log in the same transaction that
//! rewrites their rows, so a crash loses no key and a rerun replays nothing twice. A row
//! written again after its replay is logged again and replayed again; a write still in flight
//! is invisible to the batch, and so is its logged key: it is replayed once committed.

use crate::error::{Error, Result};
use crate::exec::{Executor, Policy};
use crate::plan::CatchUpSpec;
use crate::quote::ident;

const BATCH: i64 = 10_000;

/// At most this many rounds before the switch, should the log keep shrinking slowly.
const MAX_ROUNDS: usize = 20;

/// Replays the log: in rounds before the switch (see the module's note), to its end after.
/// Returns the keys replayed.
pub async fn catch_up(exec: &Executor, spec: &CatchUpSpec) -> Result<u64> {
    let k = ident(&spec.key);
    let take = format!(
        "WITH taken AS (DELETE FROM {log} WHERE seq IN (SELECT seq FROM {log} WHERE seq <= $2 ORDER BY seq LIMIT $1) RETURNING k)
         SELECT coalesce(array_agg(DISTINCT k::text), '{{}}') FROM taken",
        log = spec.log
    );
    let cast = format!("$1::text[]::{}[]", spec.key_type);
    // Statements after `take`, each given the taken keys ($1) and, after the switch, the
    // keys of rows a client holds ($2, put back in the log).
    let (busy, statements) = if spec.after_switch {
        let busy = format!(
            "WITH locked AS (SELECT {k} FROM {source} WHERE {k} = ANY({cast}) FOR SHARE SKIP LOCKED),
                  busy AS (SELECT {k} FROM {source} WHERE {k} = ANY({cast}) AND {k} NOT IN (SELECT {k} FROM locked)),
                  back AS (INSERT INTO {log} (k) SELECT {k} FROM busy)
             SELECT coalesce(array_agg({k}::text), '{{}}') FROM busy",
            source = spec.source,
            log = spec.log
        );
        let conflict = if spec.upsert.is_empty() {
            "DO NOTHING".to_owned()
        } else {
            format!("DO UPDATE SET {}", spec.upsert)
        };
        let free = format!(
            "{k} = ANY({cast}) AND {k} <> ALL($2::text[]::{}[])",
            spec.key_type
        );
        (
            Some(busy),
            vec![
                if spec.replace {
                    format!("DELETE FROM {} WHERE {free}", spec.shadow)
                } else {
                    format!(
                        "DELETE FROM {} AS c WHERE c.{free} AND NOT EXISTS (SELECT FROM {} AS s WHERE s.{k} = c.{k})",
                        spec.shadow, spec.source
                    )
                },
                format!(
                    "INSERT INTO {} ({}) SELECT {} FROM {} WHERE {free}{}",
                    spec.shadow,
                    spec.columns,
                    spec.from_source,
                    spec.source,
                    if spec.replace {
                        String::new()
                    } else {
                        format!(" ON CONFLICT ({k}) {conflict}")
                    }
                ),
            ],
        )
    } else {
        (
            None,
            vec![
                format!("DELETE FROM {} WHERE {k} = ANY({cast})", spec.shadow),
                format!(
                    "INSERT INTO {} ({}) SELECT {} FROM {} WHERE {k} = ANY({cast})",
                    spec.shadow, spec.columns, spec.from_source, spec.source
                ),
            ],
        )
    };
    let last_seq = format!("SELECT coalesce(max(seq), 0) FROM {}", spec.log);
    let what = format!("catching up {} with {}", spec.shadow, spec.source);
    let mut replayed = 0u64;
    let mut previous_round: Option<u64> = None;
    for _ in 0..MAX_ROUNDS {
        // After the switch, the whole log, keys put back included.
        let upto: i64 = if spec.after_switch {
            i64::MAX
        } else {
            exec.client().query_one(&last_seq, &[]).await?.try_get(0)?
        };
        let mut round = 0u64;
        let mut waiting: Option<std::time::Instant> = None;
        let mut attempts = 0u32;
        loop {
            // Through the executor: a batch that meets a lock or a deadlock is rolled back
            // and retried (the keys go back to the log with it), as every batch is.
            let (n, held) = exec
                .transaction(
                    Policy::Batch {
                        statement_timeout: None,
                        settings: &[],
                    },
                    &what,
                    |client| {
                        let (take, busy, statements) = (&take, &busy, &statements);
                        async move {
                            let keys: Vec<String> = client
                                .query_one(take.as_str(), &[&BATCH, &upto])
                                .await?
                                .try_get(0)?;
                            if keys.is_empty() {
                                return Ok((0, 0));
                            }
                            let held: Vec<String> = match busy {
                                Some(b) => {
                                    client.query_one(b.as_str(), &[&keys]).await?.try_get(0)?
                                }
                                None => Vec::new(),
                            };
                            for s in statements {
                                if busy.is_some() {
                                    client.execute(s.as_str(), &[&keys, &held]).await?;
                                } else {
                                    client.execute(s.as_str(), &[&keys]).await?;
                                }
                            }
                            Ok((keys.len() - held.len(), held.len()))
                        }
                    },
                )
                .await?;
            round += n as u64;
            if n == 0 && held == 0 {
                break;
            }
            if n > 0 {
                waiting = None;
                attempts = 0;
            } else {
                // Every key left is a row a client holds: give it time to commit, as long as
                // a statement may wait for its lock.
                let since = *waiting.get_or_insert_with(std::time::Instant::now);
                attempts += 1;
                if since.elapsed() > exec.settings().max_lock_wait {
                    return Err(Error::LockWaitExceeded {
                        statement: format!(
                            "the replay of {held} rows of {} into {} (clients hold them in open transactions)",
                            spec.source, spec.shadow
                        ),
                        attempts,
                        waited: since.elapsed(),
                        blockers: Vec::new(),
                    });
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        replayed += round;
        if spec.after_switch {
            // Nothing is logged any more: one round empties the log.
            return Ok(replayed);
        }
        if round < (BATCH / 10) as u64 || previous_round.is_some_and(|p| round >= p) {
            return Ok(replayed);
        }
        previous_round = Some(round);
    }
    Ok(replayed)
}
