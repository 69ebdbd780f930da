//! Who may use the version schema: the same roles, with the same privileges, as on the
//! tables its views show.

use super::apply::privileges;
use super::read;
use crate::plan::VirtualSchema;
use crate::quote::{ident, qualified};
use tokio_postgres::Client;

/// The statements that give `to` the privileges (table and column), row-level security and
/// policies that `from` has now.
pub async fn access_to(
    client: &Client,
    schema: &str,
    from: &str,
    to: &str,
) -> crate::error::Result<Vec<String>> {
    let (Some(from_oid), Some(to_oid)) = (
        read::oid(client, schema, from).await?,
        read::oid(client, schema, to).await?,
    ) else {
        return Ok(Vec::new());
    };
    let target = qualified(schema, to).to_string();
    let on = format!("TABLE {target}");
    let mut out = privileges(
        &on,
        None,
        &read::grants(client, to_oid).await?,
        &read::grants(client, from_oid).await?,
    );
    for c in read::columns(client, from_oid, None).await? {
        out.extend(privileges(&on, Some(&c.name), &[], &c.grants));
    }
    let dressing = read::table(client, from_oid, schema, from).await?;
    out.extend(super::apply::row_security(&target, &dressing));
    Ok(out)
}

/// The grants that give the version schema's views the privileges of their tables: USAGE
/// on the version schema to whoever has it on the base schema, each table's privileges on
/// its view, each column's on the view's column. Before PostgreSQL 15 a view reads its table
/// with its owner's rights, past the table's row-level security: the view of a table with
/// row-level security then gets no grants, so that nobody reads around its policies.
pub async fn version_access(
    client: &Client,
    schema: &str,
    version_schema: &str,
    vs: &VirtualSchema,
    server_version_num: i32,
) -> crate::error::Result<Vec<String>> {
    let me: String = client
        .query_one("SELECT current_user::text", &[])
        .await?
        .try_get(0)?;
    let mut out = Vec::new();
    let usage = client
        .query(
            "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee)::text END,
                    a.privilege_type, a.is_grantable
             FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
             WHERE n.nspname = $1 AND a.privilege_type = 'USAGE'",
            &[&schema],
        )
        .await?;
    for r in &usage {
        let grantee: Option<String> = r.try_get(0)?;
        if grantee.as_deref() == Some(me.as_str()) {
            continue;
        }
        out.push(format!(
            "GRANT USAGE ON SCHEMA {} TO {}",
            ident(version_schema),
            grantee.map_or_else(|| "PUBLIC".to_owned(), |g| ident(&g).to_string())
        ));
    }
    for (name, table) in &vs.tables {
        let Some(oid) = read::oid(client, schema, &table.physical).await? else {
            continue;
        };
        let row_security: bool = client
            .query_one(
                "SELECT relrowsecurity FROM pg_class WHERE oid = $1",
                &[&oid],
            )
            .await?
            .try_get(0)?;
        if row_security && server_version_num < 150000 {
            continue;
        }
        let view = qualified(version_schema, name).to_string();
        let on = format!("TABLE {view}");
        let grants: Vec<_> = read::grants(client, oid)
            .await?
            .into_iter()
            .filter(|g| g.grantee.as_deref() != Some(me.as_str()))
            .filter(|g| {
                matches!(
                    g.privilege.as_str(),
                    "SELECT" | "INSERT" | "UPDATE" | "DELETE"
                )
            })
            .collect();
        out.extend(privileges(&on, None, &[], &grants));
        for c in read::columns(client, oid, None).await? {
            // A column's copy shows under the column's name: it gets the column's grants.
            let shown = table
                .columns
                .iter()
                .find(|v| v.physical == c.name)
                .or_else(|| table.columns.iter().find(|v| v.name == c.name));
            let Some(shown) = shown else {
                continue;
            };
            let grants: Vec<_> = c
                .grants
                .into_iter()
                .filter(|g| g.grantee.as_deref() != Some(me.as_str()))
                .filter(|g| matches!(g.privilege.as_str(), "SELECT" | "INSERT" | "UPDATE"))
                .collect();
            out.extend(privileges(&on, Some(&shown.name), &[], &grants));
        }
    }
    Ok(out)
}
