//! `add_column`: the column is added at start under its own name, nullable; old-version
//! writes get it from `up` (trigger), existing rows from a backfill of `up` (or of a
//! volatile default). NOT NULL is a CHECK NOT VALID until complete, which validates it
//! (reads and writes go on) and then sets NOT NULL without a scan. UNIQUE is an index built
//! CONCURRENTLY, attached at complete; a foreign key is added NOT VALID and validated.

use super::create_table::column_definition;
use super::in_place::InPlace;
use super::{is_volatile, not_internal, same_expression, Invalid};
use crate::model::{AddColumn, AlterMethod};
use crate::plan::triggers::{self, DualWrite};
use crate::plan::{
    internal_name, sql_step, BackfillSpec, MethodChoice, OpSteps, OperationPlan, PlanContext,
    VColumn, VirtualSchema,
};
use crate::quote::{ident, literal, qualified};

impl OperationPlan for AddColumn {
    fn validate(&self, vs: &VirtualSchema) -> Result<(), Invalid> {
        vs.require_not_partition(&self.table)?;
        let t = vs.require_table(&self.table)?;
        not_internal(&self.column.name)?;
        if t.column(&self.column.name).is_some() {
            return Err((
                format!(
                    "column {:?} already exists in {:?}",
                    self.column.name, self.table
                ),
                None,
            ));
        }
        if let Some(renamed) = t
            .columns
            .iter()
            .find(|c| c.physical == self.column.name && c.name != c.physical)
        {
            return Err((
                format!(
                    "column {:?} of {:?} is still the name of {:?}, renamed by an earlier operation of this migration: the table keeps its columns' names until complete",
                    self.column.name, self.table, renamed.name
                ),
                Some("add the column in a migration after this one".to_owned()),
            ));
        }
        if self.column.pk {
            return Err((
                "add_column cannot add a primary key column".to_owned(),
                Some("add the column, then create_constraint with type primary_key".to_owned()),
            ));
        }
        if !self.column.nullable && self.column.default.is_none() && self.up.is_none() {
            return Err((
                format!("column {:?} is NOT NULL but has neither `default` nor `up`: existing rows would have no value", self.column.name),
                Some("give `up` (an expression over the row's columns) or `default`, or make the column nullable".to_owned()),
            ));
        }
        if let Some(r) = &self.column.references {
            vs.require_column(&r.table, &r.column)?;
        }
        if let Some(copy) = self.copy(vs) {
            copy.validate(vs)?;
        }
        Ok(())
    }

    fn apply(&self, vs: &mut VirtualSchema) {
        if let Some(copy) = self.copy(vs) {
            return copy.apply(vs);
        }
        if let Some(t) = vs.table_mut(&self.table) {
            self.apply_to(t);
        }
    }

    fn plan(&self, ctx: &PlanContext, vs: &VirtualSchema) -> super::Planned {
        let mut steps = self.steps(ctx, vs)?;
        steps.method = self.method_choice(vs);
        Ok(steps)
    }
}

impl AddColumn {
    fn steps(&self, ctx: &PlanContext, vs: &VirtualSchema) -> super::Planned {
        if let Some(copy) = self.copy(vs) {
            return copy.plan(ctx, vs);
        }
        let Some(t) = vs.table(&self.table) else {
            return Err(super::missing("table", &self.table));
        };
        let c = &self.column;
        let table = qualified(ctx.schema, &t.physical);
        let col = ident(&c.name);
        let volatile_default = c
            .default
            .as_deref()
            .is_some_and(|d| is_volatile(d, &ctx.catalog.volatile_functions));
        // A constant default is stored once (PostgreSQL 11+) and every existing row reads
        // it, and old clients' inserts get it too: an `up` that says the same fills nothing
        // that the default does not, so there is no trigger and no backfill.
        let constant_default = c
            .default
            .as_deref()
            .filter(|d| !volatile_default && !same_expression(d, "NULL"));
        let up = self
            .up
            .as_deref()
            .filter(|u| !constant_default.is_some_and(|d| same_expression(u, d)));
        // NOT NULL with such a default is a catalog change too: no row can be NULL.
        let not_null_inline = !c.nullable && constant_default.is_some() && up.is_none();
        // The definition without NOT NULL / UNIQUE / CHECK / REFERENCES: those come as
        // separate, lock-safe steps below.
        let mut bare = c.clone();
        bare.nullable = !not_null_inline;
        bare.unique = false;
        bare.check = None;
        bare.references = None;
        let mut steps = OpSteps::default();
        steps.start.push(sql_step(
            format!("add column {}.{}", self.table, c.name),
            format!(
                "ALTER TABLE {table} ADD COLUMN {}",
                column_definition(ctx, vs, &bare, &c.name, !volatile_default)
            ),
        ));
        if let (true, Some(d)) = (volatile_default, &c.default) {
            steps.start.push(sql_step(
                format!(
                    "set the default of {}.{} (volatile: not evaluated for existing rows in place)",
                    self.table, c.name
                ),
                format!("ALTER TABLE {table} ALTER COLUMN {col} SET DEFAULT {d}"),
            ));
        }
        if let Some(comment) = &c.comment {
            steps.start.push(sql_step(
                format!("comment on column {}.{}", self.table, c.name),
                format!("COMMENT ON COLUMN {table}.{col} IS {}", literal(comment)),
            ));
        }
        let fill = up.map(str::to_owned).or_else(|| {
            c.default
                .clone()
                .map(String::from)
                .filter(|_| volatile_default)
        });
        let trigger = internal_name("trg", &[&t.physical, &c.name]);
        if let Some(up) = up {
            let mut new_version = t.clone();
            self.apply_to(&mut new_version);
            let dual = DualWrite {
                schema: ctx.schema,
                table: &t.physical,
                name: trigger.clone(),
                version_schema: &ctx.version_schema,
                old_version: t,
                new_version: &new_version,
                up: vec![(c.name.clone(), up.to_owned())],
                down: Vec::new(),
            }
            .create();
            steps.start.extend(dual);
        }
        if let Some(expr) = fill {
            steps.backfills.push(BackfillSpec {
                partition_of: None,
                schema: ctx.schema.to_owned(),
                condition: None,
                insert: None,
                table: t.physical.clone(),
                set: vec![(c.name.clone(), super::physical_expression(&expr, t))],
            });
        }
        let in_place = InPlace {
            ctx,
            vs,
            table_name: &self.table,
            physical_table: &t.physical,
            column: &c.name,
        };
        if !c.nullable && !not_null_inline {
            in_place.not_null(&mut steps);
        }
        if let Some(check) = &c.check {
            in_place.check(check, &mut steps);
        }
        if let Some(r) = &c.references {
            in_place.foreign_key(r, &mut steps);
        }
        if c.unique {
            let constraint = crate::plan::naming::fit(&format!("{}_{}_key", t.physical, c.name));
            in_place.unique(&constraint, &mut steps)?;
        }
        if up.is_some() {
            // Last at complete: old-version writes keep getting `up` while the constraints
            // are validated.
            steps
                .complete
                .extend(triggers::drop(ctx.schema, &t.physical, &trigger));
        }
        let drop_column = format!("ALTER TABLE {table} DROP COLUMN IF EXISTS {col}");
        steps.rollback.push(if up.is_some() {
            triggers::drop_with(
                ctx.schema,
                &t.physical,
                &trigger,
                format!(
                    "drop column {}.{} and its dual-write trigger",
                    self.table, c.name
                ),
                vec![drop_column],
            )
        } else {
            sql_step(
                format!("drop column {}.{}", self.table, c.name),
                drop_column,
            )
        });
        Ok(steps)
    }
}

