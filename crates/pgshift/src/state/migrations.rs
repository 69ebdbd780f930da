//! `pgshift.migrations`: one row per migration, with its stored plan while it is open.

use super::*;
use crate::conn::Who;
use crate::error::Result;
use crate::exec::Executor;
use crate::quote::literal;
use tokio_postgres::Client;

/// Records a migration as skipped in `environment` (not run).
pub async fn mark_skipped(
    exec: &Executor,
    name: &str,
    checksum: &str,
    kind: &str,
    who: &Who,
    environment: &str,
) -> Result<()> {
    exec
        .bookkeeping_query(
            &format!(
                "INSERT INTO {} AS m (name, checksum, kind, status, applied_by, applied_from_host, application_name, pgshift_version, environment, completed_at, duration_ms)
                 VALUES ($1, $2, $3, 'skipped', $4, $5, $6, $7, $8, clock_timestamp(), 0)
                 ON CONFLICT (name) DO UPDATE SET status = 'skipped', environment = excluded.environment,
                     completed_at = excluded.completed_at, duration_ms = 0
                 WHERE m.status NOT IN ('applied', 'skipped')",
                table("migrations")
            ),
            &[&name, &checksum, &kind, &who.os_user, &who.host, &who.application_name, &env!("CARGO_PKG_VERSION"), &environment],
        )
        .await?;
    Ok(())
}

/// A row of `pgshift.migrations`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MigrationRecord {
    pub name: String,
    pub checksum: String,
    pub kind: String,
    pub status: MigrationState,
    pub attempts: i32,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
    pub duration_ms: Option<i64>,
    pub applied_by: String,
    pub applied_from_host: String,
    pub application_name: String,
    pub db_user: String,
    pub last_error: Option<String>,
    pub version_schema: Option<String>,
    /// Steps of any phase journaled as running or done: 0 means nothing of it was applied.
    pub steps_journaled: i64,
}

pub async fn migrations(client: &Client) -> Result<Vec<MigrationRecord>> {
    let rows = client
        .query(
            &format!(
                // to_jsonb: readable before a state upgrade added the column, too.
                "SELECT name, checksum, kind, status, attempts, started_at, completed_at, duration_ms,
                        applied_by, applied_from_host, application_name, db_user, last_error,
                        to_jsonb(m) ->> 'version_schema',
                        (SELECT count(*) FROM {} AS s WHERE s.migration = m.name)
                 FROM {} AS m ORDER BY name",
                table("steps"),
                table("migrations")
            ),
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(MigrationRecord {
                name: r.try_get(0)?,
                checksum: r.try_get(1)?,
                kind: r.try_get(2)?,
                status: MigrationState::parse(r.try_get(3)?)?,
                attempts: r.try_get(4)?,
                started_at: r.try_get(5)?,
                completed_at: r.try_get(6)?,
                duration_ms: r.try_get(7)?,
                applied_by: r.try_get(8)?,
                applied_from_host: r.try_get(9)?,
                application_name: r.try_get(10)?,
                db_user: r.try_get(11)?,
                last_error: r.try_get(12)?,
                version_schema: r.try_get(13)?,
                steps_journaled: r.try_get(14)?,
            })
        })
        .collect()
}

/// Records that a migration starts (or starts again after a failure or a crash).
pub async fn begin_migration(
    exec: &Executor,
    name: &str,
    checksum: &str,
    kind: &str,
    who: &Who,
) -> Result<()> {
    exec
        .bookkeeping_query(
            &format!(
                "INSERT INTO {} AS m (name, checksum, kind, status, applied_by, applied_from_host, application_name, pgshift_version)
                 VALUES ($1, $2, $3, 'running', $4, $5, $6, $7)
                 ON CONFLICT (name) DO UPDATE SET status = 'running', attempts = m.attempts + 1,
                     applied_by = excluded.applied_by, applied_from_host = excluded.applied_from_host,
                     application_name = excluded.application_name, db_user = session_user,
                     pgshift_version = excluded.pgshift_version, last_error = NULL
                 WHERE m.status <> 'applied'",
                table("migrations")
            ),
            &[&name, &checksum, &kind, &who.os_user, &who.host, &who.application_name, &env!("CARGO_PKG_VERSION")],
        )
        .await?;
    Ok(())
}

