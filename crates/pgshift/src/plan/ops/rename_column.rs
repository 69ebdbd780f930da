//! `rename_column`: the new version sees the new name from start; the column is renamed at
//! complete, when no client of the old version is left.

use super::{not_internal, Invalid};
use crate::model::RenameColumn;
use crate::plan::{sql_step, OpSteps, OperationPlan, PlanContext, VirtualSchema};
use crate::quote::{ident, qualified};

impl OperationPlan for RenameColumn {
    fn validate(&self, vs: &VirtualSchema) -> Result<(), Invalid> {
        vs.require_not_partition(&self.table)?;
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
            c.complete_name = self.to.clone();
        }
    }

    fn plan(&self, ctx: &PlanContext, vs: &VirtualSchema) -> super::Planned {
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
) -> super::Planned {
    let Some(t) = vs.table(table) else {
        return Err(super::missing("table", table));
    };
    let Some(column) = t.column(from) else {
        return Err(super::missing("column", from));
    };
    // At complete: the name the column has by then (a duplicated column's copy has taken
    // the column's name in the swap before this step).
    let physical = column.complete_name.clone();
    Ok(OpSteps {
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
    })
}
