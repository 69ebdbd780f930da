//! Constraints added to one existing column without copying it: the steps `add_column` and
//! `alter_column` share. NOT NULL is a CHECK NOT VALID until complete validates it and sets
//! NOT NULL without a scan; CHECK and FOREIGN KEY are NOT VALID until complete validates
//! them (reads and writes go on meanwhile); UNIQUE is an index built CONCURRENTLY after the
//! backfill and attached at complete.

use super::references_sql;
use crate::model::{CheckConstraint, ForeignKeyReference};
use crate::plan::partitions;
use crate::plan::triggers::NotNullGuard;
use crate::plan::{
    concurrent_step, drop_index_step, internal_name, sql_step, OpSteps, PlanContext, VirtualSchema,
};
use crate::quote::{ident, qualified};
use crate::sql::ConcurrentIndex;

pub(super) struct InPlace<'a> {
    pub ctx: &'a PlanContext<'a>,
    pub vs: &'a VirtualSchema,
    /// The table's name in the migration, for descriptions.
    pub table_name: &'a str,
    pub physical_table: &'a str,
    pub column: &'a str,
}

impl InPlace<'_> {
    fn table(&self) -> String {
        qualified(self.ctx.schema, self.physical_table).into()
    }

    pub fn not_null(&self, steps: &mut OpSteps) {
        let table = self.table();
        let col = ident(self.column);
        let check = internal_name("nn", &[self.physical_table, self.column]);
        let what = format!("{}.{}", self.table_name, self.column);
        steps.start.push(sql_step(
            format!("NOT NULL of {what} as a CHECK, not validated yet"),
            format!(
                "ALTER TABLE {table} ADD CONSTRAINT {} CHECK ({col} IS NOT NULL) NOT VALID",
                ident(&check)
            ),
        ));
        steps.complete.push(sql_step(
            format!("validate NOT NULL of {what}"),
            format!("ALTER TABLE {table} VALIDATE CONSTRAINT {}", ident(&check)),
        ));
        let guard = NotNullGuard {
            schema: self.ctx.schema,
            table: self.physical_table,
            column: self.column,
            shown: self.column,
        };
        steps.start.push(guard.create());
        let mut set = vec![
            format!("ALTER TABLE {table} ALTER COLUMN {col} SET NOT NULL"),
            format!("ALTER TABLE {table} DROP CONSTRAINT {}", ident(&check)),
        ];
        set.extend(guard.drop_sql());
        steps.complete.push(sql_step(
            format!("set NOT NULL on {what} (uses the validated CHECK, no scan)"),
            set.join(";\n"),
        ));
        let mut undo = guard.drop_sql();
        undo.push(format!(
            "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {}",
            ident(&check)
        ));
        steps.rollback.push(sql_step(
            format!("drop the NOT NULL CHECK of {what}"),
            undo.join(";\n"),
        ));
    }

    pub fn check(&self, c: &CheckConstraint, steps: &mut OpSteps) {
        let table = self.table();
        steps.start.push(sql_step(
            format!("check {} on {}, not validated yet", c.name, self.table_name),
            format!(
                "ALTER TABLE {table} ADD CONSTRAINT {} CHECK ({}){} NOT VALID",
                ident(&c.name),
                c.constraint,
                if c.no_inherit { " NO INHERIT" } else { "" }
            ),
        ));
        self.validate_and_undo(&c.name, "check", steps);
    }

    pub fn foreign_key(&self, r: &ForeignKeyReference, steps: &mut OpSteps) {
        let table = self.table();
        let target = self
            .vs
            .table(&r.table)
            .map(|t| t.physical.as_str())
            .unwrap_or(&r.table);
        if partitions::foreign_key_by_partition(self.ctx, self.physical_table) {
            let body = format!(
                "FOREIGN KEY ({}){}",
                ident(self.column),
                references_sql(self.ctx.schema, target, r)
            );
            let (start, complete, rollback) = partitions::NotValidConstraint {
                table: self.physical_table,
                name: &r.name,
                body: &body,
                foreign_key: true,
            }
            .steps(self.ctx);
            steps.start.extend(start);
            steps.complete.extend(complete);
            steps.rollback.extend(rollback);
            return;
        }
        steps.start.push(sql_step(
            format!(
                "foreign key {} on {}, not validated yet",
                r.name, self.table_name
            ),
            format!(
                "ALTER TABLE {table} ADD CONSTRAINT {} FOREIGN KEY ({}){} NOT VALID",
                ident(&r.name),
                ident(self.column),
                references_sql(self.ctx.schema, target, r)
            ),
        ));
        self.validate_and_undo(&r.name, "foreign key", steps);
    }

    fn validate_and_undo(&self, name: &str, kind: &str, steps: &mut OpSteps) {
        let table = self.table();
        steps.complete.push(sql_step(
            format!("validate {kind} {name}"),
            format!("ALTER TABLE {table} VALIDATE CONSTRAINT {}", ident(name)),
        ));
        steps.rollback.push(sql_step(
            format!("drop {kind} {name}"),
            format!(
                "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {}",
                ident(name)
            ),
        ));
    }

    /// A unique index built concurrently (after any backfill), attached at complete as the
    /// constraint `constraint`; on a partitioned table, partition by partition (refused
    /// unless the column is the partition key).
    pub fn unique(&self, constraint: &str, steps: &mut OpSteps) -> Result<(), super::Invalid> {
        let table = self.table();
        let index = internal_name("uq", &[constraint]);
        if partitions::is_partitioned(self.ctx, self.physical_table) {
            partitions::unique_needs_partition_key(self.ctx, self.physical_table, &[self.column])?;
            let columns = format!("({})", ident(self.column));
            let (start, complete, rollback) = partitions::UniqueConstraint {
                table: self.physical_table,
                name: constraint,
                kind: "UNIQUE",
                index: &index,
                columns: &columns,
            }
            .steps(self.ctx);
            steps.after_backfill.extend(start);
            steps.complete.extend(complete);
            steps.rollback.extend(rollback);
            return Ok(());
        }
        steps.after_backfill.push(concurrent_step(
            format!("unique index for {constraint}, built concurrently"),
            format!(
                "CREATE UNIQUE INDEX CONCURRENTLY {} ON {table} ({})",
                ident(&index),
                ident(self.column)
            ),
            Some(ConcurrentIndex::Create {
                schema: Some(self.ctx.schema.to_owned()),
                table: self.physical_table.to_owned(),
                name: Some(index.clone()),
            }),
        ));
        steps.complete.push(sql_step(
            format!("unique constraint {constraint} from its index"),
            format!(
                "ALTER TABLE {table} ADD CONSTRAINT {} UNIQUE USING INDEX {}",
                ident(constraint),
                ident(&index)
            ),
        ));
        steps.rollback.push(drop_index_step(
            format!("drop the unique index for {constraint}"),
            self.ctx.schema,
            &index,
        ));
        Ok(())
    }
}
