//! `extract`: columns of a table move into a new 1:1 table that references the source's
//! primary key (S4: a caterer's address columns into `addresses`).
//!
//! Start creates the new table, empty, with its foreign key, its unique reference column
//! and the CHECK constraints of the moved columns; two triggers keep both tables in step
//! while the migration is open (old-version writes to the source are copied into the new
//! table, new-version writes to the new table back into the source's columns); a backfill
//! copies the existing rows (`INSERT ... SELECT ... FOR SHARE ON CONFLICT DO NOTHING`, so a
//! row the triggers wrote first is kept); the indexes of the moved columns are built on the
//! new table concurrently. The new version sees the new table and no longer sees the
//! columns in the source.
//!
//! Complete first verifies, in one snapshot, that every source row has its row in the new
//! table with equal values (a mismatch stops complete before it changes anything, with a
//! report); then it drops the triggers and the moved columns in one short transaction.
//! Rollback drops the triggers and the new table.

use super::{action_sql, Invalid};
use super::{columns_named, constraint_copy, index_copy, not_internal};
use crate::model::{Extract, ReferentialAction};
use crate::plan::triggers::{self, BACKFILL_OFF};
use crate::plan::{
    internal_name, naming, sql_step, BackfillSpec, InsertSpec, OpSteps, OperationPlan, PlanContext,
    VColumn, VReference, VTable, VerifySpec, VirtualSchema,
};
use crate::quote::{ident, literal, qualified, Quoted};

/// A moved column: its name (the new table's column) and its physical source column.
struct Moved<'a> {
    name: &'a str,
    physical: &'a str,
    data_type: &'a str,
}

impl Extract {
    fn moved<'a>(&'a self, t: &'a VTable) -> Vec<Moved<'a>> {
        self.columns
            .iter()
            .filter_map(|name| {
                let c = t.column(name)?;
                Some(Moved {
                    name,
                    physical: &c.physical,
                    data_type: &c.data_type,
                })
            })
            .collect()
    }

    fn foreign_key_name(&self) -> String {
        naming::fit(&format!("{}_{}_fkey", self.into, self.reference_column))
    }

    /// The source's primary key column (physical) and its type.
    fn source_key(t: &VTable) -> Option<(&str, &str)> {
        let [pk] = t.primary_key.as_slice() else {
            return None;
        };
        let c = t.columns.iter().find(|c| &c.physical == pk)?;
        Some((&c.physical, &c.data_type))
    }
}

impl OperationPlan for Extract {
    fn validate(&self, vs: &VirtualSchema) -> Result<(), Invalid> {
        let t = vs.require_table(&self.table)?;
        not_internal(&self.into)?;
        not_internal(&self.reference_column)?;
        if let Some(id) = &self.id_column {
            not_internal(id)?;
            if id == &self.reference_column {
                return Err((
                    format!("`id_column` and `reference_column` are both {id:?}"),
                    Some(
                        "leave out id_column to make the reference column the primary key"
                            .to_owned(),
                    ),
                ));
            }
        }
        if vs.table(&self.into).is_some() {
            return Err((
                format!("table {:?} already exists", self.into),
                Some(
                    "extract creates the table it moves the columns into: name a new one"
                        .to_owned(),
                ),
            ));
        }
        if matches!(
            self.on_delete,
            Some(ReferentialAction::SetNull | ReferentialAction::SetDefault)
        ) {
            return Err((
                format!(
                    "on_delete SET NULL or SET DEFAULT would leave {}.{} without its row or point it at another",
                    self.into, self.reference_column
                ),
                Some("use CASCADE (the default), RESTRICT or NO ACTION".to_owned()),
            ));
        }
        if self.columns.is_empty() {
            return Err((
                "`columns` is empty".to_owned(),
                Some("name the columns that move".to_owned()),
            ));
        }
        let Some((key, _)) = Self::source_key(t) else {
            return Err((
                format!(
                    "table {:?} has no one-column primary key visible in this version",
                    self.table
                ),
                Some(
                    "the new table references the source's primary key: give the table one first"
                        .to_owned(),
                ),
            ));
        };
        for (i, name) in self.columns.iter().enumerate() {
            let c = vs.require_column(&self.table, name)?;
            if self.columns[..i].contains(name) {
                return Err((format!("column {name:?} is named twice in `columns`"), None));
            }
            if [Some(&self.reference_column), self.id_column.as_ref()].contains(&Some(name)) {
                return Err((
                    format!(
                        "the new table's {name:?} column would be both a moved column and its key"
                    ),
                    Some("give reference_column or id_column another name".to_owned()),
                ));
            }
            if c.physical == key || t.pinned.contains(&c.physical) {
                return Err((
                    format!("column {}.{name} is part of the primary key or referenced by a foreign key; it cannot move", self.table),
                    None,
                ));
            }
            if c.not_null {
                return Err((
                    format!("column {}.{name} is NOT NULL: once the new version no longer sees it, its inserts into {:?} would fail", self.table, self.table),
                    Some(format!("make it nullable first (alter_column with nullable: true), then extract it; {} can get NOT NULL afterwards", self.into)),
                ));
            }
        }
        Ok(())
    }

