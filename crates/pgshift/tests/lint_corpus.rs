//! The lint corpus: SQL and operation files, bad and good, each saying which rules it
//! must break (`-- expect: rule rule`, or `clean`). Each folder has the pgshift.toml of a
//! team that runs its files one way (pgshift, a tool's transaction, or autocommit). The
//! rules found must be exactly the ones expected, and the human output is snapshotted: a
//! reviewer reads a change to any message in the snapshot diff.

use pgshift::lint::{self, Config, Severity};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lint/corpus")
}

/// The rules a corpus file says it breaks: its first line, or a `.expect` file beside it
/// (JSON has no comments).
fn expected(path: &Path, source: &str) -> BTreeSet<String> {
    let side = path.with_extension("expect");
    let line = match std::fs::read_to_string(&side) {
        Ok(text) => format!("expect: {text}"),
        Err(_) => source.lines().next().unwrap_or_default().to_owned(),
    };
    let (_, rules) = line
        .split_once("expect:")
        .unwrap_or_else(|| panic!("{} does not start with `-- expect:`", path.display()));
    rules
        .split_whitespace()
        .filter(|r| *r != "clean")
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_corpus_file_breaks_exactly_its_expected_rules() {
    let root = corpus();
    let mut folders: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    let mut files = 0;
    let mut sql_files = 0;
    let mut bad = 0;
    let mut failures = Vec::new();
    let mut snapshots = Vec::new();
    for folder in folders {
        let config = Config::read(&folder.join("pgshift.toml")).unwrap();
        for path in lint::collect_files(std::slice::from_ref(&folder), &folder).unwrap() {
            let source = std::fs::read_to_string(&path).unwrap();
            let shown = path.strip_prefix(&root).unwrap();
            let findings = lint::lint_source(shown, &source, &config).unwrap();
            let found: BTreeSet<String> = findings.iter().map(|f| f.rule.to_owned()).collect();
            let want = expected(&path, &source);
            if found != want {
                failures.push(format!(
                    "{}: expected {want:?}, found {found:?}",
                    shown.display()
                ));
            }
            files += 1;
            sql_files += usize::from(path.extension().is_some_and(|e| e == "sql"));
            bad += usize::from(!want.is_empty());
            let report = lint::Report {
                files: vec![shown.to_path_buf()],
                findings,
            };
            let name = shown
                .with_extension("")
                .display()
                .to_string()
                .replace('/', "__");
            snapshots.push((name, report.render_human(), source));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(sql_files >= 40, "the corpus has {sql_files} SQL files");
    assert!(bad >= 30 && files - bad >= 10, "{bad} bad of {files}");
    for (name, text, source) in snapshots {
        insta::with_settings!({
            snapshot_path => "snapshots/lint",
            prepend_module_to_snapshot => false,
            description => source,
        }, {
            insta::assert_snapshot!(name, text);
        });
    }
}

#[test]
fn every_rule_but_the_parse_error_has_a_corpus_case() {
    let root = corpus();
    let mut covered = BTreeSet::new();
    for file in lint::collect_files(std::slice::from_ref(&root), &root).unwrap() {
        let source = std::fs::read_to_string(&file).unwrap();
        covered.extend(expected(&file, &source));
    }
    let missing: Vec<&str> = lint::RULES
        .iter()
        .map(|r| r.name)
        .filter(|n| *n != "syntax-error" && !covered.contains(*n))
        .collect();
    assert!(
        missing.is_empty(),
        "rules without a corpus case: {missing:?}"
    );
}

#[test]
fn a_file_that_does_not_parse_is_located_and_exits_2() {
    let src = "ALTER TABLE orders ADD COLUMN note text;\nALTER TABLE orders ADD COLUMN x innt nott null;\n";
    let findings = lint::lint_source(Path::new("m.sql"), src, &Config::default()).unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].rule, "syntax-error");
    assert_eq!(findings[0].diagnostic.line, 2);
    let report = lint::Report {
        files: vec!["m.sql".into()],
        findings,
    };
    assert_eq!(report.exit_code(), 2);
    // It cannot be turned off: an unparsed file is an unchecked file.
    let off = Config::parse(
        Path::new("pgshift.toml"),
        "[lint.rules]\nsyntax-error = \"off\"\n",
    )
    .unwrap();
    let findings = lint::lint_source(Path::new("m.sql"), src, &off).unwrap();
    assert_eq!(findings[0].rule, "syntax-error");
    assert_eq!(findings[0].severity, Severity::Error);
}

/// What migrate refuses, lint refuses the same way: text that is not UTF-8 (located, exit
/// 2) and a file with no statement; a byte-order mark is no problem for either.
#[test]
fn files_migrate_refuses_are_syntax_errors_and_a_byte_order_mark_is_fine() {
    let dir = tempfile::tempdir().unwrap();
    let latin1 = dir.path().join("0001_latin1.sql");
    std::fs::write(&latin1, b"-- ok\nALTER TABLE t ADD COLUMN caf\xe9 int;\n").unwrap();
    let empty = dir.path().join("0002_empty.sql");
    std::fs::write(&empty, "-- nothing here yet\n").unwrap();
    let bom = dir.path().join("0003_bom.sql");
    std::fs::write(&bom, "\u{feff}CREATE TABLE t (id bigint PRIMARY KEY);\n").unwrap();
    let report = lint::lint_files(&[latin1, empty, bom.clone()], &Config::default()).unwrap();
    let found: Vec<(String, &str, usize, usize)> = report
        .findings
        .iter()
        .map(|f| {
            (
                f.diagnostic
                    .path
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                f.rule,
                f.diagnostic.line,
                f.diagnostic.column,
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            ("0001_latin1.sql".to_owned(), "syntax-error", 2, 29),
            ("0002_empty.sql".to_owned(), "syntax-error", 1, 1),
        ]
    );
    assert_eq!(report.exit_code(), 2);
    let file = pgshift::source::MigrationFile::read(&bom).unwrap();
    assert!(file.parse().is_ok(), "a byte-order mark breaks the file");
}

#[test]
fn severities_and_suppressions_follow_the_settings() {
    let src = "-- pgshift-lint: ignore-file prefer-timestamptz\nCREATE TABLE t (id bigint PRIMARY KEY, at timestamp, body jsonb);\n-- pgshift-lint: ignore require-concurrent-index-creation\nCREATE INDEX a ON orders (x);\nCREATE INDEX b ON orders (y);\n";
    let path = Path::new("m.sql");
    let default = lint::lint_source(path, src, &Config::default()).unwrap();
    let rules: Vec<(&str, usize)> = default
        .iter()
        .map(|f| (f.rule, f.diagnostic.line))
        .collect();
    // The ignore covers the index on line 4 only; jsonb is fine unless the team rule is on.
    assert_eq!(rules, vec![("require-concurrent-index-creation", 5)]);

    let config = Config::parse(
        Path::new("pgshift.toml"),
        "[lint.rules]\nno-json = \"error\"\nrequire-concurrent-index-creation = \"warning\"\n",
    )
    .unwrap();
    let team = lint::lint_source(path, src, &config).unwrap();
    let got: Vec<(&str, Severity)> = team.iter().map(|f| (f.rule, f.severity)).collect();
    assert_eq!(
        got,
        vec![
            ("no-json", Severity::Error),
            ("require-concurrent-index-creation", Severity::Warning)
        ]
    );
    let report = lint::Report {
        files: vec![path.into()],
        findings: team,
    };
    assert_eq!(report.exit_code(), 1);
    let warnings_only = lint::Report {
        files: vec![path.into()],
        findings: report
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
            .cloned()
            .collect(),
    };
    assert_eq!(warnings_only.exit_code(), 0);
}

#[test]
fn an_ignore_naming_an_unknown_rule_is_bad_input() {
    let src = "-- pgshift-lint: ignore no-such-rule\nCREATE INDEX a ON orders (x);\n";
    let err = lint::lint_source(Path::new("m.sql"), src, &Config::default()).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    let text = err.to_string();
    assert!(text.contains("m.sql:1:"), "{text}");
    assert!(text.contains("no-such-rule"), "{text}");
}

#[test]
fn json_and_github_outputs_carry_every_finding() {
    let src = "CREATE INDEX a ON orders (x);\nALTER TABLE orders ALTER COLUMN price TYPE bigint;\n";
    let path = Path::new("db/m, 1.sql");
    let findings = lint::lint_source(path, src, &Config::default()).unwrap();
    let report = lint::Report {
        files: vec![path.into()],
        findings,
    };
    let json = report.to_json();
    assert_eq!(json["errors"], 2);
    assert_eq!(json["findings"][1]["rule"], "changing-column-type");
    assert_eq!(json["findings"][1]["line"], 2);
    assert_eq!(json["exit_code"], 1);
    let github = report.render_github();
    let lines: Vec<&str> = github.lines().collect();
    assert_eq!(lines.len(), 2, "{github}");
    assert!(
        lines[0].starts_with("::error file=db/m%2C 1.sql,line=1,col=1,title=pgshift lint%3A require-concurrent-index-creation::"),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("%0Ahint: "), "{}", lines[0]);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    const PIECES: &[&str] = &[
        "CREATE TABLE t (id int PRIMARY KEY, j json)",
        "CREATE INDEX i ON t (id)",
        "CREATE INDEX CONCURRENTLY i ON orders (id)",
        "ALTER TABLE orders ADD COLUMN c uuid DEFAULT gen_random_uuid()",
        "ALTER TABLE orders ALTER COLUMN c SET NOT NULL",
        "ALTER TABLE orders ADD CONSTRAINT k CHECK (c IS NOT NULL) NOT VALID",
        "ALTER TABLE orders VALIDATE CONSTRAINT k",
        "UPDATE orders SET c = NULL",
        "BEGIN",
        "COMMIT",
        "SET lock_timeout = '1s'",
        "-- pgshift-lint: ignore changing-column-type\nALTER TABLE orders ALTER COLUMN c TYPE text",
        "DROP INDEX i",
        "ALTER TABLE \"Odd \"\"name\" RENAME TO \"ünï\"",
        "SELECT 1 /* comment ; */",
        "ALTER TABLE orders ADD COLUM broken",
    ];

    proptest! {
        /// Any sequence of statements, under any executor: no panic, and every finding
        /// points inside the file.
        #[test]
        fn findings_stay_inside_the_file(
            picks in proptest::collection::vec(0..PIECES.len(), 0..12),
            executor in 0..3usize,
        ) {
            let source: String = picks.iter().map(|i| format!("{};\n", PIECES[*i])).collect();
            let config = Config {
                executor: [lint::SqlExecutor::Pgshift, lint::SqlExecutor::Transaction, lint::SqlExecutor::Autocommit][executor],
                ..Config::default()
            };
            let findings = lint::lint_source(Path::new("p.sql"), &source, &config).unwrap();
            let lines = source.lines().count().max(1);
            for f in &findings {
                prop_assert!(f.diagnostic.line >= 1 && f.diagnostic.line <= lines, "{:?}", f);
                prop_assert!(f.diagnostic.column >= 1);
                prop_assert!(lint::rules::find(f.rule).is_some());
            }
        }

        /// Arbitrary text never panics the linter.
        #[test]
        fn arbitrary_text_does_not_panic(source in "\\PC{0,200}") {
            let _ = lint::lint_source(Path::new("p.sql"), &source, &Config::default());
            let _ = lint::lint_source(Path::new("p.yaml"), &source, &Config::default());
        }
    }
}
