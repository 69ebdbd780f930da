//! pgshift changes the schema and the data of a live PostgreSQL database without downtime.
//!
//! The pipeline is file → [`model`] → (catalog, plan) → [`exec`] → [`state`]:
//! [`source`] finds migration files and [`sql`] / [`model`] read them; the [`runner`] decides
//! what runs and hands every statement to the lock-safe [`exec`]utor; [`state`] records what
//! ran, and [`lock`] keeps two runs apart. Every name that goes into SQL passes through
//! [`quote`].

pub mod backfill;
pub mod catalog;
pub mod conn;
pub mod copy;
pub mod diag;
pub mod error;
pub mod event;
pub mod exec;
pub mod explain;
pub mod lifecycle;
pub mod lint;
pub mod lock;
pub mod locks;
pub mod model;
pub mod plan;
pub mod precheck;
pub mod quote;
pub mod runner;
pub mod source;
pub mod sql;
pub mod state;
pub mod verify;

pub use error::{Error, Refusal, Result};
