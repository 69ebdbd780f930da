//! The migration model: what a migration file says, independent of its syntax.
//!
//! TOML (native), YAML and JSON (pgroll's format, read unchanged) all deserialize into these
//! types. Unknown fields are rejected everywhere. Checks that need only the file itself (names
//! that PostgreSQL would truncate, an `alter_column` that changes nothing, a foreign key with
//! no columns) run during deserialization, so the format's parser reports them with the
//! line and column where they occur. Checks against the live catalog come later, in `plan`.

mod fragment;
mod ops;
mod parse;

pub use fragment::{
    check_expression, check_expression_or_query, check_type, ExcludeElements, Expression,
    ExpressionOrQuery, Parameter, PartitionBound, PartitionBy, SequenceOptions, SqlText,
    StorageParameters, TypeName,
};

pub use ops::*;
pub use parse::{parse_migration, Format};

use serde::{Deserialize, Deserializer};

/// One migration file: a list of operations applied together.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Migration {
    /// pgroll allows a name in the file; pgshift names migrations by their file name and
    /// accepts this field only so that pgroll files read unchanged.
    #[serde(default)]
    pub name: Option<String>,
    /// Name of the version schema to create for this migration (pgroll's `version_schema`).
    #[serde(default, deserialize_with = "identifier_opt")]
    pub version_schema: Option<String>,
    #[serde(deserialize_with = "non_empty_operations")]
    pub operations: Vec<Operation>,
    /// `manual`: `pgshift migrate` stops before this migration (it waits for a person, who
    /// runs it with `pgshift start` or `migrate --include-manual`).
    #[serde(default)]
    pub mode: Option<RunMode>,
    /// Environments (`--environment`, `PGSHIFT_ENV`) in which `migrate` records this
    /// migration as skipped instead of running it.
    #[serde(default)]
    pub skip_environments: Vec<String>,
}

/// How `migrate` treats a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    /// Run by `migrate` (the default).
    Auto,
    /// Waits for a person.
    Manual,
}

fn non_empty_operations<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Operation>, D::Error> {
    let ops = Vec::<Operation>::deserialize(d)?;
    if ops.is_empty() {
        return Err(serde::de::Error::custom(
            "a migration needs at least one operation",
        ));
    }
    Ok(ops)
}

/// A name that must survive as a PostgreSQL identifier unchanged.
pub(crate) fn identifier<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let name = String::deserialize(d)?;
    crate::quote::validate_identifier(&name)
        .map_err(|e| serde::de::Error::custom(format!("invalid name {name:?}: {e}")))?;
    Ok(name)
}

pub(crate) fn identifier_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(name) => {
            crate::quote::validate_identifier(&name)
                .map_err(|e| serde::de::Error::custom(format!("invalid name {name:?}: {e}")))?;
            Ok(Some(name))
        }
    }
}

pub(crate) fn identifiers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    for name in &names {
        crate::quote::validate_identifier(name)
            .map_err(|e| serde::de::Error::custom(format!("invalid name {name:?}: {e}")))?;
    }
    Ok(names)
}

/// A field where "absent" and "explicitly null" mean different things: pgroll's
/// `default: null` drops a default, while no `default` leaves it alone.
pub(crate) fn present_or_null<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}