impl AddColumn {
    fn table_copy(&self) -> super::copy_table::CopyTable<'_> {
        super::copy_table::CopyTable {
            table: &self.table,
            change: super::copy_table::Change::Add {
                column: &self.column,
                up: self.up.as_deref(),
            },
        }
    }

    /// A copy of the table with the new column, when that is the method: asked for
    /// (`method: copy`), or, without `method`, whenever the column must be filled on every
    /// row and the table can be copied.
    fn copy<'a>(&'a self, vs: &VirtualSchema) -> Option<super::copy_table::CopyTable<'a>> {
        let copy = self.table_copy();
        match self.method {
            Some(AlterMethod::Copy) => Some(copy),
            Some(AlterMethod::InPlace) => None,
            None => (self.fills_every_row(vs) && copy.validate(vs).is_ok()).then_some(copy),
        }
    }

    /// Whether every existing row gets a value of its own: from `up`, or from a volatile
    /// default (a constant default is stored once, in the catalog).
    fn fills_every_row(&self, vs: &VirtualSchema) -> bool {
        let default = self.column.default.as_deref();
        let volatile = default.is_some_and(|d| is_volatile(d, &vs.volatile_functions));
        // An `up` that says what a constant default says fills nothing (see `steps`).
        let constant = default.filter(|d| !volatile && !same_expression(d, "NULL"));
        volatile
            || self
                .up
                .as_deref()
                .is_some_and(|u| !constant.is_some_and(|d| same_expression(u, d)))
    }

    /// What `plan` says of the method, for a column filled on every row.
    fn method_choice(&self, vs: &VirtualSchema) -> Option<MethodChoice> {
        if !self.fills_every_row(vs) && self.method.is_none() {
            return None;
        }
        let (method, why) = match (self.copy(vs), self.method) {
            (Some(_), Some(AlterMethod::Copy)) => ("copy", "asked for (`method: copy`)".to_owned()),
            (Some(_), _) => (
                "copy",
                super::copy_table::why_copy(vs, &[&self.table], "the new column is filled on every row"),
            ),
            (None, Some(AlterMethod::InPlace)) => (
                "in_place",
                "the column added in the table and filled by a backfill: asked for (`method: in_place`)".to_owned(),
            ),
            (None, _) => (
                "in_place",
                format!(
                    "the column added in the table and filled by a backfill: not a copy of the table, because {}",
                    self.table_copy().validate(vs).err().map(|(why, _)| why).unwrap_or_default()
                ),
            ),
        };
        Some(MethodChoice {
            operation: 0,
            what: format!("add_column {}.{}", self.table, self.column.name),
            method: method.to_owned(),
            why,
        })
    }

    /// Idempotent: once start has added the column, the live catalog already has it.
    fn apply_to(&self, t: &mut crate::plan::VTable) {
        t.columns.retain(|c| c.name != self.column.name);
        t.columns.push(VColumn {
            name: self.column.name.clone(),
            physical: self.column.name.clone(),
            complete_name: self.column.name.clone(),
            data_type: self.column.data_type.to_string(),
            not_null: !self.column.nullable,
        });
    }
}
