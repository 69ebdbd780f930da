//! One file per operation; this list is the only other place that names them.

mod add_column;
mod alter_column;
mod alter_primary_key;
mod copy_table;
mod create_constraint;
mod create_index;
mod create_table;
mod drop_column;
mod drop_constraint;
mod drop_index;
mod drop_multicolumn_constraint;
mod drop_table;
mod duplicate;
mod extract;
mod in_place;
mod partition_ops;
mod partition_table;
mod rename_column;
mod rename_constraint;
mod rename_table;
mod replica_identity;
mod sql;
mod update;

use super::OperationPlan;
use crate::model::{self, Operation, ReferentialAction};
use crate::quote::{ident, qualified};

macro_rules! dispatch_table {
    ($($variant:ident = $name:literal ($ty:ty)),+ $(,)?) => {
        pub(super) fn dispatch(op: &Operation) -> &dyn OperationPlan {
            match op {
                $(Operation::$variant(o) => o),+
            }
        }
    };
}
crate::model::with_operations!(dispatch_table);

pub(crate) type Invalid = (String, Option<String>);

/// What an operation's planner returns: its steps, or why it cannot plan them.
pub(crate) type Planned = Result<super::OpSteps, Invalid>;

/// The method note of an operation that fills copies of columns in their tables, `how`,
/// which has no copy of the table yet.
fn in_place_only(what: String, how: &str) -> crate::plan::MethodChoice {
    crate::plan::MethodChoice {
        operation: 0,
        what,
        method: "in_place".to_owned(),
        why: how.to_owned(),
    }
}

/// Whether `ty` is a type a sequence can have (`ALTER SEQUENCE ... AS ty`), as a key's new
/// type is written.
fn sequence_type(ty: &str) -> bool {
    matches!(
        ty,
        "smallint" | "integer" | "bigint" | "int2" | "int4" | "int8" | "int"
    )
}

/// The refusal of a plan whose table or column is not there (validation reports it first;
/// a planner never plans around it silently).
fn missing(what: &str, name: &str) -> Invalid {
    (
        format!("{what} {name} is not in the schema this operation is planned against"),
        Some("check the name, and the operations before this one".to_owned()),
    )
}

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

/// True when two SQL expressions are the same once parsed (spacing, case of keywords and
/// redundant parentheses aside).
pub(crate) fn same_expression(a: &str, b: &str) -> bool {
    let normal = |e: &str| {
        pg_query::parse(&format!("SELECT {}", crate::plan::expression(e)))
            .ok()
            .and_then(|p| p.protobuf.deparse().ok())
    };
    matches!((normal(a), normal(b)), (Some(x), Some(y)) if x == y)
}

/// `expr`, written against the columns of `t` as this version names them, over the table's
/// physical columns (a backfill's expression runs on the table itself): a column renamed by
/// an earlier operation of the migration is named as it still is. `expr` itself when no
/// column is renamed (or it does not parse: the server then says what is wrong).
pub(crate) fn physical_expression(expr: &str, t: &super::VTable) -> String {
    let renames: Vec<(String, String)> = t
        .columns
        .iter()
        .filter(|c| c.name != c.physical)
        .map(|c| (c.name.clone(), c.physical.clone()))
        .collect();
    if renames.is_empty() {
        return expr.to_owned();
    }
    rename_refs(&super::expression(expr), &renames).unwrap_or_else(|_| expr.to_owned())
}

/// Rewrites references to column `from` in a SQL expression into `to` (for a constraint
/// written against a column's name but created on its new physical copy).
fn rename_column_refs(expr: &str, from: &str, to: &str) -> Result<String, Invalid> {
    rename_refs(expr, &[(from.to_owned(), to.to_owned())])
}

/// [`rename_column_refs`] for several columns at once (`(from, to)` each).
fn rename_refs(expr: &str, renames: &[(String, String)]) -> Result<String, Invalid> {
    let mut parsed = pg_query::parse(&format!("SELECT {expr}"))
        .map_err(|e| (format!("the expression {expr:?} does not parse: {e}"), None))?;
    rename_in_select(&mut parsed.protobuf, renames);
    let sql = parsed
        .protobuf
        .deparse()
        .map_err(|e| (format!("cannot rewrite {expr:?}: {e}"), None))?;
    Ok(sql
        .strip_prefix("SELECT ")
        .map(str::to_owned)
        .unwrap_or(sql))
}

