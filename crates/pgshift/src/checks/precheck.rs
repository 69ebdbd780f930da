//! Checks of the data that run before a migration changes anything.
//!
//! A type change with `up` (varchar to uuid, text to int, ...) must convert every row: one
//! row that does not would fail the backfill halfway through, with triggers and a half-filled
//! column in place. So before start, every row's `up` is evaluated. A row does not convert
//! when `up` raises a data error for it, gives NULL for a value that is not NULL, or, from a
//! string type to another type, gives a value whose text differs from the original (an
//! upper-case uuid, `007` as an int): the value would change, not just its type.
//!
//! One scan evaluates every row; only when that scan hits an error does a second one count
//! the failing rows one by one (each in its own subtransaction, in a function that lives in
//! the session's temporary schema and is dropped at once).
//!
//! No scan at all when no row can fail: `up` is the plain cast of the column, and the cast
//! only widens (integer to bigint, real to double precision, a string to text). That is the
//! common int-to-bigint case, where the scan would read a table of any size for nothing.

use crate::catalog::Table;
use crate::error::Result;
use crate::plan::expression;
use crate::plan::triggers::{dollar_quote, row_variables};
use crate::quote::{ident, qualified};
use tokio_postgres::Client;

/// Rows that do not convert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotConverting {
    pub rows: i64,
    pub of: i64,
    /// Up to ten keys of such rows, as text (the primary key, or ctid without one).
    pub samples: Vec<String>,
}

/// Up to this many sample keys.
const SAMPLES: i64 = 10;

fn string_type(data_type: &str) -> bool {
    let t = data_type.trim().to_ascii_lowercase();
    t == "text"
        || t.starts_with("character")
        || t.starts_with("varchar")
        || t.starts_with("char")
        || t == "name"
        || t == "citext"
}

/// The rows of `table` whose `column`, through `up`, does not become a `new_type` value;
/// `None` when every row converts (or when `up` cannot be evaluated without writing, such as
/// `nextval()`: the backfill meets any failure then).
///
/// `up` is the user's expression: it is evaluated only in a transaction that is read-only
/// before the expression first runs, and rolled back, so that checking changes nothing.
pub async fn conversion(
    client: &Client,
    schema: &str,
    table: &Table,
    column: &str,
    new_type: &str,
    up: &str,
) -> Result<Option<NotConverting>> {
    let Some(old) = table.column(column) else {
        return Ok(None);
    };
    if cannot_fail(client, column, &old.data_type, new_type, up).await? {
        return Ok(None);
    }
    client.batch_execute("BEGIN READ ONLY").await?;
    let result = conversion_read_only(client, schema, table, column, old, new_type, up).await;
    let rolled_back = client.batch_execute("ROLLBACK").await;
    match result {
        Err(crate::error::Error::Db { source }) if is_read_only_violation(&source) => Ok(None),
        other => {
            rolled_back?;
            other
        }
    }
}

/// SQLSTATE 25006: the expression tried to write (nextval(), a function that inserts).
fn is_read_only_violation(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| c.code() == "25006")
}

