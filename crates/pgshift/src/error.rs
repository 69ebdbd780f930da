//! The library's error type and the exit code each error maps to.
//!
//! Exit codes are part of the interface contract: 0 success; 1 the database refused or a step
//! failed; 2 invalid input with nothing changed; 3 another pgshift holds the lock.

use crate::diag::Diagnostic;
use crate::event::BlockerReport;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// One or more problems in migration files; nothing was changed.
    #[error("{}", render_diagnostics(.0))]
    Input(Vec<Diagnostic>),

    /// A check of the live rows refused the migration before anything changed (rows that do
    /// not convert to the new type), with the other problems found beside it.
    #[error("{}", render_diagnostics(.0))]
    PrecheckRefused(Vec<Diagnostic>),

    /// The run was cancelled on purpose (`pgshift backfill cancel`); what it did stays, and
    /// the hint says how to go on or back.
    #[error("{0}")]
    Cancelled(String),

    /// A problem with a flag, a setting or the environment; nothing was changed.
    #[error("{message}{}", .hint.as_ref().map(|h| format!("\nhint: {h}")).unwrap_or_default())]
    Usage {
        message: String,
        hint: Option<String>,
    },

    /// The command cannot run now, for a reason a caller may need to tell apart (`kind`);
    /// nothing was changed.
    #[error("{message}{}", .hint.as_ref().map(|h| format!("\nhint: {h}")).unwrap_or_default())]
    Refused {
        kind: Refusal,
        message: String,
        hint: Option<String>,
    },

    /// The server could not be reached or refused the connection.
    #[error("cannot connect to {target}: {message}\nhint: {hint}")]
    Connect {
        target: String,
        message: String,
        hint: String,
    },

    /// An applied migration's file changed after it was applied.
    #[error("{}", render_edited(.0))]
    EditedAfterApply(Vec<EditedMigration>),

    /// `migrate` or `start` linted what it was about to run and found error-level findings.
    #[error("{0}hint: fix what is found, put `-- pgshift-lint: ignore <rule>` (`# pgshift-lint: ignore <rule>` in YAML and TOML) above a statement or operation you have checked, set the rule's level in pgshift.toml, or run with --no-lint\nnothing was changed")]
    LintRefused(String),

    /// Another pgshift holds the advisory lock on this database.
    #[error("another pgshift is running against this database: {holder}\nhint: wait for it to finish, or find it with: SELECT * FROM pg_stat_activity WHERE pid = {pid}", pid = .holder.pid.map(|p| p.to_string()).unwrap_or_else(|| "<unknown>".into()))]
    LockHeld { holder: Box<LockHolder> },

    /// A DDL statement could not get its lock within the total wait allowed.
    #[error("{}", render_lock_timeout(.statement, *.attempts, *.waited, .blockers))]
    LockWaitExceeded {
        statement: String,
        attempts: u32,
        waited: Duration,
        blockers: Vec<BlockerReport>,
    },

    /// A statement of a migration failed.
    #[error("{context}: {}", pg_error_text(.source))]
    Statement {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },

    /// The state schema was written by a newer pgshift.
    #[error("the state schema \"{schema}\" is at version {found}, newer than this pgshift understands ({supported})\nhint: upgrade pgshift to a release that knows state version {found}")]
    StateTooNew {
        schema: String,
        found: i32,
        supported: i32,
    },

    /// A check before complete found the data of the two versions apart; complete changed
    /// nothing and the migration stays open.
    #[error("{0}\nhint: the migration is still open. Find what wrote around pgshift's triggers, fix those rows, and run pgshift complete again; or pgshift rollback")]
    VerificationFailed(String),

    /// A migration was left unfinished in a way pgshift cannot resume by itself.
    #[error("{0}")]
    CannotResume(String),

    #[error("database error: {}", pg_error_text(.source))]
    Db {
        #[from]
        source: tokio_postgres::Error,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The process exit code for this error (see the module docs).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Input(_)
            | Error::PrecheckRefused(_)
            | Error::Usage { .. }
            | Error::Refused { .. }
            | Error::EditedAfterApply(_)
            | Error::LintRefused(_) => 2,
            Error::LockHeld { .. } => 3,
            _ => 1,
        }
    }

    /// A stable name for the kind of error, for scripts (`--output json`'s `error.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Input(_) => "invalid_input",
            Error::PrecheckRefused(_) => "precheck_refused",
            Error::Cancelled(_) => "cancelled",
            Error::Usage { .. } => "usage",
            Error::Refused { kind, .. } => kind.code(),
            Error::Connect { .. } => "cannot_connect",
            Error::EditedAfterApply(_) => "edited_after_apply",
            Error::LintRefused(_) => "lint_refused",
            Error::LockHeld { .. } => "lock_held",
            Error::LockWaitExceeded { .. } => "lock_wait_exceeded",
            Error::Statement { .. } => "statement_failed",
            Error::StateTooNew { .. } => "state_too_new",
            Error::VerificationFailed(_) => "verification_failed",
            Error::CannotResume(_) => "cannot_resume",
            Error::Db { .. } => "database_error",
            Error::Io { .. } => "io_error",
        }
    }

    /// The error as data: code, message, hint and, for bad input, where (the first problem;
    /// `diagnostics` lists every one).
    pub fn to_json(&self) -> serde_json::Value {
        let text = self.to_string();
        let (message, hint) = match self {
            Error::Input(diags) | Error::PrecheckRefused(diags) if !diags.is_empty() => {
                (diags[0].message.clone(), diags[0].hint.clone())
            }
            _ => match text.split_once("\nhint: ") {
                Some((message, rest)) => (
                    message.to_owned(),
                    Some(
                        rest.trim_end_matches("\nnothing was changed")
                            .trim()
                            .to_owned(),
                    ),
                ),
                None => (
                    text.trim_end_matches("\nnothing was changed").to_owned(),
                    None,
                ),
            },
        };
        let first = match self {
            Error::Input(diags) | Error::PrecheckRefused(diags) => diags.first(),
            _ => None,
        };
        let mut error = serde_json::json!({
            "code": self.code(),
            "message": message,
            "hint": hint,
            "file": first.map(|d| d.path.display().to_string()),
            "line": first.map(|d| d.line),
            "column": first.map(|d| d.column),
        });
        if let Error::Input(diags) | Error::PrecheckRefused(diags) = self {
            error["diagnostics"] = diags
                .iter()
                .map(|d| {
                    serde_json::json!({
                        "file": d.path.display().to_string(),
                        "line": d.line,
                        "column": d.column,
                        "message": d.message,
                        "hint": d.hint,
                    })
                })
                .collect();
        }
        serde_json::json!({ "error": error, "exit_code": self.exit_code() })
    }

    pub fn refused(kind: Refusal, message: impl Into<String>, hint: Option<&str>) -> Self {
        Error::Refused {
            kind,
            message: message.into(),
            hint: hint.map(str::to_owned),
        }
    }

    pub fn usage(message: impl Into<String>, hint: Option<&str>) -> Self {
        Error::Usage {
            message: message.into(),
            hint: hint.map(str::to_owned),
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a command refused to run: the cases a caller must be able to tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The migration is applied already.
    AlreadyApplied,
    /// `complete` or `rollback` with no migration open.
    NoMigrationOpen,
    /// Another migration is open; only one can be.
    AnotherOpen,
    /// Pending migrations sort before one that is applied (or before the one started).
    OutOfOrder,
    /// The file is not in the migrations folder.
    NotInFolder,
    /// The plan's estimate is over `--deploy-budget`.
    OverDeployBudget,
    /// The open migration is in a phase this command cannot act on (start unfinished, or
    /// complete under way).
    WrongPhase,
    /// A table the migration reads every row of has row-level security that applies to
    /// pgshift's role: it would see only some rows.
    RowSecurity,
    /// A swap could not carry over something that depends on the table (a view another
    /// role owns, a function on its row type, a publication another role owns).
    CannotCarry,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::AlreadyApplied => "already_applied",
            Refusal::NoMigrationOpen => "no_migration_open",
            Refusal::AnotherOpen => "another_open",
            Refusal::OutOfOrder => "out_of_order",
            Refusal::NotInFolder => "not_in_folder",
            Refusal::OverDeployBudget => "over_deploy_budget",
            Refusal::WrongPhase => "wrong_phase",
            Refusal::RowSecurity => "row_security",
            Refusal::CannotCarry => "cannot_carry",
        }
    }
}

