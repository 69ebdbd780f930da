//! Reading what hangs on a table, a column or a view from the catalog. Every read is by
//! OID (`to_regclass` of the quoted name), and what depends on the server's version reads
//! as "none" where the server has no such thing. The reads run inside the swap's
//! transaction, so they fail as the server's errors do (a lock not granted is retried).

use super::{
    ColumnDressing, Definition, DependentView, Grant, Policy, Publication, ReferencingKey,
    Statistics, TableDressing,
};
use crate::plan::INTERNAL_PREFIX;
use crate::quote::qualified;
use tokio_postgres::Client;

type Pg<T> = std::result::Result<T, tokio_postgres::Error>;

async fn server_version(client: &Client) -> Pg<i32> {
    client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await?
        .try_get(0)
}

/// The OID of `schema.name`, None when there is no such relation.
pub async fn oid(client: &Client, schema: &str, name: &str) -> Pg<Option<u32>> {
    client
        .query_one(
            "SELECT to_regclass($1)::oid",
            &[&qualified(schema, name).to_string()],
        )
        .await?
        .try_get(0)
}

/// A row of (grantee or NULL for PUBLIC, privilege, grantable).
fn grant_of(r: &tokio_postgres::Row) -> Pg<Grant> {
    Ok(Grant {
        grantee: r.try_get(0)?,
        privilege: r.try_get(1)?,
        grantable: r.try_get(2)?,
    })
}

/// A row of (name, definition, own target).
fn statistics_of(r: &tokio_postgres::Row) -> Pg<Statistics> {
    Ok(Statistics {
        name: r.try_get(0)?,
        sql: r.try_get(1)?,
        target: r.try_get(2)?,
    })
}

/// Which columns of relation `oid` have a type of variable length (storage and compression
/// settings apply to those only).
pub async fn varlena_columns(client: &Client, oid: u32) -> Pg<Vec<String>> {
    client
        .query(
            "SELECT a.attname::text FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND t.typlen = -1",
            &[&oid],
        )
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect()
}

/// The privileges a relation owned by relation `oid`'s owner has by default.
pub async fn owner_defaults(client: &Client, oid: u32) -> Pg<Vec<Grant>> {
    let rows = client
        .query(
            "SELECT pg_get_userbyid(a.grantee)::text, a.privilege_type, a.is_grantable
             FROM pg_class c, aclexplode(acldefault('r', c.relowner)) a WHERE c.oid = $1",
            &[&oid],
        )
        .await?;
    let mut out = rows.iter().map(grant_of).collect::<Pg<Vec<_>>>()?;
    out.sort();
    Ok(out)
}

