//! `create_index`: built CONCURRENTLY at start (writes go on); dropped at rollback.

use super::{not_internal, Invalid};
use crate::model::{CreateIndex, IndexMethod, NullsOrder, SortOrder};
use crate::plan::{
    concurrent_step, drop_index_step, OpSteps, OperationPlan, PlanContext, VirtualSchema,
};
use crate::quote::{ident, qualified};
use crate::sql::ConcurrentIndex;

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
        let mut sql = format!(
            "CREATE {}INDEX CONCURRENTLY {} ON {} USING {method} ({})",
            if self.unique { "UNIQUE " } else { "" },
            ident(&self.name),
            qualified(ctx.schema, &t.physical),
            columns.join(", ")
        );
        if let Some(p) = &self.storage_parameters {
            sql.push_str(&format!(" WITH ({p})"));
        }
        if let Some(p) = &self.predicate {
            sql.push_str(&format!(" WHERE ({p})"));
        }
        Ok(OpSteps {
            start: vec![concurrent_step(
                format!("create index {} concurrently", self.name),
                sql,
                Some(ConcurrentIndex::Create {
                    schema: Some(ctx.schema.to_owned()),
                    table: t.physical.clone(),
                    name: Some(self.name.clone()),
                }),
            )],
            rollback: vec![drop_index_step(
                format!("drop index {}", self.name),
                ctx.schema,
                &self.name,
            )],
            ..OpSteps::default()
        })
    }
}
