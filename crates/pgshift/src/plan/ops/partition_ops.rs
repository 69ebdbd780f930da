//! Partition maintenance (pgshift's own operations): `create_partition`, `attach_partition`,
//! `detach_partition`, `drop_partition`. None of them locks the partitioned table against
//! its clients for longer than a catalog change: a partition is made as a table of its own
//! and attached (SHARE UPDATE EXCLUSIVE on the partitioned table, which reads and writes
//! pass), after CHECK constraints validated beforehand prove that its rows fit its bound and
//! that the default partition holds none of them, so the attach scans nothing; detached
//! CONCURRENTLY where the server has it.

use super::{constraint_copy_on, rewrite_index_for, Invalid};
use crate::catalog::Table;
use crate::model::{AttachPartition, CreatePartition, DetachPartition, DropPartition};
use crate::plan::partitions::partition_index_name;
use crate::plan::{
    concurrent_step, internal_name, sql_step, Action, OpSteps, OperationPlan, PlanContext,
    PlannedStep, VTable, VirtualSchema,
};
use crate::quote::{ident, literal, qualified};
use crate::sql::ConcurrentIndex;

fn catalog_table<'a>(ctx: &'a PlanContext, name: &str) -> Result<&'a Table, Invalid> {
    ctx.catalog
        .table(name)
        .ok_or_else(|| super::missing("table", name))
}

/// The partitioned table `table` names in this version: its physical name and catalog entry.
fn partitioned_parent<'a>(
    ctx: &'a PlanContext,
    vs: &VirtualSchema,
    table: &str,
) -> Result<(String, &'a Table), Invalid> {
    let physical = vs.require_table(table)?.physical.clone();
    let parent = catalog_table(ctx, &physical)?;
    if !parent.partitioned {
        return Err((
            format!("{table} is not partitioned"),
            Some("partition operations name a partitioned table".to_owned()),
        ));
    }
    Ok((physical, parent))
}

