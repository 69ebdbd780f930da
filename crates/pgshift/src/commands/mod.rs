//! The commands, one file each. A command that changes the database runs over a
//! [`Session`](crate::session::Session); one that only reads (`status`, `plan`, `latest`,
//! `data status`, `backfill status`) takes a read-only connection.
//!
//! Each decides what runs and checks it before anything changes ([`pending`] holds the
//! checks `migrate` and `start` share); the phases ([`crate::phases`]) run it.

mod backfill;
mod complete;
mod data;
mod history;
mod init;
mod latest;
mod mark_applied;
mod migrate;
mod pending;
mod plan;
mod rollback;
mod start;
mod status;

pub use backfill::{resume as backfill_resume, steer as backfill_steer};
pub use complete::complete;
pub use data::{data_run, data_status, DataMigration};
pub use history::{history, HistoryEvent};
pub use init::init;
pub use latest::{latest_schema, Latest};
pub use mark_applied::mark_applied;
pub use migrate::{migrate, MigrateOptions, MigrateReport};
pub use plan::{plan, plan_pending, PendingPlan};
pub use rollback::rollback;
pub use start::{start, StartOptions};
pub use status::{status, MigrationStatus, RecordSummary, StatusEntry, StatusReport};
