//! The life of an expand/contract migration: `start` (expand), `complete` (contract),
//! `rollback` (undo start). Start plans the migration against the live catalog and stores
//! the plan; every phase then runs the stored steps in order, each journaled, so that the
//! same command after a crash continues where the last one stopped.

use crate::catalog::Catalog;
use crate::conn::Who;
use crate::diag::Diagnostic;
use crate::error::Refusal;
use crate::error::{Error, Result};
use crate::event::RunEvent;
use crate::exec::{Executor, Step};
use crate::model::Migration;
use crate::plan::{self, Action, Plan, PlanContext, PlannedStep, VirtualSchema};
use crate::source::MigrationFile;
use crate::state::MigrationState;
use crate::state::{self, Event, StepState};
use std::time::Instant;

/// The open migration, if any: (name, status).
pub async fn open_migration(
    client: &tokio_postgres::Client,
) -> Result<Option<(String, MigrationState)>> {
    let open: Vec<MigrationState> = MigrationState::ALL
        .into_iter()
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

/// Plans `migration` against the live catalog. Problems come back as diagnostics on the
/// file, naming the operation.
pub async fn plan_for(
    client: &tokio_postgres::Client,
    file: &MigrationFile,
    migration: &Migration,
    schema: &str,
) -> Result<Plan> {
    plan_with_catalog(client, file, migration, schema, true)
        .await
        .map(|(plan, _)| plan)
}

/// [`plan_for`], with the catalog it was planned against. `check_rows`: whether type
/// changes read the table to check that every row converts (false when that was checked
/// moments before, in the same run).
pub async fn plan_with_catalog(
    client: &tokio_postgres::Client,
    file: &MigrationFile,
    migration: &Migration,
    schema: &str,
    check_rows: bool,
) -> Result<(Plan, Catalog)> {
    let catalog = Catalog::load(client, schema).await?;
    let previous = state::latest_version_schema(client)
        .await?
        .map(|(schema, _)| schema);
    let ctx = PlanContext {
        schema,
        migration: &file.name,
        version_schema: plan::version_schema_name(schema, &file.name, migration),
        previous_version_schema: previous,
        catalog: &catalog,
    };
    let plan = plan::plan_migration(&ctx, migration).map_err(|errors| {
        Error::Input(
            errors
                .into_iter()
                .map(|e| {
                    let mut d = operation_diagnostic(file, e.operation, e.kind, &e.message);
                    d.hint = e.hint;
                    d
                })
                .collect(),
        )
    })?;
    check_on_server(client, file, migration, &catalog, schema, check_rows).await?;
    Ok((plan, catalog))
}

/// Asks the server, without changing anything, whether each type exists and each `up`
/// expression parses and type-checks against its table (PREPARE only plans a statement).
async fn check_on_server(
    client: &tokio_postgres::Client,
    file: &MigrationFile,
    migration: &Migration,
    catalog: &Catalog,
    schema: &str,
    check_rows: bool,
) -> Result<()> {
    use crate::model::Operation;
    use crate::quote::qualified;
    let mut diagnostics = Vec::new();
    for (i, op) in migration.operations.iter().enumerate() {
        let mut types: Vec<&str> = Vec::new();
        let mut ups: Vec<(&str, &str)> = Vec::new();
        match op {
            Operation::CreateTable(t) => {
                types.extend(t.columns.iter().map(|c| c.data_type.as_str()))
            }
            Operation::AddColumn(a) => {
                types.push(&a.column.data_type);
                if let Some(up) = &a.up {
                    ups.push((&a.table, up));
                }
            }
            Operation::AlterColumn(a) => {
                if let Some(t) = &a.data_type {
                    types.push(t);
                }
                if let Some(up) = &a.up {
                    ups.push((&a.table, up));
                }
            }
            Operation::CreateConstraint(c) => {
                ups.extend(c.up.values().map(|u| (c.table.as_str(), u.as_str())))
            }
            _ => {}
        }
        // (field, its value, message, hint)
        let mut problems: Vec<(&str, &str, String, &str)> = Vec::new();
        for ty in types {
            // serial and friends are CREATE TABLE shorthand, not types: check what they stand for.
            let checked = crate::sql::serial_type(&ty.trim().to_ascii_lowercase()).unwrap_or(ty);
            if let Err(e) = client.prepare(&format!("SELECT NULL::{checked}")).await {
                problems.push((
                    "type",
                    ty,
                    format!("type {ty:?}: {}", crate::error::pg_error_text(&e)),
                    "use a type this server knows (bigint, text, numeric(10,2), timestamptz, ...), spelled as in SQL; a type from an extension needs the extension created first",
                ));
            }
        }
        for (table, up) in ups {
            // Tables made earlier in the same migration do not exist yet: nothing to check against.
            if catalog.table(table).is_none() {
                continue;
            }
            let sql = format!(
                "SELECT {} FROM {}",
                plan::expression(up),
                qualified(schema, table)
            );
            if let Err(e) = client.prepare(&sql).await {
                problems.push((
                    "up",
                    up,
                    format!("`up` {up:?}: {}", crate::error::pg_error_text(&e)),
                    "the server refused it as written; `up` is an expression over the table's columns as the old version names them",
                ));
            }
        }
        // Every row must convert before a type change starts (issue 5, S1).
        if let (true, true, Operation::AlterColumn(a)) = (check_rows, problems.is_empty(), op) {
            if let (Some(new_type), Some(table)) = (&a.data_type, catalog.table(&a.table)) {
                // Without `up`, the column is cast to the new type.
                let cast = format!("{}::{new_type}", crate::quote::ident(&a.column));
                let up = a.up.as_deref().unwrap_or(&cast);
                if let Some(bad) =
                    crate::precheck::conversion(client, schema, table, &a.column, new_type, up)
                        .await?
                {
                    diagnostics.push(
                        operation_diagnostic(
                            file,
                            i,
                            op.kind(),
                            &format!(
                                "{} of {} rows of {} do not convert to {new_type} with `up` {up:?} (an error, NULL, or a different value); sample keys: {}",
                                bad.rows,
                                bad.of,
                                qualified(schema, &a.table),
                                bad.samples.join(", ")
                            ),
                        )
                        .with_hint("fix these rows, or write an `up` that converts them, then run again"),
                    );
                }
            }
        }
        for (field, value, message, hint) in problems {
            let mut d = operation_diagnostic(file, i, op.kind(), &message);
            if let Some((line, column)) = field_location(&file.source, i, field, value) {
                d = Diagnostic::at_line_col(&file.path, &file.source, line, column, d.message);
            }
            diagnostics.push(d.with_hint(hint));
        }
    }
    if diagnostics.is_empty() {
        Ok(())
    } else {
        Err(Error::Input(diagnostics))
    }
}

/// Where the n-th operation starts in the file (best effort: the n-th line that opens an
/// operation), for pointing a diagnostic at it.
/// `path:line:col: error: operation N (kind): message`, at the operation's place in the file.
pub(crate) fn operation_diagnostic(
    file: &MigrationFile,
    index: usize,
    kind: impl std::fmt::Display,
    message: &str,
) -> Diagnostic {
    let (line, col) = operation_location(&file.source, index);
    Diagnostic::at_line_col(
        &file.path,
        &file.source,
        line,
        col,
        format!("operation {} ({kind}): {message}", index + 1),
    )
}

/// Where field `key` with `value` is written inside the n-th operation (YAML `key: value`,
/// TOML `key = value`, JSON `"key": value`), for pointing at the field rather than the
/// operation; None when it cannot be found (a value on several lines, say).
fn field_location(source: &str, index: usize, key: &str, value: &str) -> Option<(usize, usize)> {
    let (from, _) = operation_location(source, index);
    let to = match operation_location(source, index + 1) {
        (1, 1) => usize::MAX,
        (line, _) => line,
    };
    let first_value_line = value.lines().next().unwrap_or(value).trim();
    source
        .lines()
        .enumerate()
        .skip(from - 1)
        .take_while(|(i, _)| i + 1 < to)
        .find_map(|(i, line)| {
            let trimmed = line.trim_start().trim_start_matches("- ").trim_start();
            let names_key = [format!("{key}:"), format!("{key} ="), format!("\"{key}\"")]
                .iter()
                .any(|k| trimmed.starts_with(k.as_str()));
            let col = line.find(trimmed).unwrap_or(0) + 1;
            (names_key && line.contains(first_value_line)).then_some((i + 1, col))
        })
}

fn operation_location(source: &str, index: usize) -> (usize, usize) {
    source
        .lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let trimmed = line.trim_start().trim_start_matches("- ").trim_start();
            let opens = crate::model::OPERATION_NAMES.iter().any(|k| {
                trimmed.starts_with(&format!("{k}:"))
                    || trimmed.starts_with(&format!("\"{k}\""))
                    || trimmed.starts_with(&format!("{{\"{k}\""))
                    || trimmed.starts_with(&format!("[operations.{k}]"))
            });
            opens.then(|| (i + 1, line.len() - line.trim_start().len() + 1))
        })
        .nth(index)
        .unwrap_or((1, 1))
}

