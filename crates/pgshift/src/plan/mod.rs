//! The planner: a pure function from (migration, catalog) to the steps of start, complete
//! and rollback. It never talks to the database; the plan is stored in the state schema at
//! start, and start, complete and rollback then run exactly what was planned, step by
//! journaled step, even after a crash has left the catalog half-changed.
//!
//! Each operation lives in its own file under `ops/` and implements [`OperationPlan`].
//! The new version's shape is a [`VirtualSchema`]: the tables and columns a client of the
//! new version sees, each mapped to its physical table and column.

mod naming;
pub(crate) mod ops;
pub(crate) mod partitions;
pub(crate) mod triggers;
mod virtual_schema;

pub use naming::internal_name;
pub use virtual_schema::{VColumn, VReference, VTable, VirtualSchema};

use crate::catalog::Catalog;
use crate::model::{Migration, Operation};
use crate::quote::{ident, qualified};
use crate::sql::{ConcurrentIndex, Statement};
use std::collections::BTreeMap;

/// Prefix of every object pgshift creates for an open migration.
pub const INTERNAL_PREFIX: &str = "_pgshift_";

/// One step of a phase.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PlannedStep {
    pub description: String,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// One statement for the lock-safe executor.
    Sql {
        #[serde(flatten)]
        statement: Statement,
        /// Runs at the same time as the neighbouring steps that say so too, each on its own
        /// connection in its own transaction, each journaled on its own (the index builds
        /// of a table's copy, which take SHARE locks that do not conflict).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        together: bool,
    },
    /// Fill new columns of existing rows, batch by batch.
    Backfill(BackfillSpec),
    /// Replay the rows written to a table since its copy began, until few are left.
    CatchUp(CatchUpSpec),
    /// Create the new version's schema of views: one per table of the planned schema, with
    /// the migration's mapping of names, brought up to date when the step runs with the
    /// tables and columns made or dropped since it was planned (by the migration's `sql`
    /// operations, or by anyone else meanwhile), read from the catalog.
    RefreshVersionSchema {
        planned: VirtualSchema,
        /// The tables and columns the catalog had when the step was planned.
        known: BTreeMap<String, Vec<String>>,
    },
    /// Replace a table by its copy, or columns by theirs, in one transaction; what hangs on
    /// them is read in that transaction, after its locks, and given to the replacement
    /// there (`fidelity`): privileges, row-level security and policies, triggers, rules,
    /// publications, storage parameters, comments, statistics, the views over them, and
    /// (for a copy) the foreign keys that point at it, added again NOT VALID.
    Swap(SwapSpec),
    /// Give a table's copy, while the migration is open, the table's privileges, row-level
    /// security and policies (read when the step runs): the clients whose writes the
    /// triggers mirror into it, and those of the new version that use it through the
    /// version schema, have the same rights on it and see the same rows. The swap sets all
    /// of it again, exactly.
    CarryAccess {
        schema: String,
        from: String,
        to: String,
        /// `to` is not a copy but a table of some of `from`'s columns (`extract`): it gets
        /// `from`'s owner and privileges, the moved columns' own, and policies that show
        /// and accept a row exactly when `from` shows its row; and `from`'s publications.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        through: Option<Through>,
    },
    /// Validate the foreign keys a swap re-pointed at a table's copy (listed in the state
    /// schema by the swap's transaction), each in its own transaction.
    ValidateCarried,
    /// What an earlier pgshift stored for the version schema: views computed from the stored
    /// source when the step ran. Read so that such a migration can still be rolled back or
    /// completed; a start interrupted before this step is refused (roll back, start again).
    #[serde(rename = "version_schema")]
    LegacyVersionSchema,
}

/// How a table made of some columns of another (`extract`) hangs on it: its `reference`
/// column holds the other's key column `key`; `columns` pairs each moved column of the
/// other (physical name) with its name in the table. Names are unquoted.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Through {
    pub reference: String,
    pub key: String,
    pub columns: Vec<(String, String)>,
}

