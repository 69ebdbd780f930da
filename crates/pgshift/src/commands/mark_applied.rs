//! `pgshift mark-applied <name> --reason`: records a migration as applied without running
//! it (a change a DBA made by hand), with who and why in the audit log.

use crate::error::{Error, Refusal, Result};
use crate::session::Session;
use crate::source;
use crate::state::{self, AuditEvent, Event, MigrationState};
use std::path::Path;

/// Records migration `name` of `dir` as applied, with `reason`.
pub async fn mark_applied(s: &Session<'_>, dir: &Path, name: &str, reason: &str) -> Result<()> {
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
    let client = s.client();
    s.locked(|| async {
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
        s.begin_migration(file).await?;
        s.exec()
            .bookkeeping(
                "recording the migration",
                &[state::mark_applied_sql(&file.name)],
            )
            .await?;
        s.record(&Event {
            command: "mark-applied",
            event: AuditEvent::MigrationMarkedApplied,
            migration: Some(&file.name),
            ok: true,
            duration_ms: Some(0),
            detail: serde_json::json!({ "reason": reason, "checksum": file.checksum }),
        })
        .await
    })
    .await
}
