//! One file per operation; this list is the only other place that names them.

mod add_column;
mod alter_column;
mod constraints;
mod create_index;
mod create_table;
mod drop_column;
mod drop_index;
mod drop_table;
mod duplicate;
mod rename;
mod replica_identity;
mod sql;

use super::OperationPlan;
use crate::model::{self, Operation, ReferentialAction};
use crate::quote::{ident, qualified};

pub(super) fn dispatch(op: &Operation) -> &dyn OperationPlan {
    match op {
        Operation::CreateTable(o) => o,
        Operation::DropTable(o) => o,
        Operation::RenameTable(o) => o,
        Operation::AddColumn(o) => o,
        Operation::DropColumn(o) => o,
        Operation::RenameColumn(o) => o,
        Operation::AlterColumn(o) => o,
        Operation::CreateIndex(o) => o,
        Operation::DropIndex(o) => o,
        Operation::CreateConstraint(o) => o,
        Operation::DropConstraint(o) => o,
        Operation::DropMulticolumnConstraint(o) => o,
        Operation::RenameConstraint(o) => o,
        Operation::SetReplicaIdentity(o) => o,
        Operation::Sql(o) => o,
    }
}

type Invalid = (String, Option<String>);

/// Refuses names in pgshift's own namespace.
fn not_internal(name: &str) -> Result<(), Invalid> {
    if name.starts_with(super::INTERNAL_PREFIX) {
        return Err((
            format!(
                "{name:?} starts with {:?}, which pgshift keeps for its own objects",
                super::INTERNAL_PREFIX
            ),
            Some("choose another name".to_owned()),
        ));
    }
    Ok(())
}

fn action_sql(a: ReferentialAction) -> &'static str {
    match a {
        ReferentialAction::NoAction => "NO ACTION",
        ReferentialAction::Restrict => "RESTRICT",
        ReferentialAction::Cascade => "CASCADE",
        ReferentialAction::SetNull => "SET NULL",
        ReferentialAction::SetDefault => "SET DEFAULT",
    }
}

/// ` REFERENCES "schema"."table" ("col") ON DELETE ... ` for a column reference.
fn references_sql(schema: &str, physical_table: &str, r: &model::ForeignKeyReference) -> String {
    let mut s = format!(
        " REFERENCES {} ({})",
        qualified(schema, physical_table),
        ident(&r.column)
    );
    if let Some(m) = r.match_type {
        s.push_str(match m {
            model::MatchType::Simple => " MATCH SIMPLE",
            model::MatchType::Full => " MATCH FULL",
        });
    }
    if let Some(a) = r.on_delete {
        s.push_str(&format!(" ON DELETE {}", action_sql(a)));
    }
    if let Some(a) = r.on_update {
        s.push_str(&format!(" ON UPDATE {}", action_sql(a)));
    }
    if r.deferrable {
        s.push_str(" DEFERRABLE");
        if r.initially_deferred {
            s.push_str(" INITIALLY DEFERRED");
        }
    }
    s
}

/// Whether `expr` calls a volatile function (then it must not be a column's default when
/// the column is added: PostgreSQL would rewrite the table to evaluate it for every row).
/// An expression that does not parse counts as volatile: the safe path.
fn is_volatile(expr: &str, volatile_functions: &std::collections::BTreeSet<String>) -> bool {
    let Ok(parsed) = pg_query::parse(&format!("SELECT {expr}")) else {
        return true;
    };
    parsed
        .protobuf
        .nodes()
        .into_iter()
        .any(|(node, ..)| match node {
            pg_query::NodeRef::FuncCall(f) => f.funcname.last().is_some_and(|n| match &n.node {
                Some(pg_query::protobuf::node::Node::String(s)) => {
                    volatile_functions.contains(&s.sval)
                }
                _ => true,
            }),
            _ => false,
        })
}

/// Rewrites references to column `from` in a SQL expression into `to` (for a constraint
/// written against a column's name but created on its new physical copy).
fn rename_column_refs(expr: &str, from: &str, to: &str) -> Result<String, Invalid> {
    use pg_query::protobuf::node::Node;
    let mut parsed = pg_query::parse(&format!("SELECT {expr}"))
        .map_err(|e| (format!("the expression {expr:?} does not parse: {e}"), None))?;
    // SAFETY: pg_query hands out raw pointers into `parsed.protobuf`; they stay valid
    // because the tree is not otherwise touched until the loop ends.
    let nodes = unsafe { parsed.protobuf.nodes_mut() };
    for (node, ..) in nodes {
        if let pg_query::NodeMut::ColumnRef(c) = node {
            // SAFETY: see above; each pointer is used once, alone.
            let c = unsafe { &mut *c };
            if c.fields.len() == 1 {
                if let Some(Node::String(s)) = c.fields[0].node.as_mut() {
                    if s.sval == from {
                        s.sval = to.to_owned();
                    }
                }
            }
        }
    }
    let sql = parsed
        .protobuf
        .deparse()
        .map_err(|e| (format!("cannot rewrite {expr:?}: {e}"), None))?;
    Ok(sql
        .strip_prefix("SELECT ")
        .map(str::to_owned)
        .unwrap_or(sql))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volatility_follows_the_function_list() {
        let volatile: std::collections::BTreeSet<String> = ["random".to_owned()].into();
        assert!(is_volatile("(random() * 1000)::int", &volatile));
        assert!(!is_volatile("now()", &volatile));
        assert!(!is_volatile("'x'", &volatile));
        assert!(is_volatile("not sql at all (", &volatile));
    }

    #[test]
    fn column_refs_are_renamed_and_nothing_else() {
        let out = rename_column_refs(
            "length(name) > 3 AND other.name <> 'name'",
            "name",
            "_pgshift_new_name",
        )
        .unwrap();
        assert_eq!(
            out,
            "length(_pgshift_new_name) > 3 AND other.name <> 'name'"
        );
    }
}
