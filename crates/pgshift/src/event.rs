//! What pgshift reports while it works, at the bottom of the crate so that every layer
//! can report without importing the layers above it: the runner's events (migrations,
//! steps, backfill progress), the executor's (lock waits, blockers, notices), and the
//! text helper they share.

/// The first `max` characters of a statement, on one line.
pub fn abbreviate(sql: &str, max: usize) -> String {
    let one_line: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let cut: String = one_line.chars().take(max).collect();
        format!("{cut}…")
    }
}

/// Where a backfill stands, for progress output and `pgshift backfill status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Progress {
    pub migration: String,
    pub table: String,
    pub state: String,
    pub rows_done: i64,
    pub total_estimate: i64,
    pub rows_per_second: f64,
    pub eta_seconds: Option<f64>,
    pub elapsed_seconds: f64,
    pub batch_size: i64,
    pub throttle_reason: Option<String>,
    /// Parts run by parallel workers (1 without).
    pub workers: i64,
}

/// A session that blocks one of pgshift's statements.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BlockerReport {
    pub pid: i32,
    pub state: String,
    pub query: String,
    /// Seconds since the blocker's transaction began, if it is in one.
    pub xact_age_s: Option<f64>,
    pub user: String,
    pub application_name: String,
}

impl std::fmt::Display for BlockerReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} ({}", self.pid, self.state)?;
        if let Some(age) = self.xact_age_s {
            write!(f, ", transaction open {age:.1}s")?;
        }
        if !self.user.is_empty() {
            write!(f, ", user {}", self.user)?;
        }
        if !self.application_name.is_empty() {
            write!(f, ", application {}", self.application_name)?;
        }
        if self.query == "<insufficient privilege>" {
            // Another user's session: pg_stat_activity hides what it runs from a role
            // without pg_read_all_stats.
            return write!(
                f,
                "): its statement is hidden from pgshift's role (GRANT pg_read_all_stats, or pg_monitor, to it to see what blocks)"
            );
        }
        write!(f, "): {}", abbreviate(&self.query, 160))
    }
}

/// What the executor reports while it works.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ExecEvent {
    /// A statement is waiting for a lock; these sessions hold it up.
    Waiting {
        statement: String,
        waited_ms: u64,
        blockers: Vec<BlockerReport>,
    },
    /// A lock was not granted within lock_timeout; the transaction rolled back and will retry.
    LockTimeout {
        statement: String,
        attempt: u32,
        retry_in_ms: u64,
        blockers: Vec<BlockerReport>,
    },
    /// An INVALID index left by a failed concurrent build was dropped before building again.
    InvalidIndexDropped { index: String },
    /// A resumed concurrent statement had already done its work.
    AlreadyDone { statement: String, reason: String },
    /// The server sent a NOTICE or WARNING while running one of the user's statements.
    Notice {
        statement: String,
        severity: String,
        message: String,
        hint: Option<String>,
    },
}

/// What a run reports as it goes (the CLI prints these).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    StateSchema {
        from: Option<i32>,
        to: i32,
    },
    MigrationStarted {
        name: String,
        resumed: bool,
    },
    StepSkipped {
        migration: String,
        step: usize,
        reason: String,
    },
    StepDone {
        migration: String,
        step: usize,
        of: usize,
        what: String,
        ms: u64,
    },
    /// A check before complete passed.
    Verified {
        migration: String,
        what: String,
        rows: i64,
        /// `checksums` or `row by row` (see the verify module).
        method: String,
        ms: u64,
    },
    MigrationApplied {
        name: String,
        ms: u64,
    },
    /// `migrate` started a structured migration and leaves it open for `pgshift complete`.
    MigrationLeftOpen {
        name: String,
        ms: u64,
    },
    /// `migrate` completes a migration that an earlier run left open.
    Completing {
        name: String,
    },
    /// Warnings of the lint run on what is about to run (errors refuse the run instead).
    LintWarnings {
        text: String,
    },
    /// Where a backfill stands (at most about once a second, and when throttled).
    Backfill(Progress),
}
