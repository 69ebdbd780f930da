//! `pgshift migrate`: applies every pending migration in order. Bad input is refused
//! before anything changes, the state schema included; then, under the advisory lock, each
//! file runs: a `.sql` file through the journaled SQL applier, a structured one started
//! (and completed, unless it is the last one and `--complete` was not given).

use super::pending::{
    check_budget, directives, forget_edited, lint_before_run, plan_run, recorded,
};
use super::plan::estimate;
use crate::checks;
use crate::error::Result;
use crate::event::RunEvent;
use crate::lock;
use crate::phases::{sql, structured};
use crate::session::Session;
use crate::source::{self, Body, MigrationFile};
use crate::state::{self, AuditEvent, Event, MigrationState};
use std::path::Path;
use std::time::Instant;

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
    s: &Session<'_>,
    dir: &Path,
    options: &MigrateOptions,
) -> Result<MigrateReport> {
    let started = Instant::now();
    let files = source::discover(dir)?;
    let client = s.client();

    // Refuse bad input before changing anything, the state schema included: check against
    // what is recorded now, read-only...
    let (version, records) = recorded(client).await?;
    let first = plan_run(&files, &records, options.allow_out_of_order)?;
    if let Some(config) = &options.lint {
        let fresh: Vec<&MigrationFile> = first
            .pending
            .iter()
            .map(|(f, _)| *f)
            .filter(|f| !records.iter().any(|r| r.name == f.name))
            .collect();
        lint_before_run(s, &fresh, config)?;
    }
    // On a database pgshift has not touched yet, the first pending migration is planned and
    // pre-checked against the live schema before the state schema is created (later ones
    // depend on it and are checked when their turn comes).
    let mut rows_checked = None;
    if let (None, Some((file, Body::Operations(migration)))) = (version, first.pending.first()) {
        checks::plan_for(client, file, migration, s.schema()).await?;
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
            if let Some(estimate) = estimate(client, file, body, s.schema()).await {
                check_budget(file, &estimate, budget)?;
                budget_checked.push(file.name.clone());
            }
        }
    }

    lock::acquire(client).await?;
    let result = async {
        let upgrade = state::ensure(s.exec()).await?;
        if upgrade.from != Some(upgrade.to) {
            s.emit(&RunEvent::StateSchema {
                from: upgrade.from,
                to: upgrade.to,
            });
        }
        // ...and again under the lock, in case another run applied something meanwhile.
        let mut records = state::migrations(client).await?;
        let mut plan = plan_run(&files, &records, options.allow_out_of_order)?;
        if !plan.run_again.is_empty() {
            for file in &plan.run_again {
                forget_edited(s, "migrate", file, &records).await?;
            }
            records = state::migrations(client).await?;
            plan = plan_run(&files, &records, options.allow_out_of_order)?;
        }
        let mut report = MigrateReport {
            database: s.spec().describe(),
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
                state::mark_skipped(s.exec(), &file.name, &file.checksum, file.kind.as_str(), s.who(), env)
                    .await?;
                s.record(&Event {
                        command: "migrate",
                        event: AuditEvent::MigrationSkipped,
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
                    if let Some(estimate) = estimate(client, file, body, s.schema()).await {
                        check_budget(file, &estimate, budget)?;
                    }
                }
            }
            let t0 = Instant::now();
            let outcome = match body {
                Body::Sql(statements) => {
                    // A raw SQL migration sees the physical tables: the open migration, if
                    // any, is completed first.
                    if let Some((open, _)) = structured::open_migration(client).await? {
                        s.emit(&RunEvent::Completing { name: open.clone() });
                        structured::complete(s).await?;
                        report.applied.push(open);
                    }
                    s.emit(&RunEvent::MigrationStarted {
                        name: file.name.clone(),
                        resumed,
                    });
                    sql::apply(s, file, statements).await
                }
                Body::Operations(migration) => {
                    let open = records
                        .iter()
                        .any(|r| r.name == file.name && r.status == MigrationState::Started);
                    let started = if open {
                        s.emit(&RunEvent::Completing {
                            name: file.name.clone(),
                        });
                        Ok(String::new())
                    } else {
                        let checked = rows_checked.as_deref() == Some(file.name.as_str());
                        structured::start(s, file, migration, checked)
                            .await
                            .map(|_| String::new())
                    };
                    match started {
                        Ok(_) if i < last || options.complete => {
                            structured::complete(s).await.map(|_| ())
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
                        s.record(&Event {
                                command: "migrate",
                                event: AuditEvent::MigrationApplied,
                                migration: Some(&file.name),
                                ok: true,
                                duration_ms: Some(ms as i64),
                                detail: serde_json::json!({ "checksum": file.checksum, "kind": file.kind.as_str(), "resumed": resumed }),
                            },
                        )
                        .await?;
                    }
                    if report.left_open.as_deref() == Some(file.name.as_str()) {
                        s.emit(&RunEvent::MigrationLeftOpen {
                            name: file.name.clone(),
                            ms,
                        });
                    } else {
                        s.emit(&RunEvent::MigrationApplied {
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
                        let _ = state::mark_failed(s.exec(), &file.name, &message).await;
                        let _ = s.record(&Event {
                                command: "migrate",
                                event: AuditEvent::MigrationFailed,
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
