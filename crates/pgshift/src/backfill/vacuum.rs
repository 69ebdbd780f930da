//! The vacuum of a part, in the background on a connection of its own.

use crate::exec::Executor;

/// A part's vacuums: `VACUUM (INDEX_CLEANUP OFF, SKIP_LOCKED)` (outside a transaction) so that
/// later batches reuse the space of the row versions this backfill left dead, run on a
/// connection of its own so that batches do not wait for it. INDEX_CLEANUP OFF: the heap pages
/// are pruned without scanning every index each time (autovacuum cleans the indexes later);
/// SKIP_LOCKED: never wait behind another vacuum. A vacuum that fails (its lock not granted in
/// time) is skipped, and says so in the progress record.
pub(super) struct Vacuum {
    exec: Option<std::sync::Arc<Executor>>,
    running: std::sync::Mutex<Option<tokio::task::JoinHandle<Option<String>>>>,
}

impl Vacuum {
    pub(super) fn new(exec: Option<Executor>) -> Vacuum {
        Vacuum {
            exec: exec.map(std::sync::Arc::new),
            running: std::sync::Mutex::new(None),
        }
    }

    /// Starts a vacuum unless one still runs: (started, why the previous one failed).
    pub(super) fn start(&self, target: &str) -> (bool, Option<String>) {
        let Some(exec) = &self.exec else {
            return (false, None);
        };
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.as_ref().is_some_and(|h| !h.is_finished()) {
            return (false, None);
        }
        // Finished: its outcome is ready without waiting.
        let previous = running.take().and_then(|h| {
            use futures_util::FutureExt;
            match h.now_or_never() {
                Some(Ok(outcome)) => outcome,
                Some(Err(e)) => Some(e.to_string()),
                None => None,
            }
        });
        let exec = exec.clone();
        let sql = format!("VACUUM (INDEX_CLEANUP OFF, SKIP_LOCKED) {target}");
        *running = Some(tokio::spawn(async move {
            exec.maintenance(&sql).await.err().map(|e| match e {
                crate::Error::Statement { source, .. } => crate::error::pg_error_text(&source),
                other => other.to_string(),
            })
        }));
        (true, previous)
    }

    /// Waits for the running vacuum, if any: why it failed, if it did.
    pub(super) async fn wait(&self) -> Option<String> {
        let handle = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match handle {
            Some(h) => h.await.unwrap_or_else(|e| Some(e.to_string())),
            None => None,
        }
    }
}
