//! The migration runner: which migrations are pending, and applying them in order.
//!
//! Before anything runs, every pending file is parsed and checked, every applied file's
//! checksum is compared with what was applied, and the advisory lock is taken. Only then
//! does the first statement run.
//!
//! A `.sql` migration runs as segments: consecutive statements that can share a transaction
//! run in one, each statement that cannot (CONCURRENTLY, VACUUM) runs alone. Each segment is
//! journaled in `pgshift.steps`; a transactional segment's journal entry commits with the
//! segment, and the last segment's transaction also marks the migration applied. So after a
//! crash at any point, the next run skips the segments that committed and runs the rest:
//! a migration with no concurrent statement is one transaction and simply runs again.

use crate::conn::{ConnectionSpec, Who};
use crate::error::Refusal;
use crate::error::{EditedMigration, Error, Result};
use crate::exec::{Executor, Step};
use crate::source::{self, Body, MigrationFile};
use crate::sql::SqlStatement;
use crate::state::MigrationState;
use crate::state::{self, Event, MigrationRecord, StepState};
use crate::{lifecycle, lock, quote};
use std::path::Path;
use std::time::Instant;

/// The journal phase of a raw SQL migration.
const PHASE_APPLY: &str = "apply";

pub use crate::event::RunEvent;

/// Options of `pgshift migrate`.
#[derive(Debug, Clone, Default)]
pub struct MigrateOptions {
    /// Apply a pending migration even when a later one is already applied.
    pub allow_out_of_order: bool,
    /// Complete the last structured migration too (otherwise it stays open).
    pub complete: bool,
    /// Run `mode: manual` migrations too (otherwise migrate stops before the first).
    pub include_manual: bool,
    /// The environment this database belongs to (`skip_environments`).
    pub environment: Option<String>,
    /// Refuse a migration whose plan is estimated to take longer than this.
    pub deploy_budget: Option<std::time::Duration>,
    /// The project's lint settings; None skips linting (`--no-lint`).
    pub lint: Option<crate::lint::Config>,
}

/// Options of `pgshift start`.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Start the file although files that sort before it are not applied yet.
    pub allow_out_of_order: bool,
    /// The project's lint settings; None skips linting (`--no-lint`).
    pub lint: Option<crate::lint::Config>,
}

/// What `migrate` did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MigrateReport {
    pub database: String,
    pub applied: Vec<String>,
    /// The last migration, started and left open for `pgshift complete`.
    pub left_open: Option<String>,
    /// Migrations recorded as skipped in this environment.
    pub skipped: Vec<String>,
    /// A `mode: manual` migration migrate stopped before (nothing after it ran).
    pub waiting_for_person: Option<String>,
    pub environment: Option<String>,
    pub already_applied: usize,
    pub duration_ms: u64,
}

