//! A copy of the table (`alter_column`, `add_column` and `alter_primary_key`, pgshift's
//! choice without `method` whenever it can): a column's type changes, a column is added and
//! filled, or a key and the columns that reference it change type (one copy for each table,
//! one swap for them all), by copying the whole table, the way the blocking ALTER rewrites
//! it, but with clients reading and writing all along. No row is updated in place, so the table
//! does not bloat, and no index is maintained row by row during the copy.
//!
//! Start creates an empty copy of the table (`LIKE`, the column of its new type or the new
//! column), and a
//! trigger that logs the key of every row written from then on. The backfill copies the
//! rows in key batches (`INSERT ... SELECT`, no index to maintain yet, no row locks); then
//! the copy's indexes are built in bulk and its constraints added. A catch-up replays the
//! logged keys (each row copied again from its current state) until few are left; one short
//! transaction then blocks writes to the table, replays the rest, and swaps the log trigger
//! for two triggers that keep the tables in step both ways while the migration is open. The
//! new version reads and writes the copy.
//!
//! Complete verifies that both tables hold the same rows, validates the copy's foreign keys,
//! then in one transaction drops the old table and gives the copy its name, its indexes'
//! and constraints' names, and the old table's sequences. Rollback drops the copy, the log
//! and the triggers.

use super::{constraint_copy, index_copy_sql, Invalid};
use crate::model::{AlterColumn, Column};
use crate::plan::triggers::{function_sql, row_trigger_sql, row_variables};
use crate::plan::{
    internal_name, sql_step, together_step, BackfillSpec, CatchUpSpec, InsertSpec, OpSteps,
    PlanContext, PlannedStep, VerifySpec, VirtualSchema,
};
use crate::quote::{ident, literal, qualified};

pub(super) struct CopyTable<'a> {
    pub table: &'a str,
    pub change: Change<'a>,
}

/// What the copy changes.
pub(super) enum Change<'a> {
    /// A column's type (`alter_column`).
    Alter(&'a AlterColumn),
    /// A new column, filled from `up` or else from its default (`add_column`).
    Add {
        column: &'a Column,
        up: Option<&'a str>,
    },
    /// A new type for a key (`alter_primary_key`): the primary key's column in the key's
    /// table, the columns that reference it in each referencing table (physical names).
    /// `parts` are the tables of the key's copies, one copy each: the foreign keys between
    /// them are not copied but made again by the one swap of them all.
    Key {
        columns: Vec<String>,
        new_type: &'a str,
        parts: Vec<String>,
    },
}

impl Change<'_> {
    /// The one column an `alter_column` or `add_column` changes (a key changes several).
    fn changed_column(&self) -> Option<&str> {
        match self {
            Change::Alter(op) => Some(&op.column),
            Change::Add { column, .. } => Some(&column.name),
            Change::Key { .. } => None,
        }
    }

    /// The changed columns' names, for `plan`'s words.
    fn columns(&self) -> String {
        match self {
            Change::Alter(op) => op.column.clone(),
            Change::Add { column, .. } => column.name.clone(),
            Change::Key { columns, .. } => columns.join(", "),
        }
    }

    fn new_type(&self) -> &str {
        match self {
            Change::Alter(op) => op.data_type.as_deref().unwrap_or_default(),
            Change::Add { column, .. } => &column.data_type,
            Change::Key { new_type, .. } => new_type,
        }
    }

    /// Whether the verification compares column `name` of the table with the copy's: not
    /// the changed column (its values changed by `up`) nor the new one (the table does not
    /// have it); a key's columns are (one integer type for another compares as numbers).
    fn compared(&self, name: &str) -> bool {
        match self {
            Change::Alter(op) => op.column != name,
            Change::Add { column, .. } => column.name != name,
            Change::Key { .. } => true,
        }
    }

    /// Whether a foreign key of the table to `table` is made again by the swap rather
    /// than copied: one to the table itself, or to another table of a key's copies.
    fn made_by_swap(&self, own: &str, table: &str) -> bool {
        table == own
            || matches!(self, Change::Key { parts, .. } if parts.iter().any(|p| p == table))
    }
}