/// New values for existing rows: `set` pairs of (physical column, SQL expression over the
/// old version's columns).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BackfillSpec {
    pub schema: String,
    pub table: String,
    pub set: Vec<(String, String)>,
    /// Only rows matching this condition (the `update` operation's `where`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// Instead of updating the rows, insert one row per row into another table
    /// (`extract`); `set` is empty then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insert: Option<InsertSpec>,
    /// The partitioned table whose partition `table` is: the backfills of its partitions,
    /// next to each other in the plan, run several at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_of: Option<String>,
}

/// A backfill that copies rows into another table of the same schema:
/// `INSERT INTO table (columns) SELECT expressions FROM source ... FOR SHARE ON CONFLICT
/// (conflict) DO NOTHING`. A row the triggers already wrote is newer, and is kept.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InsertSpec {
    pub table: String,
    /// (column of `table`, SQL expression over the source row's physical columns).
    pub columns: Vec<(String, String)>,
    /// The unique columns that identify a source row's row in `table`.
    pub conflict: Vec<String>,
}

/// The catch-up of a table's copy (`alter_column` with `method: copy`): the keys logged by a
/// trigger since the copy began are taken from `log` in batches, and each row is copied again
/// from its current state in `source` (or stays deleted). Names are quoted and qualified.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CatchUpSpec {
    pub source: String,
    pub shadow: String,
    pub log: String,
    /// The primary key column (unquoted) and its type.
    pub key: String,
    pub key_type: String,
    /// The copy's column list, and the matching expressions over a source row.
    pub columns: String,
    pub from_source: String,
    /// The replay after the switch to the sync triggers, clients writing through them: it
    /// takes the rest of the log (which no longer grows), locking each source row it reads,
    /// and upserts (`upsert`: the `SET` list of the copy's non-key columns from `EXCLUDED`).
    #[serde(default)]
    pub after_switch: bool,
    #[serde(default)]
    pub upsert: String,
    /// After the switch: each replayed row is deleted from the copy and inserted again
    /// rather than upserted (a partitioned copy has no unique index of the key alone).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace: bool,
}

/// A swap (see [`Action::Swap`]). Names are unquoted.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SwapSpec {
    pub schema: String,
    /// The tables it replaces or changes, in one transaction.
    pub parts: Vec<SwapPart>,
    /// The swap itself, after the tables are locked and what hangs on them is read.
    pub statements: Vec<String>,
    /// What the migration itself sets on the replacement (a new comment), after what was
    /// carried over.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// Its statements scan nothing: a partition it attaches is proved by a validated CHECK
    /// (`partition_table`), which `plan` says.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scans_nothing: bool,
}

/// One table of a swap: replaced by `copy`, or kept with `columns` replaced.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SwapPart {
    pub table: String,
    /// The table's copy, which takes the table's name in the swap's statements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<String>,
    /// The columns replaced by their copies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<SwapColumn>,
}

/// A column replaced by its copy.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SwapColumn {
    /// The column as it is before the swap (physical name).
    pub old: String,
    /// Its name after the swap (its copy's new name).
    pub name: String,
}

impl SwapSpec {
    /// The lock the swap takes first: ACCESS EXCLUSIVE on its tables and their copies.
    pub fn lock_sql(&self) -> String {
        let tables: Vec<String> = self
            .parts
            .iter()
            .flat_map(|p| std::iter::once(&p.table).chain(p.copy.as_ref()))
            .map(|t| crate::quote::qualified(&self.schema, t).to_string())
            .collect();
        format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", tables.join(", "))
    }
}

/// A check that must hold before complete changes anything: every row of `table` has its
/// row in `other` (joined on `key` = `other_key`), with equal values in each pair of
/// `columns`. A failure stops complete with a report; the migration stays open.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VerifySpec {
    pub description: String,
    pub schema: String,
    pub table: String,
    pub key: String,
    pub other: String,
    pub other_key: String,
    /// (column of `table`, column of `other`), physical names.
    pub columns: Vec<(String, String)>,
}

/// The three phases of a migration.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    pub version_schema: String,
    /// The method of each operation that rewrites or fills every row.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<MethodChoice>,
    pub start: Vec<PlannedStep>,
    /// Checks run by complete before any of its steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verify: Vec<VerifySpec>,
    pub complete: Vec<PlannedStep>,
    pub rollback: Vec<PlannedStep>,
}

