//! Materialized views built on a table's copy before the swap, so that the swap only
//! renames them in: a `CREATE MATERIALIZED VIEW` inside the swap would scan the table while
//! every client waits for it, and one made `WITH NO DATA` would be unreadable until it is
//! refreshed.
//!
//! The view's query is read as the server prints it with an empty `search_path` (every
//! relation qualified), pointed at the copies by its parse tree, and created under an
//! internal name with its indexes, each under an internal name too. A query that cannot be
//! pointed at the copies this way (it reads another view over the table, or names the table
//! in a way the rewrite does not follow) is made again inside the swap, as any view is.

use pg_query::protobuf::node::Node;
use pg_query::{NodeMut, NodeRef};

/// A relation `schema.table` that a copy named `copy` (in the same schema) replaces.
#[derive(Debug, Clone)]
pub struct Replaced {
    pub schema: String,
    pub table: String,
    pub copy: String,
}

/// The name a materialized view is built under before the swap.
pub fn internal(name: &str) -> String {
    crate::plan::internal_name("mv", &[name])
}

/// `query` (a view's query, relations qualified) with each relation of `replaced` read from
/// its copy instead, and each column reference qualified by the relation's name qualified by
/// the copy's. None when the query does not parse or deparse.
pub fn point_at_copies(query: &str, replaced: &[Replaced]) -> Option<String> {
    let mut parsed = pg_query::parse(query).ok()?;
    // A column reference `orders.price` names whatever the query calls `orders`: followed
    // only when nothing in the query (an alias, a CTE) takes a replaced table's name.
    let mut taken = Vec::new();
    for (node, ..) in parsed.protobuf.nodes() {
        let alias = |a: &Option<pg_query::protobuf::Alias>| a.as_ref().map(|a| a.aliasname.clone());
        taken.extend(match node {
            NodeRef::RangeVar(r) => alias(&r.alias),
            NodeRef::RangeSubselect(r) => alias(&r.alias),
            NodeRef::RangeFunction(r) => alias(&r.alias),
            NodeRef::JoinExpr(j) => alias(&j.alias),
            NodeRef::CommonTableExpr(c) => Some(c.ctename.clone()),
            _ => None,
        });
    }
    if replaced.iter().any(|r| taken.contains(&r.table)) {
        return None;
    }
    let copy_of = |schema: Option<&str>, table: &str| {
        replaced
            .iter()
            .find(|r| r.table == table && schema.is_none_or(|s| s == r.schema))
            .map(|r| r.copy.clone())
    };
    // SAFETY: pg_query hands out raw pointers into the tree; they stay valid because its
    // shape is not changed while they are used (only strings are replaced), each used alone.
    let nodes = unsafe { parsed.protobuf.nodes_mut() };
    for (node, ..) in nodes {
        match node {
            NodeMut::RangeVar(r) => {
                // SAFETY: as above.
                let r = unsafe { &mut *r };
                if r.schemaname.is_empty() {
                    // Printed with an empty search_path, an unqualified relation is a
                    // CTE's name or one of pg_catalog's: neither is replaced.
                    continue;
                }
                if let Some(copy) = copy_of(Some(&r.schemaname), &r.relname) {
                    r.relname = copy;
                }
            }
            NodeMut::ColumnRef(c) => {
                // SAFETY: as above.
                let c = unsafe { &mut *c };
                let names: Vec<Option<String>> = c
                    .fields
                    .iter()
                    .map(|f| match f.node.as_ref() {
                        Some(Node::String(s)) => Some(s.sval.clone()),
                        _ => None,
                    })
                    .collect();
                let n = names.len();
                if n < 2 {
                    continue;
                }
                let Some(table) = names[n - 2].as_deref() else {
                    continue;
                };
                let schema = if n >= 3 {
                    names[n - 3].as_deref()
                } else {
                    None
                };
                if let Some(copy) = copy_of(schema, table) {
                    if let Some(Node::String(s)) = c.fields[n - 2].node.as_mut() {
                        s.sval = copy;
                    }
                }
            }
            _ => {}
        }
    }
    parsed.protobuf.deparse().ok()
}