/// What a copy plans apart from its swap: the steps, and the swap's part and statements
/// for it (a key's copies share one swap).
pub(super) struct CopyParts {
    pub steps: OpSteps,
    pub part: crate::plan::SwapPart,
    pub swap: Vec<String>,
    /// After the swap: the old table dropped.
    pub drop_old: PlannedStep,
}

/// Why a copy of `tables` is the method for a change that `rewrites`: what it costs and
/// what it saves, for `plan`.
pub(super) fn why_copy(vs: &VirtualSchema, tables: &[&str], rewrites: &str) -> String {
    let mb = tables
        .iter()
        .map(|t| vs.table(t).map_or(0, |t| t.bytes))
        .sum::<i64>() as f64
        / 1_048_576.0;
    let size = if mb < 1.0 {
        "less than 1 MB".to_owned()
    } else {
        format!("about {mb:.0} MB")
    };
    format!(
        "{rewrites}: a copy of the table writes each row once, builds its indexes in bulk after the copy and leaves no dead rows behind, where filling a column in place updates every row and bloats the table; it needs {size} free on the server (the size of what is copied, with its indexes) until complete"
    )
}

impl CopyTable<'_> {
    fn shadow(physical: &str) -> String {
        internal_name("copy", &[physical])
    }

    pub fn validate(&self, vs: &VirtualSchema) -> Result<(), Invalid> {
        let table = self.table;
        let t = vs.require_table(table)?;
        match &self.change {
            Change::Alter(op) => {
                let c = vs.require_column(table, &op.column)?;
                if op.data_type.is_none()
                    || op.rename_to.is_some()
                    || op.nullable.is_some()
                    || op.unique.is_some()
                    || op.check.is_some()
                    || op.references.is_some()
                    || op.default.is_some()
                    || op.comment.is_some()
                {
                    return Err((
                        "a copy of the table changes a column's type (with `up` and `down`) and nothing else".to_owned(),
                        Some("put the other changes in their own alter_column, without `method`".to_owned()),
                    ));
                }
                if t.primary_key.contains(&c.physical) {
                    return Err((
                        format!(
                            "a copy of the table cannot change the primary key column {table}.{}",
                            op.column
                        ),
                        Some("use alter_primary_key".to_owned()),
                    ));
                }
            }
            Change::Add { column, .. } => {
                if column.unique
                    || column.check.is_some()
                    || column.references.is_some()
                    || column.pk
                {
                    return Err((
                        "a copy of the table adds a column with a type, a default, NOT NULL and a comment; not with unique, check, references or pk".to_owned(),
                        Some("add those with create_constraint in a later migration, or leave out `method`".to_owned()),
                    ));
                }
            }
            Change::Key { .. } => {}
        }
        if t.shared {
            return Err((
                format!("another operation of this migration names {table} too, and a copy made for this one would lose its change"),
                Some("give the other changes a migration of their own, or change the table in place (`method: in_place`)".to_owned()),
            ));
        }
        if let Some(why) = &t.uncopyable {
            return Err((
                why.clone(),
                Some("change the table in place (`method: in_place`)".to_owned()),
            ));
        }
        if t.primary_key.len() != 1 {
            return Err((
                format!("a copy of the table needs a one-column primary key on {table:?}"),
                Some("leave out `method` to change the table in place".to_owned()),
            ));
        }
        if !t.identity.is_empty() {
            return Err((
                format!("{table:?} has an identity column; a copy of the table does not move identity sequences yet"),
                Some("leave out `method` to change the table in place".to_owned()),
            ));
        }
        // The foreign keys that point at the table are pointed at the copy at the swap;
        // one that points at the changed column itself would change type with it, which is
        // alter_primary_key's work (its copies change the referencing columns too).
        if let Some((column, r)) = self.change.changed_column().and_then(|column| {
            t.referenced_by
                .iter()
                .find(|r| r.referenced.iter().any(|c| c == column))
                .map(|r| (column, r))
        }) {
            return Err((
                format!(
                    "a copy of the table cannot change {table}.{column}: foreign key {} of {} references it",
                    r.constraint,
                    r.table
                ),
                Some(
                    "change a key and the columns that reference it with alter_primary_key"
                        .to_owned(),
                ),
            ));
        }
        if t.physical != table || t.columns.iter().any(|c| c.name != c.physical) {
            return Err((
                format!(
                    "a copy of the table needs {table:?} untouched by the migration's other operations"
                ),
                Some("leave out `method` to change the table in place".to_owned()),
            ));
        }
        Ok(())
    }

    pub fn apply(&self, vs: &mut VirtualSchema) {
        if let Some(t) = vs.table_mut(self.table) {
            t.physical = Self::shadow(self.table);
            self.apply_to_table(t);
        }
    }

    pub fn plan(&self, ctx: &PlanContext, vs: &VirtualSchema) -> super::Planned {
        let CopyParts {
            mut steps,
            part,
            swap,
            drop_old,
        } = self.plan_parts(ctx, vs)?;
        steps
            .complete
            .push(swap_step(ctx, self.table, vec![part], swap));
        steps.complete.push(drop_old);
        steps.complete.push(validate_carried_step(self.table));
        Ok(steps)
    }

    /// The copy's steps without its swap, and its part of the swap.
    pub fn plan_parts(&self, ctx: &PlanContext, vs: &VirtualSchema) -> Result<CopyParts, Invalid> {
        let table = self.table;
        let column = self.change.columns();
        let ty = self.change.new_type();
        let Some(t) = vs.table(table) else {
            return Err(super::missing("table", table));
        };
        let Some(ct) = ctx.catalog.table(&t.physical) else {
            return Err(super::missing("table", &t.physical));
        };
        let [key] = t.primary_key.as_slice() else {
            return Err((
                format!(
                    "a copy of {table} needs a one-column primary key to replay its changes by"
                ),
                Some("add one first, or change the column in place".to_owned()),
            ));
        };
        let key_type = ct
            .column(key)
            .map(|c| c.data_type.clone())
            .unwrap_or_else(|| "bigint".to_owned());
        let shadow_name = Self::shadow(&t.physical);
        let log_name = internal_name("log", &[&t.physical]);
        let source = qualified(ctx.schema, &t.physical).to_string();
        let shadow = qualified(ctx.schema, &shadow_name).to_string();
        let log = qualified(crate::state::SCHEMA, &log_name).to_string();
        // Every stored column written by the copy: (name, value from a source row, value
        // back from a copy row; None for a column the table does not have).
        let mut columns: Vec<(String, String, Option<String>)> = Vec::new();
        for c in ct.columns.iter().filter(|c| c.generated.is_empty()) {
            match &self.change {
                Change::Alter(op) if c.name == op.column => {
                    let up = op
                        .up
                        .as_deref()
                        .map_or_else(|| format!("{}::{ty}", ident(&op.column)), str::to_owned);
                    let down = op.down.as_deref().map_or_else(
                        || format!("{}::{}", ident(&op.column), c.data_type),
                        str::to_owned,
                    );
                    columns.push((c.name.clone(), up, Some(down)));
                }
                Change::Key {
                    columns: changed, ..
                } if changed.contains(&c.name) => columns.push((
                    c.name.clone(),
                    format!("{}::{ty}", ident(&c.name)),
                    Some(format!("{}::{}", ident(&c.name), c.data_type)),
                )),
                _ => columns.push((
                    c.name.clone(),
                    ident(&c.name).into(),
                    Some(ident(&c.name).into()),
                )),
            }
        }
        // A new column without `up` is left out: the copy's default fills it, row by row.
        let mut shadow_change = match &self.change {
            Change::Alter(op) => format!(
                "ALTER TABLE {shadow} ALTER COLUMN {} TYPE {ty} USING NULL",
                ident(&op.column)
            ),
            Change::Key { columns, .. } => format!(
                "ALTER TABLE {shadow} {}",
                columns
                    .iter()
                    .map(|c| format!("ALTER COLUMN {} TYPE {ty} USING NULL", ident(c)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Change::Add { column: c, up } => {
                if let Some(up) = up {
                    columns.push((c.name.clone(), (*up).to_owned(), None));
                }
                let mut d = format!("ALTER TABLE {shadow} ADD COLUMN {} {ty}", ident(&c.name));
                if let Some(default) = &c.default {
                    d.push_str(&format!(" DEFAULT {default}"));
                }
                if !c.nullable {
                    d.push_str(" NOT NULL");
                }
                d
            }
        };
        if let Change::Add { column: c, .. } = &self.change {
            if let Some(comment) = &c.comment {
                shadow_change.push_str(&format!(
                    ";\nCOMMENT ON COLUMN {shadow}.{} IS {}",
                    ident(&c.name),
                    literal(comment)
                ));
            }
        }
        let names = columns
            .iter()
            .map(|(n, ..)| ident(n))
            .collect::<Vec<_>>()
            .join(", ");
        let from_source = columns
            .iter()
            .map(|(_, up, _)| crate::plan::expression(up))
            .collect::<Vec<_>>()
            .join(", ");
        let mut steps = OpSteps::default();

        steps.start.push(sql_step(
        format!("create {shadow_name}, an empty copy of {table} with {column} as {ty}"),
        format!(
            "CREATE TABLE {shadow} (LIKE {source} INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMMENTS);\n{shadow_change}"
        ),
    ));
        steps.start.push(PlannedStep {
            description: format!(
                "give {shadow_name} the privileges, row-level security and policies of {table}"
            ),
            action: crate::plan::Action::CarryAccess {
                schema: ctx.schema.to_owned(),
                from: t.physical.clone(),
                to: shadow_name.clone(),
                through: None,
            },
        });
        let log_trigger = internal_name("log", &[&t.physical]);
        steps.start.extend(log_steps(
            table,
            &source,
            &log,
            &log_trigger,
            key,
            &key_type,
        ));
        steps.backfills.push(BackfillSpec {
            partition_of: None,
            schema: ctx.schema.to_owned(),
            table: t.physical.clone(),
            set: Vec::new(),
            condition: None,
            insert: Some(InsertSpec {
                table: shadow_name.clone(),
                columns: columns
                    .iter()
                    .map(|(n, up, _)| (n.clone(), up.clone()))
                    .collect(),
                conflict: Vec::new(),
            }),
        });

        // Indexes in bulk on the filled copy (nobody else uses it yet), all at once: each
        // build holds SHARE on the copy, and those do not conflict. Then the primary key and
        // unique constraints on them (ACCESS EXCLUSIVE on the copy, so after the builds),
        // then the other constraints.
        let mut names_back = Vec::new();
        let mut validations = Vec::new();
        let mut attach = Vec::new();
        for ix in &ct.indexes {
            let kind = ix
                .constraint
                .as_ref()
                .and_then(|c| ct.constraints.get(c))
                .map(|c| c.kind.as_str());
            if kind == Some("x") {
                continue;
            }
            let Some((tmp, sql)) = steps.carry(index_copy_sql(ix, &shadow_name, false)) else {
                continue;
            };
            match (&ix.constraint, kind) {
                (Some(constraint), Some(k @ ("p" | "u"))) => {
                    attach.push(sql_step(
                        format!("constraint {constraint} on {shadow_name}, on its index"),
                        format!(
                            "ALTER TABLE {shadow} ADD CONSTRAINT {} {} USING INDEX {}",
                            ident(&tmp),
                            if k == "p" { "PRIMARY KEY" } else { "UNIQUE" },
                            ident(&tmp)
                        ),
                    ));
                    names_back.push(format!(
                        "ALTER TABLE {source} RENAME CONSTRAINT {} TO {}",
                        ident(&tmp),
                        ident(constraint)
                    ));
                }
                _ => names_back.push(format!(
                    "ALTER INDEX {} RENAME TO {}",
                    qualified(ctx.schema, &tmp),
                    ident(&ix.name)
                )),
            }
            steps.after_backfill.push(together_step(
                format!("index {} built on {shadow_name}", ix.name),
                sql,
            ));
        }
        steps.after_backfill.extend(attach);
        for k in ct.constraints.values() {
            match k.kind.as_str() {
                "c" => steps.after_backfill.push(sql_step(
                    format!("constraint {} on {shadow_name}", k.name),
                    format!(
                        "ALTER TABLE {shadow} ADD CONSTRAINT {} {}",
                        ident(&k.name),
                        k.definition
                    ),
                )),
                "x" => {
                    let tmp = internal_name("x", &[&k.name]);
                    steps.after_backfill.push(sql_step(
                        format!("constraint {} on {shadow_name}", k.name),
                        format!(
                            "ALTER TABLE {shadow} ADD CONSTRAINT {} {}",
                            ident(&tmp),
                            k.definition
                        ),
                    ));
                    names_back.push(format!(
                        "ALTER TABLE {source} RENAME CONSTRAINT {} TO {}",
                        ident(&tmp),
                        ident(&k.name)
                    ));
                }
                // A foreign key of the table to itself (or to another of a key's copies) is
                // made again by the swap, with those of other tables to it.
                "f" if k
                    .foreign_table
                    .as_deref()
                    .is_some_and(|f| self.change.made_by_swap(&t.physical, f)) => {}
                "f" => {
                    if let Some(sql) = steps.carry(constraint_copy(&shadow, &k.name, k, &[], &[])) {
                        steps.after_backfill.push(sql_step(
                            format!("foreign key {} on {shadow_name}, not validated yet", k.name),
                            sql,
                        ));
                        validations.push(sql_step(
                            format!("validate foreign key {} on {shadow_name}", k.name),
                            format!(
                                "ALTER TABLE {shadow} VALIDATE CONSTRAINT {}",
                                ident(&k.name)
                            ),
                        ));
                    }
                }
                _ => {}
            }
        }

        // Catch up with the log, switch to the triggers that keep both tables in step, then
        // replay what the log still holds.
        let catch_up = CatchUpSpec {
            source: source.clone(),
            shadow: shadow.clone(),
            log: log.clone(),
            key: key.clone(),
            key_type: key_type.clone(),
            columns: names.clone(),
            from_source: from_source.clone(),
            after_switch: false,
            upsert: columns
                .iter()
                .filter(|(n, ..)| n != key)
                .map(|(n, ..)| format!("{} = EXCLUDED.{}", ident(n), ident(n)))
                .collect::<Vec<_>>()
                .join(", "),
            replace: false,
        };
        steps.after_backfill.push(PlannedStep {
            description: format!(
                "catch up {shadow_name} with the rows written to {} since the copy began",
                table
            ),
            action: crate::plan::Action::CatchUp(catch_up.clone()),
        });
        let old_view = vs.table(table).cloned().unwrap_or_default();
        let mut new_view = old_view.clone();
        self.apply_to_table(&mut new_view);
        let to_copy = sync_body(
            &ctx.version_schema,
            false,
            &source,
            &old_view,
            &shadow,
            &columns
                .iter()
                .map(|(n, up, _)| (n.clone(), up.clone()))
                .collect::<Vec<_>>(),
            key,
        );
        let to_source = sync_body(
            &ctx.version_schema,
            true,
            &shadow,
            &new_view,
            &source,
            &columns
                .iter()
                .filter_map(|(n, _, down)| Some((n.clone(), down.clone()?)))
                .collect::<Vec<_>>(),
            key,
        );
        let sync_old = internal_name("sync", &[&t.physical]);
        let sync_new = internal_name("sync", &[&shadow_name]);
        steps.after_backfill.push(sql_step(
        format!(
            "block writes to {table} for a moment to stop the log and keep {shadow_name} in step by triggers from then on"
        ),
        [
            format!("LOCK TABLE {source} IN SHARE ROW EXCLUSIVE MODE"),
            format!("DROP TRIGGER IF EXISTS {} ON {source}", ident(&log_trigger)),
            function_sql(&sync_old, &to_copy),
            row_trigger_sql(&sync_old, &source, "AFTER INSERT OR UPDATE OR DELETE", None),
            function_sql(&sync_new, &to_source),
            row_trigger_sql(&sync_new, &shadow, "AFTER INSERT OR UPDATE OR DELETE", None),
        ]
        .join(";\n"),
    ));
        steps.after_backfill.push(PlannedStep {
            description: format!(
                "replay the rest of the log into {shadow_name}, each of its rows of {table} locked while it is read"
            ),
            action: crate::plan::Action::CatchUp(CatchUpSpec {
                after_switch: true,
                ..catch_up
            }),
        });
        // Planner statistics and the visibility map before any client reads the copy: the
        // new version's queries from start on, and everyone's after the swap, plan as well
        // as on the table (index-only scans included). At the end of start, where the copy
        // has all its rows and indexes (their builds set the rows' hint bits): the fresh
        // rows would otherwise bring an autovacuum of the whole copy while the migration is
        // open, which the swap's lock would wait behind.
        steps
            .after_backfill
            .push(vacuum_step(&shadow_name, &shadow));

        steps.verify.push(VerifySpec {
            description: format!(
                "{shadow_name} holds every row of {} with equal values",
                table
            ),
            schema: ctx.schema.to_owned(),
            table: t.physical.clone(),
            key: key.clone(),
            other: shadow_name.clone(),
            other_key: key.clone(),
            columns: columns
                .iter()
                .filter(|(n, ..)| n != key && self.change.compared(n))
                .map(|(n, ..)| (n.clone(), n.clone()))
                .collect(),
        });
        steps.complete.extend(validations);
        let mut swap = vec![
            format!("DROP TRIGGER IF EXISTS {} ON {source}", ident(&sync_old)),
            format!("DROP TRIGGER IF EXISTS {} ON {shadow}", ident(&sync_new)),
        ];
        let sequences: Vec<(String, &str)> = ct
            .columns
            .iter()
            .filter_map(|c| {
                Some((
                    qualified(&c.owned_sequence.as_ref()?.0, &c.owned_sequence.as_ref()?.1).into(),
                    c.name.as_str(),
                ))
            })
            .collect();
        for (seq, column) in &sequences {
            swap.push(format!("ALTER SEQUENCE {seq} OWNED BY NONE"));
            // A key's sequence takes the key's new type (an int serial's limit goes with it).
            if matches!(&self.change, Change::Key { columns, .. } if columns.iter().any(|c| c.as_str() == *column))
                && super::sequence_type(ty)
            {
                swap.push(format!("ALTER SEQUENCE {seq} AS {ty}"));
            }
        }
        // The old table is renamed out of the way, its indexes (and the constraints on them)
        // and statistics objects with it, and dropped after the swap's commit: a DROP in
        // the swap would unlink its files at commit, before the locks are released, while
        // every client waits (0.7 to 0.8 s at 20,000,000 rows).
        let old_name = internal_name("old", &[&t.physical]);
        let old = qualified(ctx.schema, &old_name).to_string();
        swap.push(format!(
            "ALTER TABLE {source} RENAME TO {}",
            ident(&old_name)
        ));
        for ix in &ct.indexes {
            swap.push(format!(
                "ALTER INDEX {} RENAME TO {}",
                qualified(ctx.schema, &ix.name),
                ident(&internal_name("old", &[&ix.name]))
            ));
        }
        swap.push(drop_statistics_sql(&old));
        swap.push(format!(
            "ALTER TABLE {shadow} RENAME TO {}",
            ident(&t.physical)
        ));
        swap.extend(names_back);
        for (seq, column) in &sequences {
            swap.push(format!(
                "ALTER SEQUENCE {seq} OWNED BY {source}.{}",
                ident(column)
            ));
        }
        swap.extend(drop_functions_sql(&[&sync_old, &sync_new, &log_trigger]));
        swap.push(format!("DROP TABLE IF EXISTS {log}"));
        let mut undo = vec![
            format!("DROP TRIGGER IF EXISTS {} ON {source}", ident(&log_trigger)),
            format!("DROP TRIGGER IF EXISTS {} ON {source}", ident(&sync_old)),
            drop_built_on_sql(&shadow),
            format!("DROP TABLE IF EXISTS {shadow}"),
            format!("DROP TABLE IF EXISTS {log}"),
        ];
        undo.extend(drop_functions_sql(&[&sync_old, &sync_new, &log_trigger]));
        steps.rollback.push(sql_step(
            format!("drop {shadow_name}, the log and the triggers"),
            undo.join(";\n"),
        ));
        Ok(CopyParts {
            drop_old: sql_step(
                format!("drop the old {table}, renamed {old_name} by the swap"),
                format!("DROP TABLE IF EXISTS {old}"),
            ),
            steps,
            part: crate::plan::SwapPart {
                table: t.physical.clone(),
                copy: Some(shadow_name),
                columns: Vec::new(),
            },
            swap,
        })
    }

    fn apply_to_table(&self, t: &mut crate::plan::VTable) {
        match &self.change {
            Change::Alter(op) => {
                if let (Some(c), Some(ty)) = (t.column_mut(&op.column), &op.data_type) {
                    c.data_type = ty.to_string();
                }
            }
            Change::Key {
                columns, new_type, ..
            } => {
                for c in t
                    .columns
                    .iter_mut()
                    .filter(|c| columns.contains(&c.physical))
                {
                    c.data_type = new_type.to_string();
                }
            }
            Change::Add { column, .. } => {
                if t.column(&column.name).is_none() {
                    t.columns.push(crate::plan::VColumn {
                        name: column.name.clone(),
                        physical: column.name.clone(),
                        complete_name: column.name.clone(),
                        data_type: column.data_type.to_string(),
                        not_null: !column.nullable,
                    });
                }
            }
        }
    }
}

/// The log of the keys of rows written to `source` (qualified) during a copy, and the
/// trigger that writes it (`table` names the table in `plan`).
pub(super) fn log_steps(
    table: &str,
    source: &str,
    log: &str,
    log_trigger: &str,
    key: &str,
    key_type: &str,
) -> [PlannedStep; 2] {
    let k = ident(key);
    let log_body = format!(
        "BEGIN\n  IF TG_OP <> 'INSERT' THEN\n    INSERT INTO {log} (k) VALUES (OLD.{k});\n  END IF;\n  IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.{k} IS DISTINCT FROM OLD.{k}) THEN\n    INSERT INTO {log} (k) VALUES (NEW.{k});\n  END IF;\n  RETURN NULL;\nEND\n"
    );
    [
        sql_step(
            format!("create the log of rows written to {table} during the copy"),
            format!(
                "CREATE TABLE {log} (seq bigserial PRIMARY KEY, k {key_type} NOT NULL);\n{}",
                crate::plan::triggers::definer_function_sql(log_trigger, &log_body)
            ),
        ),
        sql_step(
            format!("create the logging trigger on {table}"),
            row_trigger_sql(
                log_trigger,
                source,
                "AFTER INSERT OR UPDATE OR DELETE",
                None,
            ),
        ),
    ]
}

/// The VACUUM (ANALYZE) of a filled copy (`shadow` qualified).
pub(super) fn vacuum_step(shadow_name: &str, shadow: &str) -> PlannedStep {
    crate::plan::concurrent_step(
        format!("vacuum and analyze {shadow_name}, so that queries plan well on it"),
        format!("VACUUM (ANALYZE) {shadow}"),
        None,
    )
}

/// `DROP FUNCTION IF EXISTS` of pgshift's trigger functions `names`.
pub(super) fn drop_functions_sql(names: &[&str]) -> Vec<String> {
    names
        .iter()
        .map(|f| {
            format!(
                "DROP FUNCTION IF EXISTS {}()",
                qualified(crate::state::SCHEMA, f)
            )
        })
        .collect()
}

/// Drops every statistics object on `table` (qualified): the swap makes them again on the
/// copy, under the same names.
pub(super) fn drop_statistics_sql(table: &str) -> String {
    format!(
        "DO $pgshift$ DECLARE s text; BEGIN
           FOR s IN SELECT format('%I.%I', n.nspname, x.stxname) FROM pg_statistic_ext x
                    JOIN pg_namespace n ON n.oid = x.stxnamespace WHERE x.stxrelid = to_regclass({})
           LOOP EXECUTE 'DROP STATISTICS ' || s; END LOOP;
         END $pgshift$",
        crate::quote::literal(table)
    )
    .split_whitespace()
    .collect::<Vec<_>>()
    .join(" ")
}

/// Drops every materialized view built on the copy `copy` (qualified) before a swap that did
/// not happen (the swap's phase builds them as `_pgshift_mv_<name>`): a rollback's, before it
/// drops the copy.
pub(super) fn drop_built_on_sql(copy: &str) -> String {
    let prefix = internal_name("mv", &[""]);
    format!(
        "DO $pgshift$ DECLARE v regclass; BEGIN
           FOR v IN SELECT DISTINCT w.ev_class::regclass FROM pg_depend d
                    JOIN pg_rewrite w ON w.oid = d.objid JOIN pg_class c ON c.oid = w.ev_class
                    WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = to_regclass({})
                      AND c.relkind = 'm' AND starts_with(c.relname, {})
           LOOP EXECUTE format('DROP MATERIALIZED VIEW %s', v); END LOOP;
         END $pgshift$",
        crate::quote::literal(copy),
        crate::quote::literal(&prefix)
    )
    .split_whitespace()
    .collect::<Vec<_>>()
    .join(" ")
}

/// The body of a trigger on `from` that mirrors each row written by one version's clients
/// (the new version's when `new_version`, else the others') into `to`: deleted there when
/// deleted here, upserted otherwise, each column from its expression over the row's columns
/// as that version names them.
fn sync_body(
    version_schema: &str,
    new_version: bool,
    from: &str,
    view: &crate::plan::VTable,
    to: &str,
    columns: &[(String, String)],
    key: &str,
) -> String {
    let k = ident(key);
    let test = if new_version {
        "IS NOT DISTINCT FROM"
    } else {
        "IS DISTINCT FROM"
    };
    let names = columns
        .iter()
        .map(|(n, _)| ident(n))
        .collect::<Vec<_>>()
        .join(", ");
    let values = columns
        .iter()
        .map(|(_, e)| crate::plan::expression(e))
        .collect::<Vec<_>>()
        .join(", ");
    let sets = columns
        .iter()
        .filter(|(n, _)| n != key)
        .map(|(n, _)| format!("{} = EXCLUDED.{}", ident(n), ident(n)))
        .collect::<Vec<_>>()
        .join(", ");
    let variables = row_variables(
        from,
        view.columns
            .iter()
            .map(|c| (c.name.as_str(), c.physical.as_str())),
        "NEW",
    );
    format!(
        "#variable_conflict use_column\nBEGIN\n  IF (current_schemas(false))[1] {test} {} THEN\n    IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND OLD.{k} IS DISTINCT FROM NEW.{k}) THEN\n      DELETE FROM {to} WHERE {k} = OLD.{k};\n    END IF;\n    IF TG_OP <> 'DELETE' THEN\n      DECLARE\n{variables}      BEGIN\n        INSERT INTO {to} ({names}) VALUES ({values})\n          ON CONFLICT ({k}) DO UPDATE SET {sets};\n      END;\n    END IF;\n  END IF;\n  RETURN NULL;\nEND\n",
        literal(version_schema)
    )
}

/// The swap of copies `parts` in for their tables (`table` names them in `plan`): one
/// transaction that drops each table and gives its copy its names, sequences and everything
/// that hung on it, the foreign keys that pointed at it included.
pub(super) fn swap_step(
    ctx: &PlanContext,
    table: &str,
    parts: Vec<crate::plan::SwapPart>,
    statements: Vec<String>,
) -> PlannedStep {
    let copies = parts
        .iter()
        .filter_map(|p| p.copy.clone())
        .collect::<Vec<_>>()
        .join(", ");
    PlannedStep {
        description: format!(
            "swap {copies} in for {table} (rename the old table out of the way, give the copy its names, sequences and everything that hung on the table)"
        ),
        action: crate::plan::Action::Swap(crate::plan::SwapSpec {
                scans_nothing: false,
            schema: ctx.schema.to_owned(),
            parts,
            statements,
            after: Vec::new(),
        }),
    }
}

/// Validates whatever foreign keys the swap found pointing at the copied tables (read when
/// it runs) and made again on the copies, NOT VALID.
pub(super) fn validate_carried_step(table: &str) -> PlannedStep {
    PlannedStep {
        description: format!("validate the foreign keys that the swap pointed at the new {table}"),
        action: crate::plan::Action::ValidateCarried,
    }
}