/// Renames single-name column references in a parsed SELECT. pg_query's walker descends
/// into every expression of a SELECT (not into DDL), so expressions from DDL are moved into
/// a SELECT for this (see `rename_in_expression`).
fn rename_in_select(tree: &mut pg_query::protobuf::ParseResult, renames: &[(String, String)]) {
    use pg_query::protobuf::node::Node;
    // SAFETY: pg_query hands out raw pointers into `tree`; they stay valid because the
    // tree's shape is not changed while they are used, and each is used alone.
    let nodes = unsafe { tree.nodes_mut() };
    for (node, ..) in nodes {
        if let pg_query::NodeMut::ColumnRef(c) = node {
            // SAFETY: as above.
            let c = unsafe { &mut *c };
            if c.fields.len() == 1 {
                if let Some(Node::String(s)) = c.fields[0].node.as_mut() {
                    if let Some((_, to)) = renames.iter().find(|(from, _)| *from == s.sval) {
                        s.sval = to.clone();
                    }
                }
            }
        }
    }
}

/// Renames column references inside an expression node of a DDL statement, by moving it
/// into `SELECT <expression>`, renaming there, and moving it back.
fn rename_in_expression(
    expr: &mut Option<Box<pg_query::protobuf::Node>>,
    renames: &[(String, String)],
) {
    use pg_query::protobuf::{node::Node, ParseResult, RawStmt, ResTarget, SelectStmt};
    let Some(inner) = expr.take() else {
        return;
    };
    let mut tree = ParseResult {
        version: 0,
        stmts: vec![RawStmt {
            stmt: Some(Box::new(pg_query::protobuf::Node {
                node: Some(Node::SelectStmt(Box::new(SelectStmt {
                    target_list: vec![pg_query::protobuf::Node {
                        node: Some(Node::ResTarget(Box::new(ResTarget {
                            val: Some(inner),
                            ..ResTarget::default()
                        }))),
                    }],
                    ..SelectStmt::default()
                }))),
            })),
            stmt_location: 0,
            stmt_len: 0,
        }],
    };
    rename_in_select(&mut tree, renames);
    if let Some(Node::SelectStmt(select)) =
        tree.stmts.pop().and_then(|s| s.stmt).and_then(|n| n.node)
    {
        if let Some(Node::ResTarget(target)) =
            select.target_list.into_iter().next().and_then(|n| n.node)
        {
            *expr = target.val;
        }
    }
}

fn rename_string(name: &mut String, renames: &[(String, String)]) {
    if let Some((_, to)) = renames.iter().find(|(from, _)| from == name) {
        *name = to.clone();
    }
}

/// A `pg_get_indexdef` statement made into a concurrent build of `new_name` over the
/// renamed columns (and on another table of the same schema, given `table`).
fn rewrite_index_definition(
    definition: &str,
    new_name: &str,
    table: Option<&str>,
    renames: &[(String, String)],
    concurrent: bool,
) -> Result<String, Invalid> {
    rewrite_index_for(definition, new_name, table, renames, concurrent, None)
}

/// [`rewrite_index_definition`], and with `only` given, on the table alone (`ON ONLY`,
/// for a partitioned table) or on it and its partitions.
pub(crate) fn rewrite_index_for(
    definition: &str,
    new_name: &str,
    table: Option<&str>,
    renames: &[(String, String)],
    concurrent: bool,
    only: Option<bool>,
) -> Result<String, Invalid> {
    use pg_query::protobuf::node::Node;
    let mut parsed = pg_query::parse(definition)
        .map_err(|e| (format!("{definition:?} does not parse: {e}"), None))?;
    for stmt in &mut parsed.protobuf.stmts {
        if let Some(Node::IndexStmt(ix)) = stmt.stmt.as_mut().and_then(|n| n.node.as_mut()) {
            ix.idxname = new_name.to_owned();
            ix.concurrent = concurrent;
            if let (Some(table), Some(relation)) = (table, ix.relation.as_mut()) {
                relation.relname = table.to_owned();
            }
            if let (Some(only), Some(relation)) = (only, ix.relation.as_mut()) {
                relation.inh = !only;
            }
            for param in ix
                .index_params
                .iter_mut()
                .chain(ix.index_including_params.iter_mut())
            {
                if let Some(Node::IndexElem(e)) = param.node.as_mut() {
                    rename_string(&mut e.name, renames);
                    rename_in_expression(&mut e.expr, renames);
                }
            }
            rename_in_expression(&mut ix.where_clause, renames);
        }
    }
    parsed
        .protobuf
        .deparse()
        .map_err(|e| (format!("cannot rewrite {definition:?}: {e}"), None))
}

