//! `pgshift backfill pause|resume|cancel`: steers the backfills of a run that may be going
//! on in another pgshift (which reads the state between batches).

use crate::backfill::Control;
use crate::error::Result;
use crate::lock;
use crate::phases::structured;
use crate::session::Session;

/// `pgshift backfill pause` or `cancel`: marks the running backfills, records it in the
/// audit log; returns how many changed.
pub async fn steer(s: &Session<'_>, control: Control) -> Result<u64> {
    crate::backfill::control_and_record(s.exec(), s.who(), control).await
}

/// `pgshift backfill resume`: lets paused or cancelled backfills go on; if no pgshift is
/// running the open migration's start, continues it here. Returns the number of backfills
/// changed and the migration continued, if any.
pub async fn resume(s: &Session<'_>) -> Result<(u64, Option<String>)> {
    let changed = crate::backfill::control_and_record(s.exec(), s.who(), Control::Resume).await?;
    if lock::current_holder(s.client()).await?.is_some() {
        return Ok((changed, None));
    }
    let continued = s.locked(|| structured::resume_start(s)).await?;
    Ok((changed, continued))
}
