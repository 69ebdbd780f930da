//! Changing columns whose data must be transformed: each column is duplicated into a new
//! physical column (`_pgshift_new_<column>`) of the new type and constraints; triggers keep
//! both in step (`up` for old-version writes, `down` for new-version writes); a backfill
//! fills the copy; complete validates the constraints, drops the old column and gives the
//! copy its name, in one short transaction.

use super::{
    columns_named, constraint_copy, constraint_copy_on, index_copy, references_sql,
    rename_column_refs,
};
use crate::model::ForeignKeyReference;
use crate::plan::partitions;
use crate::plan::triggers::{self, DualWrite};
use crate::plan::{
    concurrent_step, internal_name, sql_step, Action, BackfillSpec, OpSteps, PlanContext,
    PlannedStep, SwapColumn, SwapPart, SwapSpec, VirtualSchema,
};
use crate::quote::{ident, literal, qualified};
use crate::sql::ConcurrentIndex;

pub(super) struct DupColumn {
    /// The column's name, in both versions.
    pub name: String,
    pub new_type: String,
    /// Expression over the old version's columns giving the new value.
    pub up: String,
    /// Expression over the new version's columns giving the old value.
    pub down: String,
    pub not_null: bool,
    pub default: Option<String>,
    /// A new comment (`Some(None)`: none); None: the swap carries the column's own.
    pub comment: Option<Option<String>>,
}

pub(super) enum NewConstraint {
    Check {
        name: String,
        expr: String,
    },
    Unique {
        name: String,
        columns: Vec<String>,
    },
    ForeignKey {
        name: String,
        columns: Vec<String>,
        reference: ForeignKeyTarget,
    },
}

pub(super) struct ForeignKeyTarget {
    pub table: String,
    pub columns: Vec<String>,
    /// ON DELETE / ON UPDATE / MATCH / DEFERRABLE clauses, already SQL.
    pub clauses: String,
}

impl ForeignKeyTarget {
    pub fn from_column_reference(r: &ForeignKeyReference) -> ForeignKeyTarget {
        // references_sql renders " REFERENCES t (c) <clauses>"; keep the clauses.
        let full = references_sql("_", &r.table, r);
        let clauses = full
            .split_once(')')
            .map(|(_, rest)| rest.to_owned())
            .unwrap_or_default();
        ForeignKeyTarget {
            table: r.table.clone(),
            columns: vec![r.column.clone()],
            clauses,
        }
    }
}

pub(super) struct Duplication<'a> {
    pub table: &'a str,
    pub columns: Vec<DupColumn>,
    pub constraints: Vec<NewConstraint>,
    /// The table's primary key involves a duplicated column: rebuild its index on the
    /// copies and swap it in as the primary key (`alter_primary_key`).
    pub swap_primary_key: bool,
    /// Columns of other tables duplicated by the same operation, as (physical table, old
    /// column, copy): foreign keys that reference them are recreated against the copies.
    pub referenced: Vec<(String, String, String)>,
}

pub(super) fn new_name(column: &str) -> String {
    internal_name("new", &[column])
}

