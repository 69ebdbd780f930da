//! `drop_table`: hidden from the new version at start, dropped at complete.

use super::Invalid;
use crate::model::DropTable;
use crate::plan::{sql_step, OpSteps, OperationPlan, PlanContext, VirtualSchema};
use crate::quote::qualified;

impl OperationPlan for DropTable {
    fn validate(&self, vs: &VirtualSchema) -> Result<(), Invalid> {
        vs.require_table(&self.name).map(|_| ())
    }

    fn apply(&self, vs: &mut VirtualSchema) {
        vs.tables.remove(&self.name);
    }

    fn plan(&self, ctx: &PlanContext, vs: &VirtualSchema) -> super::Planned {
        let physical = vs
            .table(&self.name)
            .map(|t| t.physical.clone())
            .unwrap_or_default();
        Ok(OpSteps {
            complete: vec![sql_step(
                format!("drop table {}", self.name),
                format!("DROP TABLE IF EXISTS {}", qualified(ctx.schema, &physical)),
            )],
            ..OpSteps::default()
        })
    }
}
