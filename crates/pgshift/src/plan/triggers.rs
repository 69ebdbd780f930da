//! The triggers that keep the old and the new version of a table in step while a
//! migration is open.
//!
//! One trigger per operation and table, BEFORE INSERT OR UPDATE, FOR EACH ROW. A write from
//! a client whose first schema on the search_path is not the new version schema (old
//! version clients, and clients of the raw tables) gets the new physical columns from `up`;
//! a write through the new version gets the old physical columns from `down`. The
//! expressions see the row's columns as variables named as that version names them, so
//! `up: UPPER(name)` means the row's `name` as the old version sees it.
//!
//! A write recomputes the other version's column only when the row is new or when a column
//! the expression reads changed in this write (`IS DISTINCT FROM OLD`). An UPDATE through the
//! new version that leaves `down`'s inputs alone keeps the old column's value: a constant
//! `down` (`NULL`, `'n/a'`) fills the rows the new version inserts and never overwrites what
//! old clients wrote. The same holds for `up`, except that a NULL target is always filled (a
//! row the backfill has not reached yet must pass the new column's NOT NULL check). See
//! docs/lifecycle.md, "What the triggers write".
//!
//! A backfill session sets `pgshift.backfill = on`: it writes the new values itself in the
//! same UPDATE, and the trigger stays out of its way. The test is the trigger's WHEN clause,
//! not the function's first line: a WHEN that is false costs an expression, a plpgsql call
//! that returns at once costs a function call per row.

use super::{sql_step, PlannedStep, VTable};
use crate::quote::{ident, literal, qualified};

/// What a dual-write trigger computes.
pub struct DualWrite<'a> {
    pub schema: &'a str,
    /// The physical table.
    pub table: &'a str,
    /// The function and trigger's name.
    pub name: String,
    pub version_schema: &'a str,
    /// The table as the old version sees it (for `up`'s variables).
    pub old_version: &'a VTable,
    /// The table as the new version sees it (for `down`'s variables).
    pub new_version: &'a VTable,
    /// (physical column, expression) set on old-version writes.
    pub up: Vec<(String, String)>,
    /// (physical column, expression) set on new-version writes.
    pub down: Vec<(String, String)>,
}

const ROW: &str = "_pgshift_row";

/// The trigger fires for every session but a backfill's.
pub(crate) const BACKFILL_OFF: &str =
    "current_setting('pgshift.backfill', true) IS DISTINCT FROM 'on'";

impl DualWrite<'_> {
    /// `fill_null`: also recompute when the target is NULL (the `up` side; see the module
    /// doc).
    fn branch(
        &self,
        version: &VTable,
        assignments: &[(String, String)],
        fill_null: bool,
    ) -> String {
        if assignments.is_empty() {
            return "      NULL;\n".to_owned();
        }
        let mut out = String::from("    DECLARE\n");
        out.push_str(&row_variables(
            &qualified(self.schema, self.table),
            version
                .columns
                .iter()
                .map(|c| (c.name.as_str(), c.physical.as_str())),
            ROW,
        ));
        out.push_str("    BEGIN\n");
        for (target, expr) in assignments {
            let mut when = vec!["TG_OP = 'INSERT'".to_owned()];
            if fill_null {
                when.push(format!("{ROW}.{} IS NULL", ident(target)));
            }
            when.extend(inputs(version, expr).into_iter().map(|physical| {
                format!(
                    "{ROW}.{} IS DISTINCT FROM OLD.{}",
                    ident(physical),
                    ident(physical)
                )
            }));
            out.push_str(&format!(
                "      IF {} THEN\n        {ROW}.{} := {};\n      END IF;\n",
                when.join(" OR "),
                ident(target),
                super::expression(expr)
            ));
        }
        out.push_str("    END;\n");
        out
    }

    /// CREATE FUNCTION and CREATE TRIGGER.
    pub fn create(&self) -> Vec<PlannedStep> {
        let body = format!(
            "#variable_conflict use_variable\nDECLARE\n  {ROW} ALIAS FOR NEW;\nBEGIN\n  IF (current_schemas(false))[1] IS DISTINCT FROM {} THEN\n{}  ELSE\n{}  END IF;\n  RETURN NEW;\nEND\n",
            literal(self.version_schema),
            self.branch(self.old_version, &self.up, true),
            self.branch(self.new_version, &self.down, false)
        );
        vec![
            sql_step(
                format!("create the dual-write function for {}", self.table),
                function_sql(&self.name, &body),
            ),
            sql_step(
                format!("create the dual-write trigger on {}", self.table),
                row_trigger_sql(
                    &self.name,
                    &qualified(self.schema, self.table),
                    "BEFORE INSERT OR UPDATE",
                    Some(BACKFILL_OFF),
                ),
            ),
        ]
    }
}