async fn conversion_read_only(
    client: &Client,
    schema: &str,
    table: &Table,
    column: &str,
    old: &crate::catalog::Column,
    new_type: &str,
    up: &str,
) -> Result<Option<NotConverting>> {
    let target = qualified(schema, &table.name);
    let col = ident(column);
    let converted = format!("({})::{new_type}", expression(up));
    let mut bad = format!("({col} IS NOT NULL AND {converted} IS NULL)");
    if string_type(&old.data_type) && !string_type(new_type) {
        bad.push_str(&format!(
            " OR ({col} IS NOT NULL AND ({converted})::text IS DISTINCT FROM {col}::text)"
        ));
    }
    let key = match table.backfill_key() {
        Some(k) if k.len() == 1 => format!("{}::text", ident(&k[0])),
        Some(k) => format!(
            "ROW({})::text",
            k.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")
        ),
        None => "ctid::text".to_owned(),
    };
    // A data error in the one-pass count aborts it; the row-by-row count goes on from here.
    client.batch_execute("SAVEPOINT pgshift_fast_count").await?;
    let fast = client
        .query_one(
            &format!("SELECT count(*) FILTER (WHERE bad), count(*) FROM (SELECT {bad} AS bad FROM {target}) s"),
            &[],
        )
        .await;
    let (rows, of, samples) = match fast {
        Ok(r) => {
            let rows: i64 = r.try_get(0)?;
            let of: i64 = r.try_get(1)?;
            if rows == 0 {
                return Ok(None);
            }
            let samples = client
                .query(
                    &format!("SELECT {key} FROM {target} WHERE {bad} ORDER BY 1 LIMIT {SAMPLES}"),
                    &[],
                )
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
            (rows, of, samples)
        }
        Err(e) if is_data_error(&e) => {
            client
                .batch_execute("ROLLBACK TO SAVEPOINT pgshift_fast_count")
                .await?;
            one_by_one(client, &target, table, &bad, &key).await?
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Some(NotConverting { rows, of, samples }))
}

/// Whether no value can fail to convert: `up` is the plain cast of the column to `new_type`
/// (however written: `price::int8`, `CAST(price AS bigint)`), and the cast only widens.
async fn cannot_fail(
    client: &Client,
    column: &str,
    old_type: &str,
    new_type: &str,
    up: &str,
) -> Result<bool> {
    let Some(cast_to) = plain_cast_type(up, column) else {
        return Ok(false);
    };
    if new_type.contains('(') {
        return Ok(false);
    }
    // Both names as the server spells them; NULL for a name it does not know.
    let row = client
        .query_one(
            "SELECT format_type(to_regtype($1), NULL), format_type(to_regtype($2), NULL)",
            &[&cast_to, &new_type],
        )
        .await?;
    let (cast_to, new_type): (Option<String>, Option<String>) = (row.try_get(0)?, row.try_get(1)?);
    Ok(match (cast_to, new_type) {
        (Some(a), Some(b)) => a == b && widens(old_type, &b),
        _ => false,
    })
}

/// Whether every value of `old` (as `format_type` spells it) has a value in `new`.
fn widens(old: &str, new: &str) -> bool {
    matches!(
        (old, new),
        ("smallint", "integer" | "bigint") | ("integer", "bigint") | ("real", "double precision")
    ) || (new == "text" && string_type(old))
}

/// The type `up` casts the column to, when `up` is nothing but that cast (without type
/// modifiers or array bounds).
fn plain_cast_type(up: &str, column: &str) -> Option<String> {
    use pg_query::protobuf::node::Node;
    let parsed = pg_query::parse(&format!("SELECT ({up})")).ok()?;
    let [stmt] = parsed.protobuf.stmts.as_slice() else {
        return None;
    };
    let Some(Node::SelectStmt(select)) = stmt.stmt.as_ref()?.node.as_ref() else {
        return None;
    };
    let [target] = select.target_list.as_slice() else {
        return None;
    };
    let Some(Node::ResTarget(target)) = target.node.as_ref() else {
        return None;
    };
    let Some(Node::TypeCast(cast)) = target.val.as_ref()?.node.as_ref() else {
        return None;
    };
    let Some(Node::ColumnRef(arg)) = cast.arg.as_ref()?.node.as_ref() else {
        return None;
    };
    let [field] = arg.fields.as_slice() else {
        return None;
    };
    match field.node.as_ref() {
        Some(Node::String(s)) if s.sval == column => {}
        _ => return None,
    }
    let ty = cast.type_name.as_ref()?;
    if !ty.typmods.is_empty() || !ty.array_bounds.is_empty() || ty.setof || ty.pct_type {
        return None;
    }
    let names = ty
        .names
        .iter()
        .map(|n| match n.node.as_ref() {
            Some(Node::String(s)) => Some(ident(&s.sval)),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some(names.join("."))
}

fn is_data_error(e: &tokio_postgres::Error) -> bool {
    e.code()
        .map(|c| c.code().starts_with("22"))
        .unwrap_or(false)
}

/// Counts the failing rows one by one: each row's columns become variables named as the
/// columns, and `bad` is evaluated in a block that catches data errors.
async fn one_by_one(
    client: &Client,
    target: &str,
    table: &Table,
    bad: &str,
    key: &str,
) -> Result<(i64, i64, Vec<String>)> {
    let declare = row_variables(
        target,
        table
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.name.as_str())),
        "_pgshift_r",
    );
    let body = format!(
        "#variable_conflict use_variable
DECLARE
  _pgshift_r record;
  _pgshift_bad bigint := 0;
  _pgshift_all bigint := 0;
  _pgshift_samples text[] := '{{}}';
  _pgshift_is_bad boolean;
BEGIN
  FOR _pgshift_r IN SELECT *, {key} AS _pgshift_key FROM {target} LOOP
    _pgshift_all := _pgshift_all + 1;
    DECLARE
{declare}    BEGIN
      _pgshift_is_bad := coalesce({bad}, false);
    EXCEPTION WHEN data_exception THEN
      _pgshift_is_bad := true;
    END;
    IF _pgshift_is_bad THEN
      _pgshift_bad := _pgshift_bad + 1;
      IF cardinality(_pgshift_samples) < {SAMPLES} THEN
        _pgshift_samples := _pgshift_samples || _pgshift_r._pgshift_key;
      END IF;
    END IF;
  END LOOP;
  PERFORM set_config('pgshift.conversion_check', json_build_array(_pgshift_bad, _pgshift_all, _pgshift_samples)::text, true);
END
"
    );
    // A DO block, not a function: CREATE FUNCTION is refused in the read-only transaction
    // this runs in. The block hands its result back through a transaction-local setting.
    client
        .batch_execute(&format!("DO {}", dollar_quote(&body)))
        .await?;
    let r = client
        .query_one(
            "SELECT (s ->> 0)::bigint, (s ->> 1)::bigint, ARRAY(SELECT jsonb_array_elements_text(s -> 2)) FROM (SELECT current_setting('pgshift.conversion_check')::jsonb AS s) x",
            &[],
        )
        .await?;
    Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))
}

