//! What every command that changes the database runs over: the executor (which owns the
//! connections and the transaction policy), the base schema the migrations change, who runs
//! them (for the record), and where events go.
//!
//! A command builds one [`Session`] and hands `&Session` down: the phase runner, the
//! backfill engine and the catch-up take it instead of the same five parameters each.

use crate::conn::{ConnectionSpec, Who};
use crate::error::{Error, Result};
use crate::event::RunEvent;
use crate::exec::{ExecSettings, Executor, Observer};
use crate::{lock, quote, state};
use std::sync::Arc;
use tokio_postgres::Client;

/// Where a command's events go (the CLI prints them).
pub type EventSink<'a> = &'a (dyn Fn(&RunEvent) + Sync);

/// One command's run against one database.
pub struct Session<'a> {
    exec: Executor,
    schema: String,
    who: Who,
    events: EventSink<'a>,
}

impl<'a> Session<'a> {
    /// Connects the executor and puts `schema` (the base schema, `--schema`) on the main
    /// connection's search_path, as the plans' statements resolve table names.
    pub async fn connect(
        spec: &ConnectionSpec,
        settings: ExecSettings,
        observer: Arc<dyn Observer>,
        schema: &str,
        events: EventSink<'a>,
    ) -> Result<Session<'a>> {
        let exec = Executor::connect(spec, settings, observer).await?;
        Session::over(exec, schema, events).await
    }

    /// A session over an executor already connected.
    pub async fn over(exec: Executor, schema: &str, events: EventSink<'a>) -> Result<Session<'a>> {
        set_search_path(exec.client(), schema).await?;
        let who = Who::current(exec.spec());
        Ok(Session {
            exec,
            schema: schema.to_owned(),
            who,
            events,
        })
    }

    pub fn exec(&self) -> &Executor {
        &self.exec
    }

    /// The main connection, for reads and for pgshift's own bookkeeping.
    pub fn client(&self) -> &Client {
        self.exec.client()
    }

    pub fn spec(&self) -> &ConnectionSpec {
        self.exec.spec()
    }

    /// The base schema the migrations change.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    pub fn who(&self) -> &Who {
        &self.who
    }

    /// Reports `event` to the command's sink.
    pub fn emit(&self, event: &RunEvent) {
        (self.events)(event)
    }

    pub fn events(&self) -> EventSink<'a> {
        self.events
    }

    /// Records that migration `file` starts (or starts again after a failure or a crash).
    pub(crate) async fn begin_migration(&self, file: &crate::source::MigrationFile) -> Result<()> {
        state::begin_migration(
            &self.exec,
            &file.name,
            &file.checksum,
            file.kind.as_str(),
            &self.who,
        )
        .await
    }

    /// Appends `event` to the audit log, as done by who runs this session.
    pub(crate) async fn record(&self, event: &state::Event<'_>) -> Result<()> {
        state::record_event(&self.exec, &self.who, event).await
    }

    /// Takes the advisory lock, makes sure the state schema is current, runs `f`, releases
    /// the lock whatever `f` returned.
    pub(crate) async fn locked<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let client = self.client();
        lock::acquire(client).await?;
        let result = async {
            state::ensure(&self.exec).await?;
            f().await
        }
        .await;
        let _ = lock::release(client).await;
        result
    }
}

/// Puts `schema` first on `client`'s search_path (also for the read-only commands).
pub(crate) async fn set_search_path(client: &Client, schema: &str) -> Result<()> {
    quote::validate_identifier(schema)
        .map_err(|e| Error::usage(format!("--schema {schema:?}: {e}"), None))?;
    client
        .batch_execute(&format!("SET search_path = {}", quote::ident(schema)))
        .await?;
    Ok(())
}