/// Where and for whom a plan is made.
#[derive(Debug, Clone)]
pub struct PlanContext<'a> {
    pub schema: &'a str,
    pub migration: &'a str,
    pub version_schema: String,
    /// The version schema of the last completed migration, dropped by complete.
    pub previous_version_schema: Option<String>,
    pub catalog: &'a Catalog,
}

/// A problem with one operation, found against the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError {
    pub operation: usize,
    pub kind: &'static str,
    pub message: String,
    pub hint: Option<String>,
}

/// How an operation that must rewrite or fill every row is carried out, and why: the
/// method pgshift chose (or was told), for `plan` to show.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MethodChoice {
    /// The operation's index in the migration.
    pub operation: usize,
    /// `alter_column orders.price`, say.
    pub what: String,
    /// `copy`, `in_place` or `metadata`.
    pub method: String,
    pub why: String,
}

/// What one operation contributes to a plan.
#[derive(Debug, Default)]
pub struct OpSteps {
    /// The method chosen for an operation that rewrites or fills every row (its
    /// `operation` is set by the planner of the whole migration).
    pub method: Option<MethodChoice>,
    pub start: Vec<PlannedStep>,
    pub backfills: Vec<BackfillSpec>,
    /// Start steps that go after the backfills: indexes on new columns are built once,
    /// from the filled table, instead of being maintained row by row during the backfill.
    pub after_backfill: Vec<PlannedStep>,
    pub verify: Vec<VerifySpec>,
    pub complete: Vec<PlannedStep>,
    pub rollback: Vec<PlannedStep>,
    /// What the plan cannot carry over to a copy (an index or constraint whose definition
    /// the rewrite cannot handle), each named with why: the migration is refused rather
    /// than run without it.
    pub unplannable: Vec<String>,
}

impl OpSteps {
    /// The value of something the plan carries over to a copy, or `None` with why it cannot
    /// recorded in [`OpSteps::unplannable`] (the operation is then refused).
    pub(crate) fn carry<T>(&mut self, carried: Result<T, String>) -> Option<T> {
        carried.map_err(|why| self.unplannable.push(why)).ok()
    }
}

/// One operation behind one trait: check it, say how the new version sees the schema,
/// and plan its steps.
pub trait OperationPlan {
    /// Checks the operation against the schema as the earlier operations of the same
    /// migration leave it.
    fn validate(&self, vs: &VirtualSchema) -> Result<(), (String, Option<String>)>;
    /// Changes the virtual schema into what the new version sees.
    fn apply(&self, vs: &mut VirtualSchema);
    /// The operation's steps; `vs` is the schema before this operation.
    fn plan(&self, ctx: &PlanContext, vs: &VirtualSchema) -> ops::Planned;
}

/// The planner of an operation.
pub fn operation_plan(op: &Operation) -> &dyn OperationPlan {
    ops::dispatch(op)
}

/// The version schema's name: the migration's `version_schema`, else `<schema>_<name>`.
pub fn version_schema_name(schema: &str, migration_name: &str, migration: &Migration) -> String {
    migration
        .version_schema
        .clone()
        .unwrap_or_else(|| format!("{schema}_{migration_name}"))
}

/// The tables of `vs` that `op` names anywhere (a table it changes, references or renames),
/// every table for a `sql` operation. Read from the operation's whole description, so that
/// it errs towards "named": what it decides (a copy of the table made for one operation
/// only) is then left out, never wrongly made.
fn tables_mentioned(op: &Operation, vs: &VirtualSchema) -> Vec<String> {
    if matches!(op, Operation::Sql(_)) {
        return vs.tables.keys().cloned().collect();
    }
    let text = format!("{op:?}");
    vs.tables
        .keys()
        .filter(|name| text.contains(&format!("{name:?}")))
        .cloned()
        .collect()
}

/// The complete steps of a table or column rename, kept for the end of complete: the
/// table's physical name until then, and the column's name as the migration's later
/// operations know it.
struct Rename {
    table: String,
    column: Option<String>,
    steps: Vec<PlannedStep>,
}

