//! SQL fragments from a migration file (an expression, a type, storage parameters, ...) are
//! parsed with PostgreSQL's parser while the file is read, each as exactly the kind of
//! fragment its field holds. pgshift splices fragments into the statements it builds, so a
//! fragment that parses only together with the statement around it (`0; DROP TABLE t`,
//! `0) , (1`) would change what the statement does: it is refused here, with the field's
//! line and column, before anything runs.

use pg_query::protobuf::node::Node;
use serde::{de::Error as _, Deserialize, Deserializer};
use std::collections::BTreeMap;

/// The statements of `sql`, parsed; the error says why not.
fn statements(sql: &str) -> Result<Vec<Option<Node>>, String> {
    let parsed = pg_query::parse(sql).map_err(|e| e.to_string())?;
    Ok(parsed
        .protobuf
        .stmts
        .into_iter()
        .map(|s| s.stmt.and_then(|n| n.node))
        .collect())
}

/// A fragment carries no comment: a `--` would swallow what pgshift writes after the
/// fragment on the same line.
fn no_comment(text: &str) -> Result<(), String> {
    use pg_query::protobuf::Token;
    let tokens = pg_query::scan(text).map_err(|e| e.to_string())?.tokens;
    if tokens
        .iter()
        .any(|t| t.token == Token::SqlComment as i32 || t.token == Token::CComment as i32)
    {
        return Err("it contains a comment".to_owned());
    }
    Ok(())
}

/// The one target of `SELECT <text>` when that is a plain single-target SELECT.
fn one_select_target(text: &str) -> Result<(), String> {
    no_comment(text)?;
    let stmts = statements(&format!("SELECT {text}"))?;
    match stmts.as_slice() {
        [Some(Node::SelectStmt(s))]
            if s.target_list.len() == 1
                && s.from_clause.is_empty()
                && s.where_clause.is_none()
                && s.group_clause.is_empty()
                && s.having_clause.is_none()
                && s.sort_clause.is_empty()
                && s.limit_count.is_none()
                && s.op == pg_query::protobuf::SetOperation::SetopNone as i32 =>
        {
            Ok(())
        }
        _ => Err("it is not one expression".to_owned()),
    }
}

/// One SQL expression (`price * 100`, `lower(name)`, `'n/a'`), nothing around it.
pub fn check_expression(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("it is empty".to_owned());
    }
    one_select_target(text)
}

/// `up` and `down`: one expression, or (as pgroll allows) one whole SELECT, which pgshift
/// uses as a scalar subquery.
pub fn check_expression_or_query(text: &str) -> Result<(), String> {
    if check_expression(text).is_ok() {
        return Ok(());
    }
    no_comment(text)?;
    let trimmed = text.trim().trim_end_matches(';');
    match statements(trimmed)?.as_slice() {
        [Some(Node::SelectStmt(_))] => Ok(()),
        _ => Err("it is not one expression or one SELECT".to_owned()),
    }
}

/// One type name (`bigint`, `numeric(10,2)`, `text[]`, `public.my_enum`).
pub fn check_type(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("it is empty".to_owned());
    }
    no_comment(text)?;
    // serial and friends are shorthand in column definitions, not types.
    if crate::sql::serial_type(&text.trim().to_ascii_lowercase()).is_some() {
        return Ok(());
    }
    let stmts = statements(&format!("SELECT NULL::{text}"))?;
    match stmts.as_slice() {
        [Some(Node::SelectStmt(s))] if s.target_list.len() == 1 && s.from_clause.is_empty() => {
            Ok(())
        }
        _ => Err("it is not one type name".to_owned()),
    }
}

/// `text` (without comments) put inside `template` at `{}` makes exactly one statement
/// that `is` accepts; otherwise "it is not {what}".
fn one_statement(
    text: &str,
    template: &str,
    what: &str,
    is: impl Fn(&Node) -> bool,
) -> Result<(), String> {
    no_comment(text)?;
    match statements(&template.replace("{}", text))?.as_slice() {
        [Some(node)] if is(node) => Ok(()),
        _ => Err(format!("it is not {what}")),
    }
}

