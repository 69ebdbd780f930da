//! `pgshift status`: every migration file beside what the database records of it. Reads
//! only: creates nothing and takes no lock.

use crate::conn::ConnectionSpec;
use crate::error::Result;
use crate::lock;
use crate::source;
use crate::state::{self, MigrationRecord, MigrationState};
use std::path::Path;

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
