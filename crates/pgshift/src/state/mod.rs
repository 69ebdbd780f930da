//! The `pgshift` state schema: what has been applied, the step journal, and the audit.
//!
//! The schema records its own version in `state_version`. Each version's DDL is an upgrade
//! step; a newer pgshift applies the steps it knows beyond the recorded version, each in one
//! transaction together with the new version number, so an upgrade interrupted at any point
//! is either fully there or not at all. An older pgshift refuses a newer schema.
//!
//! `events` is append-only: a trigger refuses UPDATE, DELETE and TRUNCATE on it.

use crate::error::{Error, Result};
use crate::exec::Executor;
use crate::quote::{ident, literal};
use crate::sql::Statement;
use tokio_postgres::Client;

mod audit;
mod journal;
mod migrations;
mod schema;
mod types;
mod validations;

pub use audit::*;
pub use journal::*;
pub use migrations::*;
use schema::upgrade;
pub use types::*;
pub use validations::*;

/// The state schema's name (part of the interface contract).
pub const SCHEMA: &str = "pgshift";

/// The newest state schema version this build knows.
pub const VERSION: i32 = 7;

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
    crate::quote::qualified(SCHEMA, name).into()
}

/// Whether table `name` of the state schema exists (before `init`, none does).
pub(crate) async fn has_table(client: &Client, name: &str) -> Result<bool> {
    Ok(client
        .query_one("SELECT to_regclass($1::text) IS NOT NULL", &[&table(name)])
        .await?
        .try_get(0)?)
}

/// The state schema's recorded version, or `None` if it was never created.
pub async fn installed_version(client: &Client) -> Result<Option<i32>> {
    if !has_table(client, "state_version").await? {
        return Ok(None);
    }
    let row = client
        .query_opt(
            &format!("SELECT version FROM {}", table("state_version")),
            &[],
        )
        .await?;
    row.map(|r| r.try_get(0)).transpose().map_err(Into::into)
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
            steps.push(Statement::ddl(format!("CREATE SCHEMA IF NOT EXISTS {s}")));
            steps.push(Statement::ddl(format!(
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
        steps.extend(upgrade(version).into_iter().map(Statement::ddl));
        exec.run_transaction(&steps, &[record_version]).await?;
    }
    Ok(StateUpgrade { from, to: VERSION })
}