/// The inside of an index's or table's `WITH (...)`: `fillfactor = 70, deduplicate_items = off`.
pub fn check_storage_parameters(text: &str) -> Result<(), String> {
    one_statement(
        text,
        "CREATE INDEX i ON t (c) WITH ({})",
        "a list of storage parameters",
        |n| matches!(n, Node::IndexStmt(_)),
    )
}

/// The options of an identity's sequence: `START WITH 10 INCREMENT BY 5`.
pub fn check_sequence_options(text: &str) -> Result<(), String> {
    one_statement(
        text,
        "CREATE SEQUENCE s {}",
        "a list of sequence options",
        |n| matches!(n, Node::CreateSeqStmt(_)),
    )
}

/// The elements of an exclusion constraint: `room WITH =, during WITH &&`.
pub fn check_exclude_elements(text: &str) -> Result<(), String> {
    one_statement(
        text,
        "ALTER TABLE t ADD EXCLUDE USING gist ({})",
        "a list of exclusion elements",
        |n| matches!(n, Node::AlterTableStmt(a) if a.cmds.len() == 1),
    )
}

/// A partition's bound: `FOR VALUES ...` or `DEFAULT`.
pub fn check_partition_bound(text: &str) -> Result<(), String> {
    one_statement(
        text,
        "CREATE TABLE t PARTITION OF p {}",
        "a partition bound (FOR VALUES ... or DEFAULT)",
        |n| matches!(n, Node::CreateStmt(c) if c.partbound.is_some()),
    )
}

/// A partition key: `RANGE (created_at)`, `LIST (region)`, `HASH (id)`.
pub fn check_partition_by(text: &str) -> Result<(), String> {
    one_statement(
        text,
        "CREATE TABLE t (a int) PARTITION BY {}",
        "a partition key (RANGE (...), LIST (...) or HASH (...))",
        |n| matches!(n, Node::CreateStmt(c) if c.partspec.is_some()),
    )
}

/// SQL statements (a `sql` operation's `up` and `down`): they must parse.
pub fn check_statements(text: &str) -> Result<(), String> {
    match statements(text)?.len() {
        0 => Err("it has no statement".to_owned()),
        _ => Ok(()),
    }
}

fn refuse<E: serde::de::Error>(what: &str, text: &str, why: String) -> E {
    E::custom(format!(
        "{what} {text:?} is refused: {why}; pgshift puts this text into the statements it builds, so it must be {what} and nothing more"
    ))
}