/// Applies every pending migration in `dir`, in order.
pub async fn migrate(
    spec: &ConnectionSpec,
    exec: &Executor,
    dir: &Path,
    schema: &str,
    options: &MigrateOptions,
    on_event: &(dyn Fn(&RunEvent) + Sync),
) -> Result<MigrateReport> {
    let started = Instant::now();
    let files = source::discover(dir)?;
    let who = Who::current(spec);
    let client = exec.client();
    set_search_path(client, schema).await?;

    // Refuse bad input before changing anything, the state schema included: check against
    // what is recorded now, read-only...
    let version = state::installed_version(client).await?;
    let records = match version {
        Some(v) if v >= 1 => state::migrations(client).await?,
        _ => Vec::new(),
    };
    let first = plan_run(&files, &records, options)?;
    if let Some(config) = &options.lint {
        let fresh: Vec<&MigrationFile> = first
            .pending
            .iter()
            .map(|(f, _)| *f)
            .filter(|f| !records.iter().any(|r| r.name == f.name))
            .collect();
        lint_before_run(&fresh, config, on_event)?;
    }
    // On a database pgshift has not touched yet, the first pending migration is planned and
    // pre-checked against the live schema before the state schema is created (later ones
    // depend on it and are checked when their turn comes).
    let mut rows_checked = None;
    if let (None, Some((file, Body::Operations(migration)))) = (version, first.pending.first()) {
        lifecycle::plan_for(client, file, migration, schema).await?;
        rows_checked = Some(file.name.clone());
    }
    // The deploy budget, before anything changes, for every pending migration that can be
    // planned against the schema as it is now (one that builds on an earlier pending one is
    // checked at its turn, before it runs).
    let mut budget_checked = Vec::new();
    if let Some(budget) = options.deploy_budget {
        for (file, body) in &first.pending {
            let d = directives(file, body);
            if d.skipped_in(options.environment.as_deref()) {
                continue;
            }
            if d.manual && !options.include_manual {
                break;
            }
            if let Some(estimate) = estimate(client, file, body, schema).await {
                check_budget(file, &estimate, budget)?;
                budget_checked.push(file.name.clone());
            }
        }
    }

    lock::acquire(client).await?;
    let result = async {
        let upgrade = state::ensure(exec).await?;
        if upgrade.from != Some(upgrade.to) {
            on_event(&RunEvent::StateSchema {
                from: upgrade.from,
                to: upgrade.to,
            });
        }
        // ...and again under the lock, in case another run applied something meanwhile.
        let mut records = state::migrations(client).await?;
        let mut plan = plan_run(&files, &records, options)?;
        if !plan.run_again.is_empty() {
            for file in &plan.run_again {
                forget_edited(client, &who, "migrate", file, &records).await?;
            }
            records = state::migrations(client).await?;
            plan = plan_run(&files, &records, options)?;
        }
        let mut report = MigrateReport {
            database: spec.describe(),
            already_applied: plan.already_applied,
            environment: options.environment.clone(),
            ..MigrateReport::default()
        };
        let last = plan.pending.len().saturating_sub(1);
        for (i, (file, body)) in plan.pending.iter().enumerate() {
            let resumed = records.iter().any(|r| r.name == file.name);
            let d = directives(file, body);
            if let (true, Some(env)) = (
                d.skipped_in(options.environment.as_deref()),
                options.environment.as_deref(),
            ) {
                state::mark_skipped(client, &file.name, &file.checksum, file.kind.as_str(), &who, env)
                    .await?;
                state::record_event(
                    client,
                    &who,
                    &Event {
                        command: "migrate",
                        event: "migration_skipped",
                        migration: Some(&file.name),
                        ok: true,
                        duration_ms: Some(0),
                        detail: serde_json::json!({ "environment": env }),
                    },
                )
                .await?;
                report.skipped.push(file.name.clone());
                continue;
            }
            if d.manual && !options.include_manual && !resumed {
                report.waiting_for_person = Some(file.name.clone());
                break;
            }
            if let Some(budget) = options.deploy_budget {
                if !budget_checked.contains(&file.name) {
                    if let Some(estimate) = estimate(client, file, body, schema).await {
                        check_budget(file, &estimate, budget)?;
                    }
                }
            }
            let t0 = Instant::now();
            let outcome = match body {
                Body::Sql(statements) => {
                    // A raw SQL migration sees the physical tables: the open migration, if
                    // any, is completed first.
                    if let Some((open, _)) = lifecycle::open_migration(client).await? {
                        on_event(&RunEvent::Completing { name: open.clone() });
                        lifecycle::complete(exec, schema, &who, on_event).await?;
                        report.applied.push(open);
                    }
                    on_event(&RunEvent::MigrationStarted {
                        name: file.name.clone(),
                        resumed,
                    });
                    apply_sql(exec, file, statements, &who, on_event).await
                }
                Body::Operations(migration) => {
                    let open = records
                        .iter()
                        .any(|r| r.name == file.name && r.status == MigrationState::Started);
                    let started = if open {
                        on_event(&RunEvent::Completing {
                            name: file.name.clone(),
                        });
                        Ok(String::new())
                    } else {
                        let checked = rows_checked.as_deref() == Some(file.name.as_str());
                        lifecycle::start(exec, file, migration, schema, &who, checked, on_event)
                            .await
                            .map(|_| String::new())
                    };
                    match started {
                        Ok(_) if i < last || options.complete => {
                            lifecycle::complete(exec, schema, &who, on_event).await.map(|_| ())
                        }
                        Ok(_) => {
                            report.left_open = Some(file.name.clone());
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            match outcome {
                Ok(()) => {
                    let ms = t0.elapsed().as_millis() as u64;
                    if matches!(body, Body::Sql(_)) {
                        state::record_event(
                            client,
                            &who,
                            &Event {
                                command: "migrate",
                                event: "migration_applied",
                                migration: Some(&file.name),
                                ok: true,
                                duration_ms: Some(ms as i64),
                                detail: serde_json::json!({ "checksum": file.checksum, "kind": file.kind.as_str(), "resumed": resumed }),
                            },
                        )
                        .await?;
                    }
                    if report.left_open.as_deref() == Some(file.name.as_str()) {
                        on_event(&RunEvent::MigrationLeftOpen {
                            name: file.name.clone(),
                            ms,
                        });
                    } else {
                        on_event(&RunEvent::MigrationApplied {
                            name: file.name.clone(),
                            ms,
                        });
                        report.applied.push(file.name.clone());
                    }
                }
                Err(e) => {
                    if matches!(body, Body::Sql(_)) {
                        let message = e.to_string();
                        // Best effort: the connection may be what failed.
                        let _ = state::mark_failed(client, &file.name, &message).await;
                        let _ = state::record_event(
                            client,
                            &who,
                            &Event {
                                command: "migrate",
                                event: "migration_failed",
                                migration: Some(&file.name),
                                ok: false,
                                duration_ms: Some(t0.elapsed().as_millis() as i64),
                                detail: serde_json::json!({ "error": message }),
                            },
                        )
                        .await;
                    }
                    return Err(e);
                }
            }
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }
    .await;
    let _ = lock::release(client).await;
    result
}

/// Takes the lock and makes sure the state schema is current, runs `f`, releases the lock.
async fn locked<T, F, Fut>(exec: &Executor, schema: &str, f: F) -> Result<T>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let client = exec.client();
    set_search_path(client, schema).await?;
    lock::acquire(client).await?;
    let result = async {
        state::ensure(exec).await?;
        f().await
    }
    .await;
    let _ = lock::release(client).await;
    result
}

/// `pgshift start <file>`: expands one migration (a `.sql` file is applied whole).
/// Returns the version schema ("" for a `.sql` file).
pub async fn start(
    spec: &ConnectionSpec,
    exec: &Executor,
    path: &Path,
    dir: &Path,
    schema: &str,
    options: &StartOptions,
    on_event: &(dyn Fn(&RunEvent) + Sync),
) -> Result<String> {
    let file = MigrationFile::read(path)?;
    let files = source::discover(dir)?;
    check_in_folder(&file, &files, dir)?;
    let body = file.parse().map_err(|d| Error::Input(vec![d]))?;
    let who = Who::current(spec);
    let client = exec.client();
    let version = state::installed_version(client).await?;
    let records = match version {
        Some(v) if v >= 1 => state::migrations(client).await?,
        _ => Vec::new(),
    };
    check_not_edited(&file, &records)?;
    if !options.allow_out_of_order {
        check_nothing_pending_before(&file, &files, &records)?;
    }
    if let (Some(config), false) = (&options.lint, records.iter().any(|r| r.name == file.name)) {
        lint_before_run(&[&file], config, on_event)?;
    }
    // On a database pgshift has not touched yet, the plan and its pre-checks (every row
    // converts, every expression type-checks) run before the state schema is created: a
    // refusal then leaves the database exactly as it was.
    let rows_checked = if let (None, Body::Operations(migration)) = (version, &body) {
        lifecycle::plan_for(client, &file, migration, schema).await?;
        true
    } else {
        false
    };
    locked(exec, schema, || async {
        let mut records = state::migrations(client).await?;
        if check_not_edited(&file, &records)? {
            forget_edited(client, &who, "start", &file, &records).await?;
            records = state::migrations(client).await?;
        }
        if records
            .iter()
            .any(|r| r.name == file.name && r.status == MigrationState::Applied)
        {
            return Err(Error::refused(
                Refusal::AlreadyApplied,
                format!("migration {} is already applied", file.name),
                None,
            ));
        }
        match &body {
            Body::Sql(statements) => {
                on_event(&RunEvent::MigrationStarted {
                    name: file.name.clone(),
                    resumed: false,
                });
                apply_sql(exec, &file, statements, &who, on_event).await?;
                Ok(String::new())
            }
            Body::Operations(migration) => {
                lifecycle::start(exec, &file, migration, schema, &who, rows_checked, on_event).await
            }
        }
    })
    .await
}

/// `start` runs files of the migrations folder only: a file elsewhere would be recorded
/// under a name that `status` and `migrate` never find again.
fn check_in_folder(file: &MigrationFile, files: &[MigrationFile], dir: &Path) -> Result<()> {
    let canonical = |p: &Path| std::fs::canonicalize(p).ok();
    let here = canonical(&file.path);
    if files
        .iter()
        .any(|f| here.is_some() && canonical(&f.path) == here)
    {
        return Ok(());
    }
    Err(Error::refused(Refusal::NotInFolder,
        format!(
            "{} is not in the migrations folder {}",
            file.path.display(),
            dir.display()
        ),
        Some("move the file into the folder (pgshift records and checks the migrations there), or point --dir at the folder it is in"),
    ))
}

/// `start` applies what `migrate` would: not a file while files before it wait.
fn check_nothing_pending_before(
    file: &MigrationFile,
    files: &[MigrationFile],
    records: &[MigrationRecord],
) -> Result<()> {
    let done = |f: &MigrationFile| {
        records.iter().any(|r| {
            r.name == f.name
                && matches!(
                    r.status,
                    MigrationState::Applied
                        | MigrationState::Skipped
                        | MigrationState::Started
                        | MigrationState::Completing
                )
        })
    };
    let waiting: Vec<&str> = files
        .iter()
        .filter(|f| f.name < file.name && !done(f))
        .map(|f| f.name.as_str())
        .collect();
    if waiting.is_empty() {
        return Ok(());
    }
    Err(Error::refused(Refusal::OutOfOrder,
        format!(
            "{} sorts after migration(s) that are not applied yet: {}",
            file.name,
            waiting.join(", ")
        ),
        Some("run pgshift migrate (it applies them in order), start them first, or pass --allow-out-of-order if this one does not depend on them"),
    ))
}

/// Lints the files about to run with the project's levels, as pgshift runs them (whatever
/// executor the settings name for `pgshift lint`): an error-level finding refuses the run
/// before anything changes; warnings are reported and the run goes on.
fn lint_before_run(
    files: &[&MigrationFile],
    config: &crate::lint::Config,
    on_event: &(dyn Fn(&RunEvent) + Sync),
) -> Result<()> {
    let mut config = config.clone();
    config.executor = crate::lint::SqlExecutor::Pgshift;
    let mut report = crate::lint::Report {
        files: files.iter().map(|f| f.path.clone()).collect(),
        findings: Vec::new(),
    };
    for f in files {
        report
            .findings
            .extend(crate::lint::lint_source(&f.path, &f.source, &config)?);
    }
    if report.count(crate::lint::Severity::Error) > 0 {
        return Err(Error::LintRefused(report.render_human()));
    }
    if !report.findings.is_empty() {
        on_event(&RunEvent::LintWarnings {
            text: report.render_human(),
        });
    }
    Ok(())
}

/// What a file's record says of an edit to the file.
enum Edit {
    /// The file matches its record, or has none.
    None,
    /// It failed (or was interrupted) with nothing applied: the record is forgotten and the
    /// edited file runs as new, as `sqlx migrate` or Flyway's `repair` would allow.
    RunAgain,
    /// Something of it was applied: the edit is refused, saying what to do.
    Refused(EditedMigration),
}

fn edit_of(file: &MigrationFile, records: &[MigrationRecord]) -> Edit {
    let Some(r) = records.iter().find(|r| r.name == file.name) else {
        return Edit::None;
    };
    if r.checksum == file.checksum {
        return Edit::None;
    }
    let unfinished = matches!(r.status, MigrationState::Failed | MigrationState::Running);
    if unfinished && r.steps_journaled == 0 {
        return Edit::RunAgain;
    }
    Edit::Refused(EditedMigration {
        name: file.name.clone(),
        path: file.path.display().to_string(),
        applied_checksum: r.checksum.clone(),
        file_checksum: file.checksum.clone(),
        partly_applied: unfinished.then(|| (r.kind.clone(), r.steps_journaled)),
    })
}

/// Refuses an edited file that cannot run again; true when its record must be forgotten
/// first ([`forget_edited`]).
fn check_not_edited(file: &MigrationFile, records: &[MigrationRecord]) -> Result<bool> {
    match edit_of(file, records) {
        Edit::None => Ok(false),
        Edit::RunAgain => Ok(true),
        Edit::Refused(e) => Err(Error::EditedAfterApply(vec![e])),
    }
}

/// Forgets the record of a migration that failed with nothing applied and whose file was
/// edited since, so that the edited file runs as a new migration; the audit log keeps both.
async fn forget_edited(
    client: &tokio_postgres::Client,
    who: &Who,
    command: &str,
    file: &MigrationFile,
    records: &[MigrationRecord],
) -> Result<()> {
    let old = records
        .iter()
        .find(|r| r.name == file.name)
        .map(|r| r.checksum.clone());
    client.batch_execute(&state::forget_sql(&file.name)).await?;
    state::record_event(
        client,
        who,
        &Event {
            command,
            event: "migration_edited_after_failure",
            migration: Some(&file.name),
            ok: true,
            duration_ms: None,
            detail: serde_json::json!({ "old_checksum": old, "checksum": file.checksum }),
        },
    )
    .await
}

/// `pgshift complete`.
pub async fn complete(
    spec: &ConnectionSpec,
    exec: &Executor,
    schema: &str,
    on_event: &(dyn Fn(&RunEvent) + Sync),
) -> Result<String> {
    let who = Who::current(spec);
    locked(exec, schema, || {
        lifecycle::complete(exec, schema, &who, on_event)
    })
    .await
}

/// `pgshift rollback`.
pub async fn rollback(
    spec: &ConnectionSpec,
    exec: &Executor,
    schema: &str,
    on_event: &(dyn Fn(&RunEvent) + Sync),
) -> Result<String> {
    let who = Who::current(spec);
    locked(exec, schema, || {
        lifecycle::rollback(exec, schema, &who, on_event)
    })
    .await
}

/// `pgshift backfill resume`: lets paused or cancelled backfills go on; if no pgshift is
/// running the open migration's start, continues it here. Returns the number of backfills
/// changed and the migration continued, if any.
pub async fn resume_backfills(
    spec: &ConnectionSpec,
    exec: &Executor,
    schema: &str,
    on_event: &(dyn Fn(&RunEvent) + Sync),
) -> Result<(u64, Option<String>)> {
    let client = exec.client();
    let changed = crate::backfill::control(client, crate::backfill::Control::Resume).await?;
    if lock::current_holder(client).await?.is_some() {
        return Ok((changed, None));
    }
    let who = Who::current(spec);
    let continued = locked(exec, schema, || {
        lifecycle::resume_start(exec, schema, &who, on_event)
    })
    .await?;
    Ok((changed, continued))
}

/// `pgshift latest schema`: the newest version schema.
pub async fn latest_schema(client: &tokio_postgres::Client, base: &str) -> Result<Latest> {
    let version = state::installed_version(client).await?;
    let latest = match version {
        Some(v) if v >= 2 => state::latest_version_schema(client).await?,
        _ => None,
    };
    let Some((schema, migration)) = latest else {
        return Ok(Latest {
            schema: base.to_owned(),
            version_schema: false,
            note: Some(format!(
                "no version schema exists (none was started, or only raw SQL migrations ran): clients use the tables in {base} directly"
            )),
        });
    };
    // A raw SQL migration changes the tables under the views; views made before it do not
    // show new columns or tables it added.
    let later_sql = client
        .query(
            &format!(
                "SELECT s.name FROM {t} s, {t} v WHERE v.name = $1 AND s.kind = 'sql' AND s.status = 'applied' AND s.started_at > v.started_at ORDER BY s.name",
                t = state::table("migrations")
            ),
            &[&migration],
        )
        .await?;
    let note = (!later_sql.is_empty()).then(|| {
        let names: Vec<String> = later_sql.iter().map(|r| r.get(0)).collect();
        format!(
            "raw SQL migration(s) {} ran after {schema} was made: its views do not show their changes; clients that need them use the tables in {base} (after pgshift complete)",
            names.join(", ")
        )
    });
    Ok(Latest {
        schema,
        version_schema: true,
        note,
    })
}

/// What `pgshift latest` prints.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Latest {
    /// The schema new clients should put first on their search_path.
    pub schema: String,
    /// False when no version schema exists and `schema` is the base schema.
    pub version_schema: bool,
    /// Said on standard error (JSON: the `note` field).
    pub note: Option<String>,
}

/// `pgshift init`: creates or upgrades the state schema.
pub async fn init(spec: &ConnectionSpec, exec: &Executor) -> Result<state::StateUpgrade> {
    let client = exec.client();
    lock::acquire(client).await?;
    let t0 = Instant::now();
    let result = state::ensure(exec).await;
    if let Ok(upgrade) = &result {
        state::record_event(
            client,
            &Who::current(spec),
            &Event {
                command: "init",
                event: "state_schema",
                migration: None,
                ok: true,
                duration_ms: Some(t0.elapsed().as_millis() as i64),
                detail: serde_json::json!({ "from": upgrade.from, "to": upgrade.to }),
            },
        )
        .await?;
    }
    let _ = lock::release(client).await;
    result
}

struct RunPlan<'a> {
    pending: Vec<(&'a MigrationFile, Body)>,
    already_applied: usize,
    /// Edited files of migrations that failed with nothing applied: forgotten, then run.
    run_again: Vec<&'a MigrationFile>,
}

/// Decides what runs, refusing (before anything changes) edited files, files that do not
/// parse, and pending files older than an applied one.
fn plan_run<'a>(
    files: &'a [MigrationFile],
    records: &[MigrationRecord],
    options: &MigrateOptions,
) -> Result<RunPlan<'a>> {
    let mut edited = Vec::new();
    let mut run_again = Vec::new();
    for f in files {
        match edit_of(f, records) {
            Edit::None => {}
            Edit::RunAgain => run_again.push(f),
            Edit::Refused(e) => edited.push(e),
        }
    }
    if !edited.is_empty() {
        return Err(Error::EditedAfterApply(edited));
    }
    let is_applied = |f: &MigrationFile| {
        records
            .iter()
            .any(|r| r.name == f.name && r.status.is_done())
    };
    let pending: Vec<&MigrationFile> = files.iter().filter(|f| !is_applied(f)).collect();
    let mut diagnostics = Vec::new();
    let mut bodies = Vec::new();
    for file in &pending {
        match file.parse() {
            Ok(body) => bodies.push((*file, body)),
            Err(d) => diagnostics.push(d),
        }
    }
    if !diagnostics.is_empty() {
        return Err(Error::Input(diagnostics));
    }
    if !options.allow_out_of_order {
        let last_applied = files.iter().rev().find(|f| is_applied(f));
        if let Some(last) = last_applied {
            let older: Vec<&str> = pending
                .iter()
                .filter(|f| f.name < last.name)
                .map(|f| f.name.as_str())
                .collect();
            if !older.is_empty() {
                return Err(Error::refused(Refusal::OutOfOrder,
                    format!(
                        "pending migration(s) {} sort before {}, which is already applied",
                        older.join(", "),
                        last.name
                    ),
                    Some("rename them to sort after the last applied migration, or pass --allow-out-of-order if they are independent of it"),
                ));
            }
        }
    }
    Ok(RunPlan {
        already_applied: files.len() - pending.len(),
        pending: bodies,
        run_again,
    })
}

/// Statements grouped the way they run: a transaction, or one statement alone.
#[derive(Debug)]
enum Segment<'a> {
    Transaction(&'a [SqlStatement]),
    Alone(&'a SqlStatement),
}

fn segments(statements: &[SqlStatement]) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, s) in statements.iter().enumerate() {
        if !s.transactional {
            if start < i {
                out.push(Segment::Transaction(&statements[start..i]));
            }
            out.push(Segment::Alone(s));
            start = i + 1;
        }
    }
    if start < statements.len() {
        out.push(Segment::Transaction(&statements[start..]));
    }
    out
}