/// An index rebuilt concurrently under a temporary name over renamed columns, on `table`
/// (its own table, or another of the schema): the build steps (one, or on a partitioned
/// table the partitions' builds and attaches), and the statements that give it back its
/// name (or its constraint) once the original is gone, its partitions' indexes theirs.
fn index_copy(
    ctx: &super::PlanContext,
    ix: &crate::catalog::Index,
    kind: Option<&str>,
    table: &str,
    other_table: bool,
    renames: &[(String, String)],
    description: String,
) -> Result<(Vec<super::PlannedStep>, Vec<String>), String> {
    let tmp = super::internal_name("ix", &[&ix.name]);
    let partitioned = super::partitions::is_partitioned(ctx, table);
    if partitioned && kind.is_some() {
        return Err(format!(
            "index {} backs constraint {} of partitioned table {table}, which pgshift does not carry to a copied column yet",
            ix.name,
            ix.constraint.as_deref().unwrap_or("?")
        ));
    }
    let in_context = |(e, _): Invalid| format!("index {} ({}): {e}", ix.name, ix.definition);
    let builds = if partitioned {
        super::partitions::IndexBuild {
            table,
            name: &tmp,
            definition: &ix.definition,
            renames,
        }
        .steps(ctx, &description)
        .map_err(in_context)?
        .0
    } else {
        let sql = rewrite_index_definition(
            &ix.definition,
            &tmp,
            other_table.then_some(table),
            renames,
            true,
        )
        .map_err(in_context)?;
        vec![super::concurrent_step(
            description,
            sql,
            Some(crate::sql::ConcurrentIndex::Create {
                schema: Some(ctx.schema.to_owned()),
                table: table.to_owned(),
                name: Some(tmp.clone()),
            }),
        )]
    };
    let target = qualified(ctx.schema, table);
    let mut names_back = vec![match (&ix.constraint, kind) {
        (Some(constraint), Some("p")) => format!(
            "ALTER TABLE {target} ADD CONSTRAINT {} PRIMARY KEY USING INDEX {}",
            ident(constraint),
            ident(&tmp)
        ),
        (Some(constraint), Some("u")) => format!(
            "ALTER TABLE {target} ADD CONSTRAINT {} UNIQUE USING INDEX {}",
            ident(constraint),
            ident(&tmp)
        ),
        _ => format!(
            "ALTER INDEX {} RENAME TO {}",
            qualified(ctx.schema, &tmp),
            ident(&ix.name)
        ),
    }];
    if partitioned {
        // Each partition's new index takes the name of the one it replaces (the index of
        // that partition attached to the replaced index one level up).
        let mut old_names: std::collections::BTreeMap<String, String> =
            [(table.to_owned(), ix.name.clone())].into();
        for (partition, parent, _) in ctx.catalog.partition_tree(table) {
            let above = old_names.get(&parent).cloned().unwrap_or_default();
            let old = ctx
                .catalog
                .table(&partition)
                .and_then(|t| {
                    t.indexes
                        .iter()
                        .find(|i| i.partition_of.as_deref() == Some(above.as_str()))
                })
                .map(|i| i.name.clone())
                .unwrap_or_else(|| super::partitions::partition_index_name(&partition, &ix.name));
            names_back.push(format!(
                "ALTER INDEX {} RENAME TO {}",
                qualified(
                    ctx.schema,
                    &super::partitions::partition_index_name(&partition, &tmp)
                ),
                ident(&old)
            ));
            old_names.insert(partition, old);
        }
    }
    Ok((builds, names_back))
}

