//! `sql`: raw SQL, `up` at start (or at complete with `onComplete`), `down` at rollback.
//! Each statement is a step of its own, classified like a `.sql` migration's statements.

use super::Invalid;
use crate::model::RawSql;
use crate::plan::{Action, OpSteps, OperationPlan, PlanContext, PlannedStep, VirtualSchema};
use std::path::Path;

fn steps(text: &str, what: &str) -> Vec<PlannedStep> {
    crate::sql::split(Path::new(what), text)
        .map(|stmts| {
            stmts
                .into_iter()
                .map(|s| PlannedStep {
                    description: format!("{what}: {}", crate::exec::abbreviate(&s.sql, 60)),
                    action: Action::Sql {
                        sql: s.sql,
                        kind: s.kind,
                        transactional: s.transactional,
                        concurrent_index: s.concurrent_index,
                    },
                })
                .collect()
        })
        .unwrap_or_default()
}

impl OperationPlan for RawSql {
    fn validate(&self, _vs: &VirtualSchema) -> Result<(), Invalid> {
        for (text, what) in [(Some(&self.up), "up"), (self.down.as_ref(), "down")] {
            if let Some(text) = text {
                crate::sql::split(Path::new(what), text)
                    .map_err(|d| (format!("`{what}`: {}", d.message), d.hint))?;
            }
        }
        Ok(())
    }

    fn apply(&self, _vs: &mut VirtualSchema) {}

    fn plan(&self, _ctx: &PlanContext, _vs: &VirtualSchema) -> OpSteps {
        let up = steps(&self.up, "sql up");
        let down = self
            .down
            .as_deref()
            .map(|d| steps(d, "sql down"))
            .unwrap_or_default();
        if self.on_complete {
            OpSteps {
                complete: up,
                ..OpSteps::default()
            }
        } else {
            OpSteps {
                start: up,
                rollback: down,
                ..OpSteps::default()
            }
        }
    }
}
