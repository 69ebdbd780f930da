//! `drop_index`: DROP INDEX CONCURRENTLY at complete (the old version may still rely on it).
//! PostgreSQL drops an index of a partitioned table only in a transaction (with its
//! partitions' indexes, ACCESS EXCLUSIVE on each partition for the moment of the drop).

use super::Invalid;
use crate::model::DropIndex;
use crate::plan::{drop_index_step, sql_step, OpSteps, OperationPlan, PlanContext, VirtualSchema};
use crate::quote::qualified;

impl OperationPlan for DropIndex {
    fn validate(&self, _vs: &VirtualSchema) -> Result<(), Invalid> {
        Ok(())
    }

    fn apply(&self, _vs: &mut VirtualSchema) {}

    fn plan(&self, ctx: &PlanContext, _vs: &VirtualSchema) -> super::Planned {
        let partitioned = ctx
            .catalog
            .indexes
            .get(&self.name)
            .and_then(|table| ctx.catalog.table(table))
            .is_some_and(|t| t.partitioned);
        let step = if partitioned {
            sql_step(
                format!(
                    "drop index {} with its partitions' indexes (not concurrently: PostgreSQL has no DROP INDEX CONCURRENTLY for a partitioned table's index)",
                    self.name
                ),
                format!("DROP INDEX IF EXISTS {}", qualified(ctx.schema, &self.name)),
            )
        } else {
            drop_index_step(format!("drop index {}", self.name), ctx.schema, &self.name)
        };
        Ok(OpSteps {
            complete: vec![step],
            ..OpSteps::default()
        })
    }
}