/// The privileges of a relation, the owner's defaults when it has no grants.
pub async fn grants(client: &Client, oid: u32) -> Pg<Vec<Grant>> {
    let rows = client
        .query(
            "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee)::text END,
                    a.privilege_type, a.is_grantable
             FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
             WHERE c.oid = $1",
            &[&oid],
        )
        .await?;
    let mut out = rows
        .iter()
        .map(grant_of)
        .collect::<std::result::Result<Vec<_>, tokio_postgres::Error>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

/// What the columns of relation `oid` carry; all of them when `only` is None.
pub async fn columns(
    client: &Client,
    oid: u32,
    only: Option<&[String]>,
) -> Pg<Vec<ColumnDressing>> {
    let rows = client
        .query(
            "SELECT a.attname::text, (to_jsonb(a) ->> 'attstattarget')::int,
                    CASE WHEN a.attstorage <> t.typstorage THEN a.attstorage::text END,
                    nullif(to_jsonb(a) ->> 'attcompression', ''),
                    col_description(a.attrelid, a.attnum),
                    coalesce((SELECT jsonb_agg(jsonb_build_array(
                                  CASE WHEN x.grantee = 0 THEN NULL ELSE pg_get_userbyid(x.grantee)::text END,
                                  x.privilege_type, x.is_grantable))
                              FROM aclexplode(a.attacl) x), '[]'),
                    coalesce((SELECT jsonb_agg(jsonb_build_array(l.provider, l.label) ORDER BY l.provider)
                              FROM pg_seclabel l
                              WHERE l.classoid = 'pg_class'::regclass AND l.objoid = a.attrelid
                                AND l.objsubid = a.attnum), '[]')
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
               AND ($2::text[] IS NULL OR a.attname = ANY ($2))
             ORDER BY a.attnum",
            &[&oid, &only.map(|o| o.to_vec())],
        )
        .await?;
    // One query for every column (this runs under the swap's lock): privileges and labels
    // come as JSON arrays of their fields.
    let fields = |v: &serde_json::Value| -> Vec<Vec<serde_json::Value>> {
        v.as_array()
            .map(|rows| rows.iter().filter_map(|r| r.as_array().cloned()).collect())
            .unwrap_or_default()
    };
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    let mut out = Vec::new();
    for r in &rows {
        let target: Option<i32> = r.try_get(1)?;
        let grants = fields(&r.try_get(5)?)
            .iter()
            .filter_map(|g| {
                Some(Grant {
                    grantee: text(g.first()?),
                    privilege: text(g.get(1)?)?,
                    grantable: g.get(2)?.as_bool()?,
                })
            })
            .collect();
        let security_labels = fields(&r.try_get(6)?)
            .iter()
            .filter_map(|l| Some((text(l.first()?)?, text(l.get(1)?)?)))
            .collect();
        out.push(ColumnDressing {
            name: r.try_get(0)?,
            grants,
            statistics_target: target.filter(|t| *t >= 0),
            storage: r.try_get(2)?,
            compression: r.try_get(3)?,
            comment: r.try_get(4)?,
            security_labels,
        });
    }
    Ok(out)
}

async fn labels(client: &Client, oid: u32, subid: i32) -> Pg<Vec<(String, String)>> {
    let rows = client
        .query(
            "SELECT provider, label FROM pg_seclabel
             WHERE classoid = 'pg_class'::regclass AND objoid = $1 AND objsubid = $2
             ORDER BY provider",
            &[&oid, &subid],
        )
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// SQL that is true when object `objid` of catalog `class` depends on one of the columns
/// `$2` of relation `$1` (always, when `$2` is NULL).
fn on_columns(class: &str, objid: &str) -> String {
    format!(
        "($2::text[] IS NULL OR EXISTS (
             SELECT 1 FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
             WHERE d.classid = '{class}'::regclass AND d.objid = {objid} AND d.refobjid = $1
               AND a.attname = ANY ($2)))"
    )
}

/// Triggers (not pgshift's own, not the internal ones of foreign keys) and rules of `oid`;
/// with `only`, those that depend on one of those columns.
async fn triggers_and_rules(
    client: &Client,
    oid: u32,
    only: Option<&[String]>,
) -> Pg<(Vec<Definition>, Vec<Definition>)> {
    let pattern = format!("{}%", INTERNAL_PREFIX.replace('_', "\\_"));
    let only = only.map(|o| o.to_vec());
    let triggers = client
        .query(
            &format!(
                "SELECT t.tgname::text, pg_get_triggerdef(t.oid), t.tgenabled::text
                 FROM pg_trigger t
                 WHERE t.tgrelid = $1 AND NOT t.tgisinternal AND t.tgname::text NOT LIKE $3
                   AND {}
                 ORDER BY t.tgname",
                on_columns("pg_trigger", "t.oid")
            ),
            &[&oid, &only, &pattern],
        )
        .await?;
    let rules = client
        .query(
            &format!(
                "SELECT r.rulename::text, pg_get_ruledef(r.oid), r.ev_enabled::text
                 FROM pg_rewrite r WHERE r.ev_class = $1 AND r.rulename <> '_RETURN' AND {}
                 ORDER BY r.rulename",
                on_columns("pg_rewrite", "r.oid")
            ),
            &[&oid, &only],
        )
        .await?;
    let defs = |rows: &[tokio_postgres::Row]| {
        rows.iter()
            .map(|r| {
                Ok(Definition {
                    name: r.try_get(0)?,
                    sql: r.try_get(1)?,
                    enabled: r.try_get(2)?,
                })
            })
            .collect::<std::result::Result<Vec<_>, tokio_postgres::Error>>()
    };
    Ok((defs(&triggers)?, defs(&rules)?))
}