impl Duplication<'_> {
    /// The new version sees each duplicated column under its name, held by the copy.
    pub fn apply(&self, vs: &mut VirtualSchema) {
        if let Some(t) = vs.table_mut(self.table) {
            for d in &self.columns {
                if let Some(c) = t.column_mut(&d.name) {
                    c.physical = new_name(&d.name);
                    c.complete_name = d.name.clone();
                    c.data_type = d.new_type.clone();
                    c.not_null = d.not_null;
                }
            }
        }
    }

    pub fn plan(&self, ctx: &PlanContext, vs: &VirtualSchema) -> super::Planned {
        let (mut steps, swap) = self.plan_parts(ctx, vs);
        if !swap.is_empty() {
            steps.complete.push(PlannedStep {
                description: format!(
                    "swap {} on {} for their new copies, with what hangs on them",
                    names(&self.columns),
                    self.table
                ),
                action: Action::Swap(SwapSpec {
                    scans_nothing: false,
                    schema: ctx.schema.to_owned(),
                    parts: self.swap_part(vs).into_iter().collect(),
                    statements: swap,
                    after: self.comments(ctx, vs),
                }),
            });
            steps.complete.extend(self.analyze_step(ctx, vs));
        }
        Ok(steps)
    }

    /// The comments the migration gives the swapped columns.
    fn comments(&self, ctx: &PlanContext, vs: &VirtualSchema) -> Vec<String> {
        let Some(t) = vs.table(self.table) else {
            return Vec::new();
        };
        self.columns
            .iter()
            .filter_map(|d| {
                let comment = d.comment.as_ref()?;
                Some(format!(
                    "COMMENT ON COLUMN {}.{} IS {}",
                    qualified(ctx.schema, &t.physical),
                    ident(&d.name),
                    comment
                        .as_deref()
                        .map_or_else(|| "NULL".to_owned(), literal)
                ))
            })
            .collect()
    }

    /// This duplication's table and columns in a swap.
    pub fn swap_part(&self, vs: &VirtualSchema) -> Option<SwapPart> {
        let t = vs.table(self.table)?;
        Some(SwapPart {
            table: t.physical.clone(),
            copy: None,
            columns: self
                .columns
                .iter()
                .map(|d| SwapColumn {
                    old: t
                        .column(&d.name)
                        .map_or_else(|| d.name.clone(), |c| c.physical.clone()),
                    name: d.name.clone(),
                })
                .collect(),
        })
    }

    /// Planner statistics for the swapped columns, right after the swap (until then the
    /// planner knows only the old columns').
    pub fn analyze_step(&self, ctx: &PlanContext, vs: &VirtualSchema) -> Option<PlannedStep> {
        let t = vs.table(self.table)?;
        Some(sql_step(
            format!("analyze {} on {}", names(&self.columns), self.table),
            format!(
                "ANALYZE {} ({})",
                qualified(ctx.schema, &t.physical),
                self.columns
                    .iter()
                    .map(|d| ident(&d.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ))
    }

    /// The steps, without the swap at complete, and the swap's statements (for an
    /// operation that swaps several tables in one transaction).
    pub fn plan_parts(&self, ctx: &PlanContext, vs: &VirtualSchema) -> (OpSteps, Vec<String>) {
        let Some(t) = vs.table(self.table) else {
            return (OpSteps::default(), Vec::new());
        };
        let table = qualified(ctx.schema, &t.physical);
        let mut new_version = VirtualSchema::default();
        new_version.tables.insert(self.table.to_owned(), t.clone());
        self.apply(&mut new_version);
        let new_table = &new_version.tables[self.table];
        let old_physical = |name: &str| {
            t.column(name)
                .map(|c| c.physical.clone())
                .unwrap_or_else(|| name.to_owned())
        };
        let mut steps = OpSteps::default();

        let adds: Vec<String> = self
            .columns
            .iter()
            .map(|d| format!("ADD COLUMN {} {}", ident(&new_name(&d.name)), d.new_type))
            .collect();
        // Defaults apply to new rows only, set after the column exists: a volatile default
        // (nextval of a serial) in ADD COLUMN would rewrite the table under its lock, and
        // the backfill fills existing rows anyway.
        let mut add = vec![format!("ALTER TABLE {table} {}", adds.join(", "))];
        for d in &self.columns {
            if let Some(default) = &d.default {
                add.push(format!(
                    "ALTER TABLE {table} ALTER COLUMN {} SET DEFAULT {default}",
                    ident(&new_name(&d.name))
                ));
            }
        }
        steps.start.push(sql_step(
            format!(
                "add the new copies of {} on {}",
                names(&self.columns),
                self.table
            ),
            add.join(";\n"),
        ));
        let trigger = internal_name("trg", &[&t.physical, &names(&self.columns)]);
        let dual = DualWrite {
            schema: ctx.schema,
            table: &t.physical,
            name: trigger.clone(),
            version_schema: &ctx.version_schema,
            old_version: t,
            new_version: new_table,
            up: self
                .columns
                .iter()
                .map(|d| (new_name(&d.name), d.up.clone()))
                .collect(),
            down: self
                .columns
                .iter()
                .map(|d| (old_physical(&d.name), d.down.clone()))
                .collect(),
        }
        .create();
        steps.start.extend(dual);
        steps.backfills.push(BackfillSpec {
            partition_of: None,
            schema: ctx.schema.to_owned(),
            condition: None,
            insert: None,
            table: t.physical.clone(),
            set: self
                .columns
                .iter()
                .map(|d| (new_name(&d.name), super::physical_expression(&d.up, t)))
                .collect(),
        });

        // Constraints on the copies: NOT VALID or built concurrently now, validated later.
        let mut renames = Vec::new();
        // The NOT NULL guards go before the copies are renamed (at complete) or dropped (at
        // rollback): their WHEN clauses reference the copies.
        let mut guard_drops: Vec<String> = Vec::new();
        for d in self.columns.iter().filter(|d| d.not_null) {
            let check = internal_name("nn", &[&t.physical, &d.name]);
            steps.start.push(sql_step(
                format!(
                    "NOT NULL of {}.{} as a CHECK, not validated yet",
                    self.table, d.name
                ),
                format!(
                    "ALTER TABLE {table} ADD CONSTRAINT {} CHECK ({} IS NOT NULL) NOT VALID",
                    ident(&check),
                    ident(&new_name(&d.name))
                ),
            ));
            let copy = new_name(&d.name);
            let guard = triggers::NotNullGuard {
                schema: ctx.schema,
                table: &t.physical,
                column: &copy,
                shown: &d.name,
            };
            steps.start.push(guard.create());
            guard_drops.extend(guard.drop_sql());
            steps.complete.push(sql_step(
                format!("validate NOT NULL of {}.{}", self.table, d.name),
                format!("ALTER TABLE {table} VALIDATE CONSTRAINT {}", ident(&check)),
            ));
            renames.push(format!(
                "ALTER TABLE {table} ALTER COLUMN {} SET NOT NULL",
                ident(&d.name)
            ));
            renames.push(format!(
                "ALTER TABLE {table} DROP CONSTRAINT {}",
                ident(&check)
            ));
        }
        let on_copies = |cols: &[String]| -> String {
            cols.iter()
                .map(|c| {
                    if self.columns.iter().any(|d| &d.name == c) {
                        ident(&new_name(c))
                    } else {
                        ident(&old_physical(c))
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        for k in &self.constraints {
            match k {
                NewConstraint::Check { name, expr } => {
                    let mut rewritten = expr.clone();
                    for d in &self.columns {
                        rewritten = rename_column_refs(&rewritten, &d.name, &new_name(&d.name))
                            .map(|s| s.to_owned())
                            .unwrap_or(rewritten);
                    }
                    let tmp = internal_name("ck", &[name]);
                    steps.start.push(sql_step(
                        format!("check {name} on the copies, not validated yet"),
                        format!(
                            "ALTER TABLE {table} ADD CONSTRAINT {} CHECK ({rewritten}) NOT VALID",
                            ident(&tmp)
                        ),
                    ));
                    steps.complete.push(sql_step(
                        format!("validate check {name}"),
                        format!("ALTER TABLE {table} VALIDATE CONSTRAINT {}", ident(&tmp)),
                    ));
                    renames.push(format!(
                        "ALTER TABLE {table} RENAME CONSTRAINT {} TO {}",
                        ident(&tmp),
                        ident(name)
                    ));
                }
                NewConstraint::Unique { name, columns } => {
                    let tmp = internal_name("uq", &[name]);
                    steps.after_backfill.push(concurrent_step(
                        format!("unique index for {name} on the copies, built concurrently"),
                        format!(
                            "CREATE UNIQUE INDEX CONCURRENTLY {} ON {table} ({})",
                            ident(&tmp),
                            on_copies(columns)
                        ),
                        Some(ConcurrentIndex::Create {
                            schema: Some(ctx.schema.to_owned()),
                            table: t.physical.clone(),
                            name: Some(tmp.clone()),
                        }),
                    ));
                    renames.push(format!(
                        "ALTER TABLE {table} ADD CONSTRAINT {} UNIQUE USING INDEX {}",
                        ident(name),
                        ident(&tmp)
                    ));
                }
                NewConstraint::ForeignKey {
                    name,
                    columns,
                    reference,
                } => {
                    let tmp = internal_name("fk", &[name]);
                    let target = vs
                        .table(&reference.table)
                        .map(|t| t.physical.clone())
                        .unwrap_or_else(|| reference.table.clone());
                    let ref_cols: Vec<String> =
                        reference.columns.iter().map(|c| ident(c).into()).collect();
                    steps.start.push(sql_step(
                        format!("foreign key {name} on the copies, not validated yet"),
                        format!(
                            "ALTER TABLE {table} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({}){} NOT VALID",
                            ident(&tmp),
                            on_copies(columns),
                            qualified(ctx.schema, &target),
                            ref_cols.join(", "),
                            reference.clauses
                        ),
                    ));
                    steps.complete.push(sql_step(
                        format!("validate foreign key {name}"),
                        format!("ALTER TABLE {table} VALIDATE CONSTRAINT {}", ident(&tmp)),
                    ));
                    renames.push(format!(
                        "ALTER TABLE {table} RENAME CONSTRAINT {} TO {}",
                        ident(&tmp),
                        ident(name)
                    ));
                }
            }
        }

        let carried = self.carry_over(ctx, &t.physical, &old_physical, &mut steps, &mut renames);
        // The swap: one transaction, so no client ever sees the column missing.
        let mut swap = triggers::drop_sql(ctx.schema, &t.physical, &trigger);
        swap.extend(guard_drops.iter().cloned());
        // A sequence the old column owns would go with it: it passes to the copy.
        let catalog_table = ctx.catalog.table(&t.physical);
        let sequences: Vec<(String, &DupColumn)> = self
            .columns
            .iter()
            .filter_map(|d| {
                let c = catalog_table?.column(&old_physical(&d.name))?;
                if !c.identity.is_empty() {
                    return None;
                }
                let (schema, name) = c.owned_sequence.as_ref()?;
                Some((qualified(schema, name).into(), d))
            })
            .collect();
        for (sequence, _) in &sequences {
            swap.push(format!("ALTER SEQUENCE {sequence} OWNED BY NONE"));
        }
        // An identity column's sequence is part of it and goes with it: the copy (whose
        // default drew from that sequence while the migration was open) becomes an identity
        // column with a sequence of the same name that starts where the old one stood. The
        // next value and the increment are read first, into settings of this transaction.
        let identities: Vec<(String, String, &DupColumn)> = self
            .columns
            .iter()
            .filter_map(|d| {
                let c = catalog_table?.column(&old_physical(&d.name))?;
                let (schema, name) = c.owned_sequence.as_ref()?;
                let kind = match c.identity.as_str() {
                    "a" => "ALWAYS",
                    "d" => "BY DEFAULT",
                    _ => return None,
                };
                Some((qualified(schema, name).into(), kind.to_owned(), d))
            })
            .collect();
        for (i, (sequence, _, d)) in identities.iter().enumerate() {
            swap.push(format!(
                "SELECT set_config('pgshift.identity_start_{i}', (SELECT CASE WHEN s.is_called THEN s.last_value + p.seqincrement ELSE s.last_value END FROM {sequence} s, pg_catalog.pg_sequence p WHERE p.seqrelid = {}::regclass)::text, true), set_config('pgshift.identity_increment_{i}', (SELECT seqincrement FROM pg_catalog.pg_sequence WHERE seqrelid = {}::regclass)::text, true)",
                literal(sequence),
                literal(sequence)
            ));
            swap.push(format!(
                "ALTER TABLE {table} ALTER COLUMN {} DROP DEFAULT",
                ident(&new_name(&d.name))
            ));
        }
        for d in &self.columns {
            swap.push(format!(
                "ALTER TABLE {table} DROP COLUMN {}",
                ident(&old_physical(&d.name))
            ));
            swap.push(format!(
                "ALTER TABLE {table} RENAME COLUMN {} TO {}",
                ident(&new_name(&d.name)),
                ident(&d.name)
            ));
        }
        swap.extend(renames);
        for (i, (sequence, kind, d)) in identities.iter().enumerate() {
            let add = format!(
                "ALTER TABLE {table} ALTER COLUMN {} ADD GENERATED {kind} AS IDENTITY (SEQUENCE NAME {sequence} START WITH %s INCREMENT BY %s)",
                ident(&d.name)
            );
            swap.push(format!(
                "DO {}",
                triggers::dollar_quote(&format!(
                    "BEGIN EXECUTE format({}, current_setting('pgshift.identity_start_{i}'), current_setting('pgshift.identity_increment_{i}')); END",
                    literal(&add)
                ))
            ));
        }
        for (sequence, d) in &sequences {
            if super::sequence_type(&d.new_type) {
                swap.push(format!("ALTER SEQUENCE {sequence} AS {}", d.new_type));
            }
            swap.push(format!(
                "ALTER SEQUENCE {sequence} OWNED BY {table}.{}",
                ident(&d.name)
            ));
        }
        let drops: Vec<String> = self
            .columns
            .iter()
            .map(|d| format!("DROP COLUMN IF EXISTS {}", ident(&new_name(&d.name))))
            .collect();
        steps.rollback.push(triggers::drop_with(
            ctx.schema,
            &t.physical,
            &trigger,
            format!(
                "drop the copies of {} on {} and their dual-write trigger",
                names(&self.columns),
                self.table
            ),
            // The constraints made on the copies first: one that references another copy
            // of the table (a key of the table to itself) would hold that copy.
            guard_drops
                .into_iter()
                .chain(
                    carried.iter().map(|c| {
                        format!("ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {}", ident(c))
                    }),
                )
                .chain([format!("ALTER TABLE {table} {}", drops.join(", "))])
                .collect(),
        ));
        (steps, swap)
    }
}

impl Duplication<'_> {
    /// The constraints and indexes that involve a duplicated column would go with the old
    /// column at complete: recreate them on the copies (NOT VALID, or built concurrently)
    /// at start, validate them at complete, and give them back their names after the swap.
    fn carry_over(
        &self,
        ctx: &PlanContext,
        physical_table: &str,
        old_physical: &dyn Fn(&str) -> String,
        steps: &mut OpSteps,
        renames: &mut Vec<String>,
    ) -> Vec<String> {
        let mut carried = Vec::new();
        let Some(catalog_table) = ctx.catalog.table(physical_table) else {
            return carried;
        };
        let table = qualified(ctx.schema, physical_table);
        let columns: Vec<(String, String)> = self
            .columns
            .iter()
            .map(|d| (old_physical(&d.name), new_name(&d.name)))
            .collect();
        let involved =
            |cols: &[String]| cols.iter().any(|c| columns.iter().any(|(old, _)| old == c));
        // Foreign keys to columns this operation also duplicates need the copies' unique
        // index, built after the backfill: they are added after it.
        let mut late = Vec::new();
        for k in catalog_table.constraints.values() {
            if !involved(&k.columns) {
                continue;
            }
            match k.kind.as_str() {
                "c" | "f" => {
                    let tmp = internal_name("cc", &[&k.name]);
                    let referenced: Vec<(String, String)> = self
                        .referenced
                        .iter()
                        .filter(|(t, ..)| k.foreign_table.as_deref() == Some(t.as_str()))
                        .map(|(_, old, new)| (old.clone(), new.clone()))
                        .collect();
                    let Some(sql) =
                        steps.carry(constraint_copy(&table, &tmp, k, &columns, &referenced))
                    else {
                        continue;
                    };
                    carried.push(tmp.clone());
                    let mut adds = Vec::new();
                    if k.kind == "f" && partitions::foreign_key_by_partition(ctx, physical_table) {
                        // PostgreSQL before 18 has no NOT VALID foreign key on a partitioned
                        // table: one on each partition, validated there, then the
                        // partitioned table's, which takes them over without a scan. A
                        // foreign key's name does not pass to its partitions' by a rename.
                        let (leaves, levels) = partitions::leaves_and_levels(ctx, physical_table);
                        for leaf in &leaves {
                            let on = qualified(ctx.schema, leaf).to_string();
                            let Some(sql) =
                                steps.carry(constraint_copy(&on, &tmp, k, &columns, &referenced))
                            else {
                                continue;
                            };
                            adds.push(sql_step(
                                format!("constraint {} recreated on the copies in partition {leaf}, not validated yet", k.name),
                                sql,
                            ));
                            steps.complete.push(sql_step(
                                format!(
                                    "validate the copy of constraint {} in partition {leaf}",
                                    k.name
                                ),
                                format!("ALTER TABLE {on} VALIDATE CONSTRAINT {}", ident(&tmp)),
                            ));
                        }
                        for level in levels.iter().map(String::as_str).chain([physical_table]) {
                            let on = qualified(ctx.schema, level).to_string();
                            let Some(sql) = steps.carry(constraint_copy_on(
                                &on,
                                &tmp,
                                k,
                                &columns,
                                &referenced,
                                false,
                            )) else {
                                continue;
                            };
                            steps.complete.push(partitions::take_over_step(
                                format!("the copy of constraint {} on {level}, taking over its partitions' (no scan)", k.name),
                                sql,
                            ));
                        }
                        for t in leaves
                            .iter()
                            .chain(&levels)
                            .map(String::as_str)
                            .chain([physical_table])
                        {
                            renames.push(format!(
                                "ALTER TABLE {} RENAME CONSTRAINT {} TO {}",
                                qualified(ctx.schema, t),
                                ident(&tmp),
                                ident(&k.name)
                            ));
                        }
                    } else {
                        adds.push(sql_step(
                            format!(
                                "constraint {} recreated on the copies, not validated yet",
                                k.name
                            ),
                            sql,
                        ));
                        steps.complete.push(sql_step(
                            format!("validate the copy of constraint {}", k.name),
                            format!("ALTER TABLE {table} VALIDATE CONSTRAINT {}", ident(&tmp)),
                        ));
                        renames.push(format!(
                            "ALTER TABLE {table} RENAME CONSTRAINT {} TO {}",
                            ident(&tmp),
                            ident(&k.name)
                        ));
                        // A foreign key made on a partitioned table (PostgreSQL 18) has one
                        // on each partition, under its name: the rename above reaches only
                        // the partitioned table's.
                        if k.kind == "f" {
                            for (p, _, _) in ctx.catalog.partition_tree(physical_table) {
                                renames.push(format!(
                                    "ALTER TABLE {} RENAME CONSTRAINT {} TO {}",
                                    qualified(ctx.schema, &p),
                                    ident(&tmp),
                                    ident(&k.name)
                                ));
                            }
                        }
                    }
                    if referenced.is_empty() {
                        steps.start.extend(adds);
                    } else {
                        late.extend(adds);
                    }
                }
                // An exclusion constraint cannot be attached from an index: it is added again
                // after the swap (this scans the table under the swap's lock).
                "x" => renames.push(format!(
                    "ALTER TABLE {table} ADD CONSTRAINT {} {}",
                    ident(&k.name),
                    k.definition
                )),
                // Unique: through its index, below. Primary keys and referenced columns are
                // refused by validation; NOT NULL ('n' on PostgreSQL 18) travels with not_null.
                _ => {}
            }
        }
        for ix in &catalog_table.indexes {
            let kind = ix
                .constraint
                .as_ref()
                .and_then(|c| catalog_table.constraints.get(c))
                .map(|c| c.kind.as_str());
            let primary = kind == Some("p");
            if (primary && !self.swap_primary_key)
                || kind == Some("x")
                || !involved(&columns_named(&ix.definition))
            {
                continue;
            }
            let Some((build, name_back)) = steps.carry(index_copy(
                ctx,
                ix,
                kind,
                physical_table,
                false,
                &columns,
                format!("index {} recreated on the copies, concurrently", ix.name),
            )) else {
                continue;
            };
            steps.after_backfill.extend(build);
            renames.extend(name_back);
        }
        steps.after_backfill.extend(late);
        carried
    }
}

/// Refuses to duplicate a column that cannot be swapped for a copy.
pub(super) fn require_not_pinned(
    vs: &VirtualSchema,
    table: &str,
    columns: &[&str],
) -> Result<(), super::Invalid> {
    let Some(t) = vs.table(table) else {
        return Ok(());
    };
    for c in columns {
        let physical = t.column(c).map(|v| v.physical.as_str()).unwrap_or(c);
        if t.pinned.iter().any(|p| p == physical) {
            return Err((
                format!("column {table}.{c} is part of the primary key or referenced by a foreign key, so it cannot be swapped for a transformed copy"),
                Some("change a primary key and the foreign keys that reference it with the primary-key type operation; or leave `up`/`down` as the column itself".to_owned()),
            ));
        }
    }
    Ok(())
}

fn names(columns: &[DupColumn]) -> String {
    columns
        .iter()
        .map(|d| d.name.as_str())
        .collect::<Vec<_>>()
        .join("_")
}

/// Whether an `up`/`down` expression just repeats the column (no transformation).
pub(super) fn is_identity(expr: Option<&str>, column: &str) -> bool {
    match expr {
        None => true,
        Some(e) => {
            let e = e.trim();
            e == column || e == crate::quote::ident(column)
        }
    }
}
