//! Raw SQL, split into statements and classified by the real PostgreSQL parser (pg_query).
//!
//! The executor needs to know, for each statement, whether it may run inside a transaction
//! (CREATE INDEX CONCURRENTLY, VACUUM, ... may not), what kind of statement it is (for its
//! statement_timeout), and for concurrent index builds which index and table they touch (to
//! find and rebuild an INVALID index left by a failed build).

use crate::diag::Diagnostic;
use pg_query::protobuf::node::Node;
use pg_query::protobuf::{ObjectType, ReindexObjectType, Token};
use std::path::Path;

/// What kind of statement, for timeouts and for how it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementKind {
    /// Schema changes: short, but they take strong locks.
    Ddl,
    /// Statements that must run outside a transaction block (CONCURRENTLY, VACUUM, ...).
    Concurrent,
    /// Data changes and everything else.
    Dml,
}

/// A concurrent index statement and what it works on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ConcurrentIndex {
    /// CREATE [UNIQUE] INDEX CONCURRENTLY
    Create {
        schema: Option<String>,
        table: String,
        name: Option<String>,
    },
    /// DROP INDEX CONCURRENTLY
    Drop {
        schema: Option<String>,
        name: String,
    },
    /// ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY (not an index, but the same care:
    /// an interrupted detach leaves the partition pending, which FINALIZE completes).
    DetachPartition {
        schema: String,
        table: String,
        partition: String,
    },
    /// REINDEX ... CONCURRENTLY: a failure leaves `*_ccnew` / `*_ccold` indexes behind.
    Reindex {
        schema: Option<String>,
        table: Option<String>,
        index: Option<String>,
    },
}

/// One statement, wherever it comes from: a `.sql` file's (split here), a plan's step, or
/// pgshift's own; what the executor runs. Stored in plans as part of a step.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Statement {
    pub sql: String,
    pub kind: StatementKind,
    /// False for statements PostgreSQL refuses to run inside a transaction block.
    pub transactional: bool,
    /// Set for concurrent index statements: what to look for when a build fails or resumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrent_index: Option<ConcurrentIndex>,
    /// 1-based line of the statement's first character in the user's file; 0 for a
    /// statement pgshift made.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub line: usize,
    /// Where the user wrote the statement (`path:line`), named when it fails. Set only for
    /// the user's own statements: the server's notices and warnings on them are passed on,
    /// while pgshift's own (`DROP ... IF EXISTS` and the like) keep theirs to themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Set for pgshift's statements that add a constraint to a partitioned table whose
    /// partitions already have it validated (or its index built): PostgreSQL takes those
    /// over, with no scan and no build, which `plan` says.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub takes_over: bool,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Statement {
    /// A statement of pgshift's own that runs in a transaction.
    pub fn ddl(sql: impl Into<String>) -> Statement {
        Statement {
            sql: sql.into(),
            kind: StatementKind::Ddl,
            transactional: true,
            concurrent_index: None,
            line: 0,
            origin: None,
            takes_over: false,
        }
    }

    /// A statement of pgshift's own that runs outside a transaction (CONCURRENTLY).
    pub fn concurrent(
        sql: impl Into<String>,
        concurrent_index: Option<ConcurrentIndex>,
    ) -> Statement {
        Statement {
            kind: StatementKind::Concurrent,
            transactional: false,
            concurrent_index,
            ..Statement::ddl(sql)
        }
    }
}

/// Splits `source` into statements and classifies each.
pub fn split(path: &Path, source: &str) -> Result<Vec<Statement>, Diagnostic> {
    let parsed = match pg_query::parse(source) {
        Ok(p) => p,
        Err(e) => return Err(locate_parse_error(path, source, &e)),
    };
    // The server would cut the name with only a NOTICE; a structured file is refused for
    // the same name, and so is this.
    let scanned = scan(source);
    if let Some((at, name)) = scanned.long_identifiers.into_iter().next() {
        return Err(Diagnostic::at_offset(
            path,
            source,
            at,
            format!(
                "the name {name:?} is {} bytes long; PostgreSQL keeps only the first 63 bytes of a name",
                name.len()
            ),
        )
        .with_hint("shorten the name to 63 bytes or fewer: a cut name no longer matches what the file says, and two names that start alike become one"));
    }
    let mut out = Vec::new();
    let tokens = scanned.starts;
    for raw in &parsed.protobuf.stmts {
        let start = usize::try_from(raw.stmt_location).unwrap_or(0);
        let end = match usize::try_from(raw.stmt_len) {
            Ok(0) | Err(_) => source.len(),
            Ok(len) => (start + len).min(source.len()),
        };
        // The statement's first token: the comments before it are not its line.
        let first = tokens
            .iter()
            .copied()
            .find(|t| *t >= start && *t < end)
            .unwrap_or(start);
        let text = source.get(start..end).unwrap_or_default();
        let trimmed_start = start + (text.len() - text.trim_start().len());
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let (line, _) = crate::diag::line_col(source, first.max(trimmed_start));
        let node = raw.stmt.as_ref().and_then(|n| n.node.as_ref());
        if let Some(Node::TransactionStmt(_)) = node {
            return Err(Diagnostic::at_offset(
                path,
                source,
                trimmed_start,
                "transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT) in a migration",
            )
            .with_hint("remove it: pgshift runs each migration's statements in a transaction itself, and statements that cannot run in one (CONCURRENTLY, VACUUM) on their own"));
        }
        let mut stmt = classify(text.to_owned(), line, node);
        stmt.origin = Some(format!("{}:{line}", path.display()));
        out.push(stmt);
    }
    if out.is_empty() {
        return Err(Diagnostic::at_line_col(
            path,
            source,
            1,
            1,
            "the migration has no SQL statement",
        )
        .with_hint("add the statements to run, or delete the file"));
    }
    Ok(out)
}