/// The row-level security policies of `oid`; with `only`, those that use one of those
/// columns.
async fn policies(client: &Client, oid: u32, only: Option<&[String]>) -> Pg<Vec<Policy>> {
    client
        .query(
            &format!(
                "SELECT p.polname::text, p.polpermissive, p.polcmd::text,
                        ARRAY(SELECT CASE WHEN r = 0 THEN NULL ELSE pg_get_userbyid(r)::text END
                              FROM unnest(p.polroles) r ORDER BY 1),
                        pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
                 FROM pg_policy p WHERE p.polrelid = $1 AND {}
                 ORDER BY p.polname",
                on_columns("pg_policy", "p.oid")
            ),
            &[&oid, &only.map(|o| o.to_vec())],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(Policy {
                name: r.try_get(0)?,
                permissive: r.try_get(1)?,
                command: r.try_get(2)?,
                roles: r.try_get(3)?,
                using: r.try_get(4)?,
                with_check: r.try_get(5)?,
            })
        })
        .collect()
}

/// The publications `oid` is in; with `only`, those whose column list or row filter uses
/// one of those columns (PostgreSQL 15+; before, a publication has neither).
async fn publications(
    client: &Client,
    oid: u32,
    version: i32,
    only: Option<&[String]>,
) -> Pg<Vec<Publication>> {
    if version < 150000 && only.is_some() {
        return Ok(Vec::new());
    }
    // Column lists and row filters came with PostgreSQL 15.
    let sql = if version >= 150000 {
        format!(
            "SELECT p.pubname::text,
                    CASE WHEN pr.prattrs IS NULL THEN NULL ELSE
                      ARRAY(SELECT a.attname::text FROM pg_attribute a
                            WHERE a.attrelid = pr.prrelid AND a.attnum = ANY (pr.prattrs::int2[]) ORDER BY a.attnum) END,
                    pg_get_expr(pr.prqual, pr.prrelid)
             FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
             WHERE pr.prrelid = $1 AND {}
             ORDER BY p.pubname",
            on_columns("pg_publication_rel", "pr.oid")
        )
    } else {
        "SELECT p.pubname::text, NULL::text[], NULL::text
         FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
         WHERE pr.prrelid = $1 AND $2::text[] IS NULL
         ORDER BY p.pubname"
            .to_owned()
    };
    client
        .query(&sql, &[&oid, &only.map(|o| o.to_vec())])
        .await?
        .iter()
        .map(|r| {
            Ok(Publication {
                name: r.try_get(0)?,
                columns: r.try_get(1)?,
                row_filter: r.try_get(2)?,
            })
        })
        .collect()
}

/// What on a table uses one of its columns and would stop the column from being dropped:
/// policies, triggers (a WHEN clause, UPDATE OF), rules, publications with a column list or
/// row filter.
pub async fn column_dependents(client: &Client, oid: u32, only: &[String]) -> Pg<TableDressing> {
    let version = server_version(client).await?;
    let (triggers, rules) = triggers_and_rules(client, oid, Some(only)).await?;
    Ok(TableDressing {
        policies: policies(client, oid, Some(only)).await?,
        triggers,
        rules,
        publications: publications(client, oid, version, Some(only)).await?,
        ..TableDressing::default()
    })
}

