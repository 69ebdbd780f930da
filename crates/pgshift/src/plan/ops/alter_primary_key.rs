//! `alter_primary_key`: a table's primary key column and every foreign-key column that
//! references it get a new type (int to bigint), with no lock held for longer than a swap.
//!
//! By default (and with `method: copy`) the key's table and every referencing table are
//! copied with the new types, one copy each (see `copy_table.rs`): no row is updated in
//! place, each copy's indexes are built in bulk after its rows, and one swap at complete
//! replaces all the tables, making the foreign keys between them again on the copies (NOT
//! VALID, then validated while clients read and write).
//!
//! In place (`method: in_place`, or when a table cannot be copied), each column is
//! duplicated (see `duplicate.rs`): a copy of the new type, filled by a
//! trigger and a backfill. After the backfill the primary key's unique index is built
//! CONCURRENTLY on the copy, the referencing tables' foreign keys are added on their copies
//! against it, NOT VALID, and NOT NULL goes on as a CHECK, NOT VALID. Complete validates
//! them (reads and writes go on), then swaps every table in one short transaction: the old
//! columns go (and the old foreign keys with them), the copies take their names, the new
//! index becomes the primary key (`USING INDEX`), the owned sequence moves to the new
//! column as `AS <type>`.

use super::copy_table::{Change, CopyTable};
use super::duplicate::{new_name, DupColumn, Duplication};
use super::Invalid;
use crate::model::{AlterMethod, AlterPrimaryKey};
use crate::plan::{
    Action, MethodChoice, OpSteps, OperationPlan, PlanContext, PlannedStep, SwapSpec, VirtualSchema,
};
use crate::quote::{ident, qualified};

impl AlterPrimaryKey {
    /// (virtual table name, columns to change) for the key's table and each referencing
    /// table, the key's table first.
    fn tables(&self, vs: &VirtualSchema) -> Vec<(String, Vec<String>)> {
        let Some(t) = vs.table(&self.table) else {
            return Vec::new();
        };
        let mut out: Vec<(String, Vec<String>)> = vec![(self.table.clone(), t.primary_key.clone())];
        for r in &t.referenced_by {
            let Some(name) = vs
                .tables
                .iter()
                .find(|(_, v)| v.physical == r.table)
                .map(|(n, _)| n.clone())
            else {
                continue;
            };
            let physical_names: Vec<String> = r.columns.clone();
            match out.iter_mut().find(|(n, _)| *n == name) {
                Some((_, cols)) => {
                    for c in physical_names {
                        if !cols.contains(&c) {
                            cols.push(c);
                        }
                    }
                }
                None => out.push((name, physical_names)),
            }
        }
        out
    }