/// `pgshift start`: expands. Returns the version schema.
pub async fn start(
    exec: &Executor,
    file: &MigrationFile,
    migration: &Migration,
    schema: &str,
    who: &Who,
    rows_checked: bool,
    on_event: &(dyn Fn(&RunEvent) + Sync),
) -> Result<String> {
    let client = exec.client();
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
                plan_with_catalog(client, file, migration, schema, !rows_checked).await?;
            state::begin_migration(client, &file.name, &file.checksum, file.kind.as_str(), who)
                .await?;
            let json =
                serde_json::to_value(&plan).map_err(|e| Error::CannotResume(e.to_string()))?;
            state::store_plan(
                client,
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
        client
            .batch_execute(&state::set_status_sql(&file.name, MigrationState::Running))
            .await?;
    }
    on_event(&RunEvent::MigrationStarted {
        name: file.name.clone(),
        resumed,
    });
    let t0 = Instant::now();
    let result = run_phase(
        exec,
        &file.name,
        "start",
        &plan.start,
        migration,
        schema,
        &plan.version_schema,
        Some(MigrationState::Started),
        on_event,
    )
    .await;
    finish(exec, who, "start", &file.name, t0, &result).await?;
    result.map(|_| plan.version_schema)
}

/// `pgshift complete`: contracts the open migration.
pub async fn complete(
    exec: &Executor,
    schema: &str,
    who: &Who,
    on_event: &(dyn Fn(&RunEvent) + Sync),
) -> Result<String> {
    let client = exec.client();
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
        verify(exec, who, on_event, &name).await?;
    }
    run_stored_phase(exec, schema, who, on_event, &name, Phase::Complete).await
}