/// Validates every operation in order and builds the plan.
pub fn plan_migration(ctx: &PlanContext, migration: &Migration) -> Result<Plan, Vec<OpError>> {
    let mut errors = Vec::new();
    if let Err(e) = crate::quote::validate_identifier(&ctx.version_schema) {
        errors.push(OpError {
            operation: 0,
            kind: "version_schema",
            message: format!(
                "the version schema name {:?} is not usable: {e}",
                ctx.version_schema
            ),
            hint: Some(
                "give the migration a shorter file name, or set `version_schema`".to_owned(),
            ),
        });
    }
    let mut vs = VirtualSchema::from_catalog(ctx.catalog);
    let mut start = Vec::new();
    let mut backfills: Vec<BackfillSpec> = Vec::new();
    let mut after_backfill = Vec::new();
    let mut complete = Vec::new();
    let mut renames = Vec::new();
    // The tables (physical) renamed, or with a column renamed, before a `sql` operation.
    let mut renamed_early: Vec<String> = Vec::new();
    let mut verify = Vec::new();
    let mut rollbacks = Vec::new();
    let mut methods = Vec::new();
    let mentions: Vec<Vec<String>> = migration
        .operations
        .iter()
        .map(|op| tables_mentioned(op, &vs))
        .collect();
    for (i, op) in migration.operations.iter().enumerate() {
        for (name, t) in vs.tables.iter_mut() {
            t.shared = mentions
                .iter()
                .enumerate()
                .any(|(j, m)| j != i && m.contains(name));
        }
        let planner = operation_plan(op);
        // Validated first: a planner plans only what its validation accepted.
        let steps = match planner.validate(&vs).and_then(|()| planner.plan(ctx, &vs)) {
            Ok(steps) => steps,
            Err((message, hint)) => {
                errors.push(OpError {
                    operation: i,
                    kind: op.kind(),
                    message,
                    hint,
                });
                continue;
            }
        };
        if !steps.unplannable.is_empty() {
            errors.push(OpError {
                operation: i,
                kind: op.kind(),
                message: format!(
                    "pgshift cannot carry over {}",
                    steps.unplannable.join("; ")
                ),
                hint: Some("the copy would be made without it; drop it before the migration and create it again after, or report the definition as a bug".to_owned()),
            });
            continue;
        }
        let before_apply = vs.clone();
        planner.apply(&mut vs);
        vs.follow_parents();
        if let Some(mut m) = steps.method {
            m.operation = i;
            methods.push(m);
        }
        start.extend(steps.start);
        for b in steps.backfills {
            // One pass per table for the operations that fill columns; an `update` with a
            // condition keeps its own pass (its `where` must not limit the others), and so
            // does a copy into another table.
            match backfills.iter_mut().find(|x| {
                x.table == b.table
                    && x.schema == b.schema
                    && x.condition == b.condition
                    && x.insert.is_none()
                    && b.insert.is_none()
            }) {
                Some(existing) => existing.set.extend(b.set),
                None => backfills.push(b),
            }
        }
        after_backfill.extend(steps.after_backfill);
        verify.extend(steps.verify);
        // Table and column renames go after the other operations' complete steps (up to the
        // next `sql` operation), which were planned against the names the tables and
        // columns have until complete (a drop_column of a column renamed by an earlier
        // operation drops it by that name).
        let physical = |table: &str| {
            before_apply
                .table(table)
                .map(|t| t.physical.clone())
                .unwrap_or_else(|| table.to_owned())
        };
        // Renamed at complete before a `sql` operation, a table has by then names that a
        // later operation's complete steps (planned against the names it has until
        // complete) do not know: refused rather than run against names that are gone.
        let renamed_before_sql = (!steps.complete.is_empty()
            && !matches!(
                op,
                Operation::RenameTable(_) | Operation::RenameColumn(_) | Operation::Sql(_)
            ))
        .then(|| {
            tables_mentioned(op, &before_apply)
                .into_iter()
                .find(|name| {
                    before_apply
                        .table(name)
                        .is_some_and(|t| renamed_early.contains(&t.physical))
                })
        })
        .flatten();
        if let Some(table) = renamed_before_sql {
            errors.push(OpError {
                operation: i,
                kind: op.kind(),
                message: format!("it changes {table}, which an earlier operation renames (or renames a column of) before a sql operation: at complete its steps would look for names that are gone by then"),
                hint: Some("move it, or the sql operation, to a migration of its own after this one".to_owned()),
            });
            continue;
        }
        match op {
            Operation::RenameTable(r) => renames.push(Rename {
                table: physical(&r.from),
                column: None,
                steps: steps.complete,
            }),
            Operation::RenameColumn(r) => {
                let table = physical(&r.table);
                // A column renamed again: the earlier rename now goes by the new name.
                for earlier in renames
                    .iter_mut()
                    .filter(|e| e.table == table && e.column.as_deref() == Some(r.from.as_str()))
                {
                    earlier.column = Some(r.to.clone());
                }
                renames.push(Rename {
                    table,
                    column: Some(r.to.clone()),
                    steps: steps.complete,
                });
            }
            // A `sql` operation's statements are written against the names as the
            // operations before it leave them: the renames before it go first.
            Operation::Sql(_) => {
                for r in renames.drain(..) {
                    renamed_early.push(r.table.clone());
                    complete.extend(r.steps);
                }
                complete.extend(steps.complete);
            }
            _ => {
                // A rename whose column this operation drops or duplicates (its copy's swap
                // gives the copy the column's name), or whose table it drops, is not run.
                renames.retain(|e| {
                    let column_physical = |schema: &VirtualSchema| {
                        let t = schema.tables.values().find(|t| t.physical == e.table)?;
                        Some(match &e.column {
                            Some(c) => t.column(c)?.physical.clone(),
                            None => String::new(),
                        })
                    };
                    let after = column_physical(&vs);
                    after.is_some() && after == column_physical(&before_apply)
                });
                complete.extend(steps.complete);
            }
        }
        rollbacks.push(steps.rollback);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    for b in backfills {
        // A partitioned table's rows live in its partitions: one backfill per partition,
        // each walked by its own key, resumed and reported on its own.
        let leaves: Vec<String> = if b.insert.is_none() {
            partitions::leaves_and_levels(ctx, &b.table).0
        } else {
            Vec::new()
        };
        if leaves.is_empty() {
            start.push(PlannedStep {
                description: format!("backfill {}.{}", b.schema, b.table),
                action: Action::Backfill(b),
            });
            continue;
        }
        for leaf in leaves {
            start.push(PlannedStep {
                description: format!("backfill {}.{leaf} (a partition of {})", b.schema, b.table),
                action: Action::Backfill(BackfillSpec {
                    table: leaf,
                    partition_of: Some(b.table.clone()),
                    ..b.clone()
                }),
            });
        }
    }
    start.extend(after_backfill);
    start.push(PlannedStep {
        description: format!("create the version schema {}", ctx.version_schema),
        action: Action::RefreshVersionSchema {
            planned: vs,
            known: VirtualSchema::known(ctx.catalog),
        },
    });

    // Complete: the previous version's views go first (they use columns complete drops).
    let mut complete_all = Vec::new();
    if let Some(prev) = &ctx.previous_version_schema {
        complete_all.push(sql_step(
            format!("drop the previous version schema {prev}"),
            format!("DROP SCHEMA IF EXISTS {} CASCADE", ident(prev)),
        ));
    }
    complete_all.extend(complete);
    complete_all.extend(renames.into_iter().flat_map(|r| r.steps));

    // Rollback: the new version's views first, then each operation undone, last first.
    let mut rollback = vec![sql_step(
        format!("drop the version schema {}", ctx.version_schema),
        format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            ident(&ctx.version_schema)
        ),
    )];
    for steps in rollbacks.into_iter().rev() {
        rollback.extend(steps);
    }
    Ok(Plan {
        version_schema: ctx.version_schema.clone(),
        methods,
        start,
        verify,
        complete: complete_all,
        rollback,
    })
}

