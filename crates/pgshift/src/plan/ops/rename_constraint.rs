//! `rename_constraint`: constraint names are not part of any version's views; the rename
//! happens at complete.

use super::{not_internal, Invalid};
use crate::model::RenameConstraint;
use crate::plan::{sql_step, OpSteps, OperationPlan, PlanContext, VirtualSchema};
use crate::quote::{ident, qualified};

impl OperationPlan for RenameConstraint {
    fn validate(&self, vs: &VirtualSchema) -> Result<(), Invalid> {
        vs.require_not_partition(&self.table)?;
        let t = vs.require_table(&self.table)?;
        if !t.constraints.contains(&self.from) {
            return Err((
                format!("table {:?} has no constraint {:?}", self.table, self.from),
                Some(format!("its constraints: {}", t.constraints.join(", "))),
            ));
        }
        not_internal(&self.to)
    }

    fn apply(&self, vs: &mut VirtualSchema) {
        if let Some(t) = vs.table_mut(&self.table) {
            t.constraints.retain(|c| c != &self.from);
            t.constraints.push(self.to.clone());
        }
    }

    fn plan(&self, ctx: &PlanContext, vs: &VirtualSchema) -> super::Planned {
        let physical = vs
            .table(&self.table)
            .map(|t| t.physical.clone())
            .unwrap_or_default();
        let rename = |table: &str| {
            format!(
                "ALTER TABLE {} RENAME CONSTRAINT {} TO {}",
                qualified(ctx.schema, table),
                ident(&self.from),
                ident(&self.to)
            )
        };
        let mut sql = vec![rename(&physical)];
        // A partitioned table's foreign key has one on each partition under the same name,
        // which PostgreSQL's rename leaves (a CHECK's it renames itself).
        for (partition, _, _) in ctx.catalog.partition_tree(&physical) {
            let clone = ctx
                .catalog
                .table(&partition)
                .and_then(|t| t.constraints.get(&self.from))
                .is_some_and(|k| k.kind == "f" && k.inherited);
            if clone {
                sql.push(rename(&partition));
            }
        }
        Ok(OpSteps {
            complete: vec![sql_step(
                format!("rename constraint {} to {}", self.from, self.to),
                sql.join(";\n"),
            )],
            ..OpSteps::default()
        })
    }
}