/// The plan's checks, before complete changes anything (once complete has begun, they
/// passed). A failure is recorded like a failed phase; the migration stays open.
async fn verify(
    exec: &Executor,
    who: &Who,
    on_event: &(dyn Fn(&RunEvent) + Sync),
    name: &str,
) -> Result<()> {
    let (plan, _) = load(exec.client(), name).await?;
    for spec in &plan.verify {
        let t0 = Instant::now();
        match crate::verify::run(exec.client(), exec.server_version(), spec).await {
            Ok(v) => on_event(&RunEvent::Verified {
                migration: name.to_owned(),
                what: v.description,
                rows: v.rows,
                method: v.method.to_owned(),
                ms: t0.elapsed().as_millis() as u64,
            }),
            Err(e) => {
                let failed = Err(e);
                finish(exec, who, "complete", name, t0, &failed).await?;
                return failed;
            }
        }
    }
    Ok(())
}

/// `pgshift rollback`: undoes what start did to the open migration.
pub async fn rollback(
    exec: &Executor,
    schema: &str,
    who: &Who,
    on_event: &(dyn Fn(&RunEvent) + Sync),
) -> Result<String> {
    let client = exec.client();
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
    run_stored_phase(exec, schema, who, on_event, &name, Phase::Rollback).await
}

#[derive(Clone, Copy)]
enum Phase {
    Start,
    Complete,
    Rollback,
}

/// Continues the open migration's interrupted start from its stored plan (what
/// `pgshift backfill resume` does when no pgshift is running it).
pub async fn resume_start(
    exec: &Executor,
    schema: &str,
    who: &Who,
    on_event: &(dyn Fn(&RunEvent) + Sync),
) -> Result<Option<String>> {
    match open_migration(exec.client()).await? {
        Some((name, MigrationState::Running)) => {
            run_stored_phase(exec, schema, who, on_event, &name, Phase::Start)
                .await
                .map(Some)
        }
        _ => Ok(None),
    }
}