/// Everything that hangs on table `schema.name`.
pub async fn table(client: &Client, oid: u32, schema: &str, name: &str) -> Pg<TableDressing> {
    let version = server_version(client).await?;
    let row = client
        .query_one(
            "SELECT pg_get_userbyid(c.relowner)::text, c.relrowsecurity, c.relforcerowsecurity,
                    coalesce(c.reloptions, '{}'), coalesce(t.reloptions, '{}'),
                    obj_description(c.oid, 'pg_class'), c.relreplident::text,
                    (SELECT ic.relname::text FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                     WHERE i.indrelid = c.oid AND i.indisreplident)
             FROM pg_class c LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
             WHERE c.oid = $1",
            &[&oid],
        )
        .await?;
    let policies = policies(client, oid, None).await?;
    let publications = publications(client, oid, version, None).await?;
    let statistics = client
        .query(
            "SELECT s.stxname::text, pg_get_statisticsobjdef(s.oid),
                    nullif((to_jsonb(s) ->> 'stxstattarget')::int, -1)
             FROM pg_statistic_ext s WHERE s.stxrelid = $1 ORDER BY s.stxname",
            &[&oid],
        )
        .await?
        .iter()
        .map(statistics_of)
        .collect::<std::result::Result<Vec<_>, tokio_postgres::Error>>()?;
    let (triggers, rules) = triggers_and_rules(client, oid, None).await?;
    Ok(TableDressing {
        schema: schema.to_owned(),
        name: name.to_owned(),
        owner: row.try_get(0)?,
        grants: grants(client, oid).await?,
        row_security: row.try_get(1)?,
        force_row_security: row.try_get(2)?,
        policies,
        triggers,
        rules,
        publications,
        options: row.try_get(3)?,
        toast_options: row.try_get(4)?,
        comment: row.try_get(5)?,
        security_labels: labels(client, oid, 0).await?,
        replica_identity: row.try_get(6)?,
        replica_index: row.try_get(7)?,
        statistics,
        columns: columns(client, oid, None).await?,
    })
}

/// The extended statistics objects on `oid` that use one of `columns`: dropping a column
/// drops them.
pub async fn statistics_on(client: &Client, oid: u32, columns: &[String]) -> Pg<Vec<Statistics>> {
    let rows = client
        .query(
            "SELECT s.stxname::text, pg_get_statisticsobjdef(s.oid),
                    nullif((to_jsonb(s) ->> 'stxstattarget')::int, -1)
             FROM pg_statistic_ext s
             WHERE s.stxrelid = $1 AND EXISTS (
                 SELECT 1 FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                 WHERE d.classid = 'pg_statistic_ext'::regclass AND d.objid = s.oid
                   AND d.refobjid = $1 AND a.attname = ANY ($2))
             ORDER BY s.stxname",
            &[&oid, &columns.to_vec()],
        )
        .await?;
    rows.iter().map(statistics_of).collect()
}

