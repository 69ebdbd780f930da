//! Helpers shared by the CLI's integration tests: run the real `pgshift` binary against a
//! fresh database of the test kit's throwaway cluster.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

pub use pgshift_testkit::TestDb;

/// What a finished pgshift run printed and returned.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr)
    }
}

/// A migrations folder in a temp dir.
pub struct Migrations {
    pub dir: tempfile::TempDir,
}

impl Migrations {
    pub fn new(files: &[(&str, &str)]) -> Migrations {
        let m = Migrations {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        for (name, body) in files {
            m.write(name, body);
        }
        m
    }

    pub fn write(&self, name: &str, body: &str) {
        std::fs::write(self.dir.path().join(name), body).expect("write migration");
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

/// A `pgshift` command aimed at `db` and `dir`, with the environment cleared of libpq
/// variables so that only what the test gives counts.
pub fn pgshift(db_url: &str, dir: &Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgshift"));
    for var in [
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGSSLMODE",
        "PGAPPNAME",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("DATABASE_URL", db_url)
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

pub async fn finish(cmd: &mut tokio::process::Command) -> Run {
    let out = cmd.output().await.expect("run pgshift");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub async fn run(db: &TestDb, dir: &Path, args: &[&str]) -> Run {
    finish(&mut pgshift(&db.url, dir, args)).await
}

/// Polls `check` until it is true, or panics after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn scalar_i64(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

pub async fn table_exists(client: &tokio_postgres::Client, qualified: &str) -> bool {
    client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&qualified])
        .await
        .unwrap()
        .get(0)
}

/// Waits until no session of `application_name` pgshift is connected (a killed pgshift's
/// backend goes away once the server notices the closed socket).
pub async fn wait_for_pgshift_sessions_to_end(client: &tokio_postgres::Client) {
    // PostgreSQL 13 has no client_connection_check_interval: a killed client's backend runs
    // its statement to the end (a new pgshift meanwhile exits 3 naming it). Do what a DBA
    // would and terminate it, instead of waiting out the test's long sleep.
    let version = scalar_i64(
        client,
        "SELECT current_setting('server_version_num')::bigint",
    )
    .await;
    if version < 140000 {
        client
            .batch_execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgshift' AND pid <> pg_backend_pid()",
            )
            .await
            .unwrap();
    }
    wait_until(
        "pgshift's sessions to end",
        Duration::from_secs(30),
        || async {
            scalar_i64(
                client,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgshift'",
            )
            .await
                == 0
        },
    )
    .await;
}

/// Whether the index named `index` (unqualified, in the search path) is valid.
pub async fn index_is_valid(client: &tokio_postgres::Client, index: &str) -> bool {
    client
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)",
            &[&index],
        )
        .await
        .unwrap_or_else(|e| panic!("index {index}: {e}"))
        .get(0)
}

/// The recorded status of a migration in pgshift.migrations.
pub async fn migration_status(client: &tokio_postgres::Client, name: &str) -> String {
    client
        .query_one(
            "SELECT status FROM pgshift.migrations WHERE name = $1",
            &[&name],
        )
        .await
        .unwrap_or_else(|e| panic!("migration {name}: {e}"))
        .get(0)
}

/// A schema-only dump of the database (pgshift's own bookkeeping tables excluded: they are
/// data about the run, not the schema under change).
pub async fn schema_dump(db: &TestDb) -> String {
    let cluster = pgshift_testkit::cluster();
    let out = tokio::process::Command::new(cluster.bin("pg_dump"))
        .args([
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "--exclude-schema=pgshift",
            "--dbname",
        ])
        .arg(&db.url)
        .output()
        .await
        .expect("run pg_dump");
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        // pg_dump 17+ prints a random \restrict key; comments carry nothing to compare.
        .filter(|l| {
            !l.starts_with("--") && !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs pgshift and asserts it succeeded.
pub async fn run_ok(db: &TestDb, dir: &Path, args: &[&str]) -> Run {
    let r = run(db, dir, args).await;
    assert_eq!(r.code, 0, "pgshift {args:?} failed:\n{}", r.all());
    r
}