/// A statement of a `.sql` file as an executor step, with where the file has it.
fn step_of(file: &MigrationFile, s: &SqlStatement) -> Step {
    Step {
        sql: s.sql.clone(),
        kind: s.kind,
        concurrent_index: s.concurrent_index.clone(),
        origin: Some(format!("{}:{}", file.path.display(), s.line)),
    }
}

async fn apply_sql(
    exec: &Executor,
    file: &MigrationFile,
    statements: &[SqlStatement],
    who: &Who,
    on_event: &(dyn Fn(&RunEvent) + Sync),
) -> Result<()> {
    let client = exec.client();
    state::begin_migration(client, &file.name, &file.checksum, file.kind.as_str(), who).await?;
    let journal = state::journal(client, &file.name, PHASE_APPLY).await?;
    let segments = segments(statements);
    let total = segments.len();
    for (i, segment) in segments.iter().enumerate() {
        let number = i as i32 + 1;
        let last = i + 1 == total;
        let journaled = journal.iter().find(|(n, _)| *n == number).map(|(_, s)| *s);
        let (line, description) = match segment {
            Segment::Transaction(stmts) => (
                stmts[0].line,
                format!("{} statement(s) from line {}", stmts.len(), stmts[0].line),
            ),
            Segment::Alone(s) => (
                s.line,
                format!("line {}: {}", s.line, crate::exec::abbreviate(&s.sql, 80)),
            ),
        };
        if journaled == Some(StepState::Done) {
            on_event(&RunEvent::StepSkipped {
                migration: file.name.clone(),
                step: i + 1,
                reason: "done in an earlier run".to_owned(),
            });
            if last {
                client
                    .batch_execute(&state::mark_applied_sql(&file.name))
                    .await?;
            }
            continue;
        }
        let t0 = Instant::now();
        let mut finish = vec![state::step_done_sql(
            &file.name,
            PHASE_APPLY,
            number,
            &description,
        )];
        if last {
            finish.push(state::mark_applied_sql(&file.name));
        }
        match segment {
            Segment::Transaction(stmts) => {
                let steps: Vec<Step> = stmts.iter().map(|s| step_of(file, s)).collect();
                exec.run_transaction(&steps, &finish).await?;
            }
            Segment::Alone(stmt) => {
                let resuming = journaled == Some(StepState::Running);
                state::step_running(client, &file.name, PHASE_APPLY, number, &description).await?;
                exec.run_alone(&step_of(file, stmt), resuming).await.map_err(|e| {
                    if resuming {
                        Error::CannotResume(format!(
                            "{}:{}: this statement was interrupted in an earlier run and may have been partly done; running it again failed:\n{e}\nhint: check what the statement did, undo or finish it by hand, then run pgshift migrate again",
                            file.path.display(),
                            stmt.line
                        ))
                    } else {
                        e
                    }
                })?;
                exec.run_transaction(&[], &finish).await?;
            }
        }
        on_event(&RunEvent::StepDone {
            migration: file.name.clone(),
            step: i + 1,
            of: total,
            what: format!("line {line}"),
            ms: t0.elapsed().as_millis() as u64,
        });
    }
    Ok(())
}

