//! `drop_constraint`: dropping a constraint only removes metadata, so it is one short
//! statement at complete. (pgroll duplicates the column so the old version keeps the
//! constraint; here the old version keeps it too, until complete, and no data moves.)

use super::Invalid;
use crate::model::DropConstraint;
use crate::plan::{sql_step, OpSteps, OperationPlan, PlanContext, VirtualSchema};
use crate::quote::{ident, qualified};

pub(super) fn drop_constraint_steps(
    ctx: &PlanContext,
    vs: &VirtualSchema,
    table: &str,
    name: &str,
) -> OpSteps {
    let physical = vs
        .table(table)
        .map(|t| t.physical.clone())
        .unwrap_or_default();
    OpSteps {
        complete: vec![sql_step(
            format!("drop constraint {name} on {table}"),
            format!(
                "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
                qualified(ctx.schema, &physical),
                ident(name)
            ),
        )],
        ..OpSteps::default()
    }
}

pub(super) fn require_constraint(
    vs: &VirtualSchema,
    table: &str,
    name: &str,
) -> Result<(), Invalid> {
    let t = vs.require_table(table)?;
    if t.constraints.iter().any(|c| c == name) {
        Ok(())
    } else {
        Err((
            format!("table {table:?} has no constraint {name:?}"),
            Some(format!("its constraints: {}", t.constraints.join(", "))),
        ))
    }
}

impl OperationPlan for DropConstraint {
    fn validate(&self, vs: &VirtualSchema) -> Result<(), Invalid> {
        vs.require_not_partition(&self.table)?;
        require_constraint(vs, &self.table, &self.name)
    }

    fn apply(&self, vs: &mut VirtualSchema) {
        if let Some(t) = vs.table_mut(&self.table) {
            t.constraints.retain(|c| c != &self.name);
        }
    }

    fn plan(&self, ctx: &PlanContext, vs: &VirtualSchema) -> super::Planned {
        Ok(drop_constraint_steps(ctx, vs, &self.table, &self.name))
    }
}
