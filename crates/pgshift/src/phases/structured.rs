//! The life of an expand/contract migration: `start` (expand), `complete` (contract),
//! `rollback` (undo start). Start plans the migration against the live catalog and stores
//! the plan; every phase then runs the stored steps in order through [`run_phase`], each
//! journaled, so that the same command after a crash continues where the last one stopped.

use super::run_phase;
use crate::checks;
use crate::error::{Error, Refusal, Result};
use crate::event::RunEvent;
use crate::model::Migration;
use crate::plan::Plan;
use crate::session::Session;
use crate::source::MigrationFile;
use crate::state::{self, AuditEvent, Event, MigrationState, Phase};
use std::time::Instant;

/// The open migration, if any: (name, status).
pub async fn open_migration(
    client: &tokio_postgres::Client,
) -> Result<Option<(String, MigrationState)>> {
    let open: Vec<MigrationState> = MigrationState::ALL
        .iter()
        .copied()
        .filter(|m| m.is_open())
        .collect();
    let row = client
        .query_opt(
            &format!(
                "SELECT name, status FROM {} WHERE plan IS NOT NULL AND status IN ({}) ORDER BY started_at DESC LIMIT 1",
                state::table("migrations"),
                MigrationState::sql_list(&open)
            ),
            &[],
        )
        .await?;
    row.map(|r| Ok((r.try_get(0)?, MigrationState::parse(r.try_get(1)?)?)))
        .transpose()
}

/// `pgshift start`: expands. Returns the version schema.
pub async fn start(
    s: &Session<'_>,
    file: &MigrationFile,
    migration: &Migration,
    rows_checked: bool,
) -> Result<String> {
    let client = s.client();
    if let Some((open, status)) = open_migration(client).await? {
        if open != file.name {
            return Err(Error::refused(
                Refusal::AnotherOpen,
                format!(
                    "migration {open} is open ({status}); only one migration can be open at a time"
                ),
                Some("complete it (pgshift complete) or roll it back (pgshift rollback) first"),
            ));
        }
    }
    let stored = state::stored_plan(client, &file.name).await?;
    let (plan, resumed) = match stored {
        Some(stored) => (
            serde_json::from_value::<Plan>(stored.plan).map_err(|e| {
                Error::CannotResume(format!(
                    "the stored plan of {} cannot be read: {e}",
                    file.name
                ))
            })?,
            true,
        ),
        None => {
            let (plan, _) =
                checks::plan_with_catalog(client, file, migration, s.schema(), !rows_checked)
                    .await?;
            s.begin_migration(file).await?;
            let json =
                serde_json::to_value(&plan).map_err(|e| Error::CannotResume(e.to_string()))?;
            state::store_plan(
                s.exec(),
                &file.name,
                &plan.version_schema,
                &json,
                &file.source,
            )
            .await?;
            (plan, false)
        }
    };
    if resumed {
        s.exec()
            .bookkeeping(
                "recording the phase",
                &[state::set_status_sql(&file.name, MigrationState::Running)],
            )
            .await?;
    }
    s.emit(&RunEvent::MigrationStarted {
        name: file.name.clone(),
        resumed,
    });
    let t0 = Instant::now();
    let result = run_phase(
        s,
        &file.name,
        Phase::Start,
        &plan.start,
        &plan.version_schema,
        Some(MigrationState::Started),
    )
    .await;
    finish(s, Phase::Start, &file.name, t0, &result).await?;
    result.map(|_| plan.version_schema)
}

/// `pgshift complete`: contracts the open migration.
pub async fn complete(s: &Session<'_>) -> Result<String> {
    let client = s.client();
    let Some((name, status)) = open_migration(client).await? else {
        return Err(Error::refused(
            Refusal::NoMigrationOpen,
            "no migration is open",
            Some("pgshift status lists them; pgshift start <file> opens one"),
        ));
    };
    if !matches!(status, MigrationState::Started | MigrationState::Completing) {
        return Err(Error::refused(
            Refusal::WrongPhase,
            format!("migration {name} did not finish its start (status {status})"),
            Some("run pgshift start on it again to finish it, or pgshift rollback"),
        ));
    }
    if status == MigrationState::Started {
        verify(s, &name).await?;
    }
    run_stored_phase(s, &name, Phase::Complete).await
}

