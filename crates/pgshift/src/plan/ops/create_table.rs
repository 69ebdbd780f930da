//! `create_table`: a new table is used by nobody yet, so it is created whole at start.

use super::{not_internal, references_sql, Invalid};
use crate::model::{Column, ConstraintType, CreateTable, IdentityKind, MatchType, TableConstraint};
use crate::plan::{sql_step, OpSteps, OperationPlan, PlanContext, VColumn, VTable, VirtualSchema};
use crate::quote::{ident, literal, qualified, Quoted};

/// A column's definition in CREATE TABLE or ADD COLUMN.
pub(super) fn column_definition(
    ctx: &PlanContext,
    vs: &VirtualSchema,
    column: &Column,
    physical_name: &str,
    with_default: bool,
) -> String {
    let mut s = format!("{} {}", ident(physical_name), column.data_type);
    if let Some(g) = &column.generated {
        if let Some(expr) = &g.expression {
            s.push_str(&format!(" GENERATED ALWAYS AS ({expr}) STORED"));
        }
        if let Some(identity) = &g.identity {
            let kind = match identity.user_specified_values {
                Some(IdentityKind::Always) => "ALWAYS",
                _ => "BY DEFAULT",
            };
            s.push_str(&format!(" GENERATED {kind} AS IDENTITY"));
            if let Some(opts) = identity
                .sequence_options
                .as_deref()
                .filter(|o| !o.trim().is_empty())
            {
                s.push_str(&format!(" ({opts})"));
            }
        }
    }
    if with_default {
        if let Some(d) = &column.default {
            s.push_str(&format!(" DEFAULT {d}"));
        }
    }
    if !column.nullable || column.pk {
        s.push_str(" NOT NULL");
    }
    if column.unique {
        s.push_str(" UNIQUE");
    }
    if let Some(check) = &column.check {
        s.push_str(&format!(
            " CONSTRAINT {} CHECK ({}){}",
            ident(&check.name),
            check.constraint,
            if check.no_inherit { " NO INHERIT" } else { "" }
        ));
    }
    if let Some(r) = &column.references {
        let target = vs
            .table(&r.table)
            .map(|t| t.physical.as_str())
            .unwrap_or(&r.table);
        s.push_str(&format!(" CONSTRAINT {}", ident(&r.name)));
        s.push_str(&references_sql(ctx.schema, target, r));
    }
    s
}

