//! Reading a migration file in any of its syntaxes, with located errors.

use super::Migration;
use crate::diag::Diagnostic;
use std::path::Path;

/// The syntax of a structured migration file, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Toml,
    Yaml,
    Json,
}

impl Format {
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "toml" => Some(Format::Toml),
            "yaml" | "yml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// What a migration looks like, in each syntax.
fn shape_hint(format: Format) -> &'static str {
    match format {
        Format::Yaml => "a migration is `operations:` followed by a list of operations, each one key naming the operation (create_table, add_column, alter_column, sql, ...) with its fields; see docs/operations.md",
        Format::Toml => "a migration is `[[operations]]` tables, each followed by `[operations.<name>]` (create_table, add_column, alter_column, sql, ...) and its fields; see docs/operations.md",
        Format::Json => "a migration is {\"operations\": [...]}, a list of objects each with one key naming the operation (create_table, add_column, alter_column, sql, ...); see docs/operations.md",
    }
}

/// Parses and checks a structured migration file.
pub fn parse_migration(path: &Path, source: &str, format: Format) -> Result<Migration, Diagnostic> {
    parse_with_format(path, source, format).map_err(|d| at_refused_fragment(d, path, source))
}

/// A refused SQL fragment is pointed at where its text is, not where the parser was (the
/// start of the mapping that holds it, for YAML).
fn at_refused_fragment(d: Diagnostic, path: &Path, source: &str) -> Diagnostic {
    let Some(text) = refused_text(&d.message) else {
        return d;
    };
    let first_line = text.lines().next().unwrap_or(&text).trim();
    if first_line.is_empty() {
        return d;
    }
    // From the line the parser reported, then from the start.
    let from = source
        .split_inclusive('\n')
        .take(d.line.saturating_sub(1))
        .map(str::len)
        .sum::<usize>();
    let found = source
        .get(from..)
        .and_then(|rest| rest.find(first_line).map(|i| from + i))
        .or_else(|| source.find(first_line));
    match found {
        Some(offset) => {
            let hint = d.hint.clone();
            let mut moved = Diagnostic::at_offset(path, source, offset, d.message);
            moved.hint = hint;
            moved
        }
        None => d,
    }
}

/// The fragment text in a refusal's message (`... "<text>" is refused: ...`), unescaped.
fn refused_text(message: &str) -> Option<String> {
    let end = message.find("\" is refused:")?;
    let start = message[..end].find('"')? + 1;
    let quoted = &message[start..end];
    let mut out = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some('n')) => {
                out.push('\n');
                chars.next();
            }
            ('\\', Some(next)) => {
                out.push(next);
                chars.next();
            }
            (c, _) => out.push(c),
        }
    }
    Some(out)
}

fn parse_with_format(path: &Path, source: &str, format: Format) -> Result<Migration, Diagnostic> {
    match format {
        Format::Toml => toml::from_str::<Migration>(source).map_err(|e| {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            Diagnostic::at_offset(path, source, offset, e.message().trim().to_owned())
                .with_hint(hint_for(e.message(), source, Format::Toml))
        }),
        Format::Json => serde_json::from_str::<Migration>(source).map_err(|e| {
            let message = strip_location(&e.to_string());
            Diagnostic::at_line_col(path, source, e.line(), e.column(), message.clone())
                .with_hint(hint_for(&message, source, Format::Json))
        }),
        Format::Yaml => serde_yaml_ng::from_str::<Migration>(source).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            let message = strip_location(&e.to_string());
            Diagnostic::at_line_col(path, source, line, column, message.clone())
                .with_hint(hint_for(&message, source, Format::Yaml))
        }),
    }
}

/// serde_json and serde_yaml append " at line X column Y" to their messages; the diagnostic
/// says where already.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

