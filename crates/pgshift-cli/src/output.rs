//! Printing: human text on a terminal, or JSON. In JSON mode the result is one object on
//! stdout and progress events are JSON lines on stderr.

use indicatif::{ProgressBar, ProgressStyle};
use pgshift::commands::{MigrateReport, MigrationStatus, StatusReport};
use pgshift::conn::ConnectionSpec;
use pgshift::event::RunEvent;
use pgshift::exec::{ExecEvent, Observer};
use pgshift::state::StateUpgrade;
use serde::Serialize;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Human,
    Json,
}

#[derive(Debug, Clone)]
pub struct Printer {
    output: Output,
    /// Human output on a terminal: backfill progress as a bar on stderr.
    bar: Option<Arc<Mutex<Bar>>>,
}

/// The progress bar of the backfill being run, if one is.
#[derive(Debug, Default)]
struct Bar {
    current: Option<(String, ProgressBar)>,
}

impl Printer {
    pub fn new(output: Output) -> Printer {
        let bar = (output == Output::Human && std::io::stderr().is_terminal())
            .then(|| Arc::new(Mutex::new(Bar::default())));
        Printer { output, bar }
    }

    /// Shows `p` on the progress bar; false when there is no bar (not a terminal, or JSON).
    fn show_on_bar(&self, p: &pgshift::backfill::Progress) -> bool {
        let Some(bar) = &self.bar else {
            return false;
        };
        let mut bar = bar.lock().unwrap_or_else(|e| e.into_inner());
        let key = format!("{}/{}", p.migration, p.table);
        if bar.current.as_ref().map(|(k, _)| k != &key).unwrap_or(true) {
            if let Some((_, old)) = bar.current.take() {
                old.abandon();
            }
            let pb = ProgressBar::new(p.total_estimate.max(p.rows_done).max(1) as u64);
            pb.set_style(
                ProgressStyle::with_template(
                    "  backfill {prefix} [{bar:28}] {human_pos}/~{human_len} rows {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            pb.set_prefix(p.table.clone());
            pb.enable_steady_tick(Duration::from_millis(200));
            bar.current = Some((key, pb));
        }
        if let Some((_, pb)) = &bar.current {
            pb.set_length(p.total_estimate.max(p.rows_done).max(1) as u64);
            pb.set_position(p.rows_done.max(0) as u64);
            pb.set_message(bar_message(p));
            if p.state == "done" {
                pb.finish();
                bar.current = None;
            }
        }
        true
    }

    /// Runs `print` with the bar out of the way, so lines never interleave with it.
    fn above_bar(&self, print: impl FnOnce()) {
        match &self.bar {
            Some(bar) => {
                let bar = bar.lock().unwrap_or_else(|e| e.into_inner());
                match &bar.current {
                    Some((_, pb)) => pb.suspend(print),
                    None => print(),
                }
            }
            None => print(),
        }
    }

    fn json_line<T: Serialize>(value: &T) -> String {
        serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    fn progress(&self, human: impl FnOnce() -> String, json: &impl Serialize) {
        match self.output {
            Output::Human => {
                let line = human();
                self.above_bar(|| eprintln!("{line}"));
            }
            Output::Json => eprintln!("{}", Self::json_line(json)),
        }
    }

    pub fn error(&self, error: &anyhow::Error, exit_code: i32) {
        // A bar left on screen stays where it stopped, and the error goes below it.
        if let Some(bar) = &self.bar {
            let mut bar = bar.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, pb)) = bar.current.take() {
                pb.abandon();
            }
        }
        let text = match error.downcast_ref::<pgshift::Error>() {
            Some(pe) => pe.to_string(),
            None => format!("{error:#}"),
        };
        // Diagnostics already read `path:line:col: error: ...`.
        match error.downcast_ref::<pgshift::Error>() {
            Some(
                pgshift::Error::Input(_)
                | pgshift::Error::PrecheckRefused(_)
                | pgshift::Error::EditedAfterApply(_),
            ) => {
                eprintln!("{text}")
            }
            _ => eprintln!("error: {text}"),
        }
        if self.output == Output::Json {
            let json = match error.downcast_ref::<pgshift::Error>() {
                Some(pe) => pe.to_json(),
                None => serde_json::json!({
                    "error": {
                        "code": "error",
                        "message": text,
                        "hint": null,
                        "file": null,
                        "line": null,
                        "column": null,
                    },
                    "exit_code": exit_code,
                }),
            };
            println!("{}", Self::json_line(&json));
        }
    }

    pub fn run_event(&self, event: &RunEvent) {
        if let RunEvent::Backfill(p) = event {
            if self.show_on_bar(p) {
                return;
            }
        }
        self.progress(
            || match event {
                RunEvent::StateSchema { from: None, to } => {
                    format!("created the state schema \"pgshift\" (version {to})")
                }
                RunEvent::StateSchema { from: Some(f), to } => {
                    format!("upgraded the state schema \"pgshift\" from version {f} to {to}")
                }
                RunEvent::MigrationStarted { name, resumed } => format!(
                    "applying {name}{}",
                    if *resumed {
                        " (resuming an earlier, unfinished run)"
                    } else {
                        ""
                    }
                ),
                RunEvent::StepSkipped { step, reason, .. } => {
                    format!("  step {step}: skipped, {reason}")
                }
                RunEvent::StepDone {
                    step, of, what, ms, ..
                } => format!("  step {step}/{of} ({what}) done in {ms} ms"),
                RunEvent::Verified {
                    what,
                    rows,
                    method,
                    ms,
                    ..
                } => format!("  verified: {what} ({rows} rows compared {method}, {ms} ms)"),
                RunEvent::MigrationApplied { name, ms } => format!("applied {name} in {ms} ms"),
                RunEvent::MigrationLeftOpen { name, ms } => format!(
                    "started {name} in {ms} ms; it stays open: new clients use pgshift latest url, then pgshift complete once old clients are gone"
                ),
                RunEvent::Completing { name } => {
                    format!("completing {name} (left open by an earlier run)")
                }
                RunEvent::LintWarnings { text } => {
                    format!("lint (warnings only, running anyway):\n{}", text.trim_end())
                }
                RunEvent::Backfill(p) => format!("  backfill {}", progress_line(p)),
            },
            event,
        );
    }

    pub fn init(&self, spec: &ConnectionSpec, upgrade: &StateUpgrade) {
        match self.output {
            Output::Human => match upgrade.from {
                None => println!(
                    "created the state schema \"pgshift\" (version {}) in {}",
                    upgrade.to,
                    spec.describe()
                ),
                Some(v) if v == upgrade.to => {
                    println!("the state schema \"pgshift\" is up to date (version {v})")
                }
                Some(v) => println!(
                    "upgraded the state schema \"pgshift\" from version {v} to {}",
                    upgrade.to
                ),
            },
            Output::Json => println!(
                "{}",
                Self::json_line(&serde_json::json!({
                    "database": spec.describe(),
                    "state_schema": pgshift::state::SCHEMA,
                    "from_version": upgrade.from,
                    "version": upgrade.to,
                }))
            ),
        }
    }

    pub fn migrate(&self, report: &MigrateReport) {
        match self.output {
            Output::Human => {
                if report.applied.is_empty() {
                    println!(
                        "nothing to apply: {} migration(s) already applied",
                        report.already_applied
                    );
                } else {
                    println!(
                        "applied {} migration(s) in {} ms ({} were already applied)",
                        report.applied.len(),
                        report.duration_ms,
                        report.already_applied
                    );
                }
                for name in &report.skipped {
                    println!(
                        "skipped {name} in environment {} (skip_environments)",
                        report.environment.as_deref().unwrap_or("-")
                    );
                }
                if let Some(name) = &report.waiting_for_person {
                    println!(
                        "{name} is a manual migration: it waits for a person (pgshift start <its file>, or pgshift migrate --include-manual); nothing after it was applied"
                    );
                }
            }
            Output::Json => println!("{}", Self::json_line(report)),
        }
    }

    pub fn started(&self, version_schema: &str) {
        match self.output {
            // A raw SQL file is applied whole and makes no version schema.
            Output::Human if version_schema.is_empty() => println!(
                "applied: raw SQL changes the tables themselves; it has no version schema, and every client sees the change now"
            ),
            Output::Human => println!(
                "started: clients of the new version use search_path {version_schema} (pgshift latest schema); old clients go on as before; pgshift complete when they are gone"
            ),
            Output::Json => println!(
                "{}",
                Self::json_line(&serde_json::json!({ "status": "started", "version_schema": version_schema }))
            ),
        }
    }

    pub fn plan(&self, report: &pgshift::explain::PlanReport) {
        match self.output {
            Output::Human => print!("{}", pgshift::explain::render(report)),
            Output::Json => println!("{}", Self::json_line(report)),
        }
    }

    pub fn pending_plans(&self, plans: &[pgshift::commands::PendingPlan]) {
        match self.output {
            Output::Json => println!(
                "{}",
                Self::json_line(&serde_json::json!({ "pending": plans }))
            ),
            Output::Human if plans.is_empty() => {
                println!("nothing pending: every migration is applied")
            }
            Output::Human => {
                for (i, p) in plans.iter().enumerate() {
                    if i > 0 {
                        println!();
                    }
                    println!("== {} ({} of {} pending)", p.migration, i + 1, plans.len());
                    match (&p.plan, &p.not_planned) {
                        (Some(plan), _) => print!("{}", pgshift::explain::render(plan)),
                        (None, Some(why)) => println!("not planned yet: {why}"),
                        (None, None) => {}
                    }
                }
            }
        }
    }

    pub fn history(&self, events: &[pgshift::commands::HistoryEvent]) {
        match self.output {
            Output::Json => println!(
                "{}",
                Self::json_line(&serde_json::json!({ "events": events }))
            ),
            Output::Human => {
                if events.is_empty() {
                    println!("no events recorded");
                }
                for e in events {
                    println!(
                        "{}  {:<14} {:<28} {:<24} {:<5} {:>8}  {}@{} (db user {}){}",
                        e.at,
                        e.command,
                        e.event,
                        e.migration.as_deref().unwrap_or("-"),
                        e.result,
                        e.duration_ms.map(|d| format!("{d} ms")).unwrap_or_default(),
                        e.os_user,
                        e.host,
                        e.db_user,
                        match &e.detail {
                            serde_json::Value::Object(m) if m.is_empty() => String::new(),
                            d => format!("  {d}"),
                        }
                    );
                }
            }
        }
    }

    pub fn data_status(&self, list: &[pgshift::commands::DataMigration]) {
        match self.output {
            Output::Json => println!(
                "{}",
                Self::json_line(&serde_json::json!({ "data_migrations": list }))
            ),
            Output::Human => {
                if list.is_empty() {
                    println!("no data migrations");
                }
                for d in list {
                    let mut line = format!("  {:<8} {}", d.status, d.name);
                    if let (Some(by), Some(host), Some(at)) =
                        (&d.run_by, &d.run_from_host, &d.started_at)
                    {
                        line.push_str(&format!("  by {by}@{host}, started {at}"));
                    }
                    if let Some(ms) = d.duration_ms {
                        line.push_str(&format!(", {ms} ms"));
                    }
                    if let (Some(rows), "applied") = (d.rows, d.status.as_str()) {
                        line.push_str(&format!(", {rows} rows"));
                    }
                    if let Some(e) = &d.last_error {
                        line.push_str(&format!("  {}", e.lines().next().unwrap_or("")));
                    }
                    println!("{line}");
                }
            }
        }
    }

    pub fn data_run(&self, applied: &[(String, i64)]) {
        match self.output {
            Output::Json => println!(
                "{}",
                Self::json_line(&serde_json::json!({
                    "applied": applied.iter().map(|(n, r)| serde_json::json!({ "name": n, "rows": r })).collect::<Vec<_>>()
                }))
            ),
            Output::Human => {
                if applied.is_empty() {
                    println!("no pending data migrations");
                }
                for (name, rows) in applied {
                    println!("ran data migration {name}: {rows} rows");
                }
            }
        }
    }

    pub fn done(&self, what: &str, name: &str) {
        match self.output {
            Output::Human => println!("{what} {name}"),
            Output::Json => println!(
                "{}",
                Self::json_line(
                    &serde_json::json!({ "status": what.replace(' ', "_"), "migration": name })
                )
            ),
        }
    }

    /// `latest schema|url`: the value alone on stdout, so that scripts can use it.
    pub fn latest(&self, what: &str, value: &str, latest: &pgshift::commands::Latest) {
        match self.output {
            Output::Human => {
                println!("{value}");
                if let Some(note) = &latest.note {
                    eprintln!("note: {note}");
                }
            }
            Output::Json => println!(
                "{}",
                Self::json_line(&serde_json::json!({
                    what: value,
                    "version_schema": latest.version_schema,
                    "note": latest.note,
                }))
            ),
        }
    }

    pub fn backfills(&self, backfills: &[pgshift::backfill::Progress]) {
        match self.output {
            Output::Json => println!(
                "{}",
                Self::json_line(&serde_json::json!({ "backfills": backfills }))
            ),
            Output::Human if backfills.is_empty() => println!("no backfill has run"),
            Output::Human => {
                for p in backfills {
                    println!("{} ({})", progress_line(p), p.migration);
                }
            }
        }
    }

    pub fn backfill_control(&self, to: &str, changed: u64, continued: Option<&str>) {
        match self.output {
            Output::Json => println!(
                "{}",
                Self::json_line(
                    &serde_json::json!({ "state": to, "changed": changed, "continued": continued })
                )
            ),
            Output::Human => {
                println!("{changed} backfill(s) now {to}");
                if let Some(name) = continued {
                    println!("continued and finished the start of {name}");
                }
            }
        }
    }

    pub fn status(&self, report: &StatusReport) {
        if self.output == Output::Json {
            println!("{}", Self::json_line(report));
            return;
        }
        match report.state_version {
            Some(v) => println!(
                "database {}, state schema \"{}\" version {v}",
                report.database, report.state_schema
            ),
            None => println!(
                "database {}: no state schema yet (pgshift init or migrate creates it)",
                report.database
            ),
        }
        if report.migrations.is_empty() {
            println!("no migrations");
            return;
        }
        let width = report
            .migrations
            .iter()
            .map(|m| m.name.len())
            .max()
            .unwrap_or(0);
        for m in &report.migrations {
            let label = match m.status {
                MigrationStatus::Applied => "applied",
                MigrationStatus::Pending => "pending",
                MigrationStatus::Edited => "EDITED",
                MigrationStatus::Running => "UNFINISHED",
                MigrationStatus::Open => "OPEN",
                MigrationStatus::Failed => "FAILED",
                MigrationStatus::Missing => "MISSING",
                MigrationStatus::Skipped => "skipped",
            };
            let mut line = format!("  {label:<10} {:<width$}", m.name);
            if let Some(r) = &m.record {
                match m.status {
                    MigrationStatus::Skipped => line.push_str(&format!(
                        "  {}  by {}@{}  (skip_environments)",
                        r.completed_at.as_deref().unwrap_or(&r.started_at),
                        r.applied_by,
                        r.applied_from_host
                    )),
                    MigrationStatus::Applied => line.push_str(&format!(
                        "  {}  {} ms  by {}@{}",
                        r.completed_at.as_deref().unwrap_or(&r.started_at),
                        r.duration_ms.unwrap_or(0),
                        r.applied_by,
                        r.applied_from_host
                    )),
                    MigrationStatus::Edited => line.push_str(&format!(
                        "  the file changed after it was applied (applied {}, file now {})",
                        short(m.applied_checksum.as_deref()),
                        short(m.checksum.as_deref())
                    )),
                    MigrationStatus::Running => line.push_str(&match &report.runner {
                        Some(holder) => format!(
                            "  started {} by {}@{}; running now ({holder})",
                            r.started_at, r.applied_by, r.applied_from_host
                        ),
                        None => match r.last_error.as_deref().and_then(|e| e.lines().next()) {
                            // It stopped on an error (a cancelled backfill, duplicate keys):
                            // running it again meets the same error unless its cause is fixed.
                            Some(error) => format!(
                                "  started {} by {}@{}; stopped: {error}; fix the cause and run pgshift migrate again, or pgshift rollback",
                                r.started_at, r.applied_by, r.applied_from_host
                            ),
                            None => format!(
                                "  started {} by {}@{}; interrupted: pgshift migrate resumes it",
                                r.started_at, r.applied_by, r.applied_from_host
                            ),
                        },
                    }),
                    MigrationStatus::Failed => line.push_str(&format!(
                        "  {}",
                        r.last_error
                            .as_deref()
                            .unwrap_or("")
                            .lines()
                            .next()
                            .unwrap_or("")
                    )),
                    MigrationStatus::Missing => {
                        line.push_str("  recorded in the database, but its file is gone")
                    }
                    MigrationStatus::Open => line.push_str(&format!(
                        "  started {} by {}@{}; new clients use search_path {}; then pgshift complete (or rollback)",
                        r.started_at,
                        r.applied_by,
                        r.applied_from_host,
                        r.version_schema.as_deref().unwrap_or("?")
                    )),
                    MigrationStatus::Pending => {}
                }
                if matches!(
                    m.status,
                    MigrationStatus::Running | MigrationStatus::Open | MigrationStatus::Failed
                ) {
                    if m.file.is_none() {
                        line.push_str(" (its file is not in the migrations folder)");
                    } else if m.checksum != m.applied_checksum {
                        line.push_str(" (its file was edited since it ran)");
                    }
                }
            }
            println!("{line}");
        }
        let counts: Vec<String> = report
            .counts
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        println!(
            "{} migration(s): {}",
            report.migrations.len(),
            counts.join(", ")
        );
    }
}

/// `public.items: 120000 of ~200000 rows (60%), 45000 rows/s, ETA 2s, batch 5000`.
fn progress_line(p: &pgshift::backfill::Progress) -> String {
    let mut s = format!("{}: {} of ~{} rows", p.table, p.rows_done, p.total_estimate);
    if p.total_estimate > 0 {
        s.push_str(&format!(
            " ({}%)",
            (p.rows_done * 100 / p.total_estimate).min(100)
        ));
    }
    s.push_str(&format!(
        ", {:.0} rows/s, {:.1}s elapsed",
        p.rows_per_second, p.elapsed_seconds
    ));
    if let Some(eta) = p.eta_seconds {
        s.push_str(&format!(", ETA {eta:.0}s"));
    }
    s.push_str(&format!(", batch {}", p.batch_size));
    if p.workers > 1 {
        s.push_str(&format!(" over {} workers", p.workers));
    }
    s.push_str(&format!(", {}", p.state));
    if let Some(reason) = &p.throttle_reason {
        s.push_str(&format!("; throttled: {reason}"));
    }
    s
}

/// `12,345 rows/s, ETA 3s, 4.1s elapsed` and the throttle reason, if any.
fn bar_message(p: &pgshift::backfill::Progress) -> String {
    let mut s = format!("{:.0} rows/s", p.rows_per_second);
    if p.workers > 1 {
        s.push_str(&format!(" over {} workers", p.workers));
    }
    if let Some(eta) = p.eta_seconds {
        s.push_str(&format!(", ETA {eta:.0}s"));
    }
    s.push_str(&format!(", {:.1}s elapsed", p.elapsed_seconds));
    if p.state == "paused" {
        s.push_str(", paused");
    }
    if let Some(reason) = &p.throttle_reason {
        s.push_str(&format!("; throttled: {reason}"));
    }
    s
}

fn short(checksum: Option<&str>) -> &str {
    checksum.and_then(|c| c.get(..12)).unwrap_or("?")
}

impl Observer for Printer {
    fn exec_event(&self, event: &ExecEvent) {
        self.progress(
            || match event {
                ExecEvent::Waiting {
                    statement,
                    waited_ms,
                    blockers,
                } => {
                    let mut s = format!("  waiting {waited_ms} ms for a lock: {statement}");
                    for b in blockers {
                        s.push_str(&format!("\n    blocked by {b}"));
                    }
                    s
                }
                ExecEvent::LockTimeout {
                    attempt,
                    retry_in_ms,
                    blockers,
                    ..
                } => {
                    let pids: Vec<String> = blockers.iter().map(|b| b.pid.to_string()).collect();
                    format!(
                        "  lock not granted in time (attempt {attempt}); rolled back, nobody is queued behind pgshift; retrying in {retry_in_ms} ms{}",
                        if pids.is_empty() { String::new() } else { format!(" (blocked by pid {})", pids.join(", ")) }
                    )
                }
                ExecEvent::InvalidIndexDropped { index } => format!(
                    "  dropped the INVALID index {index} left by a failed concurrent build"
                ),
                ExecEvent::AlreadyDone { statement, reason } => {
                    format!("  already done ({reason}): {statement}")
                }
                ExecEvent::Notice {
                    severity,
                    message,
                    hint,
                    ..
                } => {
                    let mut s = format!("  {severity} from the server: {message}");
                    if let Some(h) = hint {
                        s.push_str(&format!("\n    hint: {h}"));
                    }
                    s
                }
            },
            event,
        );
    }
}
