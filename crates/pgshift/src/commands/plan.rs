//! `pgshift plan [file]`: what a migration would do (its steps, locks, estimates) against
//! the live catalog, changing nothing: it runs on a read-only connection.

use super::pending::{plan_run, recorded};
use crate::checks;
use crate::error::{Error, Result};
use crate::session::set_search_path;
use crate::source::{self, Body, MigrationFile};
use crate::sql::Statement;
use std::path::Path;

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
    let (_, records) = recorded(client).await?;
    let run = plan_run(&files, &records, true)?;
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

/// A raw SQL migration as steps: its statements in one transaction, which holds every lock
/// until it commits; those that cannot run in one run alone.
fn sql_plan(statements: &[Statement]) -> crate::plan::Plan {
    let mut start: Vec<crate::plan::PlannedStep> = Vec::new();
    let mut group: Vec<&Statement> = Vec::new();
    let flush = |group: &mut Vec<&Statement>, start: &mut Vec<crate::plan::PlannedStep>| {
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
            checks::plan_with_catalog(client, file, m, schema, check_rows).await?
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
pub(super) async fn estimate(
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