/// What a serial pseudo-type (CREATE TABLE shorthand for an integer column with its own
/// sequence) stands for, given in lower case: `serial` is `integer`, and so on.
pub(crate) fn serial_type(name: &str) -> Option<&'static str> {
    match name {
        "serial" | "serial4" => Some("integer"),
        "bigserial" | "serial8" => Some("bigint"),
        "smallserial" | "serial2" => Some("smallint"),
        _ => None,
    }
}

/// False for a statement PostgreSQL refuses to run inside a transaction block.
pub(crate) fn is_transactional(node: &Node) -> bool {
    classify(String::new(), 0, Some(node)).transactional
}

fn classify(sql: String, line: usize, node: Option<&Node>) -> Statement {
    let mut stmt = Statement {
        line,
        ..Statement::ddl(sql)
    };
    let Some(node) = node else {
        return stmt;
    };
    let non_transactional = |stmt: &mut Statement| {
        stmt.kind = StatementKind::Concurrent;
        stmt.transactional = false;
    };
    match node {
        Node::IndexStmt(ix) if ix.concurrent => {
            non_transactional(&mut stmt);
            if let Some(rel) = &ix.relation {
                stmt.concurrent_index = Some(ConcurrentIndex::Create {
                    schema: non_empty(&rel.schemaname),
                    table: rel.relname.clone(),
                    name: non_empty(&ix.idxname),
                });
            }
        }
        Node::DropStmt(drop) if drop.concurrent => {
            non_transactional(&mut stmt);
            if drop.remove_type == ObjectType::ObjectIndex as i32 && drop.objects.len() == 1 {
                if let Some((schema, name)) = object_name(&drop.objects[0]) {
                    stmt.concurrent_index = Some(ConcurrentIndex::Drop { schema, name });
                }
            }
        }
        Node::ReindexStmt(re) if has_option(&re.params, "concurrently") => {
            non_transactional(&mut stmt);
            let rel = re.relation.as_ref();
            let schema = rel.and_then(|r| non_empty(&r.schemaname));
            let relname = rel.map(|r| r.relname.clone());
            stmt.concurrent_index =
                Some(if re.kind == ReindexObjectType::ReindexObjectIndex as i32 {
                    ConcurrentIndex::Reindex {
                        schema,
                        table: None,
                        index: relname,
                    }
                } else {
                    ConcurrentIndex::Reindex {
                        schema,
                        table: relname,
                        index: None,
                    }
                });
        }
        Node::VacuumStmt(_)
        | Node::CreatedbStmt(_)
        | Node::DropdbStmt(_)
        | Node::AlterSystemStmt(_)
        | Node::CreateTableSpaceStmt(_)
        | Node::DropTableSpaceStmt(_)
        | Node::CreateSubscriptionStmt(_)
        | Node::DropSubscriptionStmt(_) => non_transactional(&mut stmt),
        Node::InsertStmt(_)
        | Node::UpdateStmt(_)
        | Node::DeleteStmt(_)
        | Node::MergeStmt(_)
        | Node::SelectStmt(_)
        | Node::CopyStmt(_)
        | Node::DoStmt(_)
        | Node::CallStmt(_)
        | Node::VariableSetStmt(_) => stmt.kind = StatementKind::Dml,
        _ => {}
    }
    stmt
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

fn has_option(params: &[pg_query::protobuf::Node], name: &str) -> bool {
    params.iter().any(|p| match &p.node {
        Some(Node::DefElem(d)) => d.defname.eq_ignore_ascii_case(name),
        _ => false,
    })
}

/// `schema.name` or `name` from a DROP's object list.
fn object_name(object: &pg_query::protobuf::Node) -> Option<(Option<String>, String)> {
    let Some(Node::List(list)) = &object.node else {
        return None;
    };
    let parts: Vec<String> = list
        .items
        .iter()
        .filter_map(|item| match &item.node {
            Some(Node::String(s)) => Some(s.sval.clone()),
            _ => None,
        })
        .collect();
    match parts.as_slice() {
        [name] => Some((None, name.clone())),
        [schema, name] => Some((Some(schema.clone()), name.clone())),
        _ => None,
    }
}

/// A parse error at the parser's own cursor, not at a search for the token it names.
fn locate_parse_error(path: &Path, source: &str, error: &pg_query::Error) -> Diagnostic {
    let (offset, message) = parse_error_at(source, error);
    Diagnostic::at_offset(path, source, offset, format!("SQL does not parse: {message}"))
        .with_hint("fix the statement; pgshift reads SQL with PostgreSQL's own parser, so this is what the server would say")
}

/// The byte offset of a parse error in `source`, and the parser's message.
///
/// The pg_query crate drops the error's position, so the parser is asked again through
/// libpg_query's C entry point, which keeps PostgreSQL's `cursorpos` (1-based, counted in
/// characters). Without a position (an error at the end of input, or a NUL byte) the error
/// is placed at the start of the first statement that fails alone.
pub(crate) fn parse_error_at(source: &str, error: &pg_query::Error) -> (usize, String) {
    let message = match error {
        pg_query::Error::Parse(m) | pg_query::Error::Scan(m) | pg_query::Error::Split(m) => {
            m.clone()
        }
        other => other.to_string(),
    };
    if let Some(chars) = cursor_position(source) {
        let offset = source
            .char_indices()
            .nth(chars)
            .map(|(i, _)| i)
            .unwrap_or(source.len());
        return (offset, message);
    }
    let mut offset = 0;
    if let Ok(pieces) = pg_query::split_with_scanner(source) {
        for piece in pieces {
            let Some(at) = piece_offset(source, piece) else {
                continue;
            };
            if pg_query::parse(piece).is_err() {
                offset = at + (piece.len() - piece.trim_start().len());
                break;
            }
        }
    }
    (offset, message)
}

/// libpg_query's error and parse result (pg_query.h), as far as they are read here.
#[repr(C)]
struct PgQueryError {
    message: *mut std::os::raw::c_char,
    funcname: *mut std::os::raw::c_char,
    filename: *mut std::os::raw::c_char,
    lineno: std::os::raw::c_int,
    cursorpos: std::os::raw::c_int,
    context: *mut std::os::raw::c_char,
}

#[repr(C)]
struct PgQueryParseResult {
    parse_tree: *mut std::os::raw::c_char,
    stderr_buffer: *mut std::os::raw::c_char,
    error: *mut PgQueryError,
}

extern "C" {
    // Linked from the libpg_query that the pg_query crate builds and bundles.
    fn pg_query_parse(input: *const std::os::raw::c_char) -> PgQueryParseResult;
    fn pg_query_free_parse_result(result: PgQueryParseResult);
}

/// The 0-based character index at which PostgreSQL's parser stopped, if it gave one.
fn cursor_position(source: &str) -> Option<usize> {
    let input = std::ffi::CString::new(source).ok()?;
    // SAFETY: `input` is a NUL-terminated string that outlives the call; the result is read
    // only while it is alive (its error pointer is checked for NULL) and freed exactly once
    // by libpg_query's own function.
    unsafe {
        let result = pg_query_parse(input.as_ptr());
        let position = if result.error.is_null() {
            None
        } else {
            usize::try_from((*result.error).cursorpos)
                .ok()
                .filter(|p| *p > 0)
                .map(|p| p - 1)
        };
        pg_query_free_parse_result(result);
        position
    }
}

fn piece_offset(source: &str, piece: &str) -> Option<usize> {
    let base = source.as_ptr() as usize;
    let at = piece.as_ptr() as usize;
    (at >= base && at <= base + source.len()).then(|| at - base)
}

/// What one scan of a file tells: where each token that is not a comment starts, and the
/// identifiers longer than PostgreSQL keeps (offset, name as written; the parser has cut
/// them already).
pub(crate) struct Scanned {
    pub starts: Vec<usize>,
    pub long_identifiers: Vec<(usize, String)>,
}

pub(crate) fn scan(source: &str) -> Scanned {
    let tokens = pg_query::scan(source).map(|s| s.tokens).unwrap_or_default();
    let starts = tokens
        .iter()
        .filter(|t| t.token != Token::SqlComment as i32 && t.token != Token::CComment as i32)
        .filter_map(|t| usize::try_from(t.start).ok())
        .collect();
    let long_identifiers = tokens
        .iter()
        .filter(|t| t.token == Token::Ident as i32)
        .filter_map(|t| {
            let text = source.get(usize::try_from(t.start).ok()?..usize::try_from(t.end).ok()?)?;
            // A quoted name's doubled quotes are one character of the name.
            let name = match text.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
                Some(quoted) => quoted.replace("\"\"", "\""),
                None => text.to_owned(),
            };
            (name.len() > crate::quote::MAX_IDENTIFIER_BYTES).then_some((t.start as usize, name))
        })
        .collect();
    Scanned {
        starts,
        long_identifiers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_ok(src: &str) -> Vec<Statement> {
        split(Path::new("m.sql"), src).unwrap()
    }

    #[test]
    fn splits_and_classifies() {
        let src = "CREATE TABLE t (id int);\n\nINSERT INTO t VALUES (1);\nCREATE INDEX CONCURRENTLY t_id ON s.t (id);\nDROP INDEX CONCURRENTLY s.t_id;\nREINDEX INDEX CONCURRENTLY t_id;\nVACUUM t;\n";
        let stmts = split_ok(src);
        let summary: Vec<_> = stmts
            .iter()
            .map(|s| (s.line, s.kind, s.transactional))
            .collect();
        assert_eq!(
            summary,
            vec![
                (1, StatementKind::Ddl, true),
                (3, StatementKind::Dml, true),
                (4, StatementKind::Concurrent, false),
                (5, StatementKind::Concurrent, false),
                (6, StatementKind::Concurrent, false),
                (7, StatementKind::Concurrent, false),
            ]
        );
        assert_eq!(stmts[0].sql, "CREATE TABLE t (id int)");
        assert_eq!(
            stmts[2].concurrent_index,
            Some(ConcurrentIndex::Create {
                schema: Some("s".into()),
                table: "t".into(),
                name: Some("t_id".into())
            })
        );
        assert_eq!(
            stmts[3].concurrent_index,
            Some(ConcurrentIndex::Drop {
                schema: Some("s".into()),
                name: "t_id".into()
            })
        );
    }

    #[test]
    fn dollar_quoted_bodies_stay_whole() {
        let src = "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;\nSELECT f();";
        let stmts = split_ok(src);
        assert_eq!(stmts.len(), 2);
        assert!(stmts[0].sql.ends_with("$$"));
    }

    #[test]
    fn parse_error_points_at_the_bad_statement() {
        let src = "CREATE TABLE a (id int);\nCREATE TABLE b (id int);\nALTER TABLE b ADD COLUMN x innt nott null;\n";
        let d = split(Path::new("m.sql"), src).unwrap_err();
        assert_eq!(d.line, 3, "{d}");
        assert!(d.message.contains("syntax error"), "{d}");
    }

    #[test]
    fn parse_error_is_at_the_parsers_cursor_not_at_the_first_match_of_its_token() {
        // "int" occurs first on line 1 and inside "points"; the parser stops at the second
        // "int" of line 2 (COLUM is read as the column's name, c as its type).
        let src = "CREATE TABLE points (id int);\nALTER TABLE points ADD COLUM c int;\n";
        let d = split(Path::new("m.sql"), src).unwrap_err();
        assert_eq!((d.line, d.column), (2, 32), "{d}");
        // Columns count characters, not bytes, after multi-byte text.
        let src = "-- prix en €\nSELECT 'é' FROM WHERE;\n";
        let d = split(Path::new("m.sql"), src).unwrap_err();
        assert_eq!((d.line, d.column), (2, 17), "{d}");
    }

    #[test]
    fn names_longer_than_postgresql_keeps_are_refused() {
        let long = "c".repeat(70);
        let src = format!("CREATE TABLE t (id int);\nALTER TABLE t ADD COLUMN {long} int;\n");
        let d = split(Path::new("m.sql"), &src).unwrap_err();
        assert_eq!((d.line, d.column), (2, 26), "{d}");
        assert!(d.message.contains("70 bytes"), "{d}");
        let quoted = format!("CREATE TABLE \"{}\" (id int);", "q".repeat(64));
        assert!(split(Path::new("m.sql"), &quoted).is_err());
        let fits = format!("CREATE TABLE {} (id int);", "x".repeat(63));
        assert!(split(Path::new("m.sql"), &fits).is_ok());
    }

    #[test]
    fn a_statements_line_is_that_of_its_first_token_not_of_the_comments_before_it() {
        let src = "CREATE TABLE a (id int);\n\n-- why the index:\n-- it serves the report\nCREATE INDEX a_id ON a (id);\n";
        let lines: Vec<usize> = split_ok(src).iter().map(|s| s.line).collect();
        assert_eq!(lines, vec![1, 5]);
    }

    #[test]
    fn transaction_control_is_refused() {
        let d = split(
            Path::new("m.sql"),
            "BEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\n",
        )
        .unwrap_err();
        assert_eq!(d.line, 1);
    }

    #[test]
    fn empty_file_is_refused() {
        assert!(split(Path::new("m.sql"), "-- nothing\n").is_err());
    }
}