/// A migration whose file no longer matches what was applied.
#[derive(Debug, Clone)]
pub struct EditedMigration {
    pub name: String,
    pub path: String,
    pub applied_checksum: String,
    pub file_checksum: String,
    /// Set when the migration failed or was interrupted part-way: its kind (`sql` or a
    /// structured format) and how many of its steps were applied.
    pub partly_applied: Option<(String, i64)>,
}

/// The session that holds pgshift's advisory lock.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LockHolder {
    pub pid: Option<i32>,
    pub user: Option<String>,
    pub application_name: Option<String>,
    pub client_addr: Option<String>,
    pub backend_start: Option<String>,
    pub state: Option<String>,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pid {
            Some(pid) => write!(f, "pid {pid}")?,
            None => return write!(f, "the holder could not be identified"),
        }
        if let Some(u) = &self.user {
            write!(f, ", user {u}")?;
        }
        if let Some(a) = self.application_name.as_deref().filter(|a| !a.is_empty()) {
            write!(f, ", application {a}")?;
        }
        if let Some(c) = &self.client_addr {
            write!(f, ", from {c}")?;
        }
        if let Some(s) = &self.backend_start {
            write!(f, ", connected since {s}")?;
        }
        Ok(())
    }
}

fn render_diagnostics(diags: &[Diagnostic]) -> String {
    let mut out: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    out.push("nothing was changed".to_owned());
    out.join("\n\n")
}