async fn set_search_path(client: &tokio_postgres::Client, schema: &str) -> Result<()> {
    quote::validate_identifier(schema)
        .map_err(|e| Error::usage(format!("--schema {schema:?}: {e}"), None))?;
    client
        .batch_execute(&format!("SET search_path = {}", quote::ident(schema)))
        .await?;
    Ok(())
}

/// The state of one migration, for `pgshift status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationStatus {
    Applied,
    Pending,
    /// Applied, but the file changed since.
    Edited,
    /// Started and not finished: a run is under way, or one was interrupted.
    Running,
    /// Expanded (started) and waiting for `pgshift complete` or `rollback`.
    Open,
    Failed,
    /// Recorded in the database, but no file has its name.
    Missing,
    /// Recorded as skipped in this database's environment (`skip_environments`).
    Skipped,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusEntry {
    pub name: String,
    pub status: MigrationStatus,
    pub file: Option<String>,
    pub kind: Option<String>,
    pub checksum: Option<String>,
    pub applied_checksum: Option<String>,
    #[serde(flatten)]
    pub record: Option<RecordSummary>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RecordSummary {
    pub started_at: String,
    pub completed_at: Option<String>,
    pub duration_ms: Option<i64>,
    pub attempts: i32,
    pub applied_by: String,
    pub applied_from_host: String,
    pub application_name: String,
    pub db_user: String,
    pub last_error: Option<String>,
    pub version_schema: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusReport {
    pub database: String,
    pub state_schema: String,
    pub state_version: Option<i32>,
    /// The pgshift session running now, if any. Without one, a `running` migration was
    /// interrupted and the next `pgshift migrate` resumes it.
    pub runner: Option<crate::error::LockHolder>,
    pub migrations: Vec<StatusEntry>,
    pub counts: std::collections::BTreeMap<String, usize>,
}

/// `pgshift status`: reads only; creates nothing and takes no lock.
pub async fn status(
    spec: &ConnectionSpec,
    client: &tokio_postgres::Client,
    dir: &Path,
) -> Result<StatusReport> {
    let files = source::discover(dir)?;
    let version = state::installed_version(client).await?;
    let records = if version.is_some_and(|v| v >= 1) {
        state::migrations(client).await?
    } else {
        Vec::new()
    };
    let mut entries: Vec<StatusEntry> = Vec::new();
    for f in &files {
        let record = records.iter().find(|r| r.name == f.name);
        let status = match record {
            None => MigrationStatus::Pending,
            // An open or failed migration is shown as such whatever happened to its file:
            // that is what the next command acts on.
            Some(r) if r.checksum != f.checksum && r.status.is_done() => MigrationStatus::Edited,
            Some(r) => record_status(r),
        };
        entries.push(StatusEntry {
            name: f.name.clone(),
            status,
            file: Some(f.path.display().to_string()),
            kind: Some(f.kind.as_str().to_owned()),
            checksum: Some(f.checksum.clone()),
            applied_checksum: record.map(|r| r.checksum.clone()),
            record: record.map(summary),
        });
    }
    for r in &records {
        if !files.iter().any(|f| f.name == r.name) {
            entries.push(StatusEntry {
                name: r.name.clone(),
                status: if r.status.is_done() {
                    MigrationStatus::Missing
                } else {
                    record_status(r)
                },
                file: None,
                kind: Some(r.kind.clone()),
                checksum: None,
                applied_checksum: Some(r.checksum.clone()),
                record: Some(summary(r)),
            });
        }
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let mut counts = std::collections::BTreeMap::new();
    for e in &entries {
        let key = serde_json::to_value(e.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        *counts.entry(key).or_insert(0) += 1;
    }
    Ok(StatusReport {
        database: spec.describe(),
        state_schema: state::SCHEMA.to_owned(),
        state_version: version,
        runner: lock::current_holder(client).await?,
        migrations: entries,
        counts,
    })
}

fn record_status(r: &MigrationRecord) -> MigrationStatus {
    match r.status {
        MigrationState::Applied => MigrationStatus::Applied,
        MigrationState::Skipped => MigrationStatus::Skipped,
        MigrationState::Failed => MigrationStatus::Failed,
        MigrationState::Started => MigrationStatus::Open,
        MigrationState::Running | MigrationState::Completing | MigrationState::RollingBack => {
            MigrationStatus::Running
        }
    }
}

fn summary(r: &MigrationRecord) -> RecordSummary {
    RecordSummary {
        started_at: state::rfc3339(&r.started_at),
        completed_at: r.completed_at.as_ref().map(state::rfc3339),
        duration_ms: r.duration_ms,
        attempts: r.attempts,
        applied_by: r.applied_by.clone(),
        applied_from_host: r.applied_from_host.clone(),
        application_name: r.application_name.clone(),
        db_user: r.db_user.clone(),
        last_error: r.last_error.clone(),
        version_schema: r.version_schema.clone(),
    }
}

/// `pgshift plan <file>`: the file's steps with their locks, their work and estimates, from
/// the live catalog, changing nothing (the state schema is only read, if it exists).
pub async fn plan(
    client: &tokio_postgres::Client,
    path: &Path,
    schema: &str,
    lock_timeout: std::time::Duration,
) -> Result<crate::explain::PlanReport> {
    let file = MigrationFile::read(path)?;
    let body = file.parse().map_err(|d| Error::Input(vec![d]))?;
    set_search_path(client, schema).await?;
    report_for(client, &file, &body, schema, lock_timeout, true).await
}

/// One pending migration in `pgshift plan` without a file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PendingPlan {
    pub migration: String,
    pub plan: Option<crate::explain::PlanReport>,
    /// Why there is no plan: it builds on an earlier pending migration (it is planned at its
    /// turn), or the file is bad.
    pub not_planned: Option<String>,
}

/// `pgshift plan` without a file: a dry run of `migrate`, planning every pending migration
/// in order against the schema as it is now. Changes nothing. The first pending migration's
/// plan is exact; a later one that builds on an earlier one cannot be planned until that one
/// ran, and says so.
pub async fn plan_pending(
    client: &tokio_postgres::Client,
    dir: &Path,
    schema: &str,
    lock_timeout: std::time::Duration,
) -> Result<Vec<PendingPlan>> {
    let files = source::discover(dir)?;
    set_search_path(client, schema).await?;
    let records = match state::installed_version(client).await? {
        Some(v) if v >= 1 => state::migrations(client).await?,
        _ => Vec::new(),
    };
    let run = plan_run(
        &files,
        &records,
        &MigrateOptions {
            allow_out_of_order: true,
            ..MigrateOptions::default()
        },
    )?;
    let mut out = Vec::new();
    for (i, (file, body)) in run.pending.iter().enumerate() {
        let planned = report_for(client, file, body, schema, lock_timeout, i == 0).await;
        out.push(match planned {
            Ok(plan) => PendingPlan {
                migration: file.name.clone(),
                plan: Some(plan),
                not_planned: None,
            },
            Err(e) if i > 0 => PendingPlan {
                migration: file.name.clone(),
                plan: None,
                not_planned: Some(format!(
                    "it cannot be planned against the schema as it is now, probably because it builds on an earlier pending migration (it is planned when its turn comes): {e}"
                )),
            },
            Err(e) => return Err(e),
        });
    }
    Ok(out)
}

/// `pgshift mark-applied <name> --reason`: records a migration as applied without running it
/// (a change a DBA made by hand), with who and why in the audit log.
pub async fn mark_applied(
    spec: &ConnectionSpec,
    exec: &Executor,
    dir: &Path,
    schema: &str,
    name: &str,
    reason: &str,
) -> Result<()> {
    if reason.trim().is_empty() {
        return Err(Error::usage(
            "mark-applied needs --reason",
            Some("say why it is recorded without running, e.g. --reason \"index built by hand during incident 123\""),
        ));
    }
    let files = source::discover(dir)?;
    let Some(file) = files
        .iter()
        .find(|f| f.name == name || f.path.file_name().and_then(|n| n.to_str()) == Some(name))
    else {
        return Err(Error::usage(
            format!("no migration named {name} in {}", dir.display()),
            Some("pgshift status lists the migrations and their names"),
        ));
    };
    let who = Who::current(spec);
    let client = exec.client();
    locked(exec, schema, || async {
        let records = state::migrations(client).await?;
        if let Some(r) = records.iter().find(|r| r.name == file.name) {
            if r.status == MigrationState::Applied {
                return Err(Error::refused(
                    Refusal::AlreadyApplied,
                    format!("migration {} is already applied", file.name),
                    None,
                ));
            }
            if r.status.is_open() {
                return Err(Error::refused(
                    Refusal::AnotherOpen,
                    format!("migration {} is open ({})", file.name, r.status),
                    Some(
                        "complete it (pgshift complete) or roll it back (pgshift rollback) instead",
                    ),
                ));
            }
        }
        state::begin_migration(client, &file.name, &file.checksum, file.kind.as_str(), &who)
            .await?;
        client
            .batch_execute(&state::mark_applied_sql(&file.name))
            .await?;
        state::record_event(
            client,
            &who,
            &Event {
                command: "mark-applied",
                event: "migration_marked_applied",
                migration: Some(&file.name),
                ok: true,
                duration_ms: Some(0),
                detail: serde_json::json!({ "reason": reason, "checksum": file.checksum }),
            },
        )
        .await
    })
    .await
}

/// One event of the audit log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryEvent {
    pub at: String,
    pub command: String,
    pub event: String,
    pub migration: Option<String>,
    pub result: String,
    pub duration_ms: Option<i64>,
    pub os_user: String,
    pub host: String,
    pub db_user: String,
    pub detail: serde_json::Value,
}

/// `pgshift status --history`: the newest `limit` events of the audit log, newest first
/// (none before the state schema exists).
pub async fn history(client: &tokio_postgres::Client, limit: i64) -> Result<Vec<HistoryEvent>> {
    if state::installed_version(client).await?.is_none() {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            &format!(
                "SELECT {}, command, event, migration, result, duration_ms,
                        os_user, host, db_user, detail
                 FROM {} ORDER BY id DESC LIMIT $1",
                state::rfc3339_sql("at"),
                state::table("events")
            ),
            &[&limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| HistoryEvent {
            at: r.get(0),
            command: r.get(1),
            event: r.get(2),
            migration: r.get(3),
            result: r.get(4),
            duration_ms: r.get(5),
            os_user: r.get(6),
            host: r.get(7),
            db_user: r.get(8),
            detail: r.get(9),
        })
        .collect())
}

/// A raw SQL migration as steps: its statements in one transaction, which holds every lock
/// until it commits; those that cannot run in one run alone.
fn sql_plan(statements: &[SqlStatement]) -> crate::plan::Plan {
    let mut start: Vec<crate::plan::PlannedStep> = Vec::new();
    let mut group: Vec<&SqlStatement> = Vec::new();
    let flush = |group: &mut Vec<&SqlStatement>, start: &mut Vec<crate::plan::PlannedStep>| {
        if let (Some(first), Some(last)) = (group.first(), group.last()) {
            start.push(crate::plan::sql_step(
                if group.len() == 1 {
                    format!("the statement at line {} (a transaction)", first.line)
                } else {
                    format!(
                        "the statements at lines {} to {} (one transaction)",
                        first.line, last.line
                    )
                },
                group
                    .iter()
                    .map(|s| s.sql.trim().trim_end_matches(';'))
                    .collect::<Vec<_>>()
                    .join(";\n"),
            ));
        }
        group.clear();
    };
    for s in statements {
        if s.transactional {
            group.push(s);
        } else {
            flush(&mut group, &mut start);
            start.push(crate::plan::concurrent_step(
                format!("the statement at line {} (outside a transaction)", s.line),
                s.sql.clone(),
                s.concurrent_index.clone(),
            ));
        }
    }
    flush(&mut group, &mut start);
    crate::plan::Plan {
        start,
        ..crate::plan::Plan::default()
    }
}

/// A migration's instructions to `migrate`: `mode` and `skip_environments` at the top level
/// of a structured file; in a `.sql` file, comment lines before its first statement:
/// `-- pgshift: mode = manual` and `-- pgshift: skip_environments = production, staging`.
struct Directives {
    manual: bool,
    skip_environments: Vec<String>,
}

impl Directives {
    fn skipped_in(&self, environment: Option<&str>) -> bool {
        environment.is_some_and(|e| self.skip_environments.iter().any(|s| s == e))
    }
}

fn directives(file: &MigrationFile, body: &Body) -> Directives {
    match body {
        Body::Operations(m) => Directives {
            manual: m.mode == Some(crate::model::RunMode::Manual),
            skip_environments: m.skip_environments.clone(),
        },
        Body::Sql(_) => {
            let mut d = Directives {
                manual: false,
                skip_environments: Vec::new(),
            };
            for line in file.source.lines().map(str::trim) {
                if line.is_empty() {
                    continue;
                }
                let Some(comment) = line.strip_prefix("--") else {
                    break;
                };
                let Some((key, value)) = comment
                    .trim()
                    .strip_prefix("pgshift:")
                    .and_then(|rest| rest.split_once('='))
                else {
                    continue;
                };
                let value = value.trim().trim_matches(|c| c == '[' || c == ']');
                match key.trim() {
                    "mode" => d.manual = value.trim_matches(|c| c == '"' || c == '\'') == "manual",
                    "skip_environments" => {
                        d.skip_environments = value
                            .split(',')
                            .map(|e| e.trim().trim_matches(|c| c == '"' || c == '\'').to_owned())
                            .filter(|e| !e.is_empty())
                            .collect()
                    }
                    _ => {}
                }
            }
            d
        }
    }
}

/// The plan report of a migration against the schema as it is now.
async fn report_for(
    client: &tokio_postgres::Client,
    file: &MigrationFile,
    body: &Body,
    schema: &str,
    lock_timeout: std::time::Duration,
    check_rows: bool,
) -> Result<crate::explain::PlanReport> {
    let (plan, catalog) = match body {
        Body::Operations(m) => {
            lifecycle::plan_with_catalog(client, file, m, schema, check_rows).await?
        }
        Body::Sql(statements) => (
            sql_plan(statements),
            crate::catalog::Catalog::load(client, schema).await?,
        ),
    };
    Ok(crate::explain::report(
        &file.name,
        &plan,
        &catalog,
        lock_timeout,
    ))
}

/// The estimate of a pending migration, or `None` when it cannot be planned yet (it builds
/// on an earlier pending migration).
async fn estimate(
    client: &tokio_postgres::Client,
    file: &MigrationFile,
    body: &Body,
    schema: &str,
) -> Option<crate::explain::PlanReport> {
    // The rows are checked when the migration runs; an estimate need not read them.
    report_for(client, file, body, schema, std::time::Duration::ZERO, false)
        .await
        .ok()
}

/// Refuses a migration whose start and complete are estimated longer than `budget`, naming
/// its longest step.
fn check_budget(
    file: &MigrationFile,
    report: &crate::explain::PlanReport,
    budget: std::time::Duration,
) -> Result<()> {
    let total = report.start_s + report.complete_s;
    if total <= budget.as_secs_f64() {
        return Ok(());
    }
    let longest = report
        .steps
        .iter()
        .filter(|s| s.phase != "rollback")
        .max_by(|a, b| a.estimate_s.total_cmp(&b.estimate_s));
    Err(Error::refused(Refusal::OverDeployBudget,
        format!(
            "migration {} is estimated at {:.0} s, over the deploy budget of {:.0} s; nothing was changed{}",
            file.name,
            total,
            budget.as_secs_f64(),
            longest
                .map(|s| format!(
                    "\n  its longest step: {} {}. {} (about {:.0} s)",
                    s.phase, s.number, s.description, s.estimate_s
                ))
                .unwrap_or_default()
        ),
        Some("mark it `mode: manual` (in a .sql file: -- pgshift: mode = manual) and run it at a chosen time with pgshift start, or raise --deploy-budget; pgshift plan shows every step's estimate"),
    ))
}

/// A data migration as `data status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DataMigration {
    pub name: String,
    /// pending, running, applied, failed, or edited (applied, and the file changed since).
    pub status: String,
    pub file: String,
    pub rows: Option<i64>,
    pub run_by: Option<String>,
    pub run_from_host: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_ms: Option<i64>,
    pub last_error: Option<String>,
}

/// The data migrations in `data_dir`; a folder that does not exist holds none (data
/// migrations are optional, and most projects have no folder for them).
fn discover_data(data_dir: &Path) -> Result<Vec<MigrationFile>> {
    if !data_dir.exists() {
        return Ok(Vec::new());
    }
    source::discover(data_dir)
}

/// The recorded data migrations: name → (checksum, status, rows, by, host, started, finished,
/// duration, error).
async fn data_records(
    client: &tokio_postgres::Client,
) -> Result<std::collections::BTreeMap<String, (String, DataMigration)>> {
    if state::installed_version(client)
        .await?
        .is_none_or(|v| v < 6)
    {
        return Ok(Default::default());
    }
    let rows = client
        .query(
            &format!(
                "SELECT name, checksum, status, rows, run_by, run_from_host, {}, {},
                        duration_ms, last_error
                 FROM {}",
                state::rfc3339_sql("started_at"),
                state::rfc3339_sql("finished_at"),
                state::table("data_migrations")
            ),
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let name: String = r.get(0);
            (
                name.clone(),
                (
                    r.get::<_, String>(1),
                    DataMigration {
                        name,
                        status: r.get(2),
                        file: String::new(),
                        rows: Some(r.get(3)),
                        run_by: Some(r.get(4)),
                        run_from_host: Some(r.get(5)),
                        started_at: r.get(6),
                        finished_at: r.get(7),
                        duration_ms: r.get(8),
                        last_error: r.get(9),
                    },
                ),
            )
        })
        .collect())
}