    fn apply(&self, vs: &mut VirtualSchema) {
        let Some(t) = vs.table(&self.table).cloned() else {
            return;
        };
        let Some((key, key_type)) = Self::source_key(&t) else {
            return;
        };
        let own_key = self
            .id_column
            .clone()
            .unwrap_or_else(|| self.reference_column.clone());
        let mut columns = Vec::new();
        if let Some(id) = &self.id_column {
            columns.push(plain_column(id, "bigint", true));
        }
        columns.push(plain_column(&self.reference_column, key_type, true));
        columns.extend(
            self.moved(&t)
                .iter()
                .map(|m| plain_column(m.name, m.data_type, false)),
        );
        let new_table = VTable {
            physical: self.into.clone(),
            columns,
            key: vec![own_key.clone()],
            constraints: Vec::new(),
            pinned: vec![own_key.clone()],
            primary_key: vec![own_key],
            identity: self.id_column.iter().cloned().collect(),
            referenced_by: Vec::new(),
            uncopyable: Some(format!("{} is made by this migration", self.into)),
            bytes: 0,
            partition_of: None,
            shared: false,
        };
        let reference = VReference {
            constraint: self.foreign_key_name(),
            table: self.into.clone(),
            columns: vec![self.reference_column.clone()],
            referenced: vec![key.to_owned()],
        };
        vs.tables.insert(self.into.clone(), new_table);
        if let Some(t) = vs.table_mut(&self.table) {
            t.columns.retain(|c| !self.columns.contains(&c.name));
            if !t.referenced_by.contains(&reference) {
                t.referenced_by.push(reference);
            }
        }
    }