impl DualWrite<'_> {
    /// Created at start, dropped at rollback. At complete the caller drops it with
    /// [`drop_sql`] in the same transaction as the step that makes it unnecessary, so that no
    /// write slips between the two.
    pub fn attach(&self, steps: &mut super::OpSteps) {
        steps.start.extend(self.create());
        steps
            .rollback
            .extend(drop(self.schema, self.table, &self.name));
    }
}

/// The physical columns of `version` that `expr` reads, in the version's column order.
/// Over-approximate on purpose: a name that also occurs inside a subquery counts, so the
/// expression is recomputed more often, never less.
fn inputs<'v>(version: &'v VTable, expr: &str) -> Vec<&'v str> {
    let named = super::ops::columns_named(&format!("SELECT {}", super::expression(expr)));
    version
        .columns
        .iter()
        .filter(|c| named.contains(&c.name))
        .map(|c| c.physical.as_str())
        .collect()
}

/// plpgsql declarations that make a row's columns variables: `name table.physical%TYPE :=
/// row.physical;` for each (name, physical column), so that an expression over the columns
/// can be evaluated as written.
pub(crate) fn row_variables<'c>(
    table: &str,
    columns: impl Iterator<Item = (&'c str, &'c str)>,
    row: &str,
) -> String {
    columns
        .map(|(name, physical)| {
            format!(
                "      {} {table}.{}%TYPE := {row}.{};\n",
                ident(name),
                ident(physical),
                ident(physical)
            )
        })
        .collect()
}

/// DROP TRIGGER and DROP FUNCTION, both IF EXISTS (rollback may run after a partial start).
pub fn drop(schema: &str, table: &str, name: &str) -> Vec<PlannedStep> {
    vec![
        sql_step(
            format!("drop the dual-write trigger on {table}"),
            format!(
                "DROP TRIGGER IF EXISTS {} ON {}",
                ident(name),
                qualified(schema, table)
            ),
        ),
        sql_step(
            format!("drop the dual-write function for {table}"),
            format!(
                "DROP FUNCTION IF EXISTS {}()",
                qualified(crate::state::SCHEMA, name)
            ),
        ),
    ]
}

/// One rollback step: the trigger goes in the same transaction as `undo` (the drop of the
/// columns it fills). Apart, a write between the two would find the new columns' NOT NULL
/// or CHECK constraints without the trigger that satisfies them, or the trigger without its
/// columns.
pub fn drop_with(
    schema: &str,
    table: &str,
    name: &str,
    description: String,
    undo: Vec<String>,
) -> PlannedStep {
    let mut sql = drop_sql(schema, table, name);
    let function = sql.pop();
    sql.extend(undo);
    sql.extend(function);
    sql_step(description, sql.join(";\n"))
}

/// DROP TRIGGER and DROP FUNCTION as statements to run inside another step's transaction.
pub fn drop_sql(schema: &str, table: &str, name: &str) -> Vec<String> {
    vec![
        format!(
            "DROP TRIGGER IF EXISTS {} ON {}",
            ident(name),
            qualified(schema, table)
        ),
        format!(
            "DROP FUNCTION IF EXISTS {}()",
            qualified(crate::state::SCHEMA, name)
        ),
    ]
}