/// SQL that marks a migration applied; runs in the transaction of its last step.
pub fn mark_applied_sql(name: &str) -> String {
    format!(
        "UPDATE {} SET status = 'applied', completed_at = clock_timestamp(),
             duration_ms = (extract(epoch FROM clock_timestamp() - started_at) * 1000)::bigint
         WHERE name = {}",
        table("migrations"),
        literal(name)
    )
}

/// Stores the plan of a structured migration when its start begins.
pub async fn store_plan(
    exec: &Executor,
    name: &str,
    version_schema: &str,
    plan: &serde_json::Value,
    source: &str,
) -> Result<()> {
    exec.bookkeeping_query(
        &format!(
            "UPDATE {} SET version_schema = $2, plan = $3, source = $4 WHERE name = $1",
            table("migrations")
        ),
        &[&name, &version_schema, plan, &source],
    )
    .await?;
    Ok(())
}

/// Sets a migration's status (and, for `applied`, its completion time and duration).
pub fn set_status_sql(name: &str, status: MigrationState) -> String {
    if status == MigrationState::Applied {
        return mark_applied_sql(name);
    }
    format!(
        "UPDATE {} SET status = {} WHERE name = {}",
        table("migrations"),
        literal(status.as_str()),
        literal(name)
    )
}

/// SQL that forgets a rolled-back migration: its record, journal and backfill cursors (a
/// new start begins afresh); the audit keeps it.
pub fn forget_sql(name: &str) -> String {
    format!(
        "DELETE FROM {} WHERE migration = {name};\nDELETE FROM {} WHERE name = {name}",
        table("backfills"),
        table("migrations"),
        name = literal(name)
    )
}

/// What was stored when a migration started: its plan, version schema, source and the
/// source's kind (`yaml`, `json`, `toml`).
pub struct StoredPlan {
    pub plan: serde_json::Value,
    pub version_schema: String,
    pub source: String,
    pub kind: String,
}

/// The stored plan of a migration.
pub async fn stored_plan(client: &Client, name: &str) -> Result<Option<StoredPlan>> {
    let row = client
        .query_opt(
            &format!(
                "SELECT plan, version_schema, source, kind FROM {} WHERE name = $1 AND plan IS NOT NULL",
                table("migrations")
            ),
            &[&name],
        )
        .await?;
    row.map(|r| {
        Ok(StoredPlan {
            plan: r.try_get(0)?,
            version_schema: r.try_get(1)?,
            source: r.try_get(2)?,
            kind: r.try_get(3)?,
        })
    })
    .transpose()
}

/// The newest version schema that exists (what a client of the latest version should use)
/// and its migration.
pub async fn latest_version_schema(client: &Client) -> Result<Option<(String, String)>> {
    // Before the state schema exists (a plan checked before anything is created).
    if !has_table(client, "migrations").await? {
        return Ok(None);
    }
    let row = client
        .query_opt(
            &format!(
                "SELECT version_schema, name FROM {} WHERE version_schema IS NOT NULL
                   AND status IN ('started', 'completing', 'applied')
                   AND to_regnamespace(quote_ident(version_schema)) IS NOT NULL
                 ORDER BY started_at DESC, name DESC LIMIT 1",
                table("migrations")
            ),
            &[],
        )
        .await?;
    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
}

/// Records why a phase of an open migration stopped, keeping its status (`running`,
/// `completing`, `rolling_back`) so that the same command resumes it.
pub async fn record_phase_error(exec: &Executor, name: &str, error: &str) -> Result<()> {
    exec.bookkeeping_query(
        &format!(
            "UPDATE {} SET last_error = $2 WHERE name = $1",
            table("migrations")
        ),
        &[&name, &error],
    )
    .await?;
    Ok(())
}

pub async fn mark_failed(exec: &Executor, name: &str, error: &str) -> Result<()> {
    exec
        .bookkeeping_query(
            &format!(
                "UPDATE {} SET status = 'failed', last_error = $2 WHERE name = $1 AND status IN ('running', 'completing', 'rolling_back')",
                table("migrations")
            ),
            &[&name, &error],
        )
        .await?;
    Ok(())
}
