//! A table made of some columns of another (`extract`): what hangs on the moved columns
//! goes with them, so that nobody gains or loses access to their values.
//!
//! The new table is the source's in all but name: it belongs to the source's owner, has its
//! privileges, and each moved column the column's own privileges, statistics target,
//! storage, compression, comment and security labels. Where the source has row-level
//! security, the new table has it too (forced when the source is), with one policy for each
//! of the source's, of the same name, kind, command and roles, whose expressions hold for a
//! row exactly when the source's hold for the row it belongs to: `EXISTS (SELECT FROM
//! source WHERE source.key = reference AND (expression))`. The subquery runs under the
//! source's own policies for the role, so a note is shown to whoever is shown its order. The
//! new table joins each publication the source is in (with the reference column and the
//! moved ones where the publication lists columns), so change data capture goes on
//! receiving the moved values. All of it is given at start, before any client writes
//! through the triggers, and stays after complete.

use super::apply;
use super::read;
use super::{ColumnDressing, Policy, TableDressing};
use crate::error::Result;
use crate::plan::Through;
use crate::quote::{ident, qualified};
use tokio_postgres::Client;

/// The moved columns' names in the source.
fn sources(through: &Through) -> Vec<String> {
    through.columns.iter().map(|(s, _)| s.clone()).collect()
}

/// A policy of the source, for the new table `to`: its expressions hold for a row of `to`
/// when the source's hold for the row the row belongs to.
fn derived(p: &Policy, source: &str, to: &str, through: &Through) -> Policy {
    let wrap = |e: &Option<String>| {
        e.as_ref().map(|e| {
            format!(
                "EXISTS (SELECT FROM {source} WHERE {source}.{key} = {to}.{reference} AND ({e}))",
                key = ident(&through.key),
                reference = ident(&through.reference),
            )
        })
    };
    Policy {
        using: wrap(&p.using),
        with_check: wrap(&p.with_check),
        ..p.clone()
    }
}

/// The statements that give `to`, just made by `extract` from columns of `from`, what
/// hangs on those columns and on `from` (see the module's comment).
pub async fn access(
    client: &Client,
    schema: &str,
    from: &str,
    to: &str,
    through: &Through,
) -> Result<Vec<String>> {
    let (Some(from_oid), Some(to_oid)) = (
        read::oid(client, schema, from).await?,
        read::oid(client, schema, to).await?,
    ) else {
        return Ok(Vec::new());
    };
    let source = qualified(schema, from).to_string();
    let target = qualified(schema, to).to_string();
    let d = read::table(client, from_oid, schema, from).await?;
    let mut out = Vec::new();
    // Given to the source's owner, the table has that owner's default privileges: the
    // source's are set against those.
    let row = client
        .query_one(
            "SELECT pg_get_userbyid(relowner)::text, relacl IS NULL FROM pg_class WHERE oid = $1",
            &[&to_oid],
        )
        .await?;
    let (owner, no_acl): (String, bool) = (row.try_get(0)?, row.try_get(1)?);
    if owner != d.owner {
        out.push(format!("ALTER TABLE {target} OWNER TO {}", ident(&d.owner)));
    }
    // With no ACL of its own the table reads as its owner's defaults: every privilege.
    let now = if no_acl {
        read::owner_defaults(client, from_oid).await?
    } else {
        read::grants(client, to_oid).await?
    };
    let on = format!("TABLE {target}");
    out.extend(apply::privileges(&on, None, &now, &d.grants));
    let varlena = read::varlena_columns(client, to_oid).await?;
    for c in &d.columns {
        let Some((_, name)) = through.columns.iter().find(|(s, _)| *s == c.name) else {
            continue;
        };
        let moved = ColumnDressing {
            name: name.clone(),
            ..c.clone()
        };
        out.extend(apply::column(&target, &moved, varlena.contains(name)));
    }
    if d.row_security || d.force_row_security {
        let policies = TableDressing {
            row_security: d.row_security,
            force_row_security: d.force_row_security,
            policies: d
                .policies
                .iter()
                .map(|p| derived(p, &source, &target, through))
                .collect(),
            ..TableDressing::default()
        };
        out.extend(apply::row_security(&target, &policies));
    }
    let mut publications = TableDressing::default();
    for p in &d.publications {
        let mut p = p.clone();
        if let Some(cols) = &p.columns {
            let mut listed = vec![through.reference.clone()];
            listed.extend(
                through
                    .columns
                    .iter()
                    .filter(|(s, _)| cols.contains(s))
                    .map(|(_, n)| n.clone()),
            );
            if listed.len() == 1 {
                continue;
            }
            p.columns = Some(listed);
        }
        // A row filter is refused before start (`obstacles`).
        p.row_filter = None;
        publications.publications.push(p);
    }
    out.extend(apply::dependents(&target, &publications));
    Ok(out)
}