    /// One copy for each table of `tables` (the key's first), each with its key columns of
    /// the new type.
    fn copies<'a>(
        &'a self,
        tables: &'a [(String, Vec<String>)],
        vs: &VirtualSchema,
    ) -> Vec<CopyTable<'a>> {
        let parts: Vec<String> = tables
            .iter()
            .filter_map(|(name, _)| Some(vs.table(name)?.physical.clone()))
            .collect();
        tables
            .iter()
            .map(|(name, columns)| CopyTable {
                table: name,
                change: Change::Key {
                    columns: columns.clone(),
                    new_type: self.data_type.as_str(),
                    parts: parts.clone(),
                },
            })
            .collect()
    }

    /// Why the tables cannot be copied (the first refusal, naming its table, with its
    /// hint), None when they can.
    fn copy_refusal(&self, vs: &VirtualSchema) -> Option<Invalid> {
        let tables = self.tables(vs);
        self.copies(&tables, vs).iter().find_map(|c| {
            c.validate(vs)
                .err()
                .map(|(why, hint)| (format!("{}: {why}", c.table), hint))
        })
    }

    /// Whether the change is made by copies of the tables: asked for, or pgshift's choice
    /// whenever every table can be copied.
    fn by_copy(&self, vs: &VirtualSchema) -> bool {
        match self.method {
            Some(AlterMethod::Copy) => true,
            Some(AlterMethod::InPlace) => false,
            None => self.copy_refusal(vs).is_none(),
        }
    }

    fn method_choice(&self, vs: &VirtualSchema) -> MethodChoice {
        let what = format!("alter_primary_key {}", self.table);
        if self.by_copy(vs) {
            let tables = self.tables(vs);
            let tables: Vec<&str> = tables.iter().map(|(n, _)| n.as_str()).collect();
            let names = tables.join(", ");
            return MethodChoice {
                operation: 0,
                what,
                method: "copy".to_owned(),
                why: if self.method == Some(AlterMethod::Copy) {
                    "asked for (`method: copy`)".to_owned()
                } else {
                    format!(
                        "{}; one copy for each of {names}, swapped in together",
                        super::copy_table::why_copy(
                            vs,
                            &tables,
                            "the key's new type rewrites every row of the key's table and of each table that references it"
                        )
                    )
                },
            };
        }
        super::in_place_only(
            what,
            &format!(
                "copies of the key's columns and of the columns that reference it, in their tables, filled by backfills and swapped in at complete: {}",
                if self.method == Some(AlterMethod::InPlace) {
                    "asked for (`method: in_place`)".to_owned()
                } else {
                    format!(
                        "not a copy of the tables, because {}",
                        self.copy_refusal(vs).map(|(why, _)| why).unwrap_or_default()
                    )
                }
            ),
        )
    }

    /// The plan by copies: each table's copy, its steps one table after the other (the
    /// key's first), one swap of them all, then the foreign keys the swap made validated.
    fn plan_copies(&self, ctx: &PlanContext, vs: &VirtualSchema) -> super::Planned {
        let tables = self.tables(vs);
        let mut steps = OpSteps::default();
        let mut parts = Vec::new();
        let mut swap = Vec::new();
        let mut rollbacks = Vec::new();
        let mut drops = Vec::new();
        for copy in self.copies(&tables, vs) {
            let p = copy.plan_parts(ctx, vs)?;
            steps.start.extend(p.steps.start);
            steps.backfills.extend(p.steps.backfills);
            steps.after_backfill.extend(p.steps.after_backfill);
            steps.verify.extend(p.steps.verify);
            steps.complete.extend(p.steps.complete);
            steps.unplannable.extend(p.steps.unplannable);
            rollbacks.insert(0, p.steps.rollback);
            parts.push(p.part);
            swap.extend(p.swap);
            drops.push(p.drop_old);
        }
        steps.rollback = rollbacks.concat();
        steps
            .complete
            .push(super::copy_table::swap_step(ctx, &self.table, parts, swap));
        // Each old table, renamed by the swap, dropped after it (the foreign keys between
        // them went in the swap).
        steps.complete.extend(drops);
        steps
            .complete
            .push(super::copy_table::validate_carried_step(&self.table));
        steps.method = Some(self.method_choice(vs));
        Ok(steps)
    }

    fn duplications<'a>(
        &self,
        tables: &'a [(String, Vec<String>)],
        vs: &VirtualSchema,
        ctx: Option<&PlanContext>,
    ) -> Vec<Duplication<'a>> {
        let referenced: Vec<(String, String, String)> = tables
            .iter()
            .filter_map(|(name, cols)| Some((vs.table(name)?.physical.clone(), cols)))
            .flat_map(|(physical, cols)| {
                cols.iter()
                    .map(move |c| (physical.clone(), c.clone(), new_name(c)))
            })
            .collect();
        tables
            .iter()
            .filter_map(|(name, physical_columns)| {
                let t = vs.table(name)?;
                let catalog_table = ctx.and_then(|ctx| ctx.catalog.table(&t.physical));
                let columns = physical_columns
                    .iter()
                    .filter_map(|p| {
                        let c = t.columns.iter().find(|c| &c.physical == p)?;
                        let catalog_column = catalog_table.and_then(|ct| ct.column(p));
                        Some(DupColumn {
                            name: c.name.clone(),
                            new_type: self.data_type.to_string(),
                            up: format!("{}::{}", ident(&c.name), self.data_type),
                            down: format!("{}::{}", ident(&c.name), c.data_type),
                            not_null: c.not_null,
                            // An identity column has no default: its copy draws from the
                            // identity's sequence (it becomes the copy's identity at the swap).
                            default: catalog_column.and_then(|c| {
                                c.default.clone().or_else(|| {
                                    let (schema, name) = c.owned_sequence.as_ref()?;
                                    (!c.identity.is_empty()).then(|| {
                                        format!(
                                            "nextval({}::regclass)",
                                            crate::quote::literal(&qualified(schema, name))
                                        )
                                    })
                                })
                            }),
                            comment: None,
                        })
                    })
                    .collect();
                Some(Duplication {
                    table: name,
                    columns,
                    constraints: Vec::new(),
                    swap_primary_key: true,
                    referenced: referenced.clone(),
                })
            })
            .collect()
    }
}

