//! The phases: what runs a migration's steps, journaled so that the same command after a
//! crash continues where the last one stopped.
//!
//! [`run_phase`] runs the steps of one phase of a stored plan in order; [`structured`] is the
//! life of an expand/contract migration (start, complete, rollback) over it; [`sql`] applies a
//! raw SQL migration in journaled segments.

pub mod sql;
pub mod structured;
mod swap;

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::event::RunEvent;
use crate::plan::{self, Action, PlannedStep};
use crate::session::Session;
use crate::sql::Statement;
use crate::state::{self, MigrationState, Phase, StepState};
use std::time::Instant;

/// The event of step `index` (0-based) of `total` done, begun at `t0`.
fn step_done(name: &str, index: usize, total: usize, step: &PlannedStep, t0: Instant) -> RunEvent {
    RunEvent::StepDone {
        migration: name.to_owned(),
        step: index + 1,
        of: total,
        what: step.description.clone(),
        ms: t0.elapsed().as_millis() as u64,
    }
}

/// The event of step `index` (0-based) skipped, done by an earlier run.
fn done_before(name: &str, index: usize) -> RunEvent {
    RunEvent::StepSkipped {
        migration: name.to_owned(),
        step: index + 1,
        reason: "done in an earlier run".to_owned(),
    }
}

fn runs_together(step: &PlannedStep) -> bool {
    matches!(
        &step.action,
        Action::Sql { statement, together: true } if statement.transactional
    )
}

/// Runs the steps numbered `which` (0-based) at the same time, up to `index_builds` at
/// once (each executor takes the next step as soon as it is free), each in its own
/// transaction with its own journal entry: a run killed halfway leaves each either done
/// and journaled or not begun.
async fn run_together(
    s: &Session<'_>,
    name: &str,
    phase: Phase,
    steps: &[PlannedStep],
    which: &[usize],
) -> Result<()> {
    let exec = s.exec();
    let at_once = (exec.settings().index_builds.max(1) as usize).min(which.len().max(1));
    let others = more_executors(exec, at_once).await?;
    let total = steps.len();
    each_on(
        std::iter::once(exec).chain(others.iter()).collect(),
        which,
        |on, k| async move {
            let step = &steps[k];
            let Action::Sql { statement, .. } = &step.action else {
                return Ok(());
            };
            let t0 = Instant::now();
            let finish = [state::step_done_sql(
                name,
                phase,
                k as i32 + 1,
                &step.description,
            )];
            on.run_transaction(std::slice::from_ref(statement), &finish)
                .await?;
            s.emit(&step_done(name, k, total, step, t0));
            Ok(())
        },
    )
    .await
}

/// `at_once - 1` more connections beside `exec`'s.
async fn more_executors(
    exec: &crate::exec::Executor,
    at_once: usize,
) -> Result<Vec<crate::exec::Executor>> {
    let mut others = Vec::new();
    for _ in 1..at_once {
        others.push(exec.another().await?);
    }
    Ok(others)
}

/// Runs `run(executor, k)` for each step `k` of `which` on `executors`, each taking the next
/// as soon as it is free; the first error stops the others.
async fn each_on<'a, F, Fut>(
    executors: Vec<&'a crate::exec::Executor>,
    which: &'a [usize],
    run: F,
) -> Result<()>
where
    F: Fn(&'a crate::exec::Executor, usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (next, run) = (&next, &run);
    futures_util::future::try_join_all(executors.into_iter().map(|on| async move {
        while let Some(&k) = which.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
            run(on, k).await?;
        }
        Ok::<(), Error>(())
    }))
    .await?;
    Ok(())
}

/// Steps next to each other that run at the same time.
#[derive(Clone, Copy, PartialEq)]
enum Group<'a> {
    /// Transactional SQL steps that say so (index builds on a copy).
    Sql,
    /// The backfills of one partitioned table's partitions.
    Partitions(&'a str),
}

fn together_group(step: &PlannedStep) -> Option<Group<'_>> {
    match &step.action {
        Action::Backfill(b) => b.partition_of.as_deref().map(Group::Partitions),
        _ if runs_together(step) => Some(Group::Sql),
        _ => None,
    }
}

/// Runs the backfill steps numbered `which` (0-based, partitions of one table) several at
/// once, one worker each: `--backfill-workers` of them, or as many as
/// [`crate::backfill::partitions_at_once`] says. Each executor takes the next partition as
/// soon as it is free; each step is journaled on its own (running, then done), and each
/// backfill saves its cursor with every batch, so a run killed halfway resumes every
/// partition where it stopped. One at a time, a partition's backfill sizes its own workers.
async fn run_backfills_together(
    s: &Session<'_>,
    name: &str,
    phase: Phase,
    steps: &[PlannedStep],
    which: &[usize],
) -> Result<()> {
    let exec = s.exec();
    let at_once = match exec.settings().backfill.workers {
        crate::exec::Workers::Fixed(n) => n as usize,
        crate::exec::Workers::Auto => {
            crate::backfill::partitions_at_once(exec.client()).await? as usize
        }
    }
    .clamp(1, which.len().max(1));
    let workers = if at_once > 1 {
        crate::exec::Workers::Fixed(1)
    } else {
        exec.settings().backfill.workers
    };
    let others = more_executors(exec, at_once).await?;
    let total = steps.len();
    each_on(
        std::iter::once(exec).chain(others.iter()).collect(),
        which,
        |on, k| async move {
            let step = &steps[k];
            let Action::Backfill(spec) = &step.action else {
                return Ok(());
            };
            let number = k as i32 + 1;
            let t0 = Instant::now();
            state::step_running(on, name, phase, number, &step.description).await?;
            crate::backfill::run_on(on, s.events(), name, number, spec, workers).await?;
            on.run_transaction(
                &[],
                &[state::step_done_sql(name, phase, number, &step.description)],
            )
            .await?;
            s.emit(&step_done(name, k, total, step, t0));
            Ok(())
        },
    )
    .await
}