/// What stands in the way of moving `through`'s columns out of `schema.from`, each as a
/// sentence naming the object and what to do: whatever would stop their drop at complete
/// (a view, a policy, a trigger, a rule, a statistics object, a publication's column list
/// or row filter using them) or that the new table cannot be given (a publication's row
/// filter; for a role that is not a superuser, an owner or a publication it cannot act for).
pub async fn obstacles(
    client: &Client,
    schema: &str,
    from: &str,
    into: &str,
    through: &Through,
    super_user: bool,
) -> Result<Vec<String>> {
    let Some(oid) = read::oid(client, schema, from).await? else {
        return Ok(Vec::new());
    };
    let name = qualified(schema, from).to_string();
    let moved = sources(through);
    let what = |object: String| {
        format!(
            "{object} uses a column of {name} that extract moves into {into}, and would stop the column's drop at complete: drop it before the extract (a `sql` operation ahead of it) and make it again over {into} after"
        )
    };
    let mut out = Vec::new();
    for v in read::dependent_views(client, oid, Some(&moved)).await? {
        if v.depth == 1 {
            let kind = if v.materialized {
                "materialized view"
            } else {
                "view"
            };
            out.push(what(format!("{kind} {}", qualified(&v.schema, &v.name))));
        }
    }
    let on = read::column_dependents(client, oid, &moved).await?;
    out.extend(
        on.policies
            .iter()
            .map(|p| what(format!("policy {}", ident(&p.name)))),
    );
    out.extend(
        on.triggers
            .iter()
            .map(|t| what(format!("trigger {}", ident(&t.name)))),
    );
    out.extend(
        on.rules
            .iter()
            .map(|r| what(format!("rule {}", ident(&r.name)))),
    );
    out.extend(
        on.publications
            .iter()
            .map(|p| what(format!("publication {}", ident(&p.name)))),
    );
    out.extend(
        read::statistics_on(client, oid, &moved)
            .await?
            .iter()
            .map(|s| what(format!("statistics object {}", ident(&s.name)))),
    );
    let d = read::table(client, oid, schema, from).await?;
    for p in d.publications.iter().filter(|p| p.row_filter.is_some()) {
        if !on.publications.iter().any(|o| o.name == p.name) {
            out.push(format!(
                "publication {} publishes only the rows of {name} its row filter admits, which {into} cannot be given (its rows lack the filter's columns): take {name} out of it, or publish it without a filter, for the extract",
                ident(&p.name)
            ));
        }
    }
    if !super_user {
        let member: bool = client
            .query_one(
                "SELECT pg_has_role(current_user, relowner, 'USAGE') FROM pg_class WHERE oid = $1",
                &[&oid],
            )
            .await?
            .try_get(0)?;
        if !member {
            out.push(format!(
                "{name} belongs to {owner}, and pgshift's role could not give {into} to {owner}: GRANT {owner} TO the role pgshift runs as, or run it as {owner}",
                owner = ident(&d.owner)
            ));
        }
        for (publication, owner) in read::publications_not_ours(client, oid).await? {
            out.push(format!(
                "publication {publication}, which {name} is in, belongs to {owner}: pgshift's role cannot put {into} in it; GRANT {owner} TO the role pgshift runs as, or run it as {owner}"
            ));
        }
    }
    Ok(out)
}
