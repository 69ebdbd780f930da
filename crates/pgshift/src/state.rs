//! The `pgshift` state schema: what has been applied, the step journal, and the audit.
//!
//! The schema records its own version in `state_version`. Each version's DDL is an upgrade
//! step; a newer pgshift applies the steps it knows beyond the recorded version, each in one
//! transaction together with the new version number, so an upgrade interrupted at any point
//! is either fully there or not at all. An older pgshift refuses a newer schema.
//!
//! `events` is append-only: a trigger refuses UPDATE, DELETE and TRUNCATE on it.

use crate::conn::Who;
use crate::error::{Error, Result};
use crate::exec::{Executor, Step};
use crate::quote::{ident, literal};
use tokio_postgres::Client;

/// The state schema's name (part of the interface contract).
pub const SCHEMA: &str = "pgshift";

/// The newest state schema version this build knows.
pub const VERSION: i32 = 6;

/// SQL that renders timestamptz `expr` as RFC 3339 in UTC with milliseconds
/// (`2026-12-02T01:06:33.123Z`), the one form pgshift's output uses for time.
pub fn rfc3339_sql(expr: &str) -> String {
    format!("to_char(({expr}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')")
}

/// A time as pgshift's output writes it: RFC 3339 in UTC with milliseconds.
pub fn rfc3339(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Table `name` of the state schema, quoted.
pub fn table(name: &str) -> String {
    crate::quote::qualified(SCHEMA, name)
}

/// The DDL that brings the state schema from `version - 1` to `version`.
fn upgrade(version: i32) -> Vec<String> {
    let s = ident(SCHEMA);
    match version {
        1 => vec![
            format!(
                "CREATE TABLE {s}.migrations (
                    name text PRIMARY KEY,
                    checksum text NOT NULL,
                    kind text NOT NULL CHECK (kind IN ('sql', 'toml', 'yaml', 'json')),
                    status text NOT NULL CHECK (status IN ('running', 'failed', 'applied')),
                    attempts int NOT NULL DEFAULT 1,
                    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                    completed_at timestamptz,
                    duration_ms bigint,
                    applied_by text NOT NULL,
                    applied_from_host text NOT NULL,
                    application_name text NOT NULL,
                    db_user text NOT NULL DEFAULT session_user,
                    pgshift_version text NOT NULL,
                    last_error text
                )"
            ),
            format!(
                "COMMENT ON TABLE {s}.migrations IS 'pgshift: one row per migration that was started; status applied once done'"
            ),
            format!(
                "CREATE TABLE {s}.steps (
                    migration text NOT NULL REFERENCES {s}.migrations (name) ON DELETE CASCADE,
                    phase text NOT NULL,
                    step int NOT NULL,
                    description text NOT NULL,
                    status text NOT NULL CHECK (status IN ('running', 'done')),
                    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                    finished_at timestamptz,
                    PRIMARY KEY (migration, phase, step)
                )"
            ),
            format!(
                "COMMENT ON TABLE {s}.steps IS 'pgshift: journal of the steps of each migration, for resuming after a crash'"
            ),
            format!(
                "CREATE TABLE {s}.events (
                    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    at timestamptz NOT NULL DEFAULT clock_timestamp(),
                    command text NOT NULL,
                    event text NOT NULL,
                    migration text,
                    result text NOT NULL CHECK (result IN ('ok', 'error')),
                    duration_ms bigint,
                    os_user text NOT NULL,
                    host text NOT NULL,
                    application_name text NOT NULL,
                    db_user text NOT NULL DEFAULT session_user,
                    pgshift_version text NOT NULL,
                    detail jsonb NOT NULL DEFAULT '{{}}'
                )"
            ),
            format!(
                "CREATE FUNCTION {s}.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $body$
                 BEGIN
                   RAISE EXCEPTION 'pgshift.events is an append-only audit log';
                 END
                 $body$"
            ),
            format!(
                "CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON {s}.events
                 FOR EACH ROW EXECUTE FUNCTION {s}.refuse_change()"
            ),
            format!(
                "CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON {s}.events
                 FOR EACH STATEMENT EXECUTE FUNCTION {s}.refuse_change()"
            ),
        ],
        // Expand/contract migrations: their plan, source and version schema, and the
        // statuses of an open migration.
        2 => vec![
            format!(
                "ALTER TABLE {s}.migrations
                    ADD COLUMN version_schema text,
                    ADD COLUMN plan jsonb,
                    ADD COLUMN source text"
            ),
            format!("ALTER TABLE {s}.migrations DROP CONSTRAINT migrations_status_check"),
            format!(
                "ALTER TABLE {s}.migrations ADD CONSTRAINT migrations_status_check
                    CHECK (status IN ('running', 'failed', 'started', 'completing', 'rolling_back', 'applied'))"
            ),
        ],
        // Backfill runs: their cursor, counts and control state.
        3 => vec![format!(
            "CREATE TABLE {s}.backfills (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                migration text NOT NULL,
                step int NOT NULL,
                table_schema text NOT NULL,
                table_name text NOT NULL,
                spec jsonb NOT NULL,
                cursor text[],
                pages_done bigint NOT NULL DEFAULT 0,
                rows_done bigint NOT NULL DEFAULT 0,
                total_estimate bigint NOT NULL DEFAULT 0,
                batch_size int NOT NULL,
                state text NOT NULL CHECK (state IN ('running', 'paused', 'cancelled', 'done')),
                throttle_reason text,
                started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                finished_at timestamptz,
                UNIQUE (migration, step)
            )"
        )],
        // Parallel backfill workers: one row per worker (part), each over its own key or
        // block range: it starts after `cursor` (or at `pages_done`) and ends at
        // `upper_bound` (inclusive key, or exclusive page; NULL: the end of the table).
        // `start_xid`: the next transaction id when the backfill was registered.
        4 => vec![
            format!("ALTER TABLE {s}.backfills ADD COLUMN part int NOT NULL DEFAULT 0"),
            format!("ALTER TABLE {s}.backfills ADD COLUMN upper_bound text[]"),
            format!("ALTER TABLE {s}.backfills ADD COLUMN start_xid bigint NOT NULL DEFAULT 0"),
            format!("ALTER TABLE {s}.backfills DROP CONSTRAINT backfills_migration_step_key"),
            format!(
                "ALTER TABLE {s}.backfills ADD CONSTRAINT backfills_migration_step_part_key UNIQUE (migration, step, part)"
            ),
        ],
        // Migrations skipped in an environment (`skip_environments`).
        5 => vec![
            format!("ALTER TABLE {s}.migrations ADD COLUMN environment text"),
            format!("ALTER TABLE {s}.migrations DROP CONSTRAINT migrations_status_check"),
            format!(
                "ALTER TABLE {s}.migrations ADD CONSTRAINT migrations_status_check
                    CHECK (status IN ({}))",
                MigrationState::sql_list(&MigrationState::ALL)
            ),
        ],
        // Data migrations (`pgshift data run`), tracked apart from schema migrations.
        6 => vec![format!(
            "CREATE TABLE {s}.data_migrations (
                name text PRIMARY KEY,
                checksum text NOT NULL,
                kind text NOT NULL,
                status text NOT NULL CHECK (status IN ('running', 'applied', 'failed')),
                rows bigint NOT NULL DEFAULT 0,
                attempts int NOT NULL DEFAULT 1,
                started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                finished_at timestamptz,
                duration_ms bigint,
                run_by text NOT NULL,
                run_from_host text NOT NULL,
                db_user text NOT NULL DEFAULT session_user,
                last_error text
            )"
        )],
        _ => Vec::new(),
    }
}