    fn plan(&self, ctx: &PlanContext, vs: &VirtualSchema) -> super::Planned {
        let Some(t) = vs.table(&self.table) else {
            return Err(super::missing("table", &self.table));
        };
        let Some((key, key_type)) = Self::source_key(t) else {
            return Err((
                format!(
                    "{} has no primary key to link the extracted rows by",
                    self.table
                ),
                Some("add a primary key to the table first".to_owned()),
            ));
        };
        let moved = self.moved(t);
        let source = qualified(ctx.schema, &t.physical);
        let into = qualified(ctx.schema, &self.into);
        let catalog_table = ctx.catalog.table(&t.physical);
        let mut steps = OpSteps::default();

        // The new table, empty: its constraints cost nothing to check now.
        let mut definitions = Vec::new();
        if let Some(id) = &self.id_column {
            definitions.push(format!(
                "{} bigint GENERATED BY DEFAULT AS IDENTITY CONSTRAINT {} PRIMARY KEY",
                ident(id),
                ident(&naming::fit(&format!("{}_pkey", self.into)))
            ));
        }
        let reference_key = if self.id_column.is_some() {
            format!(
                "CONSTRAINT {} UNIQUE",
                ident(&naming::fit(&format!(
                    "{}_{}_key",
                    self.into, self.reference_column
                )))
            )
        } else {
            format!(
                "CONSTRAINT {} PRIMARY KEY",
                ident(&naming::fit(&format!("{}_pkey", self.into)))
            )
        };
        definitions.push(format!(
        "{} {key_type} NOT NULL {reference_key} CONSTRAINT {} REFERENCES {source} ({}) ON DELETE {} ON UPDATE CASCADE",
        ident(&self.reference_column),
        ident(&self.foreign_key_name()),
        ident(key),
        action_sql(self.on_delete.unwrap_or(ReferentialAction::Cascade)),
    ));
        for m in &moved {
            let mut d = format!("{} {}", ident(m.name), m.data_type);
            let column = catalog_table.and_then(|ct| ct.column(m.physical));
            if let Some(default) = column.and_then(|c| c.default.as_deref()) {
                d.push_str(&format!(" DEFAULT {default}"));
            }
            definitions.push(d);
        }
        let mut create = vec![format!(
            "CREATE TABLE {into} (\n  {}\n)",
            definitions.join(",\n  ")
        )];
        for m in &moved {
            if let Some(comment) = catalog_table
                .and_then(|ct| ct.column(m.physical))
                .and_then(|c| c.comment.as_deref())
            {
                create.push(format!(
                    "COMMENT ON COLUMN {into}.{} IS {}",
                    ident(m.name),
                    literal(comment)
                ));
            }
        }
        steps.start.push(sql_step(
            format!(
                "create table {} for the columns {} of {}",
                self.into,
                self.columns.join(", "),
                self.table
            ),
            create.join(";\n"),
        ));
        steps.start.push(crate::plan::PlannedStep {
            description: format!(
                "give {} the owner, privileges, row-level security and publications of {} and the moved columns' privileges",
                self.into, self.table
            ),
            action: crate::plan::Action::CarryAccess {
                schema: ctx.schema.to_owned(),
                from: t.physical.clone(),
                to: self.into.clone(),
                through: Some(crate::plan::Through {
                    reference: self.reference_column.clone(),
                    key: key.to_owned(),
                    columns: moved
                        .iter()
                        .map(|m| (m.physical.to_owned(), m.name.to_owned()))
                        .collect(),
                }),
            },
        });

        let mut renames = Vec::new();
        let mut dropped_with = Vec::new();
        if let Some(ct) = catalog_table {
            self.carry_over(ctx, ct, &moved, &mut steps, &mut renames, &mut dropped_with);
        }

        // Old-version writes to the source: copied into the new table.
        let to_new = internal_name("trg", &[&t.physical, &self.into]);
        let old_values: Vec<String> = moved
            .iter()
            .map(|m| format!("OLD.{}", ident(m.physical)))
            .collect();
        let new_values: Vec<String> = moved
            .iter()
            .map(|m| format!("NEW.{}", ident(m.physical)))
            .collect();
        let targets: Vec<Quoted> = moved.iter().map(|m| ident(m.name)).collect();
        let body = format!(
        "BEGIN\n  IF (current_schemas(false))[1] IS DISTINCT FROM {version} THEN\n    IF TG_OP = 'UPDATE' AND OLD.{key} IS NOT DISTINCT FROM NEW.{key}\n       AND ROW({old})::text IS NOT DISTINCT FROM ROW({new})::text THEN\n      RETURN NULL;\n    END IF;\n    INSERT INTO {into} ({reference}, {targets}) VALUES (NEW.{key}, {new})\n      ON CONFLICT ({reference}) DO UPDATE SET {sets};\n  END IF;\n  RETURN NULL;\nEND\n",
        version = literal(&ctx.version_schema),
        key = ident(key),
        old = old_values.join(", "),
        new = new_values.join(", "),
        reference = ident(&self.reference_column),
        targets = targets.join(", "),
        sets = targets
            .iter()
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
        steps.start.extend(trigger_steps(
            ctx.schema,
            &t.physical,
            &to_new,
            "INSERT OR UPDATE",
            &body,
        ));

        // New-version writes to the new table: copied back into the source's columns.
        let to_old = internal_name("trg", &[&self.into, &t.physical]);
        let set_from = |row: &str| {
            moved
                .iter()
                .map(|m| format!("{} = {row}.{}", ident(m.physical), ident(m.name)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let set_null = moved
            .iter()
            .map(|m| format!("{} = NULL", ident(m.physical)))
            .collect::<Vec<_>>()
            .join(", ");
        let reference = ident(&self.reference_column);
        let body = format!(
        "BEGIN\n  IF (current_schemas(false))[1] IS NOT DISTINCT FROM {version} THEN\n    IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND OLD.{reference} IS DISTINCT FROM NEW.{reference}) THEN\n      UPDATE {source} SET {set_null} WHERE {key} = OLD.{reference};\n    END IF;\n    IF TG_OP <> 'DELETE' THEN\n      UPDATE {source} SET {set_new} WHERE {key} = NEW.{reference};\n    END IF;\n  END IF;\n  RETURN NULL;\nEND\n",
        version = literal(&ctx.version_schema),
        key = ident(key),
        set_new = set_from("NEW"),
    );
        steps.start.extend(trigger_steps(
            ctx.schema,
            &self.into,
            &to_old,
            "INSERT OR UPDATE OR DELETE",
            &body,
        ));

        let mut columns = vec![(self.reference_column.clone(), ident(key).into())];
        columns.extend(
            moved
                .iter()
                .map(|m| (m.name.to_owned(), ident(m.physical).into())),
        );
        steps.backfills.push(BackfillSpec {
            partition_of: None,
            schema: ctx.schema.to_owned(),
            table: t.physical.clone(),
            set: Vec::new(),
            condition: None,
            insert: Some(InsertSpec {
                table: self.into.clone(),
                columns,
                conflict: vec![self.reference_column.clone()],
            }),
        });

        steps.verify.push(VerifySpec {
            description: format!(
                "every row of {} has its row in {} with equal {}",
                self.table,
                self.into,
                self.columns.join(", ")
            ),
            schema: ctx.schema.to_owned(),
            table: t.physical.clone(),
            key: key.to_owned(),
            other: self.into.clone(),
            other_key: self.reference_column.clone(),
            columns: moved
                .iter()
                .map(|m| (m.physical.to_owned(), m.name.to_owned()))
                .collect(),
        });

        // Complete: the triggers and the moved columns go together, then the carried-over
        // indexes take their names back.
        let mut contract = triggers::drop_sql(ctx.schema, &t.physical, &to_new);
        contract.extend(triggers::drop_sql(ctx.schema, &self.into, &to_old));
        contract.push(format!(
            "ALTER TABLE {source} {}",
            moved
                .iter()
                .map(|m| format!("DROP COLUMN IF EXISTS {}", ident(m.physical)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        contract.extend(renames);
        let mut what = format!(
            "drop {} from {} and the triggers that kept {} in step",
            self.columns.join(", "),
            self.table,
            self.into
        );
        if !dropped_with.is_empty() {
            what.push_str(&format!(
                " (with them: {}, which also name columns that stay)",
                dropped_with.join(", ")
            ));
        }
        steps.complete.push(sql_step(what, contract.join(";\n")));

        // Rollback: the table and both triggers in one transaction.
        let mut undo = vec![format!("DROP TABLE IF EXISTS {into}")];
        undo.extend(triggers::drop_sql(ctx.schema, &self.into, &to_old).pop());
        steps.rollback.push(triggers::drop_with(
            ctx.schema,
            &t.physical,
            &to_new,
            format!(
                "drop table {} and the triggers that kept it in step with {}",
                self.into, self.table
            ),
            undo,
        ));
        Ok(steps)
    }
}

impl Extract {
    /// The CHECK and foreign key constraints and the indexes that name only moved columns
    /// are recreated on the new table (constraints NOT VALID at start, validated by
    /// complete; indexes built concurrently after the backfill, renamed at complete).
    /// Those that also name columns that stay go with the columns at complete; their names
    /// are collected in `dropped_with` for the plan to say so.
    fn carry_over(
        &self,
        ctx: &PlanContext,
        ct: &crate::catalog::Table,
        moved: &[Moved],
        steps: &mut OpSteps,
        renames: &mut Vec<String>,
        dropped_with: &mut Vec<String>,
    ) {
        let into = qualified(ctx.schema, &self.into);
        let to_new: Vec<(String, String)> = moved
            .iter()
            .map(|m| (m.physical.to_owned(), m.name.to_owned()))
            .collect();
        let is_moved = |c: &String| to_new.iter().any(|(p, _)| p == c);
        for k in ct.constraints.values() {
            if !k.columns.iter().any(is_moved) || !matches!(k.kind.as_str(), "c" | "f" | "u" | "x")
            {
                continue;
            }
            if !k.columns.iter().all(is_moved) || k.kind == "x" {
                dropped_with.push(format!("constraint {}", k.name));
                continue;
            }
            if k.kind == "u" {
                // Through its index, below.
                continue;
            }
            let Some(sql) = steps.carry(constraint_copy(&into, &k.name, k, &to_new, &[])) else {
                continue;
            };
            steps.start.push(sql_step(
                format!(
                    "constraint {} recreated on {}, not validated yet",
                    k.name, self.into
                ),
                sql,
            ));
            steps.complete.insert(
                0,
                sql_step(
                    format!("validate constraint {} on {}", k.name, self.into),
                    format!("ALTER TABLE {into} VALIDATE CONSTRAINT {}", ident(&k.name)),
                ),
            );
        }
        for ix in &ct.indexes {
            let named = columns_named(&ix.definition);
            let kind = ix
                .constraint
                .as_ref()
                .and_then(|c| ct.constraints.get(c))
                .map(|c| c.kind.as_str());
            if !named.iter().any(is_moved) || matches!(kind, Some("p" | "x")) {
                continue;
            }
            if !named.iter().all(is_moved) {
                // (A constraint's index is named with its constraint, above.)
                if ix.constraint.is_none() {
                    dropped_with.push(format!("index {}", ix.name));
                }
                continue;
            }
            let Some((build, name_back)) = steps.carry(index_copy(
                ctx,
                ix,
                kind,
                &self.into,
                true,
                &to_new,
                format!("index {} recreated on {}, concurrently", ix.name, self.into),
            )) else {
                continue;
            };
            steps.after_backfill.extend(build);
            renames.extend(name_back);
        }
    }
}

fn plain_column(name: &str, data_type: &str, not_null: bool) -> VColumn {
    VColumn {
        name: name.to_owned(),
        physical: name.to_owned(),
        complete_name: name.to_owned(),
        data_type: data_type.to_owned(),
        not_null,
    }
}

/// CREATE FUNCTION and an AFTER ... FOR EACH ROW trigger that runs it, except in a
/// backfill's session.
fn trigger_steps(
    schema: &str,
    table: &str,
    name: &str,
    events: &str,
    body: &str,
) -> Vec<crate::plan::PlannedStep> {
    vec![
        sql_step(
            format!("create the copying function for {table}"),
            triggers::function_sql(name, body),
        ),
        sql_step(
            format!("create the copying trigger on {table}"),
            triggers::row_trigger_sql(
                name,
                &qualified(schema, table),
                &format!("AFTER {events}"),
                Some(BACKFILL_OFF),
            ),
        ),
    ]
}
