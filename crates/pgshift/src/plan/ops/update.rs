//! `update`: changes existing rows in batches at start, with the backfill engine (throttled,
//! resumable, pausable). Nothing to do at complete; a data change cannot be rolled back,
//! so rollback leaves the rows as the update made them (and says so in its plan).

use super::Invalid;
use crate::model::Update;
use crate::plan::{BackfillSpec, OpSteps, OperationPlan, PlanContext, VirtualSchema};

impl OperationPlan for Update {
    fn validate(&self, vs: &VirtualSchema) -> Result<(), Invalid> {
        if self.set.is_empty() {
            return Err((
                "update needs at least one column in `set`".to_owned(),
                Some("set: { column: expression }".to_owned()),
            ));
        }
        for column in self.set.keys() {
            vs.require_column(&self.table, column)?;
        }
        Ok(())
    }

    fn apply(&self, _vs: &mut VirtualSchema) {}

    fn plan(&self, ctx: &PlanContext, vs: &VirtualSchema) -> super::Planned {
        let Some(t) = vs.table(&self.table) else {
            return Err(super::missing("table", &self.table));
        };
        Ok(OpSteps {
            backfills: vec![BackfillSpec {
                partition_of: None,
                schema: ctx.schema.to_owned(),
                table: t.physical.clone(),
                condition: self.condition.clone().map(String::from),
                insert: None,
                set: self
                    .set
                    .iter()
                    .map(|(col, expr)| {
                        let physical = t
                            .column(col)
                            .map(|c| c.physical.clone())
                            .unwrap_or_else(|| col.clone());
                        (physical, expr.to_string())
                    })
                    .collect(),
            }],
            ..OpSteps::default()
        })
    }
}