/// `pgshift data status`: every data migration file with what is recorded of it.
pub async fn data_status(
    client: &tokio_postgres::Client,
    data_dir: &Path,
) -> Result<Vec<DataMigration>> {
    let files = discover_data(data_dir)?;
    let records = data_records(client).await?;
    Ok(files
        .iter()
        .map(|f| match records.get(&f.name) {
            Some((checksum, d)) => {
                let mut d = d.clone();
                d.file = f.path.display().to_string();
                if d.status == "applied" && *checksum != f.checksum {
                    d.status = "edited".to_owned();
                }
                d
            }
            None => DataMigration {
                name: f.name.clone(),
                status: "pending".to_owned(),
                file: f.path.display().to_string(),
                rows: None,
                run_by: None,
                run_from_host: None,
                started_at: None,
                finished_at: None,
                duration_ms: None,
                last_error: None,
            },
        })
        .collect())
}

/// `pgshift data run`: every pending data migration, once, in file-name order. A structured
/// file holds `update` operations, each run by the backfill engine (batched, throttled,
/// resumable: killed, the same command continues it); a `.sql` file runs in one
/// transaction. `pgshift migrate` never runs them. Returns the names applied.
pub async fn data_run(
    spec: &ConnectionSpec,
    exec: &Executor,
    data_dir: &Path,
    schema: &str,
    on_event: &(dyn Fn(&RunEvent) + Sync),
) -> Result<Vec<(String, i64)>> {
    let files = discover_data(data_dir)?;
    // Refuse bad input before anything changes.
    let mut bodies = Vec::new();
    let mut diagnostics = Vec::new();
    for f in &files {
        match f.parse() {
            Ok(Body::Operations(m)) => {
                for (i, op) in m.operations.iter().enumerate() {
                    if !matches!(op, crate::model::Operation::Update(_)) {
                        diagnostics.push(
                            lifecycle::operation_diagnostic(
                                f,
                                i,
                                op.kind(),
                                &format!(
                                    "a data migration holds `update` operations only, not {}",
                                    op.kind()
                                ),
                            )
                            .with_hint(
                                "move schema changes to a migration in the migrations folder",
                            ),
                        );
                    }
                }
                bodies.push((f, Body::Operations(m)));
            }
            Ok(Body::Sql(statements)) => {
                if let Some(s) = statements.iter().find(|s| !s.transactional) {
                    diagnostics.push(
                        crate::diag::Diagnostic::at_line_col(
                            &f.path,
                            &f.source,
                            s.line,
                            1,
                            "a data migration runs in one transaction; this statement cannot",
                        )
                        .with_hint("move it to a migration in the migrations folder"),
                    );
                }
                bodies.push((f, Body::Sql(statements)));
            }
            Err(d) => diagnostics.push(d),
        }
    }
    if !diagnostics.is_empty() {
        return Err(Error::Input(diagnostics));
    }
    let who = Who::current(spec);
    let client = exec.client();
    locked(exec, schema, || async {
        let records = data_records(client).await?;
        let edited: Vec<EditedMigration> = files
            .iter()
            .filter_map(|f| {
                let (checksum, d) = records.get(&f.name)?;
                (d.status == "applied" && *checksum != f.checksum).then(|| EditedMigration {
                    name: f.name.clone(),
                    path: f.path.display().to_string(),
                    applied_checksum: checksum.clone(),
                    file_checksum: f.checksum.clone(),
                    partly_applied: None,
                })
            })
            .collect();
        if !edited.is_empty() {
            return Err(Error::EditedAfterApply(edited));
        }
        let table = state::table("data_migrations");
        let mut applied = Vec::new();
        for (file, body) in &bodies {
            if records.get(&file.name).is_some_and(|(_, d)| d.status == "applied") {
                continue;
            }
            let resumed = records.contains_key(&file.name);
            on_event(&RunEvent::MigrationStarted {
                name: format!("data/{}", file.name),
                resumed,
            });
            let t0 = Instant::now();
            client
                .execute(
                    &format!(
                        "INSERT INTO {table} AS d (name, checksum, kind, status, run_by, run_from_host)
                         VALUES ($1, $2, $3, 'running', $4, $5)
                         ON CONFLICT (name) DO UPDATE SET status = 'running', attempts = d.attempts + 1,
                             checksum = excluded.checksum, last_error = NULL"
                    ),
                    &[&file.name, &file.checksum, &file.kind.as_str(), &who.os_user, &who.host],
                )
                .await?;
            let done_sql = |rows: &str| {
                format!(
                    "UPDATE {table} SET status = 'applied', rows = {rows}, finished_at = clock_timestamp(),
                         duration_ms = (extract(epoch FROM clock_timestamp() - started_at) * 1000)::bigint
                     WHERE name = {}",
                    quote::literal(&file.name)
                )
            };
            let outcome: Result<i64> = async {
                match body {
                    Body::Sql(statements) => {
                        // The rows the statements changed are not counted here (0).
                        let steps: Vec<Step> = statements.iter().map(|s| step_of(file, s)).collect();
                        exec.run_transaction(&steps, &[done_sql("0")]).await?;
                        Ok(0)
                    }
                    Body::Operations(m) => {
                        let mut rows = 0;
                        for (i, op) in m.operations.iter().enumerate() {
                            if let crate::model::Operation::Update(u) = op {
                                let spec = crate::plan::BackfillSpec {
                                    schema: schema.to_owned(),
                                    table: u.table.clone(),
                                    set: u.set.iter().map(|(c, e)| (c.clone(), e.clone())).collect(),
                                    condition: u.condition.clone(),
                                    insert: None,
                                };
                                rows += crate::backfill::run(
                                    exec,
                                    &format!("data/{}", file.name),
                                    i as i32 + 1,
                                    &spec,
                                    on_event,
                                )
                                .await?;
                            }
                        }
                        client.batch_execute(&done_sql(&rows.to_string())).await?;
                        Ok(rows)
                    }
                }
            }
            .await;
            let ms = t0.elapsed().as_millis() as i64;
            let (ok, detail) = match &outcome {
                Ok(rows) => (true, serde_json::json!({ "rows": rows, "checksum": file.checksum })),
                Err(e) => {
                    let _ = client
                        .execute(
                            &format!("UPDATE {table} SET status = 'failed', last_error = $2 WHERE name = $1"),
                            &[&file.name, &e.to_string()],
                        )
                        .await;
                    (false, serde_json::json!({ "error": e.to_string() }))
                }
            };
            let _ = state::record_event(
                client,
                &who,
                &Event {
                    command: "data run",
                    event: if ok { "data_migration_applied" } else { "data_migration_failed" },
                    migration: Some(&file.name),
                    ok,
                    duration_ms: Some(ms),
                    detail,
                },
            )
            .await;
            let rows = outcome?;
            on_event(&RunEvent::MigrationApplied {
                name: format!("data/{}", file.name),
                ms: ms as u64,
            });
            applied.push((file.name.clone(), rows));
        }
        Ok(applied)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::split;

    #[test]
    fn segments_group_transactional_runs() {
        let stmts = split(
            Path::new("m.sql"),
            "CREATE TABLE a (id int);\nINSERT INTO a VALUES (1);\nCREATE INDEX CONCURRENTLY a_id ON a (id);\nALTER TABLE a ADD x int;\n",
        )
        .unwrap();
        let shape: Vec<String> = segments(&stmts)
            .iter()
            .map(|s| match s {
                Segment::Transaction(t) => format!("tx{}", t.len()),
                Segment::Alone(_) => "alone".to_owned(),
            })
            .collect();
        assert_eq!(shape, vec!["tx2", "alone", "tx1"]);
    }
}