/// A newtype for one kind of fragment: the text, parsed as exactly that kind when the file
/// is read (`Deserialize` refuses anything else), read back as `&str` for the statements
/// the planner builds. Nothing outside this module makes one from unchecked text.
macro_rules! fragment_type {
    ($(#[$meta:meta])* $name:ident, $check:path, $what:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The text, if it is exactly this kind of fragment.
            pub fn parse(text: impl Into<String>) -> Result<Self, String> {
                let text = text.into();
                $check(&text)?;
                Ok($name(text))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for String {
            fn from(f: $name) -> String {
                f.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                $check(&text).map_err(|why| refuse::<D::Error>($what, &text, why))?;
                Ok($name(text))
            }
        }
    };
}

fragment_type!(
    /// One SQL expression (`default`, `check`, `predicate`, `where`, a generated column).
    Expression,
    check_expression,
    "an SQL expression"
);
fragment_type!(
    /// One SQL expression or one SELECT (`up`, `down`, `set`).
    ExpressionOrQuery,
    check_expression_or_query,
    "an SQL expression or SELECT"
);
fragment_type!(
    /// A type name, as in a column definition.
    TypeName,
    check_type,
    "a type name"
);
fragment_type!(
    /// A partition key, `RANGE (created_at)`.
    PartitionBy,
    check_partition_by,
    "a partition key"
);
fragment_type!(
    /// A partition's bound, `FOR VALUES ...` or `DEFAULT`.
    PartitionBound,
    check_partition_bound,
    "a partition bound"
);
fragment_type!(
    /// A list of storage parameters, `name = value, ...`.
    StorageParameters,
    check_storage_parameters,
    "a list of storage parameters"
);
fragment_type!(
    /// An identity column's sequence options.
    SequenceOptions,
    check_sequence_options,
    "a list of sequence options"
);
fragment_type!(
    /// The elements of an EXCLUDE constraint, `col WITH op, ...`.
    ExcludeElements,
    check_exclude_elements,
    "a list of exclusion elements"
);
fragment_type!(
    /// Raw SQL statements (a `sql` operation's `up` and `down`).
    SqlText,
    check_statements,
    "SQL"
);
fragment_type!(
    /// One parameter of an operator class, `name = value`.
    Parameter,
    check_storage_parameters,
    "a parameter"
);

impl ExpressionOrQuery {
    /// The expression that reads column `name` as it is (a quoted identifier is always
    /// exactly one expression).
    pub fn column(name: &str) -> Self {
        ExpressionOrQuery(crate::quote::ident(name).into())
    }
}

/// A map of column to expression (`set` of update) or to `up`/`down`.
pub(crate) fn expression_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, ExpressionOrQuery>, D::Error> {
    let map = BTreeMap::<String, ExpressionOrQuery>::deserialize(d)?;
    for column in map.keys() {
        crate::quote::validate_identifier(column)
            .map_err(|e| D::Error::custom(format!("invalid name {column:?}: {e}")))?;
    }
    Ok(map)
}

pub(crate) fn expression_map_opt<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, ExpressionOrQuery>>, D::Error> {
    #[derive(Deserialize)]
    struct Wrapped(
        #[serde(deserialize_with = "expression_map")] BTreeMap<String, ExpressionOrQuery>,
    );
    Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injected_statements_are_not_fragments() {
        for bad in [
            "0; DROP TABLE victim",
            "0); DROP TABLE victim; SELECT (1",
            "0) , (1",
            "1 FROM pg_class",
            "0 --",
            "",
        ] {
            assert!(check_expression(bad).is_err(), "{bad:?}");
        }
        for good in [
            "0",
            "'a;b'",
            "price * 100",
            "lower(name)",
            "(SELECT 1)",
            "now()",
        ] {
            assert!(check_expression(good).is_ok(), "{good:?}");
        }
        assert!(check_expression_or_query("SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END").is_ok());
        assert!(check_expression_or_query("SELECT 1; DROP TABLE victim").is_err());
        assert!(check_type("numeric(10,2)").is_ok() && check_type("text[]").is_ok());
        assert!(check_type("serial").is_ok());
        assert!(check_type("int; DROP TABLE victim").is_err());
        assert!(check_type("int DEFAULT 0").is_err());
        assert!(check_storage_parameters("fillfactor = 70").is_ok());
        assert!(
            check_storage_parameters("fillfactor = 70); DROP TABLE victim; SELECT (1").is_err()
        );
        assert!(check_sequence_options("START WITH 10 INCREMENT BY 5").is_ok());
        assert!(check_sequence_options("START 1; DROP TABLE victim").is_err());
        assert!(check_exclude_elements("room WITH =, during WITH &&").is_ok());
        assert!(check_statements("CREATE TABLE a (id int); CREATE TABLE b (id int)").is_ok());
        assert!(check_statements("CREATE TABLE (").is_err());
    }

    #[test]
    fn fragments_are_their_own_types_and_read_only_what_their_kind_allows() {
        #[derive(Deserialize)]
        struct F {
            default: Expression,
            #[serde(rename = "type")]
            data_type: TypeName,
        }
        let ok: F = serde_json::from_str(r#"{"default": "0", "type": "bigint"}"#).unwrap();
        assert_eq!(ok.default, "0");
        assert_eq!(ok.data_type.as_str(), "bigint");
        let bad =
            serde_json::from_str::<F>(r#"{"default": "0; DROP TABLE victim", "type": "int"}"#)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
        assert!(bad.contains("an SQL expression"), "{bad}");
        assert!(Expression::parse("1 FROM pg_class").is_err());
        assert_eq!(ExpressionOrQuery::column(r#"a"b"#).as_str(), r#""a""b""#);
    }
}
