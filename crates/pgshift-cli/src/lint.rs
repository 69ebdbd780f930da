//! `pgshift lint`: reads the settings, lints, prints in the chosen form.

use crate::OutputArg;
use pgshift::lint::{self, Config, SqlExecutor};
use std::path::PathBuf;

pub struct Options {
    pub paths: Vec<PathBuf>,
    pub dir: PathBuf,
    pub config: Option<PathBuf>,
    pub executor: Option<SqlExecutor>,
    pub list_rules: bool,
    pub output: OutputArg,
}

/// Lints and prints; returns the exit code.
pub fn run(o: &Options) -> pgshift::Result<i32> {
    let mut config = Config::discover(o.config.as_deref())?;
    if let Some(e) = o.executor {
        config.executor = e;
    }
    if o.list_rules {
        print_rules(&config, o.output);
        return Ok(0);
    }
    let files = lint::collect_files(&o.paths, &o.dir)?;
    let report = lint::lint_files(&files, &config)?;
    match o.output {
        OutputArg::Human => print!("{}", report.render_human()),
        OutputArg::Json => println!("{}", report.to_json()),
        OutputArg::Github => print!("{}", report.render_github()),
    }
    Ok(report.exit_code())
}

fn print_rules(config: &Config, output: OutputArg) {
    let level = |name: &str| match config.severity(name) {
        None => "off",
        Some(s) => s.name(),
    };
    if output == OutputArg::Json {
        let rules: Vec<_> = lint::RULES
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.name,
                    "level": level(r.name),
                    "default": r.default.name(),
                    "summary": r.summary,
                })
            })
            .collect();
        println!("{}", serde_json::json!({ "rules": rules }));
        return;
    }
    let width = lint::RULES.iter().map(|r| r.name.len()).max().unwrap_or(0);
    for r in lint::RULES {
        println!("{:width$}  {:7}  {}", r.name, level(r.name), r.summary);
    }
}
