//! `drop_column`: hidden from the new version at start; rows written through the new
//! version get the column from `down` (trigger); dropped at complete.

use super::Invalid;
use crate::model::DropColumn;
use crate::plan::triggers::{self, DualWrite};
use crate::plan::{internal_name, sql_step, OpSteps, OperationPlan, PlanContext, VirtualSchema};
use crate::quote::{ident, qualified};

impl OperationPlan for DropColumn {
    fn validate(&self, vs: &VirtualSchema) -> Result<(), Invalid> {
        vs.require_not_partition(&self.table)?;
        vs.require_column(&self.table, &self.column).map(|_| ())
    }

    fn apply(&self, vs: &mut VirtualSchema) {
        if let Some(t) = vs.table_mut(&self.table) {
            t.columns.retain(|c| c.name != self.column);
        }
    }

    fn plan(&self, ctx: &PlanContext, vs: &VirtualSchema) -> super::Planned {
        let Some(t) = vs.table(&self.table) else {
            return Err(super::missing("table", &self.table));
        };
        let physical = t
            .column(&self.column)
            .map(|c| c.physical.clone())
            .unwrap_or_default();
        let mut steps = OpSteps::default();
        let trigger = internal_name("trg", &[&t.physical, &self.column]);
        // The trigger (if any) goes in the same transaction as the column.
        let mut drop = Vec::new();
        if let Some(down) = &self.down {
            drop = triggers::drop_sql(ctx.schema, &t.physical, &trigger);
            let mut new_version = t.clone();
            new_version.columns.retain(|c| c.name != self.column);
            DualWrite {
                schema: ctx.schema,
                table: &t.physical,
                name: trigger.clone(),
                version_schema: &ctx.version_schema,
                old_version: t,
                new_version: &new_version,
                up: Vec::new(),
                down: vec![(physical.clone(), down.to_string())],
            }
            .attach(&mut steps);
        }
        drop.push(format!(
            "ALTER TABLE {} DROP COLUMN IF EXISTS {}",
            qualified(ctx.schema, &t.physical),
            ident(&physical)
        ));
        steps.complete.push(sql_step(
            format!("drop column {}.{}", self.table, self.column),
            drop.join(";\n"),
        ));
        Ok(steps)
    }
}
