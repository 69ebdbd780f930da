//! `pgshift backfill pause|resume|cancel`: the state of the unfinished backfills, which a
//! running backfill reads before every batch.

use crate::error::Result;
use crate::exec::{Executor, Policy};
use crate::state::{self, AuditEvent, BackfillState};

/// What `pgshift backfill pause|resume|cancel` asks of the unfinished backfills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Pause,
    Resume,
    Cancel,
}

impl Control {
    /// The state the backfills are set to, and the states they may be in before.
    pub(super) fn transition(self) -> (BackfillState, &'static [BackfillState]) {
        use BackfillState::*;
        match self {
            Control::Pause => (Paused, &[Running]),
            Control::Resume => (Running, &[Paused, Cancelled]),
            Control::Cancel => (Cancelled, &[Running, Paused]),
        }
    }

    /// The state the backfills end in, for output.
    pub fn state(self) -> BackfillState {
        self.transition().0
    }

    /// (command, audit event) for the audit log.
    pub fn audit(self) -> (&'static str, AuditEvent) {
        match self {
            Control::Pause => ("backfill pause", AuditEvent::BackfillsPaused),
            Control::Resume => ("backfill resume", AuditEvent::BackfillsResumed),
            Control::Cancel => ("backfill cancel", AuditEvent::BackfillsCancelled),
        }
    }
}

/// `pgshift backfill pause|cancel` from another terminal: [`control`], then the audit
/// event that says who did it and to how many backfills; returns how many.
pub async fn control_and_record(
    exec: &Executor,
    who: &crate::conn::Who,
    c: Control,
) -> Result<u64> {
    let n = control(exec, c).await?;
    let (command, event) = c.audit();
    state::record_event(
        exec,
        who,
        &state::Event {
            command,
            event,
            migration: None,
            ok: true,
            duration_ms: Some(0),
            detail: serde_json::json!({ "backfills": n }),
        },
    )
    .await?;
    Ok(n)
}

/// `pgshift backfill pause|resume|cancel`: sets the state of every unfinished backfill;
/// returns how many it changed.
pub async fn control(exec: &Executor, control: Control) -> Result<u64> {
    let (to, from) = control.transition();
    if state::installed_version(exec.client()).await?.unwrap_or(0) < 3 {
        return Ok(0);
    }
    let sql = format!(
        "UPDATE {} SET state = $1, updated_at = clock_timestamp() WHERE state = ANY($2)",
        state::table("backfills")
    );
    let (to, from): (&str, Vec<&str>) = (to.as_str(), from.iter().map(|s| s.as_str()).collect());
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&to, &from];
    exec.transaction(Policy::Bookkeeping, &sql, |client| {
        client.execute(sql.as_str(), &params)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_resume_and_cancel_move_only_from_where_they_can() {
        use BackfillState::*;
        assert_eq!(Control::Pause.transition(), (Paused, &[Running][..]));
        assert_eq!(
            Control::Resume.transition(),
            (Running, &[Paused, Cancelled][..])
        );
        assert_eq!(
            Control::Cancel.transition(),
            (Cancelled, &[Running, Paused][..])
        );
        // Nothing moves a finished backfill.
        for c in [Control::Pause, Control::Resume, Control::Cancel] {
            assert!(!c.transition().1.contains(&Done));
        }
    }
}