/// Records a migration as skipped in `environment` (not run).
pub async fn mark_skipped(
    client: &Client,
    name: &str,
    checksum: &str,
    kind: &str,
    who: &Who,
    environment: &str,
) -> Result<()> {
    client
        .execute(
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

/// The state schema's recorded version, or `None` if it was never created.
pub async fn installed_version(client: &Client) -> Result<Option<i32>> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&table("state_version")],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_opt(
            &format!("SELECT version FROM {}", table("state_version")),
            &[],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// What `ensure` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct StateUpgrade {
    pub from: Option<i32>,
    pub to: i32,
}

/// Creates or upgrades the state schema. Call it while holding the advisory lock.
pub async fn ensure(exec: &Executor) -> Result<StateUpgrade> {
    let from = installed_version(exec.client()).await?;
    if let Some(found) = from {
        if found > VERSION {
            return Err(Error::StateTooNew {
                schema: SCHEMA.to_owned(),
                found,
                supported: VERSION,
            });
        }
        if found == VERSION {
            return Ok(StateUpgrade { from, to: found });
        }
    }
    let s = ident(SCHEMA);
    let mut version = from.unwrap_or(0);
    while version < VERSION {
        version += 1;
        let mut steps = Vec::new();
        let record_version = if from.is_none() && version == 1 {
            // Created in the same transaction as the first version's tables, so that a
            // reader sees either no state schema or a complete one.
            steps.push(Step::ddl(format!("CREATE SCHEMA IF NOT EXISTS {s}")));
            steps.push(Step::ddl(format!(
                "CREATE TABLE {s}.state_version (
                    version int NOT NULL,
                    upgraded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                    pgshift_version text NOT NULL,
                    singleton bool PRIMARY KEY DEFAULT true CHECK (singleton)
                )"
            )));
            format!(
                "INSERT INTO {s}.state_version (version, pgshift_version) VALUES ({version}, {})",
                literal(env!("CARGO_PKG_VERSION"))
            )
        } else {
            format!(
                "UPDATE {s}.state_version SET version = {version}, upgraded_at = clock_timestamp(), pgshift_version = {}",
                literal(env!("CARGO_PKG_VERSION"))
            )
        };
        steps.extend(upgrade(version).into_iter().map(Step::ddl));
        exec.run_transaction(&steps, &[record_version]).await?;
    }
    Ok(StateUpgrade { from, to: VERSION })
}

