//! `pgshift lint` as a user runs it: no database, the project's pgshift.toml found in the
//! current folder, exit codes, and the three output forms.

use std::path::Path;
use std::process::{Command, Output};

fn pgshift(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgshift"))
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .output()
        .expect("pgshift runs")
}

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn lints_the_migrations_folder_with_the_project_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(
        dir,
        "migrations/0001_orders.sql",
        "CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, meta jsonb);\n",
    );
    write(
        dir,
        "migrations/0002_index.sql",
        "CREATE INDEX orders_meta ON orders (id);\n",
    );
    write(
        dir,
        "migrations/0003_add.yaml",
        "operations:\n  - add_column:\n      table: orders\n      column:\n        name: sent_at\n        type: timestamp\n        nullable: true\n",
    );

    // Defaults: the index is an error, the timestamp a warning, jsonb is allowed.
    let o = pgshift(dir, &["lint"]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("migrations/0002_index.sql:1:1: error[require-concurrent-index-creation]"),
        "{text}"
    );
    assert!(
        text.contains("migrations/0003_add.yaml:6:15: warning[prefer-timestamptz]"),
        "{text}"
    );
    assert!(!text.contains("no-json"), "{text}");
    assert!(text.contains("1 error, 1 warning in 3 files"), "{text}");

    // The team's pgshift.toml turns the json ban on and the index rule down to a warning.
    write(
        dir,
        "pgshift.toml",
        "[lint.rules]\nno-json = \"error\"\nrequire-concurrent-index-creation = \"warning\"\n",
    );
    let o = pgshift(dir, &["lint", "--output", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert_eq!(o.status.code(), Some(1));
    let rules: Vec<(&str, &str)> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["rule"].as_str().unwrap(), f["severity"].as_str().unwrap()))
        .collect();
    assert_eq!(
        rules,
        vec![
            ("no-json", "error"),
            ("require-concurrent-index-creation", "warning"),
            ("prefer-timestamptz", "warning")
        ]
    );

    // Fixed: only warnings are left, and warnings do not fail the run.
    write(
        dir,
        "migrations/0001_orders.sql",
        "CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, meta text);\n",
    );
    let o = pgshift(dir, &["lint", "--output", "github"]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.lines()
            .all(|l| l.starts_with("::warning file=migrations/")),
        "{text}"
    );

    // --rules shows the levels in force here.
    let o = pgshift(dir, &["lint", "--rules"]);
    let text = stdout(&o);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} not listed:\n{text}"))
            .to_owned()
    };
    assert!(line("no-json").contains(" error "), "{text}");
    assert!(
        line("require-concurrent-index-creation").contains(" warning "),
        "{text}"
    );
    assert!(line("changing-column-type").contains(" error "), "{text}");
}

#[test]
fn the_executor_decides_what_a_file_may_do() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(
        dir,
        "m.sql",
        "ALTER TABLE orders ADD COLUMN note text;\nCREATE INDEX CONCURRENTLY orders_note ON orders (note);\n",
    );
    // pgshift sets lock_timeout and runs the index build on its own: clean.
    let o = pgshift(dir, &["lint", "m.sql"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    // Wrapped in a transaction by another tool: the build fails, and nothing limits the wait.
    let o = pgshift(dir, &["lint", "m.sql", "--executor", "transaction"]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("error[require-timeout-settings]"), "{text}");
    assert!(
        text.contains("m.sql:2:14: error[ban-concurrent-index-creation-in-transaction]"),
        "{text}"
    );
}

#[test]
fn bad_input_exits_2_naming_the_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(
        dir,
        "m.sql",
        "CREATE TABLE t (id bigint);\nALTER TABLE t ADD COLUM x int;\n",
    );
    let o = pgshift(dir, &["lint", "m.sql"]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(text.contains("m.sql:2:"), "{text}");
    assert!(
        text.contains("error[syntax-error]: SQL does not parse"),
        "{text}"
    );

    write(dir, "ok.sql", "SELECT 1;\n");
    write(dir, "pgshift.toml", "[lint.rules]\nno-jsn = \"error\"\n");
    let o = pgshift(dir, &["lint", "ok.sql"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("pgshift.toml:2:1: error: no lint rule is named `no-jsn`"),
        "{err}"
    );

    let o = pgshift(dir, &["lint", "missing.sql", "--config", "/dev/null"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.sql does not exist"));
}
