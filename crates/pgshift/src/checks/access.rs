//! Whether pgshift's role can do what the plan needs of it, before anything changes: see
//! every row of the tables it reads in full, and carry over at each swap what hangs on the
//! table.
//!
//! Whether pgshift's role sees every row of the tables a plan reads in full (backfills,
//! copies, verification). Row-level security applies to a role that is neither a superuser
//! nor has BYPASSRLS, unless it owns the table and the table does not FORCE it; such a role
//! would copy or fill only the rows the policies show it. pgshift's connections set
//! `row_security = off`, so that would fail part-way; this check refuses it before anything
//! changes.

use crate::error::{Error, Refusal, Result};
use crate::fidelity::read;
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

/// What stands in the way of carrying a swapped table's dependents over, each as a sentence
/// naming the object and what to do.
async fn obstacles(
    client: &tokio_postgres::Client,
    schema: &str,
    table: &str,
    copy: bool,
    super_user: bool,
) -> Result<Vec<String>> {
    let name = qualified(schema, table).to_string();
    let mut out = Vec::new();
    // Views are made again and given back to their owners.
    let views = client
        .query(
            "WITH RECURSIVE d(oid) AS (
                 SELECT r.ev_class FROM pg_depend x JOIN pg_rewrite r ON r.oid = x.objid
                 WHERE x.classid = 'pg_rewrite'::regclass AND x.refobjid = to_regclass($1) AND r.ev_class <> to_regclass($1)
                 UNION
                 SELECT r.ev_class FROM d JOIN pg_depend x ON x.refobjid = d.oid JOIN pg_rewrite r ON r.oid = x.objid
                 WHERE x.classid = 'pg_rewrite'::regclass AND r.ev_class <> d.oid
             )
             SELECT c.oid::regclass::text, pg_get_userbyid(c.relowner)::text
             FROM pg_class c WHERE c.oid IN (SELECT oid FROM d)
               AND NOT pg_has_role(current_user, c.relowner, 'USAGE')",
            &[&name],
        )
        .await?;
    if !super_user {
        for v in &views {
            let (view, owner): (String, String) = (v.try_get(0)?, v.try_get(1)?);
            out.push(format!(
                "view {view} over {name} belongs to {owner}, and pgshift's role can neither drop it nor make it again as {owner}: GRANT {owner} TO the role pgshift runs as, or run it as {owner}"
            ));
        }
    }
    if !copy {
        return Ok(out);
    }
    // A copy is a new table: whatever uses the old one's row type would keep it alive.
    let users = client
        .query(
            "SELECT pg_describe_object(d.classid, d.objid, d.objsubid)
             FROM pg_depend d JOIN pg_class c ON c.reltype = d.refobjid
             WHERE c.oid = to_regclass($1) AND d.refclassid = 'pg_type'::regclass AND d.deptype = 'n'
             ORDER BY 1",
            &[&name],
        )
        .await?;
    for u in &users {
        let what: String = u.try_get(0)?;
        out.push(format!(
            "{what} uses the row type of {name}, which a copy of the table cannot take over: change it in place (leave out `method: copy`), or drop {what} and make it again after"
        ));
    }
    if !super_user {
        let Some(oid) = read::oid(client, schema, table).await? else {
            return Ok(out);
        };
        let publications = read::publications_not_ours(client, oid).await?;
        for (publication, owner) in publications {
            out.push(format!(
                "publication {publication}, which {name} is in, belongs to {owner}: pgshift's role cannot put the copy in it; GRANT {owner} TO the role pgshift runs as, or run it as {owner}"
            ));
        }
    }
    Ok(out)
}

/// Refuses a plan whose swaps could not carry what hangs on their tables (exit 2, nothing
/// changed), rather than failing at complete after the whole backfill.
pub(super) async fn swaps_can_carry(
    client: &tokio_postgres::Client,
    schema: &str,
    plan: &Plan,
) -> Result<()> {
    let mut problems = Vec::new();
    let mut super_user = None;
    for step in plan.start.iter().chain(&plan.complete) {
        let (Action::Swap(_) | Action::CarryAccess { .. }) = &step.action else {
            continue;
        };
        let is_super = match super_user {
            Some(s) => s,
            None => {
                let s: bool = client
                    .query_one(
                        "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
                        &[],
                    )
                    .await?
                    .try_get(0)?;
                *super_user.insert(s)
            }
        };
        match &step.action {
            Action::Swap(spec) => {
                for part in &spec.parts {
                    problems.extend(
                        obstacles(client, schema, &part.table, part.copy.is_some(), is_super)
                            .await?,
                    );
                }
            }
            Action::CarryAccess {
                from,
                to,
                through: Some(through),
                ..
            } => {
                problems.extend(
                    crate::fidelity::extracted::obstacles(
                        client, schema, from, to, through, is_super,
                    )
                    .await?,
                );
            }
            _ => {}
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::refused(
        Refusal::CannotCarry,
        format!(
            "complete could not carry over what depends on the tables it swaps or the columns it moves:\n  {}",
            problems.join("\n  ")
        ),
        Some("nothing was changed; see docs/fidelity.md for what a swap carries"),
    ))
}
