//! `pgshift lint`: rules that catch schema changes which would block clients, rewrite a
//! table, break running application code, or go against a team's policy, before they run.
//!
//! Raw SQL is read with PostgreSQL's own parser (pg_query) and walked statement by
//! statement with what the file did before ([`sql`]): which tables it created, whether a
//! `lock_timeout` is set, whether a transaction is open, which CHECK constraints it
//! validated. Structured migrations are checked on their operations ([`ops`]); their `sql`
//! operations go through the SQL rules. Rules, their severities and how files are run are
//! set per project in `pgshift.toml` ([`config`]).

pub mod config;
mod ops;
pub mod rules;
pub(crate) mod sql;

pub use config::{Config, SqlExecutor};
pub use rules::{Level, RuleInfo, RULES};

use crate::diag::Diagnostic;
use crate::error::{Error, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One rule broken at one place of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: &'static str,
    pub severity: Severity,
    /// Where, what and what to do instead.
    pub diagnostic: Diagnostic,
}

/// What a rule reports before severities and suppressions apply: a byte offset of the
/// file and the line of the statement or operation it belongs to (the anchor an
/// `ignore` comment attaches to).
#[derive(Debug, Clone)]
pub(crate) struct RawFinding {
    pub rule: &'static str,
    pub offset: usize,
    pub anchor_line: usize,
    pub message: String,
    pub hint: String,
}

impl RawFinding {
    pub(crate) fn new(
        rule: &'static str,
        offset: usize,
        anchor_line: usize,
        message: String,
        hint: &str,
    ) -> RawFinding {
        debug_assert!(rules::find(rule).is_some(), "unknown rule {rule}");
        RawFinding {
            rule,
            offset,
            anchor_line,
            message,
            hint: hint.to_owned(),
        }
    }
}

/// The findings of a lint run over some files.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub files: Vec<PathBuf>,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    /// Files that do not parse count as bad input (2); otherwise an error finding fails
    /// the run (1); warnings alone do not.
    pub fn exit_code(&self) -> i32 {
        if self.findings.iter().any(|f| f.rule == rules::SYNTAX_ERROR) {
            2
        } else if self.count(Severity::Error) > 0 {
            1
        } else {
            0
        }
    }

    /// Compiler-style text: each finding with its source line and a caret, then a summary.
    pub fn render_human(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let _ = f
                .diagnostic
                .render(&mut out, &format!("{}[{}]", f.severity.name(), f.rule));
            out.push_str("\n\n");
        }
        let _ = writeln!(
            out,
            "{} {}, {} {} in {} {}",
            self.count(Severity::Error),
            plural(self.count(Severity::Error), "error", "errors"),
            self.count(Severity::Warning),
            plural(self.count(Severity::Warning), "warning", "warnings"),
            self.files.len(),
            plural(self.files.len(), "file", "files"),
        );
        out
    }

    /// One JSON object: the files, every finding, and the counts.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "files": self.files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "findings": self.findings.iter().map(|f| serde_json::json!({
                "rule": f.rule,
                "severity": f.severity,
                "path": f.diagnostic.path.display().to_string(),
                "line": f.diagnostic.line,
                "column": f.diagnostic.column,
                "message": f.diagnostic.message,
                "hint": f.diagnostic.hint,
                "source_line": f.diagnostic.source_line,
            })).collect::<Vec<_>>(),
            "errors": self.count(Severity::Error),
            "warnings": self.count(Severity::Warning),
            "exit_code": self.exit_code(),
        })
    }

    /// GitHub Actions workflow commands: an annotation per finding on its file and line.
    pub fn render_github(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let d = &f.diagnostic;
            let mut text = d.message.clone();
            if let Some(h) = &d.hint {
                text.push_str("\nhint: ");
                text.push_str(h);
            }
            let _ = writeln!(
                out,
                "::{} file={},line={},col={},title={}::{}",
                f.severity.name(),
                github_property(&d.path.display().to_string()),
                d.line,
                d.column,
                github_property(&format!("pgshift lint: {}", f.rule)),
                github_data(&text),
            );
        }
        out
    }
}

fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}

fn github_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn github_property(s: &str) -> String {
    github_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// The files to lint under `paths` (files as given; folders searched recursively, in
/// name order, for migration files), or under `default_dir` when `paths` is empty.
pub fn collect_files(paths: &[PathBuf], default_dir: &Path) -> Result<Vec<PathBuf>> {
    let roots: Vec<PathBuf> = if paths.is_empty() {
        if !default_dir.is_dir() {
            return Err(Error::usage(
                format!(
                    "{} does not exist: there is nothing to lint",
                    default_dir.display()
                ),
                Some("name the files or folders to lint (pgshift lint path/to/file.sql), or give the migrations folder with --dir"),
            ));
        }
        vec![default_dir.to_path_buf()]
    } else {
        paths.to_vec()
    };
    let mut out = Vec::new();
    for root in roots {
        if root.is_dir() {
            walk(&root, &mut out)?;
        } else if root.is_file() {
            if !is_lintable(&root) {
                return Err(Error::usage(
                    format!("{} is not a migration file", root.display()),
                    Some(LINTABLE),
                ));
            }
            out.push(root);
        } else {
            return Err(Error::usage(
                format!("{} does not exist", root.display()),
                Some("name existing files or folders"),
            ));
        }
    }
    Ok(out)
}

const LINTABLE: &str = "pgshift lint reads .sql, .toml, .yaml, .yml and .json files";

fn is_lintable(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("sql" | "toml" | "yaml" | "yml" | "json")
    )
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("reading folder {}", dir.display()), e))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            walk(&p, out)?;
        } else if is_lintable(&p) && p.file_name().and_then(|n| n.to_str()) != Some(config::FILE) {
            out.push(p);
        }
    }
    Ok(())
}

