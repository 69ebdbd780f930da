//! `pgshift.events`: the append-only audit log of who did what, when and with what result.

use super::*;
use crate::conn::Who;
use crate::error::Result;
use crate::exec::Executor;

/// One entry of the audit log.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub command: &'a str,
    pub event: AuditEvent,
    pub migration: Option<&'a str>,
    pub ok: bool,
    pub duration_ms: Option<i64>,
    pub detail: serde_json::Value,
}

/// Appends an event to the audit log.
pub async fn record_event(exec: &Executor, who: &Who, event: &Event<'_>) -> Result<()> {
    let result = if event.ok { "ok" } else { "error" };
    exec
        .bookkeeping_query(
            &format!(
                "INSERT INTO {} (command, event, migration, result, duration_ms, os_user, host, application_name, pgshift_version, detail)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                table("events")
            ),
            &[
                &event.command,
                &event.event.as_str(),
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