/// An index's definition moved to another table of the schema under a temporary name:
/// (that name, the CREATE INDEX statement).
fn index_copy_sql(
    ix: &crate::catalog::Index,
    table: &str,
    concurrent: bool,
) -> Result<(String, String), String> {
    let tmp = super::internal_name("ix", &[&ix.name]);
    let sql = rewrite_index_definition(&ix.definition, &tmp, Some(table), &[], concurrent)
        .map_err(|(e, _)| format!("index {} ({}): {e}", ix.name, ix.definition))?;
    Ok((tmp, sql))
}

/// A constraint's definition rewritten for its copy (see [`rewrite_constraint_definition`]),
/// or why not, naming the constraint.
fn constraint_copy(
    table: &str,
    new_name: &str,
    k: &crate::catalog::Constraint,
    renames: &[(String, String)],
    referenced_renames: &[(String, String)],
) -> Result<String, String> {
    constraint_copy_on(table, new_name, k, renames, referenced_renames, true)
}

/// [`constraint_copy`], NOT VALID or not.
pub(crate) fn constraint_copy_on(
    table: &str,
    new_name: &str,
    k: &crate::catalog::Constraint,
    renames: &[(String, String)],
    referenced_renames: &[(String, String)],
    not_valid: bool,
) -> Result<String, String> {
    rewrite_constraint_definition(
        table,
        new_name,
        &k.definition,
        renames,
        referenced_renames,
        not_valid,
    )
    .map_err(|(e, _)| format!("constraint {} ({}): {e}", k.name, k.definition))
}

/// `ALTER TABLE <table> ADD CONSTRAINT <new_name> <definition> NOT VALID` over the renamed
/// columns, for a CHECK or FOREIGN KEY constraint from `pg_get_constraintdef`.
fn rewrite_constraint_definition(
    table: &str,
    new_name: &str,
    definition: &str,
    renames: &[(String, String)],
    referenced_renames: &[(String, String)],
    not_valid: bool,
) -> Result<String, Invalid> {
    use pg_query::protobuf::node::Node;
    let sql = format!(
        "ALTER TABLE {table} ADD CONSTRAINT {} {definition}",
        crate::quote::ident(new_name)
    );
    let mut parsed =
        pg_query::parse(&sql).map_err(|e| (format!("{sql:?} does not parse: {e}"), None))?;
    for stmt in &mut parsed.protobuf.stmts {
        let Some(Node::AlterTableStmt(alter)) = stmt.stmt.as_mut().and_then(|n| n.node.as_mut())
        else {
            continue;
        };
        for cmd in &mut alter.cmds {
            let Some(Node::AlterTableCmd(cmd)) = cmd.node.as_mut() else {
                continue;
            };
            let Some(Node::Constraint(k)) = cmd.def.as_mut().and_then(|d| d.node.as_mut()) else {
                continue;
            };
            k.skip_validation = not_valid;
            k.initially_valid = !not_valid;
            for attr in k.fk_attrs.iter_mut().chain(k.keys.iter_mut()) {
                if let Some(Node::String(s)) = attr.node.as_mut() {
                    rename_string(&mut s.sval, renames);
                }
            }
            for attr in &mut k.pk_attrs {
                if let Some(Node::String(s)) = attr.node.as_mut() {
                    rename_string(&mut s.sval, referenced_renames);
                }
            }
            rename_in_expression(&mut k.raw_expr, renames);
        }
    }
    parsed
        .protobuf
        .deparse()
        .map_err(|e| (format!("cannot rewrite {sql:?}: {e}"), None))
}

