//! The one place where names and values become SQL text.
//!
//! Every identifier pgshift puts into SQL goes through [`ident`] (or [`qualified`]), and every
//! value that is not a bind parameter goes through [`literal`]. Identifiers are always
//! double-quoted: that keeps capitals, spaces, unicode and reserved words exactly as written,
//! and a quoted name can never end the identifier early because embedded quotes are doubled.

use std::fmt;

/// PostgreSQL truncates identifiers longer than NAMEDATALEN - 1 bytes (63). pgshift refuses
/// them instead, so that the name it checks is the name the server stores.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// A quoted identifier: SQL text that names exactly one object, made only by [`ident`].
/// A raw name (`String`, as written in a file or read from the catalog) is a different
/// type, so one cannot go into SQL where the other is meant without passing through here.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quoted(String);

impl Quoted {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Quoted {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Quoted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for Quoted {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<Quoted> for &str {
    fn eq(&self, other: &Quoted) -> bool {
        *self == other.0
    }
}

impl PartialEq<&str> for Quoted {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl From<Quoted> for String {
    fn from(q: Quoted) -> String {
        q.0
    }
}

/// Quotes an identifier: `orders` becomes `"orders"`, `a"b` becomes `"a""b"`.
pub fn ident(name: &str) -> Quoted {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for ch in name.chars() {
        if ch == '"' {
            out.push('"');
        }
        out.push(ch);
    }
    out.push('"');
    Quoted(out)
}

/// Quotes each name of a list and joins them with commas: `"a", "b"`.
pub fn ident_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names.into_iter().map(ident).collect::<Vec<_>>().join(", ")
}

/// Quotes a schema-qualified name: `"schema"."name"`.
pub fn qualified(schema: &str, name: &str) -> Quoted {
    Quoted(format!("{}.{}", ident(schema), ident(name)))
}

/// Quotes a string literal so that it reads the same whatever `standard_conforming_strings`
/// says: a string with a backslash becomes an `E'...'` literal with the backslash doubled.
pub fn literal(value: &str) -> String {
    let escaped = value.replace('\'', "''");
    if value.contains('\\') {
        format!("E'{}'", escaped.replace('\\', "\\\\"))
    } else {
        format!("'{escaped}'")
    }
}

/// Why a name cannot be an identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentifierError {
    Empty,
    TooLong { bytes: usize },
    Nul,
}

impl fmt::Display for IdentifierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentifierError::Empty => write!(f, "a name cannot be empty"),
            IdentifierError::TooLong { bytes } => write!(
                f,
                "the name is {bytes} bytes long; PostgreSQL keeps only the first {MAX_IDENTIFIER_BYTES} bytes of a name"
            ),
            IdentifierError::Nul => write!(f, "a name cannot contain a NUL character"),
        }
    }
}

impl std::error::Error for IdentifierError {}

/// Checks that `name` is stored by PostgreSQL exactly as given.
pub fn validate_identifier(name: &str) -> Result<(), IdentifierError> {
    if name.is_empty() {
        return Err(IdentifierError::Empty);
    }
    if name.contains('\0') {
        return Err(IdentifierError::Nul);
    }
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(IdentifierError::TooLong { bytes: name.len() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quotes_plain_and_hostile_names() {
        assert_eq!(ident("orders"), "\"orders\"");
        assert_eq!(ident("Order Items"), "\"Order Items\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(ident("select"), "\"select\"");
        assert_eq!(qualified("my schema", "t"), "\"my schema\".\"t\"");
    }

    #[test]
    fn literals_survive_quotes_and_backslashes() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal("a\\b'c"), "E'a\\\\b''c'");
    }

    #[test]
    fn identifier_limits() {
        assert_eq!(validate_identifier(""), Err(IdentifierError::Empty));
        assert_eq!(validate_identifier(&"x".repeat(63)), Ok(()));
        assert_eq!(
            validate_identifier(&"x".repeat(64)),
            Err(IdentifierError::TooLong { bytes: 64 })
        );
        // 21 three-byte characters are 63 bytes: allowed; one more is not.
        assert_eq!(validate_identifier(&"€".repeat(21)), Ok(()));
        assert!(validate_identifier(&"€".repeat(22)).is_err());
        assert_eq!(validate_identifier("a\0b"), Err(IdentifierError::Nul));
    }

    /// The real PostgreSQL parser reads back exactly the name that was quoted.
    fn parsed_alias(sql: &str) -> Option<String> {
        let result = pg_query::parse(sql).ok()?;
        result
            .protobuf
            .nodes()
            .into_iter()
            .find_map(|(node, ..)| match node {
                pg_query::NodeRef::ResTarget(target) => Some(target.name.clone()),
                _ => None,
            })
    }

    fn parsed_literal(sql: &str) -> Option<String> {
        use pg_query::protobuf::a_const::Val;
        let result = pg_query::parse(sql).ok()?;
        result
            .protobuf
            .nodes()
            .into_iter()
            .find_map(|(node, ..)| match node {
                pg_query::NodeRef::AConst(constant) => match &constant.val {
                    Some(Val::Sval(s)) => Some(s.sval.clone()),
                    _ => None,
                },
                _ => None,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn parser_reads_back_any_quoted_identifier(name in "[^\u{0}]{1,20}") {
            prop_assume!(validate_identifier(&name).is_ok());
            let sql = format!("SELECT 1 AS {}", ident(&name));
            prop_assert_eq!(parsed_alias(&sql), Some(name));
        }

        #[test]
        fn parser_reads_back_any_literal(value in "[^\u{0}]{0,40}") {
            let sql = format!("SELECT {}", literal(&value));
            prop_assert_eq!(parsed_literal(&sql), Some(value));
        }
    }
}