fn constraint_definition(ctx: &PlanContext, vs: &VirtualSchema, c: &TableConstraint) -> String {
    let cols = |names: &[String]| {
        names
            .iter()
            .map(|n| ident(n))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let index_params = || {
        let p = &c.index_parameters;
        let mut s = String::new();
        if !p.include_columns.is_empty() {
            s.push_str(&format!(" INCLUDE ({})", cols(&p.include_columns)));
        }
        if let Some(sp) = &p.storage_parameters {
            s.push_str(&format!(" WITH ({sp})"));
        }
        if let Some(ts) = &p.tablespace {
            s.push_str(&format!(" USING INDEX TABLESPACE {}", ident(ts)));
        }
        s
    };
    let deferral = || {
        let mut s = String::new();
        if c.deferrable {
            s.push_str(" DEFERRABLE");
            if c.initially_deferred {
                s.push_str(" INITIALLY DEFERRED");
            }
        }
        s
    };
    let body = match c.kind {
        ConstraintType::PrimaryKey => format!(
            "PRIMARY KEY ({}){}{}",
            cols(&c.columns),
            index_params(),
            deferral()
        ),
        ConstraintType::Unique => format!(
            "UNIQUE{} ({}){}{}",
            if c.nulls_not_distinct {
                " NULLS NOT DISTINCT"
            } else {
                ""
            },
            cols(&c.columns),
            index_params(),
            deferral()
        ),
        ConstraintType::Check => format!(
            "CHECK ({}){}",
            c.check.as_deref().unwrap_or("true"),
            if c.no_inherit { " NO INHERIT" } else { "" }
        ),
        ConstraintType::ForeignKey => {
            let r = c.references.as_ref();
            let table = r.map(|r| r.table.as_str()).unwrap_or_default();
            let target = vs
                .table(table)
                .map(|t| t.physical.as_str())
                .unwrap_or(table);
            let mut s = format!(
                "FOREIGN KEY ({}) REFERENCES {} ({})",
                cols(&c.columns),
                qualified(ctx.schema, target),
                r.map(|r| cols(&r.columns)).unwrap_or_default()
            );
            if let Some(r) = r {
                if let Some(m) = r.match_type {
                    s.push_str(if m == MatchType::Full {
                        " MATCH FULL"
                    } else {
                        " MATCH SIMPLE"
                    });
                }
                if let Some(a) = r.on_delete {
                    s.push_str(&format!(" ON DELETE {}", super::action_sql(a)));
                    if !r.on_delete_set_columns.is_empty() {
                        s.push_str(&format!(" ({})", cols(&r.on_delete_set_columns)));
                    }
                }
                if let Some(a) = r.on_update {
                    s.push_str(&format!(" ON UPDATE {}", super::action_sql(a)));
                }
            }
            s.push_str(&deferral());
            s
        }
        ConstraintType::Exclude => {
            let e = c.exclude.as_ref();
            let mut s = format!(
                "EXCLUDE USING {} ({}){}",
                e.and_then(|e| e.index_method.as_deref()).unwrap_or("gist"),
                e.map(|e| e.elements.as_str()).unwrap_or_default(),
                index_params()
            );
            if let Some(p) = e.and_then(|e| e.predicate.as_deref()) {
                s.push_str(&format!(" WHERE ({p})"));
            }
            s.push_str(&deferral());
            s
        }
    };
    format!("CONSTRAINT {} {body}", ident(&c.name))
}

impl OperationPlan for CreateTable {
    fn validate(&self, vs: &VirtualSchema) -> Result<(), Invalid> {
        not_internal(&self.name)?;
        if vs.table(&self.name).is_some() {
            return Err((format!("table {:?} already exists", self.name), None));
        }
        if self.columns.is_empty() {
            return Err(("a table needs at least one column".to_owned(), None));
        }
        let mut seen = std::collections::BTreeSet::new();
        for c in &self.columns {
            not_internal(&c.name)?;
            if !seen.insert(c.name.as_str()) {
                return Err((format!("column {:?} is listed twice", c.name), None));
            }
            if let Some(r) = &c.references {
                if r.table != self.name {
                    vs.require_column(&r.table, &r.column)?;
                }
            }
        }
        for k in &self.constraints {
            for col in k.columns.iter().chain(&k.index_parameters.include_columns) {
                if !seen.contains(col.as_str()) {
                    return Err((
                        format!(
                            "constraint {:?} names column {col:?}, which the table does not have",
                            k.name
                        ),
                        None,
                    ));
                }
            }
            if let Some(r) = &k.references {
                if r.table != self.name {
                    for col in &r.columns {
                        vs.require_column(&r.table, col)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn apply(&self, vs: &mut VirtualSchema) {
        let pk: Vec<String> = self
            .columns
            .iter()
            .filter(|c| c.pk)
            .map(|c| c.name.clone())
            .collect();
        let table_pk = self
            .constraints
            .iter()
            .find(|c| c.kind == ConstraintType::PrimaryKey)
            .map(|c| c.columns.clone());
        vs.tables.insert(
            self.name.clone(),
            VTable {
                physical: self.name.clone(),
                columns: self
                    .columns
                    .iter()
                    .map(|c| VColumn {
                        name: c.name.clone(),
                        physical: c.name.clone(),
                        complete_name: c.name.clone(),
                        data_type: c.data_type.to_string(),
                        not_null: !c.nullable || c.pk,
                    })
                    .collect(),
                key: if pk.is_empty() {
                    table_pk.clone().unwrap_or_default()
                } else {
                    pk.clone()
                },
                constraints: self.constraints.iter().map(|c| c.name.clone()).collect(),
                pinned: if pk.is_empty() {
                    table_pk.clone().unwrap_or_default()
                } else {
                    pk.clone()
                },
                primary_key: if pk.is_empty() {
                    table_pk.unwrap_or_default()
                } else {
                    pk
                },
                uncopyable: Some(format!("{} is made by this migration", self.name)),
                ..VTable::default()
            },
        );
    }

    fn plan(&self, ctx: &PlanContext, vs: &VirtualSchema) -> super::Planned {
        let mut parts: Vec<String> = self
            .columns
            .iter()
            .map(|c| column_definition(ctx, vs, c, &c.name, true))
            .collect();
        let pk: Vec<Quoted> = self
            .columns
            .iter()
            .filter(|c| c.pk)
            .map(|c| ident(&c.name))
            .collect();
        if !pk.is_empty() {
            parts.push(format!("PRIMARY KEY ({})", pk.join(", ")));
        }
        parts.extend(
            self.constraints
                .iter()
                .map(|c| constraint_definition(ctx, vs, c)),
        );
        let table = qualified(ctx.schema, &self.name);
        let mut start = vec![sql_step(
            format!("create table {}", self.name),
            format!("CREATE TABLE {table} ({})", parts.join(", ")),
        )];
        if let Some(comment) = &self.comment {
            start.push(sql_step(
                format!("comment on table {}", self.name),
                format!("COMMENT ON TABLE {table} IS {}", literal(comment)),
            ));
        }
        for c in &self.columns {
            if let Some(comment) = &c.comment {
                start.push(sql_step(
                    format!("comment on column {}.{}", self.name, c.name),
                    format!(
                        "COMMENT ON COLUMN {table}.{} IS {}",
                        ident(&c.name),
                        literal(comment)
                    ),
                ));
            }
        }
        Ok(OpSteps {
            start,
            rollback: vec![sql_step(
                format!("drop table {}", self.name),
                format!("DROP TABLE IF EXISTS {table}"),
            )],
            ..OpSteps::default()
        })
    }
}