/// Where a migration stands: the `status` column of `pgshift.migrations`. The one place
/// that maps it to and from the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationState {
    /// A phase is running (start, or a raw SQL file being applied), or was interrupted.
    Running,
    /// A raw SQL migration failed.
    Failed,
    /// Started and open: both versions are served.
    Started,
    /// Complete is under way.
    Completing,
    /// Rollback is under way.
    RollingBack,
    Applied,
    /// Recorded as skipped in an environment (`skip_environments`).
    Skipped,
}

impl MigrationState {
    pub const ALL: [MigrationState; 7] = [
        MigrationState::Running,
        MigrationState::Failed,
        MigrationState::Started,
        MigrationState::Completing,
        MigrationState::RollingBack,
        MigrationState::Applied,
        MigrationState::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MigrationState::Running => "running",
            MigrationState::Failed => "failed",
            MigrationState::Started => "started",
            MigrationState::Completing => "completing",
            MigrationState::RollingBack => "rolling_back",
            MigrationState::Applied => "applied",
            MigrationState::Skipped => "skipped",
        }
    }

    /// A value read from the database; anything else means the state schema was edited by
    /// hand (an error, never a panic).
    pub fn parse(s: &str) -> Result<MigrationState> {
        MigrationState::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                crate::Error::CannotResume(format!(
                    "{} has a migration with status {s:?}, which pgshift never writes (was the state schema edited by hand?)",
                    table("migrations")
                ))
            })
    }

    /// Started and not yet completed or rolled back: the one migration that can be open.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            MigrationState::Running
                | MigrationState::Started
                | MigrationState::Completing
                | MigrationState::RollingBack
        )
    }

    /// Nothing more will run of it here.
    pub fn is_done(self) -> bool {
        matches!(self, MigrationState::Applied | MigrationState::Skipped)
    }

    /// `'running', 'failed', ...`: the values of a CHECK or an `IN` list.
    pub fn sql_list(states: &[MigrationState]) -> String {
        states
            .iter()
            .map(|m| literal(m.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::fmt::Display for MigrationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    client: &Client,
    name: &str,
    checksum: &str,
    kind: &str,
    who: &Who,
) -> Result<()> {
    client
        .execute(
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
    client: &Client,
    name: &str,
    version_schema: &str,
    plan: &serde_json::Value,
    source: &str,
) -> Result<()> {
    client
        .execute(
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
    let exists: bool = client
        .query_one(
            "SELECT to_regclass($1::text) IS NOT NULL",
            &[&table("migrations")],
        )
        .await?
        .get(0);
    if !exists {
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
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// Records why a phase of an open migration stopped, keeping its status (`running`,
/// `completing`, `rolling_back`) so that the same command resumes it.
pub async fn record_phase_error(client: &Client, name: &str, error: &str) -> Result<()> {
    client
        .execute(
            &format!(
                "UPDATE {} SET last_error = $2 WHERE name = $1",
                table("migrations")
            ),
            &[&name, &error],
        )
        .await?;
    Ok(())
}

pub async fn mark_failed(client: &Client, name: &str, error: &str) -> Result<()> {
    client
        .execute(
            &format!(
                "UPDATE {} SET status = 'failed', last_error = $2 WHERE name = $1 AND status IN ('running', 'completing', 'rolling_back')",
                table("migrations")
            ),
            &[&name, &error],
        )
        .await?;
    Ok(())
}

/// The state of one journaled step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepState {
    Running,
    Done,
}

/// The journal of a migration's phase: step number and state.
pub async fn journal(
    client: &Client,
    migration: &str,
    phase: &str,
) -> Result<Vec<(i32, StepState)>> {
    let rows = client
        .query(
            &format!(
                "SELECT step, status FROM {} WHERE migration = $1 AND phase = $2 ORDER BY step",
                table("steps")
            ),
            &[&migration, &phase],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let status: String = r.get(1);
            (
                r.get(0),
                if status == "done" {
                    StepState::Done
                } else {
                    StepState::Running
                },
            )
        })
        .collect())
}

/// SQL that journals a step as done; runs in the step's own transaction where it has one.
pub fn step_done_sql(migration: &str, phase: &str, step: i32, description: &str) -> String {
    format!(
        "INSERT INTO {} (migration, phase, step, description, status, finished_at)
         VALUES ({}, {}, {step}, {}, 'done', clock_timestamp())
         ON CONFLICT (migration, phase, step) DO UPDATE SET status = 'done', finished_at = clock_timestamp()",
        table("steps"),
        literal(migration),
        literal(phase),
        literal(description)
    )
}

/// Journals that a step which cannot run in a transaction is about to start, so that a run
/// after a crash knows it may have been (partly) done.
pub async fn step_running(
    client: &Client,
    migration: &str,
    phase: &str,
    step: i32,
    description: &str,
) -> Result<()> {
    client
        .execute(
            &format!(
                "INSERT INTO {} (migration, phase, step, description, status) VALUES ($1, $2, $3, $4, 'running')
                 ON CONFLICT (migration, phase, step) DO UPDATE SET status = 'running', started_at = clock_timestamp()",
                table("steps")
            ),
            &[&migration, &phase, &step, &description],
        )
        .await?;
    Ok(())
}

/// One entry of the audit log.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub command: &'a str,
    pub event: &'a str,
    pub migration: Option<&'a str>,
    pub ok: bool,
    pub duration_ms: Option<i64>,
    pub detail: serde_json::Value,
}

/// Appends an event to the audit log.
pub async fn record_event(client: &Client, who: &Who, event: &Event<'_>) -> Result<()> {
    let result = if event.ok { "ok" } else { "error" };
    client
        .execute(
            &format!(
                "INSERT INTO {} (command, event, migration, result, duration_ms, os_user, host, application_name, pgshift_version, detail)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                table("events")
            ),
            &[
                &event.command,
                &event.event,
                &event.migration,
                &result,
                &event.duration_ms,
                &who.os_user,
                &who.host,
                &who.application_name,
                &env!("CARGO_PKG_VERSION"),
                &event.detail,
            ],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_states_round_trip_and_group() {
        for m in MigrationState::ALL {
            assert_eq!(MigrationState::parse(m.as_str()).unwrap(), m);
            assert!(!(m.is_open() && m.is_done()), "{m}");
        }
        let open: Vec<&str> = MigrationState::ALL
            .into_iter()
            .filter(|m| m.is_open())
            .map(MigrationState::as_str)
            .collect();
        assert_eq!(open, ["running", "started", "completing", "rolling_back"]);
        assert!(
            MigrationState::parse("half-done").is_err(),
            "an edited state schema is an error"
        );
        assert_eq!(
            MigrationState::sql_list(&[MigrationState::Applied, MigrationState::Skipped]),
            "'applied', 'skipped'"
        );
    }
}
