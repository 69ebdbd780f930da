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
        "PGPASSFILE",
        "PGCONNECT_TIMEOUT",
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

/// The one text value `sql` returns (None for NULL).
pub async fn scalar_text(client: &tokio_postgres::Client, sql: &str) -> Option<String> {
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
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE application_name = 'pgshift' AND datname = current_database() AND pid <> pg_backend_pid()",
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
                // Only this test's database: other tests run pgshift at the same time.
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgshift' AND datname = current_database()",
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

/// The schema of every user schema (pgshift's own state excluded), described from the
/// catalog, line by line and sorted: tables, columns, constraints, indexes, triggers, views,
/// functions, types, sequences, comments, replica identities. Read with SQL rather than
/// pg_dump so that it works against every server version the suite runs on.
pub async fn schema_dump(db: &TestDb) -> String {
    const DESCRIBE: &str = r#"
        WITH ns AS (
            SELECT oid, nspname FROM pg_namespace
            WHERE nspname NOT IN ('pgshift', 'information_schema') AND nspname NOT LIKE 'pg\_%'
        )
        SELECT line FROM (
            SELECT 'schema ' || nspname AS line FROM ns
            UNION ALL
            SELECT format('relation %s.%s kind %s replident %s', n.nspname, c.relname, c.relkind, c.relreplident)
            FROM pg_class c JOIN ns n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'v', 'S', 'm')
            UNION ALL
            SELECT format('column %s.%s.%s %s notnull=%s default=%s identity=%s generated=%s', n.nspname, c.relname, a.attname,
                          format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated)
            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN ns n ON n.oid = c.relnamespace
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE c.relkind IN ('r', 'p', 'v') AND a.attnum > 0 AND NOT a.attisdropped
            UNION ALL
            SELECT format('constraint %s.%s %s: %s', n.nspname, c.relname, k.conname, pg_get_constraintdef(k.oid))
            FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN ns n ON n.oid = c.relnamespace
            UNION ALL
            SELECT format('index %s', pg_get_indexdef(i.indexrelid))
            FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN ns n ON n.oid = c.relnamespace
            UNION ALL
            SELECT format('trigger %s', pg_get_triggerdef(t.oid))
            FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN ns n ON n.oid = c.relnamespace WHERE NOT t.tgisinternal
            UNION ALL
            SELECT format('view %s.%s: %s', n.nspname, c.relname, pg_get_viewdef(c.oid))
            FROM pg_class c JOIN ns n ON n.oid = c.relnamespace WHERE c.relkind = 'v'
            UNION ALL
            SELECT format('function %s', pg_get_functiondef(p.oid))
            FROM pg_proc p JOIN ns n ON n.oid = p.pronamespace WHERE p.prokind = 'f'
            UNION ALL
            SELECT format('type %s.%s %s: %s', n.nspname, t.typname, t.typtype,
                          (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid))
            FROM pg_type t JOIN ns n ON n.oid = t.typnamespace WHERE t.typtype IN ('e', 'd')
            UNION ALL
            SELECT format('comment %s %s: %s', d.classoid::regclass, d.objsubid, d.description)
            FROM pg_description d JOIN pg_class c ON c.oid = d.objoid JOIN ns n ON n.oid = c.relnamespace
            WHERE d.classoid = 'pg_class'::regclass
        ) lines ORDER BY line"#;
    let c = db.client().await;
    c.query(DESCRIBE, &[])
        .await
        .unwrap_or_else(|e| panic!("describe the schema: {e:?}"))
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs pgshift and asserts it succeeded.
pub async fn run_ok(db: &TestDb, dir: &Path, args: &[&str]) -> Run {
    let r = run(db, dir, args).await;
    assert_eq!(r.code, 0, "pgshift {args:?} failed:\n{}", r.all());
    r
}
