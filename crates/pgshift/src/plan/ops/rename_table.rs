//! `rename_table`: the new version sees the new name from start (its views say so); the
//! table is renamed at complete, when no client of the old version is left.

use super::{not_internal, Invalid};
use crate::model::RenameTable;
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

    fn plan(&self, ctx: &PlanContext, vs: &VirtualSchema) -> super::Planned {
        let physical = vs
            .table(&self.from)
            .map(|t| t.physical.clone())
            .unwrap_or_default();
        Ok(OpSteps {
            complete: vec![sql_step(
                format!("rename table {} to {}", self.from, self.to),
                format!(
                    "ALTER TABLE {} RENAME TO {}",
                    qualified(ctx.schema, &physical),
                    ident(&self.to)
                ),
            )],
            ..OpSteps::default()
        })
    }
}
