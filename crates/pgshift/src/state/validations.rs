//! `pgshift.validations`: the foreign keys a swap added NOT VALID, each until it is
//! validated. The swap writes them in its own transaction, so a run killed after the swap
//! still finds them.

use super::table;
use crate::error::Result;
use crate::quote::literal;
use tokio_postgres::Client;

/// SQL that lists constraint `constraint` of `relation` (quoted, qualified) to validate.
pub fn to_validate_sql(migration: &str, relation: &str, constraint: &str) -> String {
    format!(
        "INSERT INTO {} (migration, relation, constraint_name) VALUES ({}, {}, {}) ON CONFLICT DO NOTHING",
        table("validations"),
        literal(migration),
        literal(relation),
        literal(constraint)
    )
}

/// SQL that takes a validated constraint off the list.
pub fn validated_sql(migration: &str, relation: &str, constraint: &str) -> String {
    format!(
        "DELETE FROM {} WHERE migration = {} AND relation = {} AND constraint_name = {}",
        table("validations"),
        literal(migration),
        literal(relation),
        literal(constraint)
    )
}

/// The constraints left to validate for `migration`: (relation, constraint).
pub async fn to_validate(client: &Client, migration: &str) -> Result<Vec<(String, String)>> {
    let rows = client
        .query(
            &format!(
                "SELECT relation, constraint_name FROM {} WHERE migration = $1 ORDER BY added_at, relation, constraint_name",
                table("validations")
            ),
            &[&migration],
        )
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<std::result::Result<_, tokio_postgres::Error>>()
        .map_err(Into::into)
}