impl OperationPlan for AlterPrimaryKey {
    fn validate(&self, vs: &VirtualSchema) -> Result<(), Invalid> {
        vs.require_not_partition(&self.table)?;
        let t = vs.require_table(&self.table)?;
        if self.data_type.trim().is_empty() {
            return Err((
                "`type` is empty".to_owned(),
                Some("type: bigint".to_owned()),
            ));
        }
        match t.primary_key.as_slice() {
            [] => {
                return Err((
                    format!("table {:?} has no primary key", self.table),
                    Some("change the column with alter_column instead".to_owned()),
                ))
            }
            [_] => {}
            more => {
                return Err((
                    format!(
                        "the primary key of {:?} has {} columns ({}); alter_primary_key changes a one-column key",
                        self.table,
                        more.len(),
                        more.join(", ")
                    ),
                    None,
                ))
            }
        }
        for (name, columns) in self.tables(vs) {
            let Some(table) = vs.table(&name) else {
                continue;
            };
            for c in &columns {
                if table.identity.contains(c) && name != self.table {
                    return Err((
                        format!("{name}.{c} references {} and is an identity column itself; alter_primary_key moves the identity of the key only", self.table),
                        Some(format!("drop the identity of {name}.{c} first (ALTER COLUMN ... DROP IDENTITY)")),
                    ));
                }
                if !table.columns.iter().any(|v| &v.physical == c) {
                    return Err((
                        format!("column {name}.{c} is not visible in this version"),
                        None,
                    ));
                }
                // A referencing column that other tables reference in turn would need their
                // keys changed as well.
                if name != self.table
                    && table.referenced_by.iter().any(|r| r.referenced.contains(c))
                {
                    return Err((
                        format!("{name}.{c} references {} and is itself referenced by another table's foreign key", self.table),
                        Some(format!("change {name}'s key first with its own alter_primary_key")),
                    ));
                }
            }
        }
        let referencing: Vec<&str> = t.referenced_by.iter().map(|r| r.table.as_str()).collect();
        if referencing
            .iter()
            .any(|r| !vs.tables.values().any(|v| v.physical == *r))
        {
            return Err((
                format!(
                    "a foreign key from a table this version does not show references {:?}",
                    self.table
                ),
                None,
            ));
        }
        if self.method == Some(AlterMethod::Copy) {
            if let Some((why, hint)) = self.copy_refusal(vs) {
                return Err((format!("`method: copy` cannot copy {why}"), hint));
            }
        }
        Ok(())
    }

    fn apply(&self, vs: &mut VirtualSchema) {
        let tables = self.tables(vs);
        let before = vs.clone();
        if self.by_copy(&before) {
            for copy in self.copies(&tables, &before) {
                copy.apply(vs);
            }
            return;
        }
        for d in self.duplications(&tables, &before, None) {
            d.apply(vs);
        }
    }

    fn plan(&self, ctx: &PlanContext, vs: &VirtualSchema) -> super::Planned {
        if self.by_copy(vs) {
            return self.plan_copies(ctx, vs);
        }
        if let Some(t) = vs
            .table(&self.table)
            .and_then(|t| ctx.catalog.table(&t.physical))
            .filter(|t| t.partitioned)
        {
            // A partitioned table's one-column key is its partition key.
            return Err((
                format!(
                    "{} is partitioned by its key ({}): PostgreSQL can neither change the type of a partition key's column nor drop it, so the key can change only in a copy of the partitioned table, which pgshift does not make yet",
                    self.table, t.partition_key_definition
                ),
                None,
            ));
        }
        let tables = self.tables(vs);
        let mut steps = OpSteps::default();
        let mut swap = Vec::new();
        let mut what = Vec::new();
        let mut rollbacks = Vec::new();
        // The key's table first at start: its unique index is built before the other
        // tables' foreign keys to it (each table adds those after its own indexes).
        let mut parts = Vec::new();
        let mut analyze = Vec::new();
        for d in self.duplications(&tables, vs, Some(ctx)) {
            let (s, table_swap) = d.plan_parts(ctx, vs);
            parts.extend(d.swap_part(vs));
            analyze.extend(d.analyze_step(ctx, vs));
            what.push(format!(
                "{}.{}",
                d.table,
                d.columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ));
            steps.start.extend(s.start);
            steps.backfills.extend(s.backfills);
            steps.after_backfill.extend(s.after_backfill);
            steps.complete.extend(s.complete);
            // What a duplication cannot carry refuses the operation at plan (a partitioned
            // table's key, say), before start changes anything.
            steps.unplannable.extend(s.unplannable);
            // Rollback and swap go the other way: the referencing tables' copies (and
            // their foreign keys to the key's copy) go before the key's copy.
            rollbacks.insert(0, s.rollback);
            swap.insert(0, table_swap);
        }
        steps.rollback = rollbacks.concat();
        // The old foreign keys go first, by name: dropping the old key column would refuse
        // while one (a table's reference to itself, say) still depends on it.
        if let Some(t) = vs.table(&self.table) {
            let drops: Vec<String> = t
                .referenced_by
                .iter()
                .map(|r| {
                    format!(
                        "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
                        qualified(ctx.schema, &r.table),
                        ident(&r.constraint)
                    )
                })
                .collect();
            swap.insert(0, drops);
        }
        steps.complete.push(PlannedStep {
            description: format!(
                "swap {} for their {} copies, in one transaction, with what hangs on them",
                what.join(", "),
                self.data_type
            ),
            action: Action::Swap(SwapSpec {
                scans_nothing: false,
                schema: ctx.schema.to_owned(),
                parts,
                statements: swap.concat(),
                after: Vec::new(),
            }),
        });
        steps.complete.extend(analyze);
        steps.method = Some(self.method_choice(vs));
        Ok(steps)
    }
}
