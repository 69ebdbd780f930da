//! `sql`: raw SQL, `up` at start (or at complete with `onComplete`), `down` at rollback.
//! Each statement is a step of its own, classified like a `.sql` migration's statements.
//!
//! Without `down`, rollback undoes what it can know for certain: objects that `up` created
//! without IF NOT EXISTS (so they did not exist before start) are dropped, newest first.
//! Anything else `up` did stays, as it would with any tool.

use super::Invalid;
use crate::model::RawSql;
use crate::plan::{Action, OpSteps, OperationPlan, PlanContext, PlannedStep, VirtualSchema};
use crate::quote::{ident, qualified};
use std::path::Path;

fn steps(text: &str, what: &str) -> Vec<PlannedStep> {
    crate::sql::split(Path::new(what), text)
        .map(|stmts| {
            stmts
                .into_iter()
                .map(|s| PlannedStep {
                    description: format!("{what}: {}", crate::exec::abbreviate(&s.sql, 60)),
                    action: Action::Sql {
                        // The migration's own SQL, but not a file's line: pgshift's message
                        // names the operation.
                        statement: crate::sql::Statement { origin: None, ..s },
                        together: false,
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

    fn plan(&self, _ctx: &PlanContext, _vs: &VirtualSchema) -> super::Planned {
        let up = steps(&self.up, "sql up");
        let down = match self.down.as_deref() {
            Some(d) => steps(d, "sql down"),
            None => inferred_down(&self.up)
                .into_iter()
                .map(|sql| {
                    crate::plan::sql_step(
                        format!("undo sql up: {}", crate::exec::abbreviate(&sql, 60)),
                        sql,
                    )
                })
                .collect(),
        };
        Ok(if self.on_complete {
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
        })
    }
}

/// DROP statements that undo the creations in `up`, newest first.
fn inferred_down(up: &str) -> Vec<String> {
    use pg_query::protobuf::node::Node;
    use pg_query::protobuf::{AlterTableType, RangeVar};
    let Ok(parsed) = pg_query::parse(up) else {
        return Vec::new();
    };
    let range = |r: &Option<RangeVar>| {
        r.as_ref().map(|r| {
            if r.schemaname.is_empty() {
                ident(&r.relname)
            } else {
                qualified(&r.schemaname, &r.relname)
            }
        })
    };
    let names = |parts: &[pg_query::protobuf::Node]| {
        let idents: Vec<crate::quote::Quoted> = parts
            .iter()
            .filter_map(|p| match &p.node {
                Some(Node::String(s)) => Some(ident(&s.sval)),
                _ => None,
            })
            .collect();
        (!idents.is_empty()).then(|| idents.join("."))
    };
    let mut out = Vec::new();
    for stmt in &parsed.protobuf.stmts {
        let Some(node) = stmt.stmt.as_ref().and_then(|n| n.node.as_ref()) else {
            continue;
        };
        let undo = match node {
            Node::CreateStmt(c) if !c.if_not_exists => {
                range(&c.relation).map(|t| format!("DROP TABLE IF EXISTS {t}"))
            }
            Node::CreateEnumStmt(e) => {
                names(&e.type_name).map(|t| format!("DROP TYPE IF EXISTS {t}"))
            }
            Node::CompositeTypeStmt(c) => {
                range(&c.typevar).map(|t| format!("DROP TYPE IF EXISTS {t}"))
            }
            Node::CreateDomainStmt(d) => {
                names(&d.domainname).map(|t| format!("DROP DOMAIN IF EXISTS {t}"))
            }
            Node::ViewStmt(v) if !v.replace => {
                range(&v.view).map(|t| format!("DROP VIEW IF EXISTS {t}"))
            }
            Node::CreateSeqStmt(s) if !s.if_not_exists => {
                range(&s.sequence).map(|t| format!("DROP SEQUENCE IF EXISTS {t}"))
            }
            Node::IndexStmt(ix) if !ix.if_not_exists && !ix.idxname.is_empty() => {
                let schema = ix
                    .relation
                    .as_ref()
                    .map(|r| r.schemaname.as_str())
                    .unwrap_or("");
                Some(if schema.is_empty() {
                    format!("DROP INDEX IF EXISTS {}", ident(&ix.idxname))
                } else {
                    format!("DROP INDEX IF EXISTS {}", qualified(schema, &ix.idxname))
                })
            }
            Node::AlterTableStmt(a) => {
                let adds: Option<Vec<String>> = a
                    .cmds
                    .iter()
                    .map(|cmd| match &cmd.node {
                        Some(Node::AlterTableCmd(c))
                            if c.subtype == AlterTableType::AtAddColumn as i32 && !c.missing_ok =>
                        {
                            match c.def.as_ref().and_then(|d| d.node.as_ref()) {
                                Some(Node::ColumnDef(col)) => {
                                    Some(format!("DROP COLUMN IF EXISTS {}", ident(&col.colname)))
                                }
                                _ => None,
                            }
                        }
                        _ => None,
                    })
                    .collect();
                match (adds, range(&a.relation)) {
                    (Some(adds), Some(t)) if !adds.is_empty() => {
                        Some(format!("ALTER TABLE IF EXISTS {t} {}", adds.join(", ")))
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(sql) = undo {
            out.push(sql);
        }
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::inferred_down;

    #[test]
    fn creations_are_undone_newest_first_and_nothing_else() {
        let down = inferred_down(
            "CREATE TYPE fruit_size AS ENUM ('small');\nCREATE TABLE s.t (id int);\nALTER TABLE t ADD COLUMN x int, ADD COLUMN \"Y\" text;\nCREATE TABLE IF NOT EXISTS maybe (id int);\nUPDATE t SET x = 1;",
        );
        assert_eq!(
            down,
            vec![
                "ALTER TABLE IF EXISTS \"t\" DROP COLUMN IF EXISTS \"x\", DROP COLUMN IF EXISTS \"Y\"",
                "DROP TABLE IF EXISTS \"s\".\"t\"",
                "DROP TYPE IF EXISTS \"fruit_size\"",
            ]
        );
    }
}
