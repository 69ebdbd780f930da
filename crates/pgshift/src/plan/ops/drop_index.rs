//! `drop_index`: DROP INDEX CONCURRENTLY at complete (the old version may still rely on it).

use super::Invalid;
use crate::model::DropIndex;
use crate::plan::{drop_index_step, OpSteps, OperationPlan, PlanContext, VirtualSchema};

impl OperationPlan for DropIndex {
    fn validate(&self, _vs: &VirtualSchema) -> Result<(), Invalid> {
        Ok(())
    }

    fn apply(&self, _vs: &mut VirtualSchema) {}

    fn plan(&self, ctx: &PlanContext, _vs: &VirtualSchema) -> super::Planned {
        Ok(OpSteps {
            complete: vec![drop_index_step(
                format!("drop index {}", self.name),
                ctx.schema,
                &self.name,
            )],
            ..OpSteps::default()
        })
    }
}