/// `CREATE OR REPLACE FUNCTION` of a plpgsql trigger function named `name`, in pgshift's
/// schema.
/// The same, running with the rights of its owner (pgshift's role) and a fixed
/// search_path: for a function that writes only pgshift's own tables, which the clients
/// whose writes fire it have no rights on. Its body must name everything qualified.
pub fn definer_function_sql(name: &str, body: &str) -> String {
    format!(
        "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS {}",
        qualified(crate::state::SCHEMA, name),
        dollar_quote(body)
    )
}

pub fn function_sql(name: &str, body: &str) -> String {
    format!(
        "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS {}",
        qualified(crate::state::SCHEMA, name),
        dollar_quote(body)
    )
}

/// `CREATE TRIGGER name <timing and events> ON table FOR EACH ROW [WHEN (...)]` running the
/// function of the same name (`table` already quoted and qualified).
pub fn row_trigger_sql(name: &str, table: &str, events: &str, when: Option<&str>) -> String {
    format!(
        "CREATE TRIGGER {} {events} ON {table} FOR EACH ROW {}EXECUTE FUNCTION {}()",
        ident(name),
        when.map(|w| format!("WHEN ({w}) ")).unwrap_or_default(),
        qualified(crate::state::SCHEMA, name)
    )
}

/// `$tag$body$tag$` with a tag that does not occur in the body.
pub fn dollar_quote(body: &str) -> String {
    let mut tag = "pgshift".to_owned();
    let mut n = 0;
    while body.contains(&format!("${tag}$")) {
        n += 1;
        tag = format!("pgshift{n}");
    }
    format!("${tag}${body}${tag}$")
}

/// While a new NOT NULL is still a CHECK NOT VALID (until complete validates it), a NULL
/// written to the column would be reported as a check violation of pgshift's internal
/// constraint. This trigger reports it as PostgreSQL reports a NOT NULL column (SQLSTATE
/// 23502, `null value in column "x" of relation "t" violates not-null constraint`, with the
/// column and table fields set), which is what applications and their drivers handle. Its
/// name sorts after the dual-write trigger's (`_pgshift_zn_` after `_pgshift_trg_`;
/// PostgreSQL fires BEFORE triggers in name order), so a NULL that `up` fills is no error.
pub struct NotNullGuard<'a> {
    pub schema: &'a str,
    /// The physical table and column.
    pub table: &'a str,
    pub column: &'a str,
    /// The column's name as the new version shows it (the message names it).
    pub shown: &'a str,
}

impl NotNullGuard<'_> {
    pub fn name(&self) -> String {
        super::internal_name("zn", &[self.table, self.shown])
    }

    /// CREATE FUNCTION and CREATE TRIGGER, one step.
    pub fn create(&self) -> PlannedStep {
        // PostgreSQL's own words, names as they are (it does not escape them either).
        let message = format!(
            "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
            self.shown, self.table
        );
        let body = format!(
            "BEGIN\n  RAISE EXCEPTION USING ERRCODE = 'not_null_violation', MESSAGE = {}, COLUMN = {}, TABLE = {}, SCHEMA = {};\nEND\n",
            literal(&message),
            literal(self.shown),
            literal(self.table),
            literal(self.schema)
        );
        let name = self.name();
        sql_step(
            format!(
                "report a NULL in {}.{} as a NOT NULL violation until complete",
                self.table, self.shown
            ),
            [
                function_sql(&name, &body),
                row_trigger_sql(
                    &name,
                    &qualified(self.schema, self.table),
                    "BEFORE INSERT OR UPDATE",
                    Some(&format!("NEW.{} IS NULL", ident(self.column))),
                ),
            ]
            .join(";\n"),
        )
    }

    /// DROP TRIGGER and DROP FUNCTION, to run in the transaction that sets NOT NULL (or
    /// drops the column, whose trigger would otherwise block the drop).
    pub fn drop_sql(&self) -> Vec<String> {
        drop_sql(self.schema, self.table, &self.name())
    }
}
