//! `pgshift-sandbox <command> [args...]`: starts a throwaway PostgreSQL with one fresh
//! database, runs the command with DATABASE_URL pointing at it, and removes the cluster when
//! the command ends. Used by the README's demo script.

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((program, rest)) = args.split_first() else {
        eprintln!("usage: pgshift-sandbox <command> [args...]");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let db = runtime.block_on(pgshift_testkit::TestDb::new());
    let cluster = pgshift_testkit::cluster();
    eprintln!(
        "sandbox: PostgreSQL {} from {} on port {}, database {}",
        cluster.version_num / 10000,
        cluster.bin_dir.display(),
        cluster.port,
        db.name
    );
    let status = Command::new(program)
        .args(rest)
        .env("DATABASE_URL", &db.url)
        .env("PGSHIFT_SANDBOX_PSQL", cluster.bin("psql"))
        .status();
    match status {
        Ok(s) => ExitCode::from(s.code().unwrap_or(1) as u8),
        Err(e) => {
            eprintln!("error: cannot run {program}: {e}");
            ExitCode::from(1)
        }
    }
}
