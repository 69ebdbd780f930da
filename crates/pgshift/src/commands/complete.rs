//! `pgshift complete`: contracts the open migration (after the plan's checks pass).

use crate::error::Result;
use crate::phases::structured;
use crate::session::Session;

/// Completes the open migration; returns its name.
pub async fn complete(s: &Session<'_>) -> Result<String> {
    s.locked(|| structured::complete(s)).await
}