/// The statements that create the version schema for `vs`.
/// The statements that (re)create the version schema: the schema dropped if it is there (a
/// run that is resumed makes it again), then created with one view per table.
/// The version schema's views. On PostgreSQL 15 and later they are `security_invoker`:
/// a client reads and writes through them with its own privileges and under the tables'
/// row-level security policies, exactly as on the tables. (Before 15 a view reads with
/// its owner's rights; see `fidelity::version_access` for what that withholds.)
pub fn version_schema_statements(
    schema: &str,
    version_schema: &str,
    vs: &VirtualSchema,
    server_version_num: i32,
) -> Vec<String> {
    let with = if server_version_num >= 150000 {
        " WITH (security_invoker = true)"
    } else {
        ""
    };
    let mut out = vec![
        format!("DROP SCHEMA IF EXISTS {} CASCADE", ident(version_schema)),
        format!("CREATE SCHEMA {}", ident(version_schema)),
    ];
    for (name, table) in &vs.tables {
        let columns: Vec<String> = table
            .columns
            .iter()
            .map(|c| {
                if c.name == c.physical {
                    ident(&c.name).into()
                } else {
                    format!("{} AS {}", ident(&c.physical), ident(&c.name))
                }
            })
            .collect();
        let select = if columns.is_empty() {
            String::new()
        } else {
            columns.join(", ")
        };
        out.push(format!(
            "CREATE VIEW {}{with} AS SELECT {select} FROM {}",
            qualified(version_schema, name),
            qualified(schema, &table.physical)
        ));
    }
    out
}