/// Runs complete or rollback from the stored plan: marks the phase, runs its steps, and
/// records the outcome.
async fn run_stored_phase(
    exec: &Executor,
    schema: &str,
    who: &Who,
    on_event: &(dyn Fn(&RunEvent) + Sync),
    name: &str,
    phase: Phase,
) -> Result<String> {
    let client = exec.client();
    let (plan, migration) = load(client, name).await?;
    // (journal phase, status while it runs, status at the end: None forgets the migration)
    let (label, running, done, steps) = match phase {
        Phase::Start => (
            "start",
            MigrationState::Running,
            Some(MigrationState::Started),
            &plan.start,
        ),
        Phase::Complete => (
            "complete",
            MigrationState::Completing,
            Some(MigrationState::Applied),
            &plan.complete,
        ),
        Phase::Rollback => (
            "rollback",
            MigrationState::RollingBack,
            None,
            &plan.rollback,
        ),
    };
    client
        .batch_execute(&state::set_status_sql(name, running))
        .await?;
    let t0 = Instant::now();
    let result = run_phase(
        exec,
        name,
        label,
        steps,
        &migration,
        schema,
        &plan.version_schema,
        done,
        on_event,
    )
    .await;
    finish(exec, who, label, name, t0, &result).await?;
    result.map(|_| name.to_owned())
}

async fn load(client: &tokio_postgres::Client, name: &str) -> Result<(Plan, Migration)> {
    let Some(stored) = state::stored_plan(client, name).await? else {
        return Err(Error::CannotResume(format!(
            "migration {name} has no stored plan"
        )));
    };
    let plan: Plan = serde_json::from_value(stored.plan).map_err(|e| {
        Error::CannotResume(format!("the stored plan of {name} cannot be read: {e}"))
    })?;
    // The stored source is what was started, in the format its record names.
    let format = match stored.kind.as_str() {
        "yaml" => crate::model::Format::Yaml,
        "json" => crate::model::Format::Json,
        "toml" => crate::model::Format::Toml,
        other => {
            return Err(Error::CannotResume(format!(
                "migration {name} is recorded as kind {other:?}, which has no stored plan to resume"
            )))
        }
    };
    let path = std::path::Path::new(name);
    let migration = crate::model::parse_migration(path, &stored.source, format).map_err(|d| {
        Error::CannotResume(format!(
            "the stored source of {name} no longer parses: {}",
            d.message
        ))
    })?;
    Ok((plan, migration))
}

async fn finish(
    exec: &Executor,
    who: &Who,
    command: &str,
    name: &str,
    t0: Instant,
    result: &Result<()>,
) -> Result<()> {
    let client = exec.client();
    if let Err(e) = result {
        let _ = state::record_phase_error(client, name, &e.to_string()).await;
    }
    state::record_event(
        client,
        who,
        &Event {
            command,
            event: match (command, result.is_ok()) {
                ("start", true) => "migration_started",
                ("complete", true) => "migration_completed",
                ("rollback", true) => "migration_rolled_back",
                _ => "migration_failed",
            },
            migration: Some(name),
            ok: result.is_ok(),
            duration_ms: Some(t0.elapsed().as_millis() as i64),
            detail: match result {
                Ok(()) => serde_json::json!({}),
                Err(e) => serde_json::json!({ "error": e.to_string() }),
            },
        },
    )
    .await
}

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
        step.action,
        Action::Sql {
            transactional: true,
            together: true,
            ..
        }
    )
}

