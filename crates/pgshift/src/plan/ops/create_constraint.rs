//! `create_constraint`: a constraint whose `up`/`down` leave the data as it is goes on the
//! columns themselves: CHECK and FOREIGN KEY NOT VALID at start and validated at complete
//! (reads and writes go on), UNIQUE and PRIMARY KEY as an index built CONCURRENTLY and
//! attached at complete. When `up` transforms values, the columns are duplicated
//! (`duplicate.rs`).

use super::duplicate::{
    is_identity, require_not_pinned, DupColumn, Duplication, ForeignKeyTarget, NewConstraint,
};
use super::{action_sql, not_internal, Invalid};
use crate::model::{ConstraintType, CreateConstraint, MatchType};
use crate::plan::partitions::{unique_needs_partition_key, NotValidConstraint, UniqueConstraint};
use crate::plan::{internal_name, OpSteps, OperationPlan, PlanContext, VirtualSchema};
use crate::quote::{ident, qualified, Quoted};

impl CreateConstraint {
    fn keeps_data(&self) -> bool {
        self.constraint.columns.iter().all(|c| {
            is_identity(self.up.get(c).map(|e| e.as_str()), c)
                && is_identity(self.down.get(c).map(|e| e.as_str()), c)
        })
    }

    fn reference(&self) -> Option<ForeignKeyTarget> {
        let r = self.constraint.references.as_ref()?;
        let mut clauses = String::new();
        if let Some(m) = r.match_type {
            clauses.push_str(if m == MatchType::Full {
                " MATCH FULL"
            } else {
                " MATCH SIMPLE"
            });
        }
        if let Some(a) = r.on_delete {
            clauses.push_str(&format!(" ON DELETE {}", action_sql(a)));
        }
        if let Some(a) = r.on_update {
            clauses.push_str(&format!(" ON UPDATE {}", action_sql(a)));
        }
        Some(ForeignKeyTarget {
            table: r.table.clone(),
            columns: r.columns.clone(),
            clauses,
        })
    }

    fn duplication<'a>(&'a self, vs: &VirtualSchema) -> Duplication<'a> {
        let t = vs.table(&self.table);
        let k = &self.constraint;
        let constraint = match k.kind {
            ConstraintType::Check => NewConstraint::Check {
                name: k.name.clone(),
                expr: k.check.as_deref().unwrap_or_default().to_owned(),
            },
            ConstraintType::ForeignKey => NewConstraint::ForeignKey {
                name: k.name.clone(),
                columns: k.columns.clone(),
                reference: self.reference().unwrap_or(ForeignKeyTarget {
                    table: String::new(),
                    columns: Vec::new(),
                    clauses: String::new(),
                }),
            },
            _ => NewConstraint::Unique {
                name: k.name.clone(),
                columns: k.columns.clone(),
            },
        };
        Duplication {
            table: &self.table,
            columns: k
                .columns
                .iter()
                .map(|c| {
                    let col = t.and_then(|t| t.column(c));
                    DupColumn {
                        name: c.clone(),
                        new_type: col.map(|v| v.data_type.clone()).unwrap_or_default(),
                        up: self
                            .up
                            .get(c)
                            .map_or_else(|| ident(c).into(), |e| e.to_string()),
                        down: self
                            .down
                            .get(c)
                            .map_or_else(|| ident(c).into(), |e| e.to_string()),
                        not_null: col.is_some_and(|v| v.not_null)
                            || k.kind == ConstraintType::PrimaryKey,
                        default: None,
                        comment: None,
                    }
                })
                .collect(),
            constraints: vec![constraint],
            swap_primary_key: false,
            referenced: Vec::new(),
        }
    }

    fn plan_in_place(&self, ctx: &PlanContext, vs: &VirtualSchema) -> super::Planned {
        let Some(t) = vs.table(&self.table) else {
            return Err(super::missing("table", &self.table));
        };
        let k = &self.constraint;
        let cols: Vec<Quoted> = k
            .columns
            .iter()
            .map(|c| ident(t.column(c).map(|v| v.physical.as_str()).unwrap_or(c)))
            .collect();
        let cols = cols.join(", ");
        let mut steps = OpSteps::default();
        match k.kind {
            ConstraintType::Check | ConstraintType::ForeignKey => {
                let body = if k.kind == ConstraintType::Check {
                    format!(
                        "CHECK ({}){}",
                        k.check.as_deref().unwrap_or("true"),
                        if k.no_inherit { " NO INHERIT" } else { "" }
                    )
                } else {
                    let r = self.reference();
                    let target = r
                        .as_ref()
                        .and_then(|r| vs.table(&r.table).map(|t| t.physical.clone()))
                        .unwrap_or_default();
                    format!(
                        "FOREIGN KEY ({cols}) REFERENCES {} ({}){}",
                        qualified(ctx.schema, &target),
                        r.as_ref()
                            .map(|r| r
                                .columns
                                .iter()
                                .map(|c| ident(c))
                                .collect::<Vec<_>>()
                                .join(", "))
                            .unwrap_or_default(),
                        r.map(|r| r.clauses).unwrap_or_default()
                    )
                };
                let (start, complete, rollback) = NotValidConstraint {
                    table: &t.physical,
                    name: &k.name,
                    body: &body,
                    foreign_key: k.kind == ConstraintType::ForeignKey,
                }
                .steps(ctx);
                steps.start.extend(start);
                steps.complete.extend(complete);
                steps.rollback.extend(rollback);
            }
            ConstraintType::Unique | ConstraintType::PrimaryKey => {
                let index = internal_name("uq", &[&k.name]);
                let mut columns = format!("({cols})");
                if !k.index_parameters.include_columns.is_empty() {
                    let inc: Vec<Quoted> = k
                        .index_parameters
                        .include_columns
                        .iter()
                        .map(|c| ident(c))
                        .collect();
                    columns.push_str(&format!(" INCLUDE ({})", inc.join(", ")));
                }
                if let Some(sp) = &k.index_parameters.storage_parameters {
                    columns.push_str(&format!(" WITH ({sp})"));
                }
                let kind = if k.kind == ConstraintType::PrimaryKey {
                    "PRIMARY KEY"
                } else {
                    "UNIQUE"
                };
                let physical: Vec<&str> = k
                    .columns
                    .iter()
                    .map(|c| t.column(c).map(|v| v.physical.as_str()).unwrap_or(c))
                    .collect();
                unique_needs_partition_key(ctx, &t.physical, &physical)?;
                let (start, complete, rollback) = UniqueConstraint {
                    table: &t.physical,
                    name: &k.name,
                    kind,
                    index: &index,
                    columns: &columns,
                }
                .steps(ctx);
                steps.start.extend(start);
                steps.complete.extend(complete);
                steps.rollback.extend(rollback);
            }
            ConstraintType::Exclude => {}
        }
        Ok(steps)
    }
}