/// The plan's checks, before complete changes anything (once complete has begun, they
/// passed). A failure is recorded like a failed phase; the migration stays open.
async fn verify(s: &Session<'_>, name: &str) -> Result<()> {
    let plan = load(s.client(), name).await?;
    for spec in &plan.verify {
        let t0 = Instant::now();
        match crate::checks::verify::run(s.client(), s.exec().server_version(), spec).await {
            Ok(v) => s.emit(&RunEvent::Verified {
                migration: name.to_owned(),
                what: v.description,
                rows: v.rows,
                method: v.method.to_owned(),
                ms: t0.elapsed().as_millis() as u64,
            }),
            Err(e) => {
                let failed = Err(e);
                finish(s, Phase::Complete, name, t0, &failed).await?;
                return failed;
            }
        }
    }
    Ok(())
}

/// `pgshift rollback`: undoes what start did to the open migration.
pub async fn rollback(s: &Session<'_>) -> Result<String> {
    let client = s.client();
    let Some((name, status)) = open_migration(client).await? else {
        return Err(Error::refused(
            Refusal::NoMigrationOpen,
            "no migration is open",
            Some("pgshift status lists them"),
        ));
    };
    if status == MigrationState::Completing {
        return Err(Error::refused(
            Refusal::WrongPhase,
            format!("migration {name} is being completed; a rollback now could lose data"),
            Some("run pgshift complete again to finish it"),
        ));
    }
    run_stored_phase(s, &name, Phase::Rollback).await
}

/// Continues the open migration's interrupted start from its stored plan (what
/// `pgshift backfill resume` does when no pgshift is running it).
pub async fn resume_start(s: &Session<'_>) -> Result<Option<String>> {
    match open_migration(s.client()).await? {
        Some((name, MigrationState::Running)) => {
            run_stored_phase(s, &name, Phase::Start).await.map(Some)
        }
        _ => Ok(None),
    }
}

/// Runs complete or rollback from the stored plan: marks the phase, runs its steps, and
/// records the outcome.
async fn run_stored_phase(s: &Session<'_>, name: &str, phase: Phase) -> Result<String> {
    let client = s.client();
    let plan = load(client, name).await?;
    // (journal phase, status while it runs, status at the end: None forgets the migration)
    let (running, done, steps) = match phase {
        Phase::Start => (
            MigrationState::Running,
            Some(MigrationState::Started),
            &plan.start,
        ),
        Phase::Complete => (
            MigrationState::Completing,
            Some(MigrationState::Applied),
            &plan.complete,
        ),
        Phase::Rollback | Phase::Apply => (MigrationState::RollingBack, None, &plan.rollback),
    };
    s.exec()
        .bookkeeping(
            "recording the phase",
            &[state::set_status_sql(name, running)],
        )
        .await?;
    let t0 = Instant::now();
    let result = run_phase(s, name, phase, steps, &plan.version_schema, done).await;
    finish(s, phase, name, t0, &result).await?;
    result.map(|_| name.to_owned())
}

/// The stored plan of migration `name`: all that complete, rollback and a resumed start run.
async fn load(client: &tokio_postgres::Client, name: &str) -> Result<Plan> {
    let Some(stored) = state::stored_plan(client, name).await? else {
        return Err(Error::CannotResume(format!(
            "migration {name} has no stored plan"
        )));
    };
    serde_json::from_value(stored.plan)
        .map_err(|e| Error::CannotResume(format!("the stored plan of {name} cannot be read: {e}")))
}

async fn finish(
    s: &Session<'_>,
    phase: Phase,
    name: &str,
    t0: Instant,
    result: &Result<()>,
) -> Result<()> {
    if let Err(e) = result {
        let _ = state::record_phase_error(s.exec(), name, &e.to_string()).await;
    }
    s.record(&Event {
        command: phase.as_str(),
        event: match (phase, result.is_ok()) {
            (Phase::Start, true) => AuditEvent::MigrationStarted,
            (Phase::Complete, true) => AuditEvent::MigrationCompleted,
            (Phase::Rollback, true) => AuditEvent::MigrationRolledBack,
            _ => AuditEvent::MigrationFailed,
        },
        migration: Some(name),
        ok: result.is_ok(),
        duration_ms: Some(t0.elapsed().as_millis() as i64),
        detail: match result {
            Ok(()) => serde_json::json!({}),
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        },
    })
    .await
}