/// What builds one materialized view on the copies: the statements (the view under its
/// internal name, then its indexes under theirs), the internal name, and each index's
/// (internal name, name). None when its query or an index cannot be pointed at the copies.
pub struct Build {
    pub sql: Vec<String>,
    pub built: String,
    pub indexes: Vec<(String, String)>,
}

/// How to build `v` (its query printed with relations qualified) on the copies.
pub fn build(v: &super::DependentView, replaced: &[Replaced]) -> Option<Build> {
    let query = point_at_copies(v.definition.trim().trim_end_matches(';'), replaced)?;
    let built = internal(&v.name);
    let mut sql = vec![format!(
        "CREATE MATERIALIZED VIEW {} AS {query}",
        crate::quote::qualified(&v.schema, &built)
    )];
    let mut indexes = Vec::new();
    for definition in &v.indexes {
        let (name, create) = index_on(definition, &v.schema, &built)?;
        sql.push(create);
        indexes.push((internal_index(&name), name));
    }
    Some(Build {
        sql,
        built,
        indexes,
    })
}

/// An index's internal name: its own kind, since indexes and views share the schema's names.
fn internal_index(name: &str) -> String {
    crate::plan::internal_name("mvi", &[name])
}

/// `CREATE INDEX` as `pg_get_indexdef` prints it, made on relation `schema.on` under the
/// index's internal name instead; with the index's own name. None when it does not parse as
/// one.
fn index_on(definition: &str, schema: &str, on: &str) -> Option<(String, String)> {
    let mut parsed = pg_query::parse(definition).ok()?;
    let stmt = parsed.protobuf.stmts.first_mut()?.stmt.as_mut()?;
    let Some(Node::IndexStmt(index)) = stmt.node.as_mut() else {
        return None;
    };
    let under = internal_index(&index.idxname);
    let name = std::mem::replace(&mut index.idxname, under);
    let relation = index.relation.as_mut()?;
    relation.schemaname = schema.to_owned();
    relation.relname = on.to_owned();
    Some((name, parsed.protobuf.deparse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orders() -> Vec<Replaced> {
        vec![Replaced {
            schema: "public".into(),
            table: "orders".into(),
            copy: "_pgshift_copy_orders".into(),
        }]
    }

    #[test]
    fn a_query_reads_the_copy_and_its_column_references_follow() {
        let q = "SELECT orders.tenant, count(*) AS n, max(orders.price) AS top FROM public.orders \
                 JOIN public.customers c ON c.id = orders.customer_id \
                 WHERE orders.id IN (SELECT o.id FROM public.orders o) GROUP BY orders.tenant";
        let out = point_at_copies(q, &orders()).unwrap();
        assert!(!out.contains("public.orders "), "{out}");
        assert_eq!(out.matches("_pgshift_copy_orders.").count(), 4, "{out}");
        assert!(
            out.contains("FROM public._pgshift_copy_orders JOIN public.customers c"),
            "{out}"
        );
        assert!(out.contains("FROM public._pgshift_copy_orders o"), "{out}");
        // Another schema's table of the same name stays.
        let other = "SELECT a.price FROM audit.orders a";
        let out = point_at_copies(other, &orders()).unwrap();
        assert!(!out.contains("_pgshift_copy_orders"), "{out}");
        // A CTE or an alias that takes the table's name: not followed.
        let cte =
            "WITH orders AS (SELECT 1 AS price) SELECT orders.price FROM orders, public.orders o";
        assert_eq!(point_at_copies(cte, &orders()), None);
        let alias = "SELECT orders.price FROM public.customers orders, public.orders o";
        assert_eq!(point_at_copies(alias, &orders()), None);
    }

    #[test]
    fn an_index_is_renamed_onto_another_relation() {
        let (name, out) = index_on(
            "CREATE UNIQUE INDEX order_stats_tenant ON public.order_stats USING btree (tenant) WHERE (n > 0)",
            "public",
            "_pgshift_mv_order_stats",
        )
        .unwrap();
        assert_eq!(name, "order_stats_tenant");
        assert_eq!(
            out,
            "CREATE UNIQUE INDEX _pgshift_mvi_order_stats_tenant ON public._pgshift_mv_order_stats USING btree (tenant) WHERE n > 0"
        );
    }
}