fn render_edited(edited: &[EditedMigration]) -> String {
    let mut out = String::new();
    let mut hints = Vec::new();
    for e in edited {
        let (what, hint) = match &e.partly_applied {
            None => (
                "was edited after it was applied".to_owned(),
                "restore the applied version of the file (git log -p on it shows the change), and put the change in a new migration".to_owned(),
            ),
            Some((kind, steps)) if kind == "sql" => (
                format!("was edited after it failed part-way ({steps} of its steps were applied and stay applied)"),
                format!("raw SQL cannot be rolled back: restore the file as it ran (git log -p shows the change) and run pgshift migrate to resume it, or undo the applied statements by hand and record the migration with: pgshift mark-applied {} --reason \"...\"", e.name),
            ),
            Some((_, steps)) => (
                format!("was edited after its start stopped part-way ({steps} of its steps were applied)"),
                "run pgshift rollback first (it undoes what start did, from the plan stored when it started), then run the edited file".to_owned(),
            ),
        };
        out.push_str(&format!(
            "{}: error: migration {} {what} (applied checksum {}, file checksum {})\n",
            e.path,
            e.name,
            short(&e.applied_checksum),
            short(&e.file_checksum)
        ));
        if !hints.contains(&hint) {
            hints.push(hint);
        }
    }
    for h in hints {
        out.push_str(&format!("hint: {h}\n"));
    }
    out.push_str("nothing was changed");
    out
}

fn short(checksum: &str) -> &str {
    checksum.get(..12).unwrap_or(checksum)
}

fn render_lock_timeout(
    statement: &str,
    attempts: u32,
    waited: Duration,
    blockers: &[BlockerReport],
) -> String {
    let mut out = format!(
        "gave up after {attempts} attempts and {:.1}s waiting for a lock for: {}",
        waited.as_secs_f64(),
        crate::event::abbreviate(statement, 200)
    );
    if blockers.is_empty() {
        out.push_str("\nno blocking session was seen while waiting");
    } else {
        out.push_str("\nblocked by:");
        for b in blockers {
            out.push_str(&format!("\n  {b}"));
        }
    }
    out.push_str("\nhint: end or wait out the blocking transactions, or allow a longer total wait with --max-lock-wait; nothing of this step was applied");
    out
}

/// The server's own words for a database error: tokio-postgres's `Display` says only
/// "db error".
pub fn pg_error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!(
                "{}: {} (SQLSTATE {})",
                db.severity(),
                db.message(),
                db.code().code()
            );
            if let Some(d) = db.detail() {
                s.push_str(&format!("\ndetail: {d}"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!("\nhint: {h}"));
            }
            if let Some(w) = db.where_() {
                s.push_str(&format!("\ncontext: {w}"));
            }
            s
        }
        None => {
            let mut s = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(inner) = source {
                s.push_str(&format!(": {inner}"));
                source = inner.source();
            }
            s
        }
    }
}
