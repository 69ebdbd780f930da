//! Whether pgshift's role sees every row of the tables a plan reads in full (backfills,
//! copies, verification). Row-level security applies to a role that is neither a superuser
//! nor has BYPASSRLS, unless it owns the table and the table does not FORCE it; such a role
//! would copy or fill only the rows the policies show it. pgshift's connections set
//! `row_security = off`, so that would fail part-way; this check refuses it before anything
//! changes.

use crate::error::{Error, Refusal, Result};
use crate::plan::{Action, Plan};
use crate::quote::qualified;

/// The tables whose every row the plan reads.
fn read_in_full(plan: &Plan) -> Vec<String> {
    let mut tables: Vec<String> = Vec::new();
    for step in plan.start.iter().chain(&plan.complete) {
        if let Action::Backfill(b) = &step.action {
            tables.push(b.table.clone());
        }
    }
    for v in &plan.verify {
        tables.push(v.table.clone());
    }
    tables.sort();
    tables.dedup();
    tables
}

pub(super) async fn every_row_visible(
    client: &tokio_postgres::Client,
    schema: &str,
    plan: &Plan,
) -> Result<()> {
    let tables = read_in_full(plan);
    if tables.is_empty() {
        return Ok(());
    }
    let row = client
        .query_one(
            "SELECT current_user::text, rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?;
    let (me, exempt): (String, bool) = (row.try_get(0)?, row.try_get(1)?);
    if exempt {
        return Ok(());
    }
    for table in tables {
        let name = qualified(schema, &table).to_string();
        let Some(r) = client
            .query_opt(
                "SELECT c.relforcerowsecurity, pg_has_role(current_user, c.relowner, 'USAGE'),
                        pg_get_userbyid(c.relowner)::text
                 FROM pg_class c WHERE c.oid = to_regclass($1) AND c.relrowsecurity",
                &[&name],
            )
            .await?
        else {
            continue;
        };
        let (forced, owner, owner_name): (bool, bool, String) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        if owner && !forced {
            continue;
        }
        let why = if owner {
            format!("{name} forces row-level security on its owner {owner_name}")
        } else {
            format!("{name} has row-level security and {me} does not own it")
        };
        return Err(Error::refused(
            Refusal::RowSecurity,
            format!(
                "{why}: pgshift, as {me}, would see only the rows the policies show it, and copy or fill only those"
            ),
            Some(&format!(
                "run pgshift as a role with BYPASSRLS (a superuser can ALTER ROLE {me} BYPASSRLS){}",
                if owner {
                    format!(", or lift the forcing for the migration: ALTER TABLE {name} NO FORCE ROW LEVEL SECURITY (the owner's own sessions then bypass the policies until you FORCE it again)")
                } else {
                    String::new()
                }
            )),
        ));
    }
    Ok(())
}
