//! `rename_table`, `rename_column`, `rename_constraint`: the new version sees the new name
//! from start (its views say so); the physical rename happens at complete, when no client
//! of the old version is left.

use super::{not_internal, Invalid};
use crate::model::{RenameColumn, RenameConstraint, RenameTable};
use crate::plan::{sql_step, OpSteps, OperationPlan, PlanContext, VirtualSchema};
use crate::quote::{ident, qualified};

impl OperationPlan for RenameTable {
    fn validate(&self, vs: &VirtualSchema) -> Result<(), Invalid> {
        vs.require_table(&self.from)?;
        not_internal(&self.to)?;
        if vs.table(&self.to).is_some() {
            return Err((format!("table {:?} already exists", self.to), None));
        }
        Ok(())
    }

    fn apply(&self, vs: &mut VirtualSchema) {
        if let Some(t) = vs.tables.remove(&self.from) {
            vs.tables.insert(self.to.clone(), t);
        }
    }

    fn plan(&self, ctx: &PlanContext, vs: &VirtualSchema) -> OpSteps {
        let physical = vs
            .table(&self.from)
            .map(|t| t.physical.clone())
            .unwrap_or_default();
        OpSteps {
            complete: vec![sql_step(
                format!("rename table {} to {}", self.from, self.to),
                format!(
                    "ALTER TABLE {} RENAME TO {}",
                    qualified(ctx.schema, &physical),
                    ident(&self.to)
                ),
            )],
            ..OpSteps::default()
        }
    }
}

impl OperationPlan for RenameColumn {
    fn validate(&self, vs: &VirtualSchema) -> Result<(), Invalid> {
        vs.require_column(&self.table, &self.from)?;
        not_internal(&self.to)?;
        if vs.require_table(&self.table)?.column(&self.to).is_some() {
            return Err((
                format!("column {:?} already exists in {:?}", self.to, self.table),
                None,
            ));
        }
        Ok(())
    }

    fn apply(&self, vs: &mut VirtualSchema) {
        if let Some(c) = vs
            .table_mut(&self.table)
            .and_then(|t| t.column_mut(&self.from))
        {
            c.name = self.to.clone();
        }
    }

    fn plan(&self, ctx: &PlanContext, vs: &VirtualSchema) -> OpSteps {
        rename_column_steps(ctx, vs, &self.table, &self.from, &self.to)
    }
}

/// The physical rename at complete (shared with alter_column's `name`).
pub(super) fn rename_column_steps(
    ctx: &PlanContext,
    vs: &VirtualSchema,
    table: &str,
    from: &str,
    to: &str,
) -> OpSteps {
    let Some(t) = vs.table(table) else {
        return OpSteps::default();
    };
    let physical = t
        .column(from)
        .map(|c| c.physical.clone())
        .unwrap_or_default();
    OpSteps {
        complete: vec![sql_step(
            format!("rename column {table}.{from} to {to}"),
            format!(
                "ALTER TABLE {} RENAME COLUMN {} TO {}",
                qualified(ctx.schema, &t.physical),
                ident(&physical),
                ident(to)
            ),
        )],
        ..OpSteps::default()
    }
}

impl OperationPlan for RenameConstraint {
    fn validate(&self, vs: &VirtualSchema) -> Result<(), Invalid> {
        let t = vs.require_table(&self.table)?;
        if !t.constraints.contains(&self.from) {
            return Err((
                format!("table {:?} has no constraint {:?}", self.table, self.from),
                Some(format!("its constraints: {}", t.constraints.join(", "))),
            ));
        }
        not_internal(&self.to)
    }

    fn apply(&self, vs: &mut VirtualSchema) {
        if let Some(t) = vs.table_mut(&self.table) {
            t.constraints.retain(|c| c != &self.from);
            t.constraints.push(self.to.clone());
        }
    }

    fn plan(&self, ctx: &PlanContext, vs: &VirtualSchema) -> OpSteps {
        let physical = vs
            .table(&self.table)
            .map(|t| t.physical.clone())
            .unwrap_or_default();
        OpSteps {
            complete: vec![sql_step(
                format!("rename constraint {} to {}", self.from, self.to),
                format!(
                    "ALTER TABLE {} RENAME CONSTRAINT {} TO {}",
                    qualified(ctx.schema, &physical),
                    ident(&self.from),
                    ident(&self.to)
                ),
            )],
            ..OpSteps::default()
        }
    }
}
