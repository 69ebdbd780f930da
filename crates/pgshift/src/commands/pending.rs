//! Which pending files run, decided before anything changes: files edited after they ran,
//! files out of order, lint findings, a migration's directives (`mode: manual`,
//! `skip_environments`) and the deploy budget.

use crate::error::{EditedMigration, Error, Refusal, Result};
use crate::event::RunEvent;
use crate::session::Session;
use crate::source::{Body, MigrationFile};
use crate::state::{self, AuditEvent, Event, MigrationRecord, MigrationState};

/// The state schema's version (None before pgshift touched the database) and the recorded
/// migrations (none before there is a state schema).
pub(super) async fn recorded(
    client: &tokio_postgres::Client,
) -> Result<(Option<i32>, Vec<MigrationRecord>)> {
    let version = state::installed_version(client).await?;
    let records = match version {
        Some(v) if v >= 1 => state::migrations(client).await?,
        _ => Vec::new(),
    };
    Ok((version, records))
}

/// Lints the files about to run with the project's levels, as pgshift runs them (whatever
/// executor the settings name for `pgshift lint`): an error-level finding refuses the run
/// before anything changes; warnings are reported and the run goes on.
pub(super) fn lint_before_run(
    s: &Session<'_>,
    files: &[&MigrationFile],
    config: &crate::lint::Config,
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
        s.emit(&RunEvent::LintWarnings {
            text: report.render_human(),
        });
    }
    Ok(())
}

/// What a file's record says of an edit to the file.
pub(super) enum Edit {
    /// The file matches its record, or has none.
    None,
    /// It failed (or was interrupted) with nothing applied: the record is forgotten and the
    /// edited file runs as new, as `sqlx migrate` or Flyway's `repair` would allow.
    RunAgain,
    /// Something of it was applied: the edit is refused, saying what to do.
    Refused(EditedMigration),
}

pub(super) fn edit_of(file: &MigrationFile, records: &[MigrationRecord]) -> Edit {
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
pub(super) fn check_not_edited(file: &MigrationFile, records: &[MigrationRecord]) -> Result<bool> {
    match edit_of(file, records) {
        Edit::None => Ok(false),
        Edit::RunAgain => Ok(true),
        Edit::Refused(e) => Err(Error::EditedAfterApply(vec![e])),
    }
}

/// Forgets the record of a migration that failed with nothing applied and whose file was
/// edited since, so that the edited file runs as a new migration; the audit log keeps both.
pub(super) async fn forget_edited(
    s: &Session<'_>,
    command: &str,
    file: &MigrationFile,
    records: &[MigrationRecord],
) -> Result<()> {
    let old = records
        .iter()
        .find(|r| r.name == file.name)
        .map(|r| r.checksum.clone());
    s.exec()
        .bookkeeping(
            "forgetting the edited migration",
            &[state::forget_sql(&file.name)],
        )
        .await?;
    s.record(&Event {
        command,
        event: AuditEvent::MigrationEditedAfterFailure,
        migration: Some(&file.name),
        ok: true,
        duration_ms: None,
        detail: serde_json::json!({ "old_checksum": old, "checksum": file.checksum }),
    })
    .await
}

pub(super) struct RunPlan<'a> {
    pub(super) pending: Vec<(&'a MigrationFile, Body)>,
    pub(super) already_applied: usize,
    /// Edited files of migrations that failed with nothing applied: forgotten, then run.
    pub(super) run_again: Vec<&'a MigrationFile>,
}

/// Decides what runs, refusing (before anything changes) edited files, files that do not
/// parse, and pending files older than an applied one.
pub(super) fn plan_run<'a>(
    files: &'a [MigrationFile],
    records: &[MigrationRecord],
    allow_out_of_order: bool,
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
    if !allow_out_of_order {
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

/// A migration's instructions to `migrate`: `mode` and `skip_environments` at the top level
/// of a structured file; in a `.sql` file, comment lines before its first statement:
/// `-- pgshift: mode = manual` and `-- pgshift: skip_environments = production, staging`.
pub(super) struct Directives {
    pub(super) manual: bool,
    pub(super) skip_environments: Vec<String>,
}

impl Directives {
    pub(super) fn skipped_in(&self, environment: Option<&str>) -> bool {
        environment.is_some_and(|e| self.skip_environments.iter().any(|s| s == e))
    }
}

pub(super) fn directives(file: &MigrationFile, body: &Body) -> Directives {
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

/// Refuses a migration whose start and complete are estimated longer than `budget`, naming
/// its longest step.
pub(super) fn check_budget(
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
