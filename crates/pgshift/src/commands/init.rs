//! `pgshift init`: creates or upgrades the state schema, under the advisory lock.

use crate::error::Result;
use crate::lock;
use crate::session::Session;
use crate::state::{self, AuditEvent, Event};
use std::time::Instant;

/// Creates or upgrades the state schema and records it in the audit log.
pub async fn init(s: &Session<'_>) -> Result<state::StateUpgrade> {
    let client = s.client();
    lock::acquire(client).await?;
    let t0 = Instant::now();
    let result = async {
        let upgrade = state::ensure(s.exec()).await?;
        s.record(&Event {
            command: "init",
            event: AuditEvent::StateSchema,
            migration: None,
            ok: true,
            duration_ms: Some(t0.elapsed().as_millis() as i64),
            detail: serde_json::json!({ "from": upgrade.from, "to": upgrade.to }),
        })
        .await?;
        Ok(upgrade)
    }
    .await;
    let _ = lock::release(client).await;
    result
}
