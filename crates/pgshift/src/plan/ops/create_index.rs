//! `create_index`: built CONCURRENTLY at start (writes go on); dropped at rollback. On a
//! partitioned table, partition by partition (see `plan::partitions`).

use super::{not_internal, Invalid};
use crate::model::{CreateIndex, IndexMethod, NullsOrder, SortOrder};
use crate::plan::partitions::{unique_needs_partition_key, IndexBuild};
use crate::plan::{OpSteps, OperationPlan, PlanContext, VirtualSchema};
use crate::quote::ident;

impl OperationPlan for CreateIndex {
    fn validate(&self, vs: &VirtualSchema) -> Result<(), Invalid> {
        not_internal(&self.name)?;
        for c in &self.columns {
            vs.require_column(&self.table, &c.column)?;
        }
        Ok(())
    }

    fn apply(&self, _vs: &mut VirtualSchema) {}

    fn plan(&self, ctx: &PlanContext, vs: &VirtualSchema) -> super::Planned {
        let Some(t) = vs.table(&self.table) else {
            return Err(super::missing("table", &self.table));
        };
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                let physical = t
                    .column(&c.column)
                    .map(|v| v.physical.as_str())
                    .unwrap_or(&c.column);
                let mut s = String::from(ident(physical));
                if let Some(collate) = &c.collate {
                    s.push_str(&format!(" COLLATE {}", collate.sql()));
                }
                if let Some(op) = &c.opclass {
                    s.push_str(&format!(" {}", op.sql_name()));
                    if !op.params.is_empty() {
                        s.push_str(&format!(
                            " ({})",
                            op.params
                                .iter()
                                .map(|p| p.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                }
                match c.sort {
                    Some(SortOrder::Asc) => s.push_str(" ASC"),
                    Some(SortOrder::Desc) => s.push_str(" DESC"),
                    None => {}
                }
                match c.nulls {
                    Some(NullsOrder::First) => s.push_str(" NULLS FIRST"),
                    Some(NullsOrder::Last) => s.push_str(" NULLS LAST"),
                    None => {}
                }
                s
            })
            .collect();
        let method = match self.method.unwrap_or(IndexMethod::Btree) {
            IndexMethod::Btree => "btree",
            IndexMethod::Hash => "hash",
            IndexMethod::Gist => "gist",
            IndexMethod::Spgist => "spgist",
            IndexMethod::Gin => "gin",
            IndexMethod::Brin => "brin",
        };
        let mut body = format!("USING {method} ({})", columns.join(", "));
        if let Some(p) = &self.storage_parameters {
            body.push_str(&format!(" WITH ({p})"));
        }
        if let Some(p) = &self.predicate {
            body.push_str(&format!(" WHERE ({p})"));
        }
        if self.unique {
            let physical: Vec<&str> = self
                .columns
                .iter()
                .map(|c| {
                    t.column(&c.column)
                        .map(|v| v.physical.as_str())
                        .unwrap_or(&c.column)
                })
                .collect();
            unique_needs_partition_key(ctx, &t.physical, &physical)?;
        }
        let definition = format!(
            "CREATE {}INDEX {} ON {} {body}",
            if self.unique { "UNIQUE " } else { "" },
            ident(&self.name),
            crate::quote::qualified(ctx.schema, &t.physical)
        );
        let (start, rollback) = IndexBuild {
            table: &t.physical,
            name: &self.name,
            definition: &definition,
            renames: &[],
        }
        .steps(ctx, &format!("create index {} concurrently", self.name))?;
        Ok(OpSteps {
            start,
            rollback,
            ..OpSteps::default()
        })
    }
}
