//! pgshift changes the schema and the data of a live PostgreSQL database without downtime.
//!
//! The pipeline, in the order a run walks it: [`source`] finds migration files and [`sql`] /
//! [`model`] read them; [`lint`] checks them; [`plan`] turns operations and the live
//! [`catalog`] into steps (a pure function). Then the execution layer: a command of
//! [`commands`] decides what runs over a [`session::Session`]; [`checks`] asks the server
//! before anything changes; [`phases`] runs the steps, journaled; [`backfill`] and [`copy`]
//! fill and copy rows in batches; every statement goes through the [`exec`]utor; [`state`]
//! records what ran and [`lock`] keeps two runs apart. Every name that goes into SQL passes
//! through [`quote`]. `docs/architecture.md` draws it.

pub mod backfill;
pub mod catalog;
pub mod checks;
pub mod commands;
pub mod conn;
pub mod copy;
pub mod diag;
pub mod error;
pub mod event;
pub mod exec;
pub mod explain;
pub mod fidelity;
pub mod lint;
pub mod lock;
pub mod locks;
pub mod model;
pub mod phases;
pub mod plan;
pub mod quote;
pub mod session;
pub mod source;
pub mod sql;
pub mod state;

pub use error::{Error, Refusal, Result};
