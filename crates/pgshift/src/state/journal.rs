//! `pgshift.steps`: the journal of each phase's steps, written in the step's own
//! transaction where the step has one.

use super::*;
use crate::error::Result;
use crate::exec::Executor;
use crate::quote::literal;
use tokio_postgres::Client;

/// The journal of a migration's phase: step number and state.
pub async fn journal(
    client: &Client,
    migration: &str,
    phase: Phase,
) -> Result<Vec<(i32, StepState)>> {
    let rows = client
        .query(
            &format!(
                "SELECT step, status FROM {} WHERE migration = $1 AND phase = $2 ORDER BY step",
                table("steps")
            ),
            &[&migration, &phase.as_str()],
        )
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, StepState::parse(r.try_get(1)?)?)))
        .collect()
}

/// SQL that journals a step as done; runs in the step's own transaction where it has one.
pub fn step_done_sql(migration: &str, phase: Phase, step: i32, description: &str) -> String {
    format!(
        "INSERT INTO {} (migration, phase, step, description, status, finished_at)
         VALUES ({}, {}, {step}, {}, 'done', clock_timestamp())
         ON CONFLICT (migration, phase, step) DO UPDATE SET status = 'done', finished_at = clock_timestamp()",
        table("steps"),
        literal(migration),
        literal(phase.as_str()),
        literal(description)
    )
}

/// Journals that a step which cannot run in a transaction is about to start, so that a run
/// after a crash knows it may have been (partly) done.
pub async fn step_running(
    exec: &Executor,
    migration: &str,
    phase: Phase,
    step: i32,
    description: &str,
) -> Result<()> {
    exec
        .bookkeeping_query(
            &format!(
                "INSERT INTO {} (migration, phase, step, description, status) VALUES ($1, $2, $3, $4, 'running')
                 ON CONFLICT (migration, phase, step) DO UPDATE SET status = 'running', started_at = clock_timestamp()",
                table("steps")
            ),
            &[&migration, &phase.as_str(), &step, &description],
        )
        .await?;
    Ok(())
}