impl OperationPlan for CreateConstraint {
    fn validate(&self, vs: &VirtualSchema) -> Result<(), Invalid> {
        vs.require_not_partition(&self.table)?;
        not_internal(&self.constraint.name)?;
        let t = vs.require_table(&self.table)?;
        for c in &self.constraint.columns {
            vs.require_column(&self.table, c)?;
        }
        if t.constraints.contains(&self.constraint.name) {
            return Err((
                format!(
                    "table {:?} already has a constraint {:?}",
                    self.table, self.constraint.name
                ),
                None,
            ));
        }
        if self.constraint.kind == ConstraintType::Exclude {
            return Err((
                "create_constraint does not make exclusion constraints on existing tables"
                    .to_owned(),
                Some("declare it in create_table, or use a sql operation".to_owned()),
            ));
        }
        if let Some(r) = &self.constraint.references {
            for c in &r.columns {
                vs.require_column(&r.table, c)?;
            }
        }
        if !self.keeps_data() {
            let columns: Vec<&str> = self.constraint.columns.iter().map(String::as_str).collect();
            require_not_pinned(vs, &self.table, &columns)?;
        }
        Ok(())
    }

    fn apply(&self, vs: &mut VirtualSchema) {
        if !self.keeps_data() {
            let snapshot = vs.clone();
            self.duplication(&snapshot).apply(vs);
        }
        if let Some(t) = vs.table_mut(&self.table) {
            t.constraints.push(self.constraint.name.clone());
        }
    }

    fn plan(&self, ctx: &PlanContext, vs: &VirtualSchema) -> super::Planned {
        if self.keeps_data() {
            self.plan_in_place(ctx, vs)
        } else {
            let mut steps = self.duplication(vs).plan(ctx, vs)?;
            steps.method = Some(super::in_place_only(
                format!("create_constraint {}.{}", self.table, self.constraint.name),
                "copies of its columns in the table, filled from `up` by a backfill and swapped in at complete (a copy of the table for a constraint is not built yet)",
            ));
            Ok(steps)
        }
    }
}
