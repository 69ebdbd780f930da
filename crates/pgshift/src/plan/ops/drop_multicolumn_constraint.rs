//! `drop_multicolumn_constraint`: like `drop_constraint`, one short statement at complete.

use super::drop_constraint::{drop_constraint_steps, require_constraint};
use super::Invalid;
use crate::model::DropMulticolumnConstraint;
use crate::plan::{OperationPlan, PlanContext, VirtualSchema};

impl OperationPlan for DropMulticolumnConstraint {
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
