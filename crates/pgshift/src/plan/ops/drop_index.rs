//! `drop_index`: DROP INDEX CONCURRENTLY at complete (the old version may still rely on it).

use super::Invalid;
use crate::model::DropIndex;
use crate::plan::{concurrent_step, OpSteps, OperationPlan, PlanContext, VirtualSchema};
use crate::quote::qualified;
use crate::sql::ConcurrentIndex;

impl OperationPlan for DropIndex {
    fn validate(&self, _vs: &VirtualSchema) -> Result<(), Invalid> {
        Ok(())
    }

    fn apply(&self, _vs: &mut VirtualSchema) {}

    fn plan(&self, ctx: &PlanContext, _vs: &VirtualSchema) -> OpSteps {
        OpSteps {
            complete: vec![concurrent_step(
                format!("drop index {}", self.name),
                format!(
                    "DROP INDEX CONCURRENTLY IF EXISTS {}",
                    qualified(ctx.schema, &self.name)
                ),
                Some(ConcurrentIndex::Drop {
                    schema: Some(ctx.schema.to_owned()),
                    name: self.name.clone(),
                }),
            )],
            ..OpSteps::default()
        }
    }
}