/// A transactional DDL step.
pub fn sql_step(description: impl Into<String>, sql: impl Into<String>) -> PlannedStep {
    PlannedStep {
        description: description.into(),
        action: Action::Sql {
            statement: Statement::ddl(sql),
            together: false,
        },
    }
}

/// A transactional step that runs at the same time as its neighbours that do too.
pub fn together_step(description: impl Into<String>, sql: impl Into<String>) -> PlannedStep {
    let mut step = sql_step(description, sql);
    if let Action::Sql { together, .. } = &mut step.action {
        *together = true;
    }
    step
}

/// A step that runs outside a transaction (CONCURRENTLY).
pub fn concurrent_step(
    description: impl Into<String>,
    sql: impl Into<String>,
    concurrent_index: Option<ConcurrentIndex>,
) -> PlannedStep {
    PlannedStep {
        description: description.into(),
        action: Action::Sql {
            statement: Statement::concurrent(sql, concurrent_index),
            together: false,
        },
    }
}

/// DROP INDEX CONCURRENTLY IF EXISTS, as a step that survives being resumed.
pub fn drop_index_step(description: impl Into<String>, schema: &str, index: &str) -> PlannedStep {
    concurrent_step(
        description,
        format!(
            "DROP INDEX CONCURRENTLY IF EXISTS {}",
            crate::quote::qualified(schema, index)
        ),
        Some(ConcurrentIndex::Drop {
            schema: Some(schema.to_owned()),
            name: index.to_owned(),
        }),
    )
}

/// An `up`/`down` expression as SQL, in parentheses: pgroll lets it be a whole
/// `SELECT ...`, which the parentheses turn into a scalar subquery, and any other
/// expression is unchanged by them.
pub fn expression(text: &str) -> String {
    format!("({})", text.trim().trim_end_matches(';').trim())
}

#[cfg(test)]
mod stored_step_tests {
    use super::*;

    #[test]
    fn a_stored_sql_step_keeps_its_shape_and_earlier_plans_still_read() {
        let step = concurrent_step("build", "CREATE INDEX CONCURRENTLY i ON t (x)", None);
        let json = serde_json::to_value(&step).unwrap();
        assert_eq!(
            json["action"],
            serde_json::json!({"type": "sql", "sql": "CREATE INDEX CONCURRENTLY i ON t (x)", "kind": "concurrent", "transactional": false})
        );
        // What an earlier pgshift stored, before the statement was one type.
        let earlier: PlannedStep = serde_json::from_value(serde_json::json!({
            "description": "d",
            "action": {"type": "sql", "sql": "ALTER TABLE t ADD x int", "kind": "ddl", "transactional": true, "together": true}
        }))
        .unwrap();
        assert_eq!(
            earlier.action,
            Action::Sql {
                statement: Statement::ddl("ALTER TABLE t ADD x int"),
                together: true
            }
        );
        let round: PlannedStep = serde_json::from_value(json).unwrap();
        assert_eq!(round, step);
    }
}
