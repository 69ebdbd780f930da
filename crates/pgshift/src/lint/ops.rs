//! The rules over structured migrations (TOML, YAML, JSON). pgshift carries out their
//! operations the lock-safe way already, so what is left to check is what the file asks
//! for: the types of new columns (json, int keys, timestamp, ...) and the raw SQL of `sql`
//! operations, which runs in pgshift's transaction like a `.sql` migration.

use super::config::SqlExecutor;
use super::sql::type_problems;
use super::{Linted, RawFinding};
use crate::model::{Migration, Operation};

pub(crate) fn lint(source: &str, migration: &Migration) -> Linted {
    let starts = operation_starts(source, &migration.operations);
    let mut findings = Vec::new();
    let mut anchors = Vec::new();
    for (i, op) in migration.operations.iter().enumerate() {
        let start = starts[i];
        let end = starts.get(i + 1).copied().unwrap_or(source.len());
        let anchor = crate::diag::line_col(source, start).0;
        anchors.push(anchor);
        let mut at = At {
            source,
            start,
            end,
            anchor,
            findings: &mut findings,
        };
        let fragments = op.fragments();
        for t in &fragments.types {
            at.data_type(t.column, t.data_type, t.key);
        }
        for sql in &fragments.sql {
            at.sql(sql);
        }
    }
    Linted { findings, anchors }
}

/// Where each operation's key (`create_table`, ...) stands in the file, in order.
fn operation_starts(source: &str, ops: &[Operation]) -> Vec<usize> {
    let mut out = Vec::with_capacity(ops.len());
    let mut from = 0;
    for op in ops {
        let kind = op.kind();
        let found = find_key(source, from, kind).unwrap_or(from);
        out.push(found);
        from = (found + kind.len()).min(source.len());
    }
    out
}

/// The next `kind` at or after `from` that is written as a key: `kind:` (YAML), `"kind":`
/// (JSON), `[operations.kind]` or `kind = {` (TOML); not a longer name, not a value.
fn find_key(source: &str, from: usize, kind: &str) -> Option<usize> {
    let mut at = from;
    while let Some(i) = source.get(at..)?.find(kind) {
        let pos = at + i;
        let before = source[..pos].chars().next_back();
        let after = source[pos + kind.len()..]
            .trim_start_matches([' ', '\t'])
            .chars()
            .next();
        let word_start = !before.is_some_and(|c| c.is_alphanumeric() || c == '_');
        if word_start && matches!(after, Some(']' | ':' | '"' | '\'' | '=')) {
            return Some(pos);
        }
        at = pos + kind.len();
    }
    None
}

struct At<'a> {
    source: &'a str,
    start: usize,
    end: usize,
    anchor: usize,
    findings: &'a mut Vec<RawFinding>,
}

impl At<'_> {
    /// The offset of `needle` within this operation, or the operation's start.
    fn locate(&self, needle: &str, after: usize) -> usize {
        self.source
            .get(after.max(self.start)..self.end)
            .and_then(|s| s.find(needle))
            .map(|i| after.max(self.start) + i)
            .unwrap_or(self.start)
    }

    fn data_type(&mut self, column: &str, data_type: &str, key: bool) {
        // The type as PostgreSQL's parser reads it: `integer`, `INT4` and `int` are one type.
        let parsed = pg_query::parse(&format!("CREATE TABLE t (c {data_type})")).ok();
        let type_name = parsed.as_ref().and_then(|p| {
            let stmt = p.protobuf.stmts.first()?.stmt.as_ref()?.node.as_ref()?;
            let pg_query::NodeEnum::CreateStmt(c) = stmt else {
                return None;
            };
            match c.table_elts.first()?.node.as_ref()? {
                pg_query::NodeEnum::ColumnDef(col) => col.type_name.clone(),
                _ => None,
            }
        });
        let Some(t) = type_name else {
            return;
        };
        let name_at = self.locate(column, self.start);
        let offset = self.locate(data_type, name_at);
        for (rule, message, hint) in type_problems(
            &super::sql::type_name(&t),
            !t.typmods.is_empty(),
            column,
            key,
        ) {
            self.findings
                .push(RawFinding::new(rule, offset, self.anchor, message, hint));
        }
    }

    /// Raw SQL of a `sql` operation: the SQL rules as pgshift runs it, each finding placed
    /// on the line of the file where its statement's first line is written.
    fn sql(&mut self, text: &str) {
        let linted = super::sql::lint(text, SqlExecutor::Pgshift, true);
        for f in linted.findings {
            let (line, _) = crate::diag::line_col(text, f.offset);
            let line_text = text.lines().nth(line - 1).unwrap_or("").trim();
            let offset = if line_text.is_empty() {
                self.start
            } else {
                self.locate(line_text, self.start)
            };
            self.findings.push(RawFinding {
                offset,
                anchor_line: self.anchor,
                ..f
            });
        }
    }
}
