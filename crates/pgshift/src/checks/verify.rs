//! Checks that must hold before complete changes anything (`extract`: the new table holds
//! exactly what the source's columns hold; `method: copy`: the copy holds every row of the
//! table). Each runs in one REPEATABLE READ, read-only snapshot: the triggers write both
//! tables in the client's own transaction, so any committed state is consistent and a
//! difference is real.
//!
//! Every row is compared. First cheaply: each table is read once, in parallel, into a row
//! count and an order-independent 64-bit checksum (the XOR of a hash of each row's key and
//! compared values, as pt-table-checksum does per chunk), with no join and no hash table of
//! 2,000,000 rows. A row's hash calls each column type's own extended hash function (the
//! one its default hash operator class uses), seeded with the column's position, XORs them
//! and hashes the result once more, so that a value is tied to its row and its column;
//! that is cheaper than `hash_record_extended` over the whole row (docs/benchmarks.md),
//! which only the columns without a function of their own go through. Equal counts and
//! checksums pass (two different sets of unique rows give the same checksum with odds of
//! about 2^-64). Otherwise, or where the checksum cannot be taken (a type without a hash
//! function, such as json; on PostgreSQL 13, which has no `hash_record_extended`, a column
//! that would need it; two columns of different types), the row-by-row join decides and
//! names the rows that differ, so a checksum can never fail a migration on its own.

use crate::error::{Error, Result};
use crate::plan::VerifySpec;
use crate::quote::{ident, qualified};
use tokio_postgres::Client;

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verification {
    pub description: String,
    pub rows: i64,
    pub other_rows: i64,
    /// Rows of the table without a row in the other table.
    pub missing: i64,
    /// Rows whose values differ.
    pub different: i64,
    /// Rows of the other table without a row in the table.
    pub extra: i64,
    /// Up to ten problem rows: (key, what is wrong).
    pub samples: Vec<(String, String)>,
    /// How the rows were compared: `checksums` (a count and a checksum per table) or
    /// `row by row` (the join).
    pub method: &'static str,
}

impl Verification {
    pub fn passed(&self) -> bool {
        self.missing == 0 && self.different == 0 && self.extra == 0
    }
}

/// Runs one check; `Err(Error::VerificationFailed)` with the report when it fails.
/// `server_version` is `server_version_num`.
pub async fn run(client: &Client, server_version: i32, spec: &VerifySpec) -> Result<Verification> {
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await?;
    let outcome = check(client, server_version, spec).await;
    let _ = client.batch_execute("COMMIT").await;
    let v = outcome?;
    if v.passed() {
        Ok(v)
    } else {
        Err(Error::VerificationFailed(report(spec, &v)))
    }
}