#[cfg(test)]
mod tests {
    use super::{plain_cast_type, string_type, widens};

    #[test]
    fn a_plain_cast_of_the_column_is_recognised_however_written() {
        for up in [
            "price::bigint",
            "(price)::int8",
            "CAST(price AS bigint)",
            "\"price\"::pg_catalog.int8",
        ] {
            assert!(plain_cast_type(up, "price").is_some(), "{up}");
        }
        assert_eq!(
            plain_cast_type("price::int8", "price").as_deref(),
            Some("\"int8\"")
        );
        for up in [
            "price::bigint * 100",
            "other::bigint",
            "t.price::bigint",
            "price::numeric(5, 2)",
            "price::bigint[]",
            "abs(price)::bigint",
            "price",
            "price::bigint; DROP TABLE x",
        ] {
            assert_eq!(plain_cast_type(up, "price"), None, "{up}");
        }
    }

    #[test]
    fn only_widening_casts_cannot_fail() {
        assert!(widens("integer", "bigint"));
        assert!(widens("smallint", "integer"));
        assert!(widens("real", "double precision"));
        assert!(widens("character varying(20)", "text"));
        assert!(!widens("bigint", "integer"));
        assert!(!widens("text", "uuid"));
        assert!(!widens("integer", "numeric"));
        assert!(!widens("double precision", "real"));
    }

    #[test]
    fn string_types_are_recognised() {
        for t in [
            "text",
            "character varying(255)",
            "varchar",
            "character(3)",
            "citext",
        ] {
            assert!(string_type(t), "{t}");
        }
        for t in ["uuid", "integer", "bigint", "jsonb", "timestamptz"] {
            assert!(!string_type(t), "{t}");
        }
    }
}
