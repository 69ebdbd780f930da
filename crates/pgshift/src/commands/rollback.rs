//! `pgshift rollback`: undoes what start did to the open migration.

use crate::error::Result;
use crate::phases::structured;
use crate::session::Session;

/// Rolls the open migration back; returns its name.
pub async fn rollback(s: &Session<'_>) -> Result<String> {
    s.locked(|| structured::rollback(s)).await
}