async fn check(client: &Client, server_version: i32, spec: &VerifySpec) -> Result<Verification> {
    let table = qualified(&spec.schema, &spec.table);
    let other = qualified(&spec.schema, &spec.other);
    // The keys' pair too: the checksum hashes them.
    let mut pairs = vec![(spec.key.clone(), spec.other_key.clone())];
    pairs.extend(spec.columns.iter().cloned());
    let (same_type, native) = column_types(client, &pairs, &table, &other).await?;
    if pairs.iter().all(|(a, _)| same_type.contains(a)) {
        if let Some(v) = checksums_agree(client, server_version, spec, &table, &other).await? {
            return Ok(v);
        }
    }
    let join = format!(
        "FROM {table} AS t LEFT JOIN {other} AS o ON o.{} = t.{}",
        ident(&spec.other_key),
        ident(&spec.key)
    );
    // Pairs of columns of one type that has an equality operator compare as they are;
    // the others (json, arrays, two different types) by their text forms, which every type
    // has.
    let differs = |(a, b): &(String, String)| {
        if native.contains(a) {
            format!("t.{} IS DISTINCT FROM o.{}", ident(a), ident(b))
        } else {
            format!("t.{}::text IS DISTINCT FROM o.{}::text", ident(a), ident(b))
        }
    };
    let any_differs = spec
        .columns
        .iter()
        .map(differs)
        .collect::<Vec<_>>()
        .join(" OR ");
    let missing = format!("o.{} IS NULL", ident(&spec.other_key));
    let counts = client
        .query_one(
            &format!(
                "SELECT count(*), count(*) FILTER (WHERE {missing}), count(*) FILTER (WHERE NOT {missing} AND ({any_differs})), (SELECT count(*) FROM {other}) {join}"
            ),
            &[],
        )
        .await?;
    let mut v = Verification {
        description: spec.description.clone(),
        rows: counts.try_get(0)?,
        missing: counts.try_get(1)?,
        different: counts.try_get(2)?,
        other_rows: counts.try_get(3)?,
        extra: 0,
        samples: Vec::new(),
        method: "row by row",
    };
    // `other_key` is unique in the other table: every matched row accounts for one of its
    // rows, and the rest have no row in the table.
    v.extra = v.other_rows - (v.rows - v.missing);
    if !v.passed() {
        let which = spec
            .columns
            .iter()
            .map(|c| {
                format!(
                    "CASE WHEN {} THEN {} END",
                    differs(c),
                    crate::quote::literal(&c.1)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let rows = client
            .query(
                &format!(
                    "SELECT t.{key}::text, CASE WHEN {missing} THEN 'no row in ' || {name} ELSE 'differs in ' || concat_ws(', ', {which}) END
                     {join} WHERE {missing} OR ({any_differs}) ORDER BY t.{key} LIMIT 10",
                    key = ident(&spec.key),
                    name = crate::quote::literal(&spec.other),
                ),
                &[],
            )
            .await?;
        v.samples = rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, tokio_postgres::Error>>()?;
    }
    Ok(v)
}

/// The columns of `table` whose pair (column of `table`, column of `other`) has one type,
/// and those of them whose type has an equality operator of its own (varchar, for one,
/// compares as text).
async fn column_types(
    client: &Client,
    pairs: &[(String, String)],
    table: &str,
    other: &str,
) -> Result<(Vec<String>, Vec<String>)> {
    let row = client
        .query_one(
            "SELECT coalesce(array_agg(a.attname::text), '{}'),
                    coalesce(array_agg(a.attname::text) FILTER (WHERE EXISTS (
                      SELECT 1 FROM pg_catalog.pg_operator o
                       WHERE o.oprname = '=' AND o.oprleft = a.atttypid AND o.oprright = a.atttypid)), '{}')
               FROM pg_catalog.pg_attribute a
               JOIN pg_catalog.pg_attribute b ON b.attrelid = $2::text::regclass
                    AND b.attname = ($4::text[])[array_position($3::text[], a.attname::text)]
                    AND (b.atttypid = a.atttypid
                         OR (a.atttypid IN ('pg_catalog.int2'::pg_catalog.regtype, 'pg_catalog.int4'::pg_catalog.regtype, 'pg_catalog.int8'::pg_catalog.regtype)
                             AND b.atttypid IN ('pg_catalog.int2'::pg_catalog.regtype, 'pg_catalog.int4'::pg_catalog.regtype, 'pg_catalog.int8'::pg_catalog.regtype)))
              WHERE a.attrelid = $1::text::regclass AND a.attname = ANY ($3::text[])",
            &[
                &table,
                &other,
                &pairs.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
                &pairs.iter().map(|(_, b)| b.as_str()).collect::<Vec<_>>(),
            ],
        )
        .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// `Some` when both tables have as many rows and the same checksum; `None` when they do
/// not, or when the checksum cannot be taken (a type without a hash function, such as
/// json; PostgreSQL 13 for a column that needs `hash_record_extended`): the join then
/// decides. Every compared pair of columns, keys included, has one type (or two integer
/// types, which hash as bigint), so the hash functions read from `table` serve `other` too.
async fn checksums_agree(
    client: &Client,
    server_version: i32,
    spec: &VerifySpec,
    table: &str,
    other: &str,
) -> Result<Option<Verification>> {
    let mut mine = vec![spec.key.clone()];
    mine.extend(spec.columns.iter().map(|(a, _)| a.clone()));
    let mut theirs = vec![spec.other_key.clone()];
    theirs.extend(spec.columns.iter().map(|(_, b)| b.clone()));
    let calls = hash_calls(client, table, &mine).await?;
    if calls.len() != mine.len() {
        return Ok(None);
    }
    if server_version < 140000 && calls.iter().any(|c| c.is_none()) {
        return Ok(None);
    }
    // The XOR of the rows' hashes; before PostgreSQL 14, which has no bit_xor, their exact
    // sum (as numeric), just as independent of the rows' order.
    let aggregate = |alias: &str, columns: &[String]| {
        let hash = row_hash(alias, columns, &calls);
        if server_version < 140000 {
            format!("count(*), sum(({hash})::numeric)::text")
        } else {
            format!("count(*), bit_xor({hash})::text")
        }
    };
    let sql = format!(
        "SELECT a.*, b.* FROM (SELECT {} FROM {table} AS t) AS a, (SELECT {} FROM {other} AS o) AS b",
        aggregate("t", &mine),
        aggregate("o", &theirs),
    );
    // A type without an extended hash function fails the query; the transaction goes on.
    client.batch_execute("SAVEPOINT pgshift_checksum").await?;
    match client.query_one(&sql, &[]).await {
        Ok(r) => {
            client
                .batch_execute("RELEASE SAVEPOINT pgshift_checksum")
                .await?;
            let (rows, sum): (i64, Option<String>) = (r.try_get(0)?, r.try_get(1)?);
            let (other_rows, other_sum): (i64, Option<String>) = (r.try_get(2)?, r.try_get(3)?);
            Ok(
                (rows == other_rows && sum == other_sum).then(|| Verification {
                    description: spec.description.clone(),
                    rows,
                    other_rows,
                    missing: 0,
                    different: 0,
                    extra: 0,
                    samples: Vec::new(),
                    method: "checksums",
                }),
            )
        }
        Err(_) => {
            client
                .batch_execute("ROLLBACK TO SAVEPOINT pgshift_checksum")
                .await?;
            Ok(None)
        }
    }
}

/// How the checksum hashes a column: (the extended hash function of the default hash
/// operator class, how the value is handed to it) when that function takes the column's
/// type; `None` otherwise.
type HashCall = Option<(String, Conversion)>;

/// How a value reaches its hash function: as it is, or through a conversion that keeps
/// every value apart (varchar is text; a timestamptz is its UTC timestamp).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conversion {
    None,
    Text,
    Utc,
    /// smallint and integer hash as bigint, so a column and its copy of a wider integer
    /// type hash alike.
    Int8,
}

/// The [`HashCall`] of each of `columns` of `table`, in order (shorter when one is missing).
async fn hash_calls(client: &Client, table: &str, columns: &[String]) -> Result<Vec<HashCall>> {
    let rows = client
        .query(
            "SELECT x.conversion,
                    (SELECT format('%I.%I', n.nspname, pr.proname)
                       FROM pg_catalog.pg_opclass oc
                       JOIN pg_catalog.pg_am m ON m.oid = oc.opcmethod AND m.amname = 'hash'
                       JOIN pg_catalog.pg_amproc p ON p.amprocfamily = oc.opcfamily AND p.amprocnum = 2
                            AND p.amproclefttype = oc.opcintype AND p.amprocrighttype = oc.opcintype
                       JOIN pg_catalog.pg_proc pr ON pr.oid = p.amproc
                       JOIN pg_catalog.pg_namespace n ON n.oid = pr.pronamespace
                      WHERE oc.opcdefault AND oc.opcintype = x.type AND pr.proargtypes[0] = x.type
                      ORDER BY p.oid LIMIT 1)
               FROM unnest($2::text[]) WITH ORDINALITY AS c(name, i)
               JOIN pg_catalog.pg_attribute a
                 ON a.attrelid = $1::text::regclass AND a.attname = c.name AND NOT a.attisdropped
              CROSS JOIN LATERAL (SELECT
                    CASE a.atttypid WHEN 'pg_catalog.varchar'::pg_catalog.regtype THEN 'text'
                                    WHEN 'pg_catalog.timestamptz'::pg_catalog.regtype THEN 'utc'
                                    WHEN 'pg_catalog.int2'::pg_catalog.regtype THEN 'int8'
                                    WHEN 'pg_catalog.int4'::pg_catalog.regtype THEN 'int8'
                                    ELSE '' END AS conversion,
                    CASE a.atttypid WHEN 'pg_catalog.varchar'::pg_catalog.regtype THEN 'pg_catalog.text'::pg_catalog.regtype::oid
                                    WHEN 'pg_catalog.timestamptz'::pg_catalog.regtype THEN 'pg_catalog.timestamp'::pg_catalog.regtype::oid
                                    WHEN 'pg_catalog.int2'::pg_catalog.regtype THEN 'pg_catalog.int8'::pg_catalog.regtype::oid
                                    WHEN 'pg_catalog.int4'::pg_catalog.regtype THEN 'pg_catalog.int8'::pg_catalog.regtype::oid
                                    ELSE a.atttypid END AS type) x
              ORDER BY c.i",
            &[&table, &columns],
        )
        .await?;
    let mut found = Vec::new();
    for r in &rows {
        let conversion = match r.try_get::<_, &str>(0)? {
            "text" => Conversion::Text,
            "utc" => Conversion::Utc,
            "int8" => Conversion::Int8,
            _ => Conversion::None,
        };
        let function: Option<String> = r.try_get(1)?;
        found.push(function.map(|f| (f, conversion)));
    }
    Ok(found)
}

/// One row's 64-bit hash: each column hashed by its type's function with its position as
/// the seed (NULL hashes to the position itself), the column hashes XORed, and the result
/// hashed once more, so that the table's checksum (the XOR of its rows' hashes) ties each
/// value to its row. Columns without a function of their own are hashed together by
/// `hash_record_extended`.
fn row_hash(alias: &str, columns: &[String], calls: &[HashCall]) -> String {
    let mut parts = Vec::new();
    let mut rest = Vec::new();
    for (i, (column, call)) in columns.iter().zip(calls).enumerate() {
        let value = format!("{alias}.{}", ident(column));
        match call {
            Some((function, conversion)) => {
                let value = match conversion {
                    Conversion::None => value,
                    Conversion::Text => format!("{value}::pg_catalog.text"),
                    Conversion::Utc => format!("({value} AT TIME ZONE 'UTC')"),
                    Conversion::Int8 => format!("{value}::pg_catalog.int8"),
                };
                let seed = i + 1;
                parts.push(format!("coalesce({function}({value}, {seed}), {seed})"));
            }
            None => rest.push(value),
        }
    }
    if !rest.is_empty() {
        parts.push(format!(
            "pg_catalog.hash_record_extended(ROW({}), 0)",
            rest.join(", ")
        ));
    }
    format!("pg_catalog.hashint8extended({}, 0)", parts.join(" # "))
}

fn report(spec: &VerifySpec, v: &Verification) -> String {
    let mut s = format!(
        "complete stopped before changing anything: not every row of {} has its row in {} with equal values\n  {} rows in {}, {} in {}; {} without a row in {}, {} with different values, {} in {} without a row in {}",
        spec.table, spec.other, v.rows, spec.table, v.other_rows, spec.other, v.missing, spec.other, v.different, v.extra, spec.other, spec.table
    );
    for (key, what) in &v.samples {
        s.push_str(&format!("\n  {}.{} = {key}: {what}", spec.table, spec.key));
    }
    s
}