fn hint_for(message: &str, source: &str, format: Format) -> String {
    if message.contains("\" is refused:") {
        return "write only that fragment: no `;`, no comment, no second statement; a whole SELECT is allowed only in `up` and `down`".to_owned();
    }
    let named = |after: &str| -> Option<String> {
        let rest = message.split(after).nth(1)?;
        Some(rest.split('`').nth(1)?.to_owned())
    };
    if message.contains("unknown field") || message.contains("unknown variant") {
        let what = if message.contains("unknown field") {
            "field"
        } else {
            "operation"
        };
        let given = named(&format!(
            "unknown {}",
            if what == "field" { "field" } else { "variant" }
        ));
        let expected: Vec<&str> = message
            .split("expected")
            .nth(1)
            .map(|e| e.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        if let Some(best) = given.as_deref().and_then(|g| closest(g, &expected)) {
            return format!(
                "did you mean `{best}`? (the {what}s this accepts are listed in the message)"
            );
        }
        return format!("remove the {what} or fix its spelling; the ones this accepts are listed in the message");
    }
    if message.contains("missing field") {
        if let Some(field) = named("missing field") {
            // A key that is in the file but not where it belongs: usually its indentation.
            let elsewhere = source.lines().enumerate().find(|(_, l)| {
                let t = l.trim_start().trim_start_matches("- ");
                t.starts_with(&format!("{field}:"))
                    || t.starts_with(&format!("{field} ="))
                    || t.starts_with(&format!("\"{field}\""))
            });
            if let Some((i, line)) = elsewhere {
                let column = line.len() - line.trim_start().len() + 1;
                return match format {
                    Format::Yaml => format!("`{field}` is on line {} (column {column}) but not inside this mapping: the fields of one mapping must be indented alike", i + 1),
                    _ => format!("`{field}` is on line {} but not inside this table or object: move it there", i + 1),
                };
            }
            return format!("add the field `{field}`");
        }
        return "add the missing field".to_owned();
    }
    if message.contains("invalid type") || message.contains("invalid value") {
        return "write the value as the message expects: text in quotes, numbers and true/false without".to_owned();
    }
    shape_hint(format).to_owned()
}

/// The expected name nearest to `given`, if it is near enough to be a misspelling.
fn closest<'a>(given: &str, expected: &[&'a str]) -> Option<&'a str> {
    expected
        .iter()
        .map(|e| (edit_distance(given, e), *e))
        .filter(|(d, e)| *d <= (e.len().max(given.len()) / 2).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, e)| e)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Operation;

    fn parse(name: &str, src: &str) -> Result<Migration, Diagnostic> {
        let path = Path::new(name);
        parse_migration(path, src, Format::from_path(path).unwrap())
    }

    #[test]
    fn toml_yaml_and_json_read_the_same_model() {
        let toml = r#"
[[operations]]
[operations.add_column]
table = "orders"
up = "price * 100"
[operations.add_column.column]
name = "price_cents"
type = "bigint"
nullable = true
"#;
        let yaml = "operations:\n  - add_column:\n      table: orders\n      up: price * 100\n      column:\n        name: price_cents\n        type: bigint\n        nullable: true\n";
        let json = r#"{"operations":[{"add_column":{"table":"orders","up":"price * 100","column":{"name":"price_cents","type":"bigint","nullable":true}}}]}"#;
        let a = parse("m.toml", toml).unwrap();
        let b = parse("m.yaml", yaml).unwrap();
        let c = parse("m.json", json).unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        match &a.operations[0] {
            Operation::AddColumn(op) => {
                assert_eq!(op.column.name, "price_cents");
                assert!(op.column.nullable);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_collation_or_operator_class_may_name_its_schema_and_a_dot_in_a_name_is_the_name() {
        let yaml = "operations:\n  - create_index:\n      name: i\n      table: t\n      columns:\n        - column: a\n          collate: en_US.utf8\n        - column: b\n          collate: {schema: ops, name: bytes}\n          opclass: {schema: pg_catalog, name: text_pattern_ops}\n";
        let m = parse("m.yaml", yaml).unwrap();
        let Operation::CreateIndex(ix) = &m.operations[0] else {
            panic!("{m:?}");
        };
        let sql: Vec<String> = ix
            .columns
            .iter()
            .map(|c| c.collate.as_ref().unwrap().sql())
            .collect();
        assert_eq!(sql, [r#""en_US.utf8""#, r#""ops"."bytes""#]);
        let op = ix.columns[1].opclass.as_ref().unwrap();
        assert_eq!(op.sql_name(), r#""pg_catalog"."text_pattern_ops""#);
        let bad = "operations:\n  - create_index:\n      name: i\n      table: t\n      columns:\n        - column: a\n          collate: {schema: ops}\n";
        assert!(parse("m.yaml", bad).is_err());
    }

    #[test]
    fn unknown_field_is_located() {
        let yaml = "operations:\n  - drop_table:\n      name: t\n      cascade: true\n";
        let d = parse("m.yaml", yaml).unwrap_err();
        assert_eq!((d.line, d.column), (4, 7), "{d}");
        assert!(d.message.contains("unknown field `cascade`"), "{d}");
    }

    #[test]
    fn misspellings_get_a_did_you_mean_and_a_misplaced_key_says_where_it_is() {
        let yaml = "operations:\n  - add_column:\n      tabel: t\n      column:\n        name: c\n        type: int\n";
        let d = parse("m.yaml", yaml).unwrap_err();
        assert!(
            d.hint.as_deref().unwrap().contains("did you mean `table`?"),
            "{d}"
        );
        let json = r#"{"operations": [{"add_colum": {}}]}"#;
        let d = parse("m.json", json).unwrap_err();
        assert!(
            d.hint
                .as_deref()
                .unwrap()
                .contains("did you mean `add_column`?"),
            "{d}"
        );
        // `type` one level too far out: under the operation instead of the column.
        let yaml = "operations:\n  - add_column:\n      table: t\n      column:\n        name: c\n      type: int\n";
        let d = parse("m.yaml", yaml).unwrap_err();
        assert!(
            d.hint.as_deref().unwrap().contains("`type` is on line 6"),
            "{d}"
        );
        // The YAML shape hint does not appear under TOML or JSON errors.
        let d = parse(
            "m.toml",
            "[[operations]]\n[operations.add_column]\ntable = 1\n",
        )
        .unwrap_err();
        assert!(!d.hint.as_deref().unwrap().contains("operations:"), "{d}");
        let d = parse("m.json", "{\"operations\": 5}").unwrap_err();
        assert!(!d.hint.as_deref().unwrap().contains("`operations:`"), "{d}");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(closest("zzzz", &["table", "column"]), None);
    }

    #[test]
    fn toml_syntax_error_is_located() {
        let d = parse(
            "m.toml",
            "[[operations]]\n[operations.drop_table\nname = 1\n",
        )
        .unwrap_err();
        assert_eq!(d.line, 2, "{d}");
    }

    #[test]
    fn json_error_is_located() {
        let d = parse(
            "m.json",
            "{\"operations\": [\n  {\"drop_table\": {\"name\": }}]}",
        )
        .unwrap_err();
        assert_eq!(d.line, 2, "{d}");
    }

    #[test]
    fn alter_column_that_changes_nothing_is_refused_with_its_line() {
        let yaml = "operations:\n  - alter_column:\n      table: t\n      column: c\n      up: c\n";
        let d = parse("m.yaml", yaml).unwrap_err();
        assert!(d.message.contains("changes nothing"), "{d}");
        assert!(d.line >= 2, "{d}");
    }

    #[test]
    fn long_names_are_refused() {
        let yaml = format!(
            "operations:\n  - drop_table:\n      name: {}\n",
            "x".repeat(64)
        );
        let d = parse("m.yaml", &yaml).unwrap_err();
        assert!(d.message.contains("63 bytes"), "{d}");
        assert_eq!(d.line, 3, "{d}");
    }

    #[test]
    fn default_null_differs_from_absent() {
        let yaml = "operations:\n  - alter_column:\n      table: t\n      column: c\n      default: null\n      up: c\n      down: c\n";
        match &parse("m.yaml", yaml).unwrap().operations[0] {
            Operation::AlterColumn(op) => {
                assert_eq!(op.default, Some(None));
                assert_eq!(op.comment, None);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn every_pgroll_example_parses() {
        let dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/compat/pgroll-examples");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            eprintln!("skipped: {} does not exist", dir.display());
            return;
        };
        let mut count = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            if Format::from_path(&path).is_none() {
                continue;
            }
            let src = std::fs::read_to_string(&path).unwrap();
            if let Err(d) = parse_migration(&path, &src, Format::from_path(&path).unwrap()) {
                panic!("{d}");
            }
            count += 1;
        }
        assert_eq!(count, 56);
    }
}