/// The publications table `oid` is in that belong to a role the current one is not a
/// member of: (publication, owner).
pub async fn publications_not_ours(client: &Client, oid: u32) -> Pg<Vec<(String, String)>> {
    client
        .query(
            "SELECT p.pubname::text, pg_get_userbyid(p.pubowner)::text
             FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
             WHERE pr.prrelid = $1 AND NOT pg_has_role(current_user, p.pubowner, 'USAGE')
             ORDER BY 1",
            &[&oid],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// The views and materialized views that depend on table `oid` (on any of its columns, or
/// only on `columns`), directly or through other views, in the order they can be made.
pub async fn dependent_views(
    client: &Client,
    oid: u32,
    only: Option<&[String]>,
) -> Pg<Vec<DependentView>> {
    let rows = client
        .query(
            "WITH RECURSIVE deps(oid, depth) AS (
                 SELECT DISTINCT r.ev_class, 1
                 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
                 LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                 WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
                   AND d.refobjid = $1 AND r.ev_class <> $1
                   AND ($2::text[] IS NULL OR a.attname = ANY ($2))
                 UNION
                 SELECT DISTINCT r.ev_class, deps.depth + 1
                 FROM deps JOIN pg_depend d ON d.refobjid = deps.oid
                 JOIN pg_rewrite r ON r.oid = d.objid
                 WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
                   AND r.ev_class <> deps.oid AND deps.depth < 100
             )
             SELECT c.oid, n.nspname::text, c.relname::text, c.relkind = 'm', deepest.depth,
                    pg_get_viewdef(c.oid), coalesce(c.reloptions, '{}'), c.relispopulated,
                    pg_get_userbyid(c.relowner)::text, obj_description(c.oid, 'pg_class')
             FROM (SELECT oid, max(depth) AS depth FROM deps GROUP BY oid) deepest
             JOIN pg_class c ON c.oid = deepest.oid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('v', 'm')
             ORDER BY deepest.depth, n.nspname, c.relname",
            &[&oid, &only.map(|c| c.to_vec())],
        )
        .await?;
    let mut out = Vec::new();
    for r in &rows {
        let view: u32 = r.try_get(0)?;
        let (triggers, rules) = triggers_and_rules(client, view, None).await?;
        let defaults = client
            .query(
                "SELECT a.attname::text, pg_get_expr(d.adbin, d.adrelid)
                 FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
                 WHERE d.adrelid = $1 ORDER BY a.attnum",
                &[&view],
            )
            .await?
            .iter()
            .map(|d| Ok((d.try_get(0)?, d.try_get(1)?)))
            .collect::<std::result::Result<Vec<_>, tokio_postgres::Error>>()?;
        let indexes = client
            .query(
                "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
                 JOIN pg_class ic ON ic.oid = i.indexrelid
                 WHERE i.indrelid = $1 ORDER BY ic.relname",
                &[&view],
            )
            .await?
            .iter()
            .map(|d| d.try_get(0))
            .collect::<std::result::Result<Vec<_>, tokio_postgres::Error>>()?;
        out.push(DependentView {
            schema: r.try_get(1)?,
            name: r.try_get(2)?,
            materialized: r.try_get(3)?,
            depth: r.try_get(4)?,
            definition: r.try_get(5)?,
            options: r.try_get(6)?,
            populated: r.try_get(7)?,
            owner: r.try_get(8)?,
            comment: r.try_get(9)?,
            grants: grants(client, view).await?,
            columns: columns(client, view, None).await?,
            defaults,
            triggers,
            rules,
            indexes,
        });
    }
    Ok(out)
}

/// Table `oid` and, when it is partitioned, its partitions at every depth, the table first.
pub async fn partition_tree(client: &Client, oid: u32) -> Pg<Vec<super::TreeRelation>> {
    client
        .query(
            "SELECT c.oid = $1, format('%I.%I', n.nspname, c.relname),
                    c.relkind <> 'p', pg_get_userbyid(c.relowner)::text
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.oid = $1 OR c.oid IN (SELECT relid FROM pg_partition_tree($1::oid::regclass))
             ORDER BY c.oid = $1 DESC, 2",
            &[&oid],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(super::TreeRelation {
                root: r.try_get(0)?,
                name: r.try_get(1)?,
                leaf: r.try_get(2)?,
                owner: r.try_get(3)?,
            })
        })
        .collect()
}

/// The foreign keys that reference table `oid`, its own self-references included.
pub async fn referencing_keys(client: &Client, oid: u32) -> Pg<Vec<ReferencingKey>> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, k.conname::text, pg_get_constraintdef(k.oid),
                    k.convalidated
             FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE k.contype = 'f' AND k.confrelid = $1 AND k.conparentid = 0
             ORDER BY n.nspname, c.relname, k.conname",
            &[&oid],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(ReferencingKey {
                schema: r.try_get(0)?,
                table: r.try_get(1)?,
                name: r.try_get(2)?,
                definition: r.try_get(3)?,
                validated: r.try_get(4)?,
            })
        })
        .collect()
}