/// The columns a statement names (column references and index columns).
pub(crate) fn columns_named(sql: &str) -> Vec<String> {
    use pg_query::protobuf::node::Node;
    let Ok(parsed) = pg_query::parse(sql) else {
        return Vec::new();
    };
    parsed
        .protobuf
        .nodes()
        .into_iter()
        .filter_map(|(node, ..)| match node {
            pg_query::NodeRef::IndexElem(e) if !e.name.is_empty() => Some(e.name.clone()),
            pg_query::NodeRef::ColumnRef(c) => c.fields.last().and_then(|f| match &f.node {
                Some(Node::String(s)) => Some(s.sval.clone()),
                _ => None,
            }),
            _ => None,
        })
        .collect()
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
    fn index_definitions_become_concurrent_builds_on_the_copy() {
        let out = rewrite_index_definition(
            "CREATE UNIQUE INDEX reviews_review_key ON public.reviews USING btree (review) WHERE (review <> ''::text)",
            "_pgshift_ix_reviews_review_key",
            None,
            &[("review".to_owned(), "_pgshift_new_review".to_owned())],
            true,
        )
        .unwrap();
        assert_eq!(
            out,
            "CREATE UNIQUE INDEX CONCURRENTLY _pgshift_ix_reviews_review_key ON public.reviews USING btree (_pgshift_new_review) WHERE review <> ''::text".replace("WHERE review", "WHERE _pgshift_new_review")
        );
    }

    #[test]
    fn constraint_definitions_move_to_the_copy_not_valid() {
        let renames = [("user_id".to_owned(), "_pgshift_new_user_id".to_owned())];
        let fk = rewrite_constraint_definition(
            "public.posts",
            "tmp",
            "FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE",
            &renames,
            &[],
            true,
        )
        .unwrap();
        assert!(
            fk.contains("FOREIGN KEY (_pgshift_new_user_id) REFERENCES users (id)"),
            "{fk}"
        );
        assert!(fk.contains("NOT VALID"), "{fk}");
        let check = rewrite_constraint_definition(
            "t",
            "tmp",
            "CHECK ((length(user_id::text) > 3))",
            &renames,
            &[],
            true,
        )
        .unwrap();
        assert!(
            check.contains("length(_pgshift_new_user_id::text) > 3"),
            "{check}"
        );
        assert!(check.contains("NOT VALID"), "{check}");
        // Validated, for a partitioned table's constraint that takes over its partitions'.
        let valid = rewrite_constraint_definition(
            "t",
            "tmp",
            "FOREIGN KEY (user_id) REFERENCES users(id)",
            &renames,
            &[],
            false,
        )
        .unwrap();
        assert!(!valid.contains("NOT VALID"), "{valid}");
        // An index of a partitioned table, on the table alone or on a partition.
        let def = "CREATE INDEX p_c ON ONLY public.p USING btree (c)";
        assert_eq!(
            rewrite_index_for(def, "p_c2", Some("p_1"), &[], true, Some(false)).unwrap(),
            "CREATE INDEX CONCURRENTLY p_c2 ON public.p_1 USING btree (c)"
        );
        assert_eq!(
            rewrite_index_for(def, "p_c2", None, &[], false, Some(true)).unwrap(),
            "CREATE INDEX p_c2 ON ONLY public.p USING btree (c)"
        );
        assert_eq!(
            columns_named("CREATE INDEX i ON t USING btree (a, lower(b)) WHERE c > 0"),
            vec!["a", "b", "c"]
        );
    }

    #[test]
    fn a_definition_the_rewrite_cannot_handle_is_an_error_naming_it() {
        let ix = crate::catalog::Index {
            name: "orders_odd".to_owned(),
            definition: "CREATE INDEX orders_odd ON".to_owned(),
            constraint: None,
            partition_of: None,
        };
        let err = index_copy_sql(&ix, "orders_copy", true).unwrap_err();
        assert!(err.starts_with("index orders_odd ("), "{err}");
        let ok = crate::catalog::Index {
            definition: "CREATE INDEX orders_price ON public.orders USING btree (price)".to_owned(),
            name: "orders_price".to_owned(),
            constraint: None,
            partition_of: None,
        };
        assert!(index_copy_sql(&ok, "orders_copy", true).is_ok());
    }

    #[test]
    fn expressions_compare_as_parsed() {
        assert!(same_expression("'pending'", " ( 'pending' ) "));
        assert!(same_expression("0", "0;"));
        assert!(same_expression("lower( 'A' )", "LOWER('A')"));
        assert!(!same_expression("0", "1"));
        assert!(!same_expression("'a'", "'a'::text"));
        assert!(!same_expression("not sql (", "not sql ("));
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