/// Runs the steps of one phase, skipping those the journal says are done. The last step's
/// transaction also records `final_status` (None: forget the migration, after rollback).
pub(crate) async fn run_phase(
    s: &Session<'_>,
    name: &str,
    phase: Phase,
    steps: &[PlannedStep],
    version_schema: &str,
    final_status: Option<MigrationState>,
) -> Result<()> {
    let exec = s.exec();
    let client = s.client();
    let schema = s.schema();
    let journal = state::journal(client, name, phase).await?;
    let total = steps.len();
    let final_sql = match final_status {
        None => state::forget_sql(name),
        Some(status) => state::set_status_sql(name, status),
    };
    // Whether the last step was done by an earlier run (killed after its commit): then its
    // transaction set the final status before this run set the phase's status again.
    let mut last_done_before = false;
    let mut ran_together = 0;
    // The journal's state of step `k` (0-based).
    let journaled = |k: usize| {
        journal
            .iter()
            .find(|(n, _)| *n == k as i32 + 1)
            .map(|(_, s)| *s)
    };
    for (i, step) in steps.iter().enumerate() {
        if i < ran_together {
            continue;
        }
        let number = i as i32 + 1;
        let last = i + 1 == total;
        if let (Some(g), false) = (together_group(step), last) {
            // This step and the next ones of its group, several at once (never the phase's
            // last, whose transaction also records the migration's status).
            ran_together = (i..total - 1)
                .find(|&k| together_group(&steps[k]) != Some(g))
                .unwrap_or(total - 1);
            let mut pending = Vec::new();
            for k in i..ran_together {
                if journaled(k) == Some(StepState::Done) {
                    s.emit(&done_before(name, k));
                } else {
                    pending.push(k);
                }
            }
            match g {
                Group::Sql => run_together(s, name, phase, steps, &pending).await?,
                Group::Partitions(_) => {
                    run_backfills_together(s, name, phase, steps, &pending).await?
                }
            }
            continue;
        }
        let journaled = journaled(i);
        if journaled == Some(StepState::Done) {
            last_done_before = last;
            s.emit(&done_before(name, i));
            continue;
        }
        let t0 = Instant::now();
        let mut finish = vec![state::step_done_sql(name, phase, number, &step.description)];
        if last && final_status.is_some() {
            finish.push(final_sql.clone());
        }
        match &step.action {
            Action::Sql { statement, .. } if statement.transactional => {
                exec.run_transaction(std::slice::from_ref(statement), &finish)
                    .await?;
            }
            Action::Sql { statement, .. } => {
                state::step_running(exec, name, phase, number, &step.description).await?;
                exec.run_alone(statement, journaled == Some(StepState::Running))
                    .await?;
                exec.run_transaction(&[], &finish).await?;
            }
            Action::Backfill(spec) => {
                state::step_running(exec, name, phase, number, &step.description).await?;
                crate::backfill::run(s, name, number, spec).await?;
                exec.run_transaction(&[], &finish).await?;
            }
            Action::CatchUp(spec) => {
                state::step_running(exec, name, phase, number, &step.description).await?;
                crate::copy::catch_up(exec, spec).await?;
                exec.run_transaction(&[], &finish).await?;
            }
            Action::RefreshVersionSchema { planned, known } => {
                let catalog = Catalog::load(client, schema).await?;
                let vs = planned.refreshed(&catalog, known);
                let mut sql = plan::version_schema_statements(
                    schema,
                    version_schema,
                    &vs,
                    catalog.server_version_num,
                );
                sql.extend(
                    crate::fidelity::version_access(
                        client,
                        schema,
                        version_schema,
                        &vs,
                        catalog.server_version_num,
                    )
                    .await?,
                );
                let stmts: Vec<Statement> = sql.into_iter().map(Statement::ddl).collect();
                exec.run_transaction(&stmts, &finish).await?;
            }
            Action::Swap(spec) => {
                swap::run(exec, name, spec, &step.description, &finish).await?;
            }
            Action::CarryAccess {
                schema,
                from,
                to,
                through,
            } => {
                let sql = match through {
                    None => crate::fidelity::access_to(client, schema, from, to).await?,
                    Some(t) => {
                        crate::fidelity::extracted::access(client, schema, from, to, t).await?
                    }
                };
                let stmts: Vec<Statement> = sql.into_iter().map(Statement::ddl).collect();
                exec.run_transaction(&stmts, &finish).await?;
            }
            Action::ValidateCarried => {
                swap::validate_carried(exec, name).await?;
                exec.run_transaction(&[], &finish).await?;
            }
            Action::LegacyVersionSchema => {
                return Err(Error::CannotResume(format!(
                    "the start of {name} was planned by an earlier pgshift, whose version schema step this one does not run\nhint: pgshift rollback undoes it; then pgshift start the file again"
                )));
            }
        }
        s.emit(&step_done(name, i, total, step, t0));
    }
    if total == 0 || final_status.is_none() || last_done_before {
        exec.bookkeeping("recording the phase", std::slice::from_ref(&final_sql))
            .await?;
    }
    Ok(())
}
