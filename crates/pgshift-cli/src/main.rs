//! The `pgshift` command: parses flags, calls the library, prints. Nothing else lives here.

mod demo;
mod lint;
mod output;

use clap::{Parser, Subcommand, ValueEnum};
use output::{Output, Printer};
use pgshift::commands;
use pgshift::conn::ConnectionSpec;
use pgshift::event::RunEvent;
use pgshift::exec::ExecSettings;
use pgshift::session::Session;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "pgshift",
    version,
    about = "Zero-downtime schema and data changes for PostgreSQL",
    long_about = None
)]
struct Cli {
    /// Database URL (postgres://user@host:port/db?sslmode=...). Falls back to DATABASE_URL,
    /// then to the libpq variables PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD.
    // DATABASE_URL is read in `main`, not through clap's `env`: with it, clap shows the flag
    // as required in every usage line once the variable is set.
    #[arg(long, global = true)]
    database_url: Option<String>,

    /// Schema the migrations change.
    #[arg(long, default_value = "public", global = true)]
    schema: String,

    /// Folder of migration files.
    #[arg(long, default_value = "migrations", global = true)]
    dir: PathBuf,

    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputArg::Human, global = true)]
    output: OutputArg,

    /// lock_timeout of each DDL or data statement; on timeout the step rolls back and retries.
    #[arg(long, value_parser = parse_duration, default_value = "200ms", global = true)]
    lock_timeout: Duration,

    /// lock_timeout of statements that run outside a transaction (CREATE INDEX CONCURRENTLY).
    #[arg(long, value_parser = parse_duration, default_value = "60s", global = true)]
    concurrent_lock_timeout: Duration,

    /// Total time a step may spend waiting for locks, retries included, before it fails.
    #[arg(long, value_parser = parse_duration, default_value = "60s", global = true)]
    max_lock_wait: Duration,

    /// statement_timeout of DDL statements (0 = none).
    #[arg(long, value_parser = parse_duration, default_value = "5m", global = true)]
    ddl_statement_timeout: Duration,

    /// statement_timeout of data statements (0 = none).
    #[arg(long, value_parser = parse_duration, default_value = "0", global = true)]
    dml_statement_timeout: Duration,

    /// statement_timeout of concurrent statements (0 = none).
    #[arg(long, value_parser = parse_duration, default_value = "0", global = true)]
    concurrent_statement_timeout: Duration,

    /// Backfill batches are sized to take about this long each.
    #[arg(long, value_parser = parse_duration, default_value = "150ms", global = true)]
    backfill_batch_time: Duration,

    /// A pause after every backfill batch.
    #[arg(long, value_parser = parse_duration, default_value = "0", global = true)]
    backfill_delay: Duration,

    /// Throttle backfills while a replica's replay is more than this many bytes behind.
    #[arg(long, global = true)]
    max_replica_lag_bytes: Option<i64>,

    /// Throttle backfills while this SQL query returns true.
    #[arg(long, global = true)]
    throttle_query: Option<String>,

    /// VACUUM the table after this many backfilled rows.
    #[arg(long, default_value_t = 100_000, global = true)]
    vacuum_every_rows: i64,

    /// Run each backfill and table copy with this many workers over disjoint key ranges,
    /// each on its own connection: `auto` sizes them from the table's size and the server's
    /// max_parallel_maintenance_workers and free connections (fixed when a backfill first
    /// starts; a resumed one keeps its number).
    #[arg(
        long,
        default_value = "auto",
        global = true,
        env = "PGSHIFT_BACKFILL_WORKERS"
    )]
    backfill_workers: pgshift::exec::Workers,

    /// Build up to this many of a table copy's indexes at the same time, each on its own
    /// connection (each build may use up to maintenance_work_mem); 1 builds them one after
    /// the other.
    #[arg(long, default_value_t = 2, global = true, value_parser = clap::value_parser!(u32).range(1..), env = "PGSHIFT_INDEX_BUILDS")]
    index_builds: u32,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputArg {
    Human,
    Json,
    /// GitHub Actions annotations (`pgshift lint`; other commands print human text).
    Github,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the state schema `pgshift`, or upgrade it to this version of pgshift.
    Init,
    /// List applied, pending, edited and unfinished migrations.
    Status {
        /// Show the audit log instead: who ran what, from where, when, for how long, with
        /// what result.
        #[arg(long)]
        history: bool,
        /// How many events `--history` shows (newest first).
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Record a migration as applied without running it (a change made by hand), with why.
    MarkApplied {
        /// The migration's name (its file name, with or without the extension).
        name: String,
        /// Why it is recorded without running (kept in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Start (expand) a migration: new columns, triggers, indexes, and a version schema.
    Start {
        /// The migration file (in the migrations folder, --dir).
        file: PathBuf,
        /// Start it although migrations that sort before it are not applied yet.
        #[arg(long)]
        allow_out_of_order: bool,
        /// Run the file without linting it first (otherwise a finding at error level in
        /// pgshift.toml's levels refuses it, and warnings are printed).
        #[arg(long)]
        no_lint: bool,
    },
    /// Show every step of a migration with its SQL, the locks it takes, what it rewrites or
    /// scans, which client statements it makes wait and for how long, and a time estimate
    /// from the tables' current size. Changes nothing.
    Plan {
        /// The migration file; without one, every pending migration in --dir, in order (a
        /// dry run of migrate).
        file: Option<PathBuf>,
    },
    /// Check migrations for statements that block clients, rewrite tables or break running
    /// code, and for the team's rules (pgshift.toml). Needs no database. Exit 1 when a
    /// finding at error severity remains, 2 when a file does not parse.
    Lint {
        /// Files or folders to lint (default: --dir).
        paths: Vec<PathBuf>,
        /// The project settings (default: pgshift.toml in the current folder, if any).
        #[arg(long)]
        config: Option<PathBuf>,
        /// How .sql files are run, which decides what is safe in them (default: from
        /// pgshift.toml, else pgshift).
        #[arg(long, value_enum)]
        executor: Option<ExecutorArg>,
        /// List the rules with their levels in this project, and exit.
        #[arg(long)]
        rules: bool,
    },
    /// Complete (contract) the open migration: validate, swap, drop.
    Complete,
    /// Undo the open migration's start.
    Rollback,
    /// What a client of the newest version should use.
    Latest {
        #[command(subcommand)]
        what: LatestWhat,
    },
    /// Watch and steer backfills from another terminal.
    Backfill {
        #[command(subcommand)]
        action: BackfillAction,
    },
    /// Data migrations (files in <dir>/data): run apart from schema migrations, once each.
    Data {
        #[command(subcommand)]
        action: DataAction,
        /// Folder of data migrations (default: `data` inside --dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Apply every pending migration in file-name order.
    Migrate {
        /// Complete the last migration too (raw SQL migrations always complete).
        #[arg(long)]
        complete: bool,
        /// Apply pending migrations that sort before an already applied one.
        #[arg(long)]
        allow_out_of_order: bool,
        /// Run `mode: manual` migrations too (otherwise migrate stops before the first one,
        /// says that it waits for a person, and exits 0).
        #[arg(long)]
        include_manual: bool,
        /// This database's environment: migrations whose `skip_environments` name it are
        /// recorded as skipped.
        #[arg(long, env = "PGSHIFT_ENV")]
        environment: Option<String>,
        /// Refuse, before changing anything, a migration whose plan is estimated to take
        /// longer than this (e.g. 10m).
        #[arg(long, value_parser = parse_duration)]
        deploy_budget: Option<Duration>,
        /// Run the pending files without linting them first (otherwise a finding at error
        /// level in pgshift.toml's levels refuses the run, and warnings are printed).
        #[arg(long)]
        no_lint: bool,
    },
    /// Start a throwaway PostgreSQL (no database URL needed), run the seed scenarios under
    /// client traffic, print figures per scenario and write an HTML report.
    Demo {
        /// Rows of S2's and S3's tables.
        #[arg(long, default_value_t = 2_000_000)]
        rows: i64,
        /// Rows of S1's table.
        #[arg(long, default_value_t = 222_000)]
        s1_rows: i64,
        /// Rows of S4's table (the seed's "over 50,000 caterers").
        #[arg(long, default_value_t = 50_000)]
        s4_rows: i64,
        /// Run only these scenarios (S1, S2, S3, S4).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Where to write the HTML report.
        #[arg(long, default_value = "pgshift-demo-report.html")]
        report: PathBuf,
        /// Client connections per schema version.
        #[arg(long, default_value_t = 2)]
        clients: usize,
        /// Client statements per second per schema version.
        #[arg(long, default_value_t = 100)]
        rate: u32,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExecutorArg {
    /// pgshift: one transaction per file, lock_timeout and retries, CONCURRENTLY alone.
    Pgshift,
    /// A tool that wraps each file in a transaction (Rails, Django, Flyway, Sqitch).
    Transaction,
    /// Statement by statement (psql without --single-transaction).
    Autocommit,
}

#[derive(Debug, Subcommand)]
enum DataAction {
    /// Run every pending data migration, once, with the backfill engine.
    Run,
    /// List data migrations: who ran them, when, for how long, rows changed.
    Status,
}

#[derive(Debug, Subcommand)]
enum BackfillAction {
    /// Table, rows done and estimated total, rate, ETA, elapsed, throttle reason.
    Status,
    /// Pause running backfills (within one batch).
    Pause,
    /// Let paused or cancelled backfills go on (and continue an interrupted start).
    Resume,
    /// Stop backfills; the migration stays open for resume or rollback.
    Cancel,
}

#[derive(Debug, Subcommand)]
enum LatestWhat {
    /// The newest version schema's name.
    Schema,
    /// The connection URL with that schema as search_path (without the password).
    Url,
}

/// The command line, with the flags `demo` ignores hidden from its help: it starts its own
/// cluster and runs the scenarios with their own settings.
fn command() -> clap::Command {
    use clap::CommandFactory;
    const DEMO_USES: &[&str] = &["output", "backfill_workers", "help", "version"];
    let mut cmd = Cli::command();
    cmd.build();
    let globals: Vec<String> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set())
        .map(|a| a.get_id().to_string())
        .collect();
    cmd.mut_subcommand("demo", |demo| {
        demo.mut_args(|a| {
            let id = a.get_id().to_string();
            if globals.contains(&id) && !DEMO_USES.contains(&id.as_str()) {
                a.hide(true)
            } else {
                a
            }
        })
    })
}

fn main() -> ExitCode {
    use clap::FromArgMatches;
    let mut cli = Cli::from_arg_matches(&command().get_matches()).unwrap_or_else(|e| e.exit());
    if cli.database_url.is_none() {
        cli.database_url = std::env::var("DATABASE_URL").ok();
    }
    let printer = Printer::new(match cli.output {
        OutputArg::Human | OutputArg::Github => Output::Human,
        OutputArg::Json => Output::Json,
    });
    if let Command::Lint {
        paths,
        config,
        executor,
        rules,
    } = &cli.command
    {
        let executor = executor.map(|e| match e {
            ExecutorArg::Pgshift => pgshift::lint::SqlExecutor::Pgshift,
            ExecutorArg::Transaction => pgshift::lint::SqlExecutor::Transaction,
            ExecutorArg::Autocommit => pgshift::lint::SqlExecutor::Autocommit,
        });
        let options = lint::Options {
            paths: paths.clone(),
            dir: cli.dir.clone(),
            config: config.clone(),
            executor,
            list_rules: *rules,
            output: cli.output,
        };
        return match lint::run(&options) {
            Ok(code) => ExitCode::from(code as u8),
            Err(e) => {
                let code = e.exit_code();
                printer.error(&anyhow::Error::new(e), code);
                ExitCode::from(code as u8)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli, printer.clone())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = match e.downcast_ref::<pgshift::Error>() {
                Some(pe) => pe.exit_code(),
                None => 1,
            };
            printer.error(&e, code);
            ExitCode::from(code as u8)
        }
    }
}

async fn run(cli: Cli, printer: Printer) -> anyhow::Result<()> {
    if let Command::Demo {
        rows,
        s1_rows,
        s4_rows,
        only,
        report,
        clients,
        rate,
    } = &cli.command
    {
        return demo::run(demo::DemoOptions {
            rows: *rows,
            s1_rows: *s1_rows,
            s4_rows: *s4_rows,
            only: only.clone(),
            report: report.clone(),
            json: matches!(cli.output, OutputArg::Json),
            clients_per_version: (*clients).max(1),
            rate: *rate,
            pgshift_args: vec![
                "--backfill-workers".to_owned(),
                cli.backfill_workers.to_string(),
            ],
        })
        .await;
    }
    let spec = ConnectionSpec::resolve(cli.database_url.as_deref())?;
    let settings = ExecSettings {
        lock_timeout: cli.lock_timeout,
        concurrent_lock_timeout: cli.concurrent_lock_timeout,
        max_lock_wait: cli.max_lock_wait,
        ddl_statement_timeout: cli.ddl_statement_timeout,
        dml_statement_timeout: cli.dml_statement_timeout,
        concurrent_statement_timeout: cli.concurrent_statement_timeout,
        backfill: pgshift::exec::BackfillSettings {
            batch_time: cli.backfill_batch_time,
            delay: cli.backfill_delay,
            max_replica_lag_bytes: cli.max_replica_lag_bytes,
            throttle_query: cli.throttle_query.clone(),
            vacuum_every_rows: cli.vacuum_every_rows,
            workers: cli.backfill_workers,
            ..pgshift::exec::BackfillSettings::default()
        },
        index_builds: cli.index_builds,
        ..ExecSettings::default()
    };
    let events = |event: &RunEvent| printer.run_event(event);
    match cli.command {
        Command::Init => {
            let s = session(&spec, settings, &printer, &cli.schema, &events).await?;
            let upgrade = commands::init(&s).await?;
            printer.init(&spec, &upgrade);
        }
        Command::Status { history: false, .. } => {
            let client = spec.connect_read_only().await?;
            let report = commands::status(&spec, &client, &cli.dir).await?;
            printer.status(&report);
        }
        Command::Status {
            history: true,
            limit,
        } => {
            let client = spec.connect_read_only().await?;
            printer.history(&commands::history(&client, limit).await?);
        }
        Command::MarkApplied { name, reason } => {
            let s = session(&spec, settings, &printer, &cli.schema, &events).await?;
            commands::mark_applied(&s, &cli.dir, &name, &reason).await?;
            printer.done("marked applied (not run)", &name);
        }
        Command::Start {
            file,
            allow_out_of_order,
            no_lint,
        } => {
            let lint = lint_settings(no_lint)?;
            let s = session(&spec, settings, &printer, &cli.schema, &events).await?;
            let options = commands::StartOptions {
                allow_out_of_order,
                lint,
            };
            let version_schema = commands::start(&s, &file, &cli.dir, &options).await?;
            printer.started(&version_schema);
        }
        Command::Plan { file: Some(file) } => {
            let client = spec.connect_read_only().await?;
            let report = commands::plan(&client, &file, &cli.schema, settings.lock_timeout).await?;
            printer.plan(&report);
        }
        Command::Plan { file: None } => {
            let client = spec.connect_read_only().await?;
            let plans =
                commands::plan_pending(&client, &cli.dir, &cli.schema, settings.lock_timeout)
                    .await?;
            printer.pending_plans(&plans);
        }
        Command::Data { action, data_dir } => {
            let data_dir = data_dir.unwrap_or_else(|| cli.dir.join("data"));
            match action {
                DataAction::Status => {
                    let client = spec.connect_read_only().await?;
                    printer.data_status(&commands::data_status(&client, &data_dir).await?);
                }
                DataAction::Run => {
                    let s = session(&spec, settings, &printer, &cli.schema, &events).await?;
                    let applied = commands::data_run(&s, &data_dir).await?;
                    printer.data_run(&applied);
                }
            }
        }
        Command::Complete => {
            let s = session(&spec, settings, &printer, &cli.schema, &events).await?;
            let name = commands::complete(&s).await?;
            printer.done("completed", &name);
        }
        Command::Rollback => {
            let s = session(&spec, settings, &printer, &cli.schema, &events).await?;
            let name = commands::rollback(&s).await?;
            printer.done("rolled back", &name);
        }
        Command::Backfill { action } => match action {
            BackfillAction::Status => {
                let client = spec.connect_read_only().await?;
                printer.backfills(&pgshift::backfill::status(&client).await?);
            }
            BackfillAction::Pause | BackfillAction::Cancel => {
                let s = session(&spec, settings, &printer, &cli.schema, &events).await?;
                let control = if matches!(action, BackfillAction::Pause) {
                    pgshift::backfill::Control::Pause
                } else {
                    pgshift::backfill::Control::Cancel
                };
                let n = commands::backfill_steer(&s, control).await?;
                let to = control.state();
                printer.backfill_control(to.as_str(), n, None);
            }
            BackfillAction::Resume => {
                let s = session(&spec, settings, &printer, &cli.schema, &events).await?;
                let (n, continued) = commands::backfill_resume(&s).await?;
                printer.backfill_control(
                    pgshift::state::BackfillState::Running.as_str(),
                    n,
                    continued.as_deref(),
                );
            }
        },
        Command::Latest { what } => {
            let client = spec.connect_read_only().await?;
            let latest = commands::latest_schema(&client, &cli.schema).await?;
            // The base schema is what the URL already selects when it is public.
            let search_path = (latest.version_schema || latest.schema != "public")
                .then_some(latest.schema.as_str());
            match what {
                LatestWhat::Schema => printer.latest("schema", &latest.schema, &latest),
                LatestWhat::Url => {
                    printer.latest("url", &spec.url_with_search_path(search_path), &latest)
                }
            }
        }
        Command::Migrate {
            complete,
            allow_out_of_order,
            include_manual,
            environment,
            deploy_budget,
            no_lint,
        } => {
            let lint = lint_settings(no_lint)?;
            let s = session(&spec, settings, &printer, &cli.schema, &events).await?;
            let options = commands::MigrateOptions {
                allow_out_of_order,
                complete,
                include_manual,
                environment,
                deploy_budget,
                lint,
            };
            let report = commands::migrate(&s, &cli.dir, &options).await?;
            printer.migrate(&report);
        }
        Command::Demo { .. } | Command::Lint { .. } => {
            unreachable!("handled before connecting")
        }
    }
    Ok(())
}

/// A session over a new executor, its events printed.
async fn session<'a>(
    spec: &ConnectionSpec,
    settings: ExecSettings,
    printer: &Printer,
    schema: &str,
    events: &'a (dyn Fn(&RunEvent) + Sync),
) -> pgshift::Result<Session<'a>> {
    Session::connect(spec, settings, Arc::new(printer.clone()), schema, events).await
}

/// The lint settings `migrate` and `start` check files with: pgshift.toml in the current
/// folder (as `pgshift lint` finds it), else the defaults; none with `--no-lint`.
fn lint_settings(no_lint: bool) -> pgshift::Result<Option<pgshift::lint::Config>> {
    if no_lint {
        return Ok(None);
    }
    pgshift::lint::Config::discover(None).map(Some)
}

/// `200ms`, `1.5s`, `2m`, `1h`, or `0`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("{text:?} needs a unit: ms, s, m or h (e.g. 200ms, 5s)"))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 200ms, 5s, 2m)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?}; use ms, s, m or h"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("200").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