/// Lints every file; a file that cannot be read is an error, one that does not parse is
/// a `syntax-error` finding.
pub fn lint_files(files: &[PathBuf], config: &Config) -> Result<Report> {
    let mut report = Report {
        files: files.to_vec(),
        findings: Vec::new(),
    };
    for path in files {
        // A file migrate would refuse as unreadable text is a syntax error here, located.
        let source = match crate::source::read_text(path) {
            Ok(source) => source,
            Err(Error::Input(diagnostics)) => {
                report
                    .findings
                    .extend(diagnostics.into_iter().map(|diagnostic| Finding {
                        rule: rules::SYNTAX_ERROR,
                        severity: Severity::Error,
                        diagnostic,
                    }));
                continue;
            }
            Err(e) => return Err(e),
        };
        let source = source.strip_prefix('\u{feff}').unwrap_or(&source);
        report.findings.extend(lint_source(path, source, config)?);
    }
    Ok(report)
}

/// Lints one file's text. `path` decides the syntax (by extension) and is named in the
/// findings.
pub fn lint_source(path: &Path, source: &str, config: &Config) -> Result<Vec<Finding>> {
    let suppressions = Suppressions::read(path, source)?;
    let linted = match path.extension().and_then(|e| e.to_str()) {
        Some("sql") => sql::lint(source, config.executor, config.assume_lock_timeout),
        _ => match crate::model::Format::from_path(path) {
            Some(format) => match crate::model::parse_migration(path, source, format) {
                Ok(migration) => ops::lint(source, &migration),
                Err(d) => {
                    return Ok(vec![Finding {
                        rule: rules::SYNTAX_ERROR,
                        severity: Severity::Error,
                        diagnostic: d,
                    }])
                }
            },
            None => {
                return Err(Error::usage(
                    format!("{} is not a migration file", path.display()),
                    Some(LINTABLE),
                ))
            }
        },
    };
    let mut out: Vec<Finding> = Vec::new();
    for r in linted.findings {
        // A file that does not parse cannot be checked at all: that is never turned off.
        let severity = if r.rule == rules::SYNTAX_ERROR {
            Severity::Error
        } else {
            match config.severity(r.rule) {
                Some(s) => s,
                None => continue,
            }
        };
        if r.rule != rules::SYNTAX_ERROR
            && suppressions.hides(r.rule, r.anchor_line, &linted.anchors)
        {
            continue;
        }
        let diagnostic = Diagnostic::at_offset(path, source, r.offset, r.message).with_hint(r.hint);
        let finding = Finding {
            rule: r.rule,
            severity,
            diagnostic,
        };
        if !out.contains(&finding) {
            out.push(finding);
        }
    }
    out.sort_by_key(|f| (f.diagnostic.line, f.diagnostic.column));
    Ok(out)
}

/// `pgshift-lint: ignore rule, rule` in a comment hides those rules for the next statement
/// (or operation); `pgshift-lint: ignore-file rule` for the whole file.
struct Suppressions {
    /// (line of the comment, rules)
    next: Vec<(usize, Vec<String>)>,
    file: Vec<String>,
}

const MARKER: &str = "pgshift-lint:";

impl Suppressions {
    fn read(path: &Path, source: &str) -> Result<Suppressions> {
        let mut s = Suppressions {
            next: Vec::new(),
            file: Vec::new(),
        };
        for (i, line) in source.lines().enumerate() {
            let Some(at) = line.find(MARKER) else {
                continue;
            };
            let before = line[..at].trim_end();
            if !(before.ends_with("--") || before.ends_with('#') || before.ends_with("/*")) {
                continue;
            }
            let rest = line[at + MARKER.len()..]
                .trim()
                .trim_end_matches("*/")
                .trim();
            let (kind, names) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            let names: Vec<String> = names
                .split([',', ' '])
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect();
            let column = at + 1;
            let bad = |message: String| {
                Error::Input(vec![Diagnostic::at_line_col(path, source, i + 1, column, message)
                    .with_hint("write `pgshift-lint: ignore rule-name` (the next statement) or `pgshift-lint: ignore-file rule-name`; `pgshift lint --rules` lists the rules")])
            };
            if names.is_empty() {
                return Err(bad(format!("`{MARKER} {kind}` names no rule")));
            }
            if let Some(unknown) = names.iter().find(|n| rules::find(n).is_none()) {
                return Err(bad(format!("no lint rule is named `{unknown}`")));
            }
            match kind {
                "ignore" => s.next.push((i + 1, names)),
                "ignore-file" => s.file.extend(names),
                other => return Err(bad(format!("unknown lint directive `{other}`"))),
            }
        }
        Ok(s)
    }

    /// `anchors`: the first line of every statement or operation of the file, in order.
    fn hides(&self, rule: &str, anchor_line: usize, anchors: &[usize]) -> bool {
        if self.file.iter().any(|r| r == rule) {
            return true;
        }
        // An `ignore` belongs to the first statement that starts below it.
        self.next.iter().any(|(line, names)| {
            names.iter().any(|r| r == rule)
                && anchors.iter().find(|a| **a > *line) == Some(&anchor_line)
        })
    }
}

/// What the SQL or operation rules found in one file.
pub(crate) struct Linted {
    pub findings: Vec<RawFinding>,
    /// The first line of each statement or operation.
    pub anchors: Vec<usize>,
}