/// Runs the steps numbered `which` (0-based) at the same time, up to `index_builds` at
/// once (each executor takes the next step as soon as it is free), each in its own
/// transaction with its own journal entry: a run killed halfway leaves each either done
/// and journaled or not begun.
async fn run_together(
    exec: &Executor,
    name: &str,
    phase: &str,
    steps: &[PlannedStep],
    which: &[usize],
    on_event: &(dyn Fn(&RunEvent) + Sync),
) -> Result<()> {
    let at_once = (exec.settings().index_builds.max(1) as usize).min(which.len().max(1));
    let mut others = Vec::new();
    for _ in 1..at_once {
        others.push(exec.another().await?);
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let total = steps.len();
    let executors = std::iter::once(exec).chain(others.iter());
    futures_util::future::try_join_all(executors.map(|on| {
        let next = &next;
        async move {
            while let Some(&k) = which.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
            {
                let step = &steps[k];
                let Action::Sql { sql, kind, .. } = &step.action else {
                    continue;
                };
                let t0 = Instant::now();
                let s = Step {
                    sql: sql.clone(),
                    kind: *kind,
                    concurrent_index: None,
                    origin: None,
                };
                let finish = [state::step_done_sql(
                    name,
                    phase,
                    k as i32 + 1,
                    &step.description,
                )];
                on.run_transaction(&[s], &finish).await?;
                on_event(&step_done(name, k, total, step, t0));
            }
            Ok::<(), Error>(())
        }
    }))
    .await?;
    Ok(())
}

/// Runs the steps of one phase, skipping those the journal says are done. The last step's
/// transaction also records `final_status` (None: forget the migration, after rollback).
#[allow(clippy::too_many_arguments)]
async fn run_phase(
    exec: &Executor,
    name: &str,
    phase: &str,
    steps: &[PlannedStep],
    migration: &Migration,
    schema: &str,
    version_schema: &str,
    final_status: Option<MigrationState>,
    on_event: &(dyn Fn(&RunEvent) + Sync),
) -> Result<()> {
    let client = exec.client();
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
        if runs_together(step) && !last {
            // This step and the next ones that run together (never the phase's last,
            // whose transaction also records the migration's status).
            ran_together = (i..total - 1)
                .find(|&k| !runs_together(&steps[k]))
                .unwrap_or(total - 1);
            let mut pending = Vec::new();
            for k in i..ran_together {
                if journaled(k) == Some(StepState::Done) {
                    on_event(&done_before(name, k));
                } else {
                    pending.push(k);
                }
            }
            run_together(exec, name, phase, steps, &pending, on_event).await?;
            continue;
        }
        let journaled = journaled(i);
        if journaled == Some(StepState::Done) {
            last_done_before = last;
            on_event(&done_before(name, i));
            continue;
        }
        let t0 = Instant::now();
        let mut finish = vec![state::step_done_sql(name, phase, number, &step.description)];
        if last && final_status.is_some() {
            finish.push(final_sql.clone());
        }
        match &step.action {
            Action::Sql {
                sql,
                kind,
                transactional: true,
                ..
            } => {
                let s = Step {
                    sql: sql.clone(),
                    kind: *kind,
                    concurrent_index: None,
                    origin: None,
                };
                exec.run_transaction(&[s], &finish).await?;
            }
            Action::Sql {
                sql,
                kind,
                transactional: false,
                concurrent_index,
                ..
            } => {
                state::step_running(client, name, phase, number, &step.description).await?;
                let s = Step {
                    sql: sql.clone(),
                    kind: *kind,
                    concurrent_index: concurrent_index.clone(),
                    origin: None,
                };
                exec.run_alone(&s, journaled == Some(StepState::Running))
                    .await?;
                exec.run_transaction(&[], &finish).await?;
            }
            Action::Backfill(spec) => {
                state::step_running(client, name, phase, number, &step.description).await?;
                crate::backfill::run(exec, name, number, spec, on_event).await?;
                exec.run_transaction(&[], &finish).await?;
            }
            Action::CatchUp(spec) => {
                state::step_running(client, name, phase, number, &step.description).await?;
                crate::copy::catch_up(exec, spec).await?;
                exec.run_transaction(&[], &finish).await?;
            }
            Action::VersionSchema => {
                let catalog = Catalog::load(client, schema).await?;
                let mut vs = VirtualSchema::from_catalog(&catalog);
                for op in &migration.operations {
                    plan::operation_plan(op).apply(&mut vs);
                }
                let mut stmts: Vec<Step> = vec![Step::ddl(format!(
                    "DROP SCHEMA IF EXISTS {} CASCADE",
                    crate::quote::ident(version_schema)
                ))];
                stmts.extend(
                    plan::version_schema_sql(schema, version_schema, &vs)
                        .into_iter()
                        .map(Step::ddl),
                );
                exec.run_transaction(&stmts, &finish).await?;
            }
        }
        on_event(&step_done(name, i, total, step, t0));
    }
    if total == 0 || final_status.is_none() || last_done_before {
        client.batch_execute(&final_sql).await?;
    }
    Ok(())
}
