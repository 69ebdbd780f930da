//! `pgshift status --history`: the audit log, newest first. Reads only.

use crate::error::Result;
use crate::state;

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
    rows.iter()
        .map(|r| {
            Ok(HistoryEvent {
                at: r.try_get(0)?,
                command: r.try_get(1)?,
                event: r.try_get(2)?,
                migration: r.try_get(3)?,
                result: r.try_get(4)?,
                duration_ms: r.try_get(5)?,
                os_user: r.try_get(6)?,
                host: r.try_get(7)?,
                db_user: r.try_get(8)?,
                detail: r.try_get(9)?,
            })
        })
        .collect()
}
