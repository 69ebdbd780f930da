//! The checks: what a migration is checked against before and after it changes anything.
//! [`plan_for`] plans a migration against the live catalog and asks the server about its
//! fragments ([`server`]) and rows ([`precheck`], read-only and rolled back); [`verify`] runs
//! the plan's checks before complete.

mod access;
pub mod precheck;
mod server;
pub mod verify;

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::model::Migration;
use crate::plan::{self, Plan, PlanContext};
use crate::source::MigrationFile;
use crate::state;

/// Plans `migration` against the live catalog. Problems come back as diagnostics on the
/// file, naming the operation.
pub async fn plan_for(
    client: &tokio_postgres::Client,
    file: &MigrationFile,
    migration: &Migration,
    schema: &str,
) -> Result<Plan> {
    plan_with_catalog(client, file, migration, schema, true)
        .await
        .map(|(plan, _)| plan)
}

/// [`plan_for`], with the catalog it was planned against. `check_rows`: whether type
/// changes read the table to check that every row converts (false when that was checked
/// moments before, in the same run).
pub async fn plan_with_catalog(
    client: &tokio_postgres::Client,
    file: &MigrationFile,
    migration: &Migration,
    schema: &str,
    check_rows: bool,
) -> Result<(Plan, Catalog)> {
    let catalog = Catalog::load(client, schema).await?;
    let previous = state::latest_version_schema(client)
        .await?
        .map(|(schema, _)| schema);
    let ctx = PlanContext {
        schema,
        migration: &file.name,
        version_schema: plan::version_schema_name(schema, &file.name, migration),
        previous_version_schema: previous,
        catalog: &catalog,
    };
    let plan = plan::plan_migration(&ctx, migration).map_err(|errors| {
        Error::Input(
            errors
                .into_iter()
                .map(|e| {
                    let mut d = file.operation_diagnostic(e.operation, e.kind, &e.message);
                    d.hint = e.hint;
                    d
                })
                .collect(),
        )
    })?;
    server::check_on_server(client, file, migration, &catalog, schema, check_rows).await?;
    access::every_row_visible(client, schema, &plan).await?;
    access::swaps_can_carry(client, schema, &plan).await?;
    Ok((plan, catalog))
}