/// The expression a partition's rows satisfy, from its bound over the partitioned table's
/// key (a CHECK of it, validated, lets an attach skip its scan; its negation on the default
/// partition lets the attach skip that one's). None where pgshift cannot write it (a key
/// of several columns or with an expression for range and list, MINVALUE/MAXVALUE inside a
/// multi-column bound, a default bound).
pub(crate) fn bound_expression(ctx: &PlanContext, parent: &Table, bound: &str) -> Option<String> {
    use pg_query::protobuf::node::Node;
    let parsed = pg_query::parse(&format!("CREATE TABLE t PARTITION OF p {bound}")).ok()?;
    let spec =
        parsed
            .protobuf
            .stmts
            .first()
            .and_then(|s| match s.stmt.as_ref()?.node.as_ref()? {
                Node::CreateStmt(c) => c.partbound.clone(),
                _ => None,
            })?;
    if spec.is_default {
        return None;
    }
    let key_type = |k: &str| parent.column(k).map(|c| c.data_type.clone());
    // A datum's text: deparsed in the place of the target of a parsed `SELECT 1` (a tree
    // the deparser accepts whole).
    let template = pg_query::parse("SELECT 1").ok()?;
    let datum = |n: &pg_query::protobuf::Node| -> Option<String> {
        let mut select = template.protobuf.clone();
        let stmt = select.stmts.first_mut()?.stmt.as_mut()?;
        let Some(Node::SelectStmt(sel)) = stmt.node.as_mut() else {
            return None;
        };
        let Some(Node::ResTarget(target)) = sel.target_list.first_mut()?.node.as_mut() else {
            return None;
        };
        target.val = Some(Box::new(n.clone()));
        let text = select.deparse().ok()?;
        Some(text.strip_prefix("SELECT ")?.to_owned())
    };
    let table = qualified(ctx.schema, &parent.name).to_string();
    match spec.strategy.as_str() {
        "h" => {
            if parent.partition_key.is_empty() {
                return None;
            }
            Some(format!(
                "satisfies_hash_partition({}::regclass::oid, {}, {}, {})",
                literal(&table),
                spec.modulus,
                spec.remainder,
                parent
                    .partition_key
                    .iter()
                    .map(|k| ident(k).to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
        "r" | "l" => {
            let [key] = parent.partition_key.as_slice() else {
                return None;
            };
            let ty = key_type(key)?;
            let k = ident(key);
            if spec.strategy == "l" {
                let mut values = Vec::new();
                let mut null = false;
                for d in &spec.listdatums {
                    let text = datum(d)?;
                    if text.eq_ignore_ascii_case("null") {
                        null = true;
                    } else {
                        values.push(format!("({text})::{ty}"));
                    }
                }
                let any = format!("{k} = ANY (ARRAY[{}])", values.join(", "));
                return Some(match (null, values.is_empty()) {
                    (true, true) => format!("{k} IS NULL"),
                    (true, false) => format!("({k} IS NULL OR {any})"),
                    (false, _) => format!("{k} IS NOT NULL AND {any}"),
                });
            }
            let ([lower], [upper]) = (spec.lowerdatums.as_slice(), spec.upperdatums.as_slice())
            else {
                return None;
            };
            let mut parts = vec![format!("{k} IS NOT NULL")];
            let bound_value = |n: &pg_query::protobuf::Node| -> Option<Option<String>> {
                match n.node.as_ref()? {
                    Node::PartitionRangeDatum(r) => {
                        // MINVALUE / MAXVALUE: no limit on that side.
                        if r.kind
                            != pg_query::protobuf::PartitionRangeDatumKind::PartitionRangeDatumValue
                                as i32
                        {
                            return Some(None);
                        }
                        Some(Some(datum(r.value.as_deref()?)?))
                    }
                    _ => {
                        let text = datum(n)?;
                        if text.eq_ignore_ascii_case("minvalue")
                            || text.eq_ignore_ascii_case("maxvalue")
                        {
                            Some(None)
                        } else {
                            Some(Some(text))
                        }
                    }
                }
            };
            if let Some(v) = bound_value(lower)? {
                parts.push(format!("{k} >= ({v})::{ty}"));
            }
            if let Some(v) = bound_value(upper)? {
                parts.push(format!("{k} < ({v})::{ty}"));
            }
            Some(parts.join(" AND "))
        }
        _ => None,
    }
}

/// Steps that let an attach of a partition with `bound` skip its scan of the default
/// partition: a CHECK that no row of the default partition is in the bound, validated
/// (SHARE UPDATE EXCLUSIVE on the default partition: its clients go on), and the
/// statement that drops it again after the attach. None when there is no default
/// partition; a note instead of the steps when pgshift cannot write the CHECK.
fn default_partition_guard(
    ctx: &PlanContext,
    parent: &Table,
    partition: &str,
    expression: Option<&str>,
) -> (Vec<PlannedStep>, Vec<String>, Option<String>) {
    let Some(default) = ctx.catalog.default_partition(&parent.name) else {
        return (Vec::new(), Vec::new(), None);
    };
    let Some(expression) = expression else {
        return (
            Vec::new(),
            Vec::new(),
            Some(format!(
                "the attach scans the default partition {default} under ACCESS EXCLUSIVE: pgshift cannot write a CHECK for this bound"
            )),
        );
    };
    let check = internal_name("pb", &[partition]);
    let on = qualified(ctx.schema, default);
    (
        vec![
            sql_step(
                format!("check that no row of the default partition {default} belongs in {partition}, not validated yet"),
                format!(
                    "ALTER TABLE {on} ADD CONSTRAINT {} CHECK (NOT ({expression})) NOT VALID",
                    ident(&check)
                ),
            ),
            sql_step(
                format!("validate it (reads and writes of {default} go on; it fails if {default} holds rows of the new bound, which must move first)"),
                format!("ALTER TABLE {on} VALIDATE CONSTRAINT {}", ident(&check)),
            ),
        ],
        vec![format!(
            "ALTER TABLE {on} DROP CONSTRAINT IF EXISTS {}",
            ident(&check)
        )],
        None,
    )
}

fn attach_sql(ctx: &PlanContext, parent: &str, partition: &str, bound: &str) -> String {
    format!(
        "ALTER TABLE {} ATTACH PARTITION {} {bound}",
        qualified(ctx.schema, parent),
        qualified(ctx.schema, partition)
    )
}

/// The new version sees `partition` as a partition of `table` (as the version names it).
fn add_partition_view(vs: &mut VirtualSchema, table: &str, partition: &str) {
    let Some(p) = vs.table(table).cloned() else {
        return;
    };
    let parent = p.physical.clone();
    vs.tables.insert(
        partition.to_owned(),
        VTable {
            physical: partition.to_owned(),
            partition_of: Some(parent.to_owned()),
            uncopyable: Some(format!("{partition} is a partition of {parent}")),
            referenced_by: Vec::new(),
            bytes: 0,
            ..p
        },
    );
}

impl OperationPlan for CreatePartition {
    fn validate(&self, vs: &VirtualSchema) -> Result<(), Invalid> {
        vs.require_table(&self.table)?;
        super::not_internal(&self.name)?;
        if vs.table(&self.name).is_some() {
            return Err((
                format!("table {:?} already exists", self.name),
                Some("attach an existing table with attach_partition".to_owned()),
            ));
        }
        Ok(())
    }

    fn apply(&self, vs: &mut VirtualSchema) {
        add_partition_view(vs, &self.table, &self.name);
    }

    fn plan(&self, ctx: &PlanContext, vs: &VirtualSchema) -> super::Planned {
        let (physical, parent) = partitioned_parent(ctx, vs, &self.table)?;
        let bound = self.bound.as_str();
        let expression = bound_expression(ctx, parent, bound);
        let (guard, unguard, note) =
            default_partition_guard(ctx, parent, &self.name, expression.as_deref());
        let new = qualified(ctx.schema, &self.name);
        let mut steps = OpSteps::default();
        steps.start.push(sql_step(
            format!(
                "create {}, an empty table like {} (not yet a partition: nothing locks {})",
                self.name, self.table, self.table
            ),
            format!(
                "CREATE TABLE {new} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS INCLUDING GENERATED)",
                qualified(ctx.schema, &physical)
            ),
        ));
        steps.start.push(PlannedStep {
            description: format!(
                "give {} the privileges, row-level security and policies of {}",
                self.name, self.table
            ),
            action: Action::CarryAccess {
                schema: ctx.schema.to_owned(),
                from: physical.clone(),
                to: self.name.clone(),
                through: None,
            },
        });
        steps.start.extend(guard);
        let mut attach = vec![attach_sql(ctx, &physical, &self.name, bound)];
        attach.extend(unguard.iter().cloned());
        steps.start.push(sql_step(
            format!(
                "attach {} to {} {bound} (it is empty: nothing to scan; its indexes are made on it by the attach){}",
                self.name,
                self.table,
                note.map(|n| format!("; {n}")).unwrap_or_default()
            ),
            attach.join(";\n"),
        ));
        // Rollback keeps every row clients wrote into the new partition meanwhile: detached,
        // its rows go back through the partitioned table (to the default partition, or the
        // rollback fails with the server's "no partition ... found for row" and changes
        // nothing), then it is dropped.
        let columns = parent
            .columns
            .iter()
            .filter(|c| c.generated.is_empty())
            .map(|c| ident(&c.name).to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let parent_sql = qualified(ctx.schema, &physical);
        let mut undo = unguard;
        undo.push(format!(
            "DO $pgshift$ BEGIN
               IF to_regclass({new_literal}) IS NOT NULL THEN
                 IF EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass({new_literal}) AND inhparent = to_regclass({parent_literal})) THEN
                   ALTER TABLE {parent_sql} DETACH PARTITION {new};
                 END IF;
                 INSERT INTO {parent_sql} ({columns}) OVERRIDING SYSTEM VALUE SELECT {columns} FROM {new};
                 DROP TABLE {new};
               END IF;
             END $pgshift$",
            new_literal = literal(&new.to_string()),
            parent_literal = literal(&parent_sql.to_string()),
        ));
        steps.rollback.push(sql_step(
            format!(
                "detach the new partition {}, move the rows written to it since start back through {} and drop it (ACCESS EXCLUSIVE on {} and {} until it commits)",
                self.name, self.table, self.table, self.name
            ),
            undo.join(";\n"),
        ));
        Ok(steps)
    }
}

/// `a` and `b` name the same index once their names and tables are set aside.
fn same_index(a: &str, b: &str) -> bool {
    let norm = |d: &str| rewrite_index_for(d, "x", Some("t"), &[], false, Some(false)).ok();
    norm(a).is_some() && norm(a) == norm(b)
}

impl OperationPlan for AttachPartition {
    fn validate(&self, vs: &VirtualSchema) -> Result<(), Invalid> {
        vs.require_table(&self.table)?;
        let t = vs.require_table(&self.partition)?;
        if let Some(parent) = &t.partition_of {
            return Err((
                format!("{} is already a partition of {parent}", self.partition),
                Some("detach it first (detach_partition)".to_owned()),
            ));
        }
        Ok(())
    }

    fn apply(&self, vs: &mut VirtualSchema) {
        add_partition_view(vs, &self.table, &self.partition);
    }

    fn plan(&self, ctx: &PlanContext, vs: &VirtualSchema) -> super::Planned {
        let (physical, parent) = partitioned_parent(ctx, vs, &self.table)?;
        let child = catalog_table(ctx, &self.partition)?;
        if child.partitioned {
            return Err((
                format!("{} is partitioned itself", self.partition),
                Some("pgshift attaches tables that hold their rows".to_owned()),
            ));
        }
        // The same columns (names, types, NOT NULL), or the server refuses the attach.
        let shape = |t: &Table| {
            let mut c: Vec<String> = t
                .columns
                .iter()
                .map(|c| {
                    format!(
                        "{} {}{}",
                        c.name,
                        c.data_type,
                        if c.not_null { " NOT NULL" } else { "" }
                    )
                })
                .collect();
            c.sort();
            c
        };
        let (want, have) = (shape(parent), shape(child));
        if want != have {
            let missing: Vec<&String> = want.iter().filter(|c| !have.contains(c)).collect();
            let extra: Vec<&String> = have.iter().filter(|c| !want.contains(c)).collect();
            return Err((
                format!(
                    "{} does not have the columns of {}: missing {}; not in {}: {}",
                    self.partition,
                    self.table,
                    if missing.is_empty() { "none".to_owned() } else { missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ") },
                    self.table,
                    if extra.is_empty() { "none".to_owned() } else { extra.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ") }
                ),
                Some("change the table to match first (a partition has exactly its partitioned table's columns)".to_owned()),
            ));
        }
        let bound = self.bound.as_str();
        let on = qualified(ctx.schema, &self.partition);
        let mut steps = OpSteps::default();
        let mut cleanup = Vec::new();
        let mut undo = Vec::new();
        let expression = bound_expression(ctx, parent, bound);
        let mut notes = Vec::new();
        match &expression {
            Some(e) => {
                let check = internal_name("pb", &[&self.partition]);
                steps.start.push(sql_step(
                    format!("check that every row of {} is in the bound, not validated yet", self.partition),
                    format!("ALTER TABLE {on} ADD CONSTRAINT {} CHECK ({e}) NOT VALID", ident(&check)),
                ));
                steps.start.push(sql_step(
                    format!("validate it (reads and writes of {} go on)", self.partition),
                    format!("ALTER TABLE {on} VALIDATE CONSTRAINT {}", ident(&check)),
                ));
                let drop = format!("ALTER TABLE {on} DROP CONSTRAINT IF EXISTS {}", ident(&check));
                cleanup.push(drop.clone());
                undo.push(drop);
            }
            None => notes.push(format!(
                "the attach scans {} under ACCESS EXCLUSIVE: pgshift cannot write a CHECK for this bound",
                self.partition
            )),
        }
        let (guard, unguard, note) =
            default_partition_guard(ctx, parent, &self.partition, expression.as_deref());
        steps.start.extend(guard);
        cleanup.extend(unguard.iter().cloned());
        undo.extend(unguard);
        notes.extend(note);
        // The partitioned table's indexes, built on the table first (concurrently), so the
        // attach takes them over instead of building them under its lock; a unique one
        // with its constraint, which the attach needs to take it over.
        for ix in &parent.indexes {
            if child
                .indexes
                .iter()
                .any(|c| same_index(&c.definition, &ix.definition))
            {
                continue;
            }
            let name = partition_index_name(&self.partition, &ix.name);
            let sql = rewrite_index_for(
                &ix.definition,
                &name,
                Some(&self.partition),
                &[],
                true,
                Some(false),
            )
            .map_err(|(e, h)| (format!("index {} of {}: {e}", ix.name, self.table), h))?;
            steps.start.push(concurrent_step(
                format!(
                    "index {name} on {} like {} of {}, built concurrently",
                    self.partition, ix.name, self.table
                ),
                sql,
                Some(ConcurrentIndex::Create {
                    schema: Some(ctx.schema.to_owned()),
                    table: self.partition.clone(),
                    name: Some(name.clone()),
                }),
            ));
            let kind = ix
                .constraint
                .as_ref()
                .and_then(|c| parent.constraints.get(c))
                .map(|c| c.kind.as_str());
            if let Some(k @ ("p" | "u")) = kind {
                let constraint = partition_index_name(
                    &self.partition,
                    ix.constraint.as_deref().unwrap_or(&ix.name),
                );
                steps.start.push(sql_step(
                    format!(
                        "constraint {constraint} on {} from its index",
                        self.partition
                    ),
                    format!(
                        "ALTER TABLE {on} ADD CONSTRAINT {} {} USING INDEX {}",
                        ident(&constraint),
                        if k == "p" { "PRIMARY KEY" } else { "UNIQUE" },
                        ident(&name)
                    ),
                ));
                undo.push(format!(
                    "ALTER TABLE {on} DROP CONSTRAINT IF EXISTS {}",
                    ident(&constraint)
                ));
            }
            undo.push(format!(
                "DROP INDEX IF EXISTS {}",
                qualified(ctx.schema, &name)
            ));
        }
        // Its foreign keys and checks, validated on the table first, for the attach to take
        // over instead of validating them under its lock.
        for k in parent.constraints.values().filter(|k| !k.inherited) {
            let has = child
                .constraints
                .values()
                .any(|c| c.name == k.name || (c.kind == k.kind && c.definition == k.definition));
            if has || !matches!(k.kind.as_str(), "f" | "c") {
                continue;
            }
            let sql = constraint_copy_on(&on, &k.name, k, &[], &[], true).map_err(|e| (e, None))?;
            steps.start.push(sql_step(
                format!(
                    "constraint {} of {} on {}, not validated yet",
                    k.name, self.table, self.partition
                ),
                sql,
            ));
            steps.start.push(sql_step(
                format!("validate constraint {} on {}", k.name, self.partition),
                format!("ALTER TABLE {on} VALIDATE CONSTRAINT {}", ident(&k.name)),
            ));
            undo.push(format!(
                "ALTER TABLE {on} DROP CONSTRAINT IF EXISTS {}",
                ident(&k.name)
            ));
        }
        let mut attach = vec![attach_sql(ctx, &physical, &self.partition, bound)];
        attach.extend(cleanup);
        steps.start.push(sql_step(
            format!(
                "attach {} to {} {bound} (SHARE UPDATE EXCLUSIVE on {}: its reads and writes go on; the validated checks spare the scans){}",
                self.partition,
                self.table,
                self.table,
                notes.iter().map(|n| format!("; {n}")).collect::<String>()
            ),
            attach.join(";\n"),
        ));
        // Rollback: detached again (if it was attached), then what start added to it.
        let mut rollback = vec![format!(
            "DO $pgshift$ BEGIN IF EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass({}) AND inhparent = to_regclass({})) THEN ALTER TABLE {} DETACH PARTITION {}; END IF; END $pgshift$",
            literal(&on.to_string()),
            literal(&qualified(ctx.schema, &physical).to_string()),
            qualified(ctx.schema, &physical),
            on
        )];
        rollback.extend(undo);
        steps.rollback.push(sql_step(
            format!(
                "detach {} from {} again (ACCESS EXCLUSIVE on both for the moment of the detach) and drop what start added to it",
                self.partition, self.table
            ),
            rollback.join(";\n"),
        ));
        Ok(steps)
    }
}

/// The steps that detach `partition` from `parent` (physical names) at complete.
fn detach_steps(ctx: &PlanContext, parent: &str, partition: &str) -> Vec<PlannedStep> {
    let concurrent =
        ctx.catalog.server_version_num >= 140000 && ctx.catalog.default_partition(parent).is_none();
    let sql = format!(
        "ALTER TABLE {} DETACH PARTITION {}",
        qualified(ctx.schema, parent),
        qualified(ctx.schema, partition)
    );
    if concurrent {
        vec![concurrent_step(
            format!("detach {partition} from {parent} concurrently (SHARE UPDATE EXCLUSIVE: reads and writes go on; it waits for the transactions that may see the partition)"),
            format!("{sql} CONCURRENTLY"),
            Some(ConcurrentIndex::DetachPartition {
                schema: ctx.schema.to_owned(),
                table: parent.to_owned(),
                partition: partition.to_owned(),
            }),
        )]
    } else {
        let why = if ctx.catalog.server_version_num < 140000 {
            "PostgreSQL before 14 has no DETACH CONCURRENTLY"
        } else {
            "a partitioned table with a default partition cannot detach concurrently"
        };
        vec![sql_step(
            format!("detach {partition} from {parent} ({why}: ACCESS EXCLUSIVE on both for the moment of the detach)"),
            format!(
                "DO $pgshift$ BEGIN IF EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass({}) AND inhparent = to_regclass({})) THEN {sql}; END IF; END $pgshift$",
                literal(&qualified(ctx.schema, partition).to_string()),
                literal(&qualified(ctx.schema, parent).to_string()),
            ),
        )]
    }
}

fn require_partition_of(vs: &VirtualSchema, table: &str, partition: &str) -> Result<(), Invalid> {
    let parent = vs.require_table(table)?.physical.clone();
    let p = vs.require_table(partition)?;
    if p.partition_of.as_deref() != Some(parent.as_str()) {
        return Err((
            format!("{partition} is not a partition of {table}"),
            Some(format!(
                "partitions of {table}: {}",
                vs.tables
                    .iter()
                    .filter(|(_, t)| t.partition_of.as_deref() == Some(parent.as_str()))
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        ));
    }
    Ok(())
}

impl OperationPlan for DetachPartition {
    fn validate(&self, vs: &VirtualSchema) -> Result<(), Invalid> {
        require_partition_of(vs, &self.table, &self.partition)
    }

    fn apply(&self, vs: &mut VirtualSchema) {
        if let Some(t) = vs.table_mut(&self.partition) {
            t.partition_of = None;
        }
    }

    fn plan(&self, ctx: &PlanContext, vs: &VirtualSchema) -> super::Planned {
        let parent = vs.require_table(&self.table)?.physical.clone();
        Ok(OpSteps {
            complete: detach_steps(ctx, &parent, &self.partition),
            ..OpSteps::default()
        })
    }
}

impl OperationPlan for DropPartition {
    fn validate(&self, vs: &VirtualSchema) -> Result<(), Invalid> {
        require_partition_of(vs, &self.table, &self.partition)
    }

    fn apply(&self, vs: &mut VirtualSchema) {
        vs.tables.remove(&self.partition);
    }

    fn plan(&self, ctx: &PlanContext, vs: &VirtualSchema) -> super::Planned {
        let parent = vs.require_table(&self.table)?.physical.clone();
        let mut complete = detach_steps(ctx, &parent, &self.partition);
        complete.push(sql_step(
            format!(
                "drop {}, detached (no client reaches it through {} any more)",
                self.partition, self.table
            ),
            format!(
                "DROP TABLE IF EXISTS {}",
                qualified(ctx.schema, &self.partition)
            ),
        ));
        Ok(OpSteps {
            complete,
            ..OpSteps::default()
        })
    }
}
