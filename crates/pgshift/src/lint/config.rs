//! A project's lint settings, from the `[lint]` table of `pgshift.toml`:
//!
//! ```toml
//! [lint]
//! executor = "pgshift"        # how .sql files run: pgshift | transaction | autocommit
//! assume_lock_timeout = false # true when the tool that runs them sets lock_timeout
//! [lint.rules]
//! no-json = "error"           # off | warning | error
//! prefer-timestamptz = "off"
//! ```

use super::rules::{self, Level};
use super::Severity;
use crate::diag::Diagnostic;
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// The project file's name.
pub const FILE: &str = "pgshift.toml";

/// How the statements of a `.sql` file will be run, which decides what is safe in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SqlExecutor {
    /// By pgshift: one transaction per file with a short lock_timeout and retries, each
    /// CONCURRENTLY statement on its own; BEGIN/COMMIT in the file are refused.
    #[default]
    Pgshift,
    /// By a tool that wraps each file in one transaction (Rails, Django, Flyway, Sqitch).
    Transaction,
    /// Statement by statement in autocommit (psql without --single-transaction).
    Autocommit,
}

#[derive(Debug, Clone, Default)]
pub struct Config {
    pub executor: SqlExecutor,
    /// The tool that runs the files sets lock_timeout itself (strong_migrations'
    /// `lock_timeout`, Flyway's init SQL, ...), so files need not. Always so for pgshift.
    pub assume_lock_timeout: bool,
    /// Levels set by the project; other rules keep their default.
    pub levels: BTreeMap<String, Level>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectFile {
    #[serde(default)]
    lint: Option<LintSection>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LintSection {
    #[serde(default)]
    executor: Option<SqlExecutor>,
    #[serde(default)]
    assume_lock_timeout: bool,
    #[serde(default)]
    rules: BTreeMap<String, Level>,
}

impl Config {
    /// The severity a rule reports at, or None when it is off.
    pub fn severity(&self, rule: &str) -> Option<Severity> {
        let level = self
            .levels
            .get(rule)
            .copied()
            .or_else(|| rules::find(rule).map(|r| r.default))
            .unwrap_or(Level::Error);
        match level {
            Level::Off => None,
            Level::Warning => Some(Severity::Warning),
            Level::Error => Some(Severity::Error),
        }
    }

    /// Reads `path`; bad settings are located in the file (exit 2).
    pub fn read(path: &Path) -> Result<Config> {
        let source = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        Config::parse(path, &source)
    }

    pub fn parse(path: &Path, source: &str) -> Result<Config> {
        let file: ProjectFile = toml::from_str(source).map_err(|e| {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            Error::Input(vec![Diagnostic::at_offset(
                path,
                source,
                offset,
                e.message().trim().to_owned(),
            )
            .with_hint("[lint] takes `executor` (pgshift, transaction or autocommit), `assume_lock_timeout` (true or false) and a [lint.rules] table of rule = \"off\" | \"warning\" | \"error\"")])
        })?;
        let section = file.lint.unwrap_or(LintSection {
            executor: None,
            assume_lock_timeout: false,
            rules: BTreeMap::new(),
        });
        let unknown: Vec<Diagnostic> = section
            .rules
            .keys()
            .filter(|name| rules::find(name).is_none())
            .map(|name| {
                let offset = source.find(name.as_str()).unwrap_or(0);
                Diagnostic::at_offset(
                    path,
                    source,
                    offset,
                    format!("no lint rule is named `{name}`"),
                )
                .with_hint("`pgshift lint --rules` lists every rule with its default severity")
            })
            .collect();
        if !unknown.is_empty() {
            return Err(Error::Input(unknown));
        }
        Ok(Config {
            executor: section.executor.unwrap_or_default(),
            assume_lock_timeout: section.assume_lock_timeout,
            levels: section.rules,
        })
    }

    /// `explicit` if given, else `pgshift.toml` in the current folder if there is one,
    /// else the defaults.
    pub fn discover(explicit: Option<&Path>) -> Result<Config> {
        match explicit {
            Some(p) => Config::read(p),
            None if Path::new(FILE).is_file() => Config::read(Path::new(FILE)),
            None => Ok(Config::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_executor_are_read() {
        let c = Config::parse(
            Path::new("pgshift.toml"),
            "[lint]\nexecutor = \"autocommit\"\n[lint.rules]\nno-json = \"error\"\nprefer-timestamptz = \"off\"\n",
        )
        .unwrap();
        assert_eq!(c.executor, SqlExecutor::Autocommit);
        assert_eq!(c.severity("no-json"), Some(Severity::Error));
        assert_eq!(c.severity("prefer-timestamptz"), None);
        assert_eq!(
            c.severity("require-concurrent-index-creation"),
            Some(Severity::Error)
        );
        assert_eq!(Config::default().severity("no-json"), None);
    }

    #[test]
    fn unknown_rule_and_bad_level_are_located() {
        let src = "[lint.rules]\nno-json = \"error\"\nno-jsn = \"error\"\n";
        let Err(Error::Input(d)) = Config::parse(Path::new("pgshift.toml"), src) else {
            panic!("accepted")
        };
        assert_eq!((d[0].line, d[0].column), (3, 1), "{}", d[0]);
        let Err(Error::Input(d)) = Config::parse(
            Path::new("pgshift.toml"),
            "[lint.rules]\nno-json = \"loud\"\n",
        ) else {
            panic!("accepted")
        };
        assert_eq!(d[0].line, 2, "{}", d[0]);
    }
}
