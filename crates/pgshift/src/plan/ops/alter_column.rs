//! `alter_column`: the cheapest safe path that keeps both versions working.
//!
//! - `name` alone: a rename at complete.
//! - `comment` / `default` alone: one short statement at start; rollback restores them.
//! - constraints (NOT NULL, check, unique, foreign key) whose `up`/`down` leave the data as
//!   it is, and type changes that are binary-coercible (varchar widening, varchar to text):
//!   on the column itself, NOT VALID or built concurrently at start, validated or applied at
//!   complete. No copy, no backfill.
//! - anything that transforms data (a real type change, an `up` that rewrites values,
//!   dropping NOT NULL): the column is duplicated (see `duplicate.rs`).

use super::duplicate::{
    is_identity, require_not_pinned, DupColumn, Duplication, ForeignKeyTarget, NewConstraint,
};
use super::in_place::InPlace;
use super::rename_column::rename_column_steps;
use super::{not_internal, Invalid};
use crate::model::{AlterColumn, AlterMethod};
use crate::plan::{
    sql_step, Action, MethodChoice, OpSteps, OperationPlan, PlanContext, PlannedStep, SwapColumn,
    SwapPart, SwapSpec, VirtualSchema,
};
use crate::quote::{ident, literal, qualified};

enum Strategy {
    Rename,
    InPlace,
    Duplicate,
    /// `method: copy`: the whole table is copied (see `copy_table.rs`).
    Copy,
}

impl AlterColumn {
    fn changes_shape(&self) -> bool {
        self.data_type.is_some()
            || self.nullable.is_some()
            || self.unique.is_some()
            || self.check.is_some()
            || self.references.is_some()
            || self.default.is_some()
            || self.comment.is_some()
    }

    fn copy(&self) -> super::copy_table::CopyTable<'_> {
        super::copy_table::CopyTable {
            table: &self.table,
            change: super::copy_table::Change::Alter(self),
        }
    }

    /// How the change is made: `method` when given; otherwise a copy of the table whenever
    /// the change rewrites every row and the table can be copied, else what the change
    /// needs in the table.
    fn strategy(&self, vs: &VirtualSchema) -> Strategy {
        match self.method {
            Some(AlterMethod::Copy) => Strategy::Copy,
            Some(AlterMethod::InPlace) => self.in_table(vs),
            None => match self.in_table(vs) {
                Strategy::Duplicate if self.copy_refusal(vs).is_none() => Strategy::Copy,
                s => s,
            },
        }
    }

    /// Why a copy of the table cannot make this change, None when it can.
    fn copy_refusal(&self, vs: &VirtualSchema) -> Option<String> {
        self.copy().validate(vs).err().map(|(why, _)| why)
    }

    /// What `plan` says of the method, for a change that rewrites or fills every row or
    /// that could have but does not.
    fn method_choice(&self, vs: &VirtualSchema) -> Option<MethodChoice> {
        let what = format!("alter_column {}.{}", self.table, self.column);
        let choice = |method: &str, why: String| MethodChoice {
            operation: 0,
            what: what.clone(),
            method: method.to_owned(),
            why,
        };
        match self.strategy(vs) {
            Strategy::Copy => Some(choice(
                "copy",
                if self.method == Some(AlterMethod::Copy) {
                    "asked for (`method: copy`)".to_owned()
                } else {
                    super::copy_table::why_copy(vs, &[&self.table], "the type change rewrites every row")
                },
            )),
            Strategy::Duplicate => Some(choice(
                "in_place",
                format!(
                    "a copy of the column in the table, filled by a backfill, swapped in at complete: {}",
                    if self.method == Some(AlterMethod::InPlace) {
                        "asked for (`method: in_place`)".to_owned()
                    } else {
                        format!(
                            "not a copy of the table, because {}",
                            self.copy_refusal(vs).unwrap_or_default()
                        )
                    }
                ),
            )),
            Strategy::InPlace
                if self.data_type.as_deref().is_some_and(|new| {
                    vs.table(&self.table)
                        .and_then(|t| t.column(&self.column))
                        .is_some_and(|c| !same_type(&c.data_type, new))
                }) =>
            {
                Some(choice(
                    "metadata",
                    "the new type is binary-coercible from the old: no row is rewritten".to_owned(),
                ))
            }
            _ => None,
        }
    }

    /// The strategy in the table itself.
    fn in_table(&self, vs: &VirtualSchema) -> Strategy {
        if self.rename_to.is_some() {
            return Strategy::Rename;
        }
        let Some(col) = vs.table(&self.table).and_then(|t| t.column(&self.column)) else {
            return Strategy::InPlace;
        };
        let type_in_place = self
            .data_type
            .as_deref()
            .is_none_or(|new| binary_coercible(&col.data_type, new));
        let keeps_data = is_identity(self.up.as_deref(), &self.column)
            && is_identity(self.down.as_deref(), &self.column);
        let loosens_not_null = self.nullable == Some(true) && col.not_null;
        if type_in_place && keeps_data && !loosens_not_null {
            Strategy::InPlace
        } else {
            Strategy::Duplicate
        }
    }

    fn duplication<'a>(&'a self, vs: &VirtualSchema, ctx: Option<&PlanContext>) -> Duplication<'a> {
        let col = vs.table(&self.table).and_then(|t| t.column(&self.column));
        let catalog_col = ctx.and_then(|ctx| {
            let t = vs.table(&self.table)?;
            ctx.catalog
                .table(&t.physical)?
                .column(&col?.physical)
                .cloned()
        });
        let mut constraints = Vec::new();
        if let Some(c) = &self.check {
            constraints.push(NewConstraint::Check {
                name: c.name.clone(),
                expr: c.constraint.to_string(),
            });
        }
        if let Some(u) = &self.unique {
            constraints.push(NewConstraint::Unique {
                name: u.name.clone(),
                columns: vec![self.column.clone()],
            });
        }
        if let Some(r) = &self.references {
            constraints.push(NewConstraint::ForeignKey {
                name: r.name.clone(),
                columns: vec![self.column.clone()],
                reference: ForeignKeyTarget::from_column_reference(r),
            });
        }
        Duplication {
            table: &self.table,
            columns: vec![DupColumn {
                name: self.column.clone(),
                new_type: self
                    .data_type
                    .as_deref()
                    .map(str::to_owned)
                    .or_else(|| col.map(|c| c.data_type.clone()))
                    .unwrap_or_default(),
                up: self
                    .up
                    .as_deref()
                    .map_or_else(|| ident(&self.column).into(), str::to_owned),
                down: self
                    .down
                    .as_deref()
                    .map_or_else(|| ident(&self.column).into(), str::to_owned),
                not_null: self
                    .nullable
                    .map(|n| !n)
                    .or(col.map(|c| c.not_null))
                    .unwrap_or(false),
                default: match &self.default {
                    Some(d) => d.clone().map(String::from),
                    None => catalog_col.as_ref().and_then(|c| c.default.clone()),
                },
                // Without a new comment, the swap carries the column's own.
                comment: self.comment.clone(),
            }],
            constraints,
            swap_primary_key: false,
            referenced: Vec::new(),
        }
    }

    fn plan_in_place(&self, ctx: &PlanContext, vs: &VirtualSchema) -> super::Planned {
        let Some(t) = vs.table(&self.table) else {
            return Err(super::missing("table", &self.table));
        };
        let Some(col) = t.column(&self.column) else {
            return Err(super::missing("column", &self.column));
        };
        let table = qualified(ctx.schema, &t.physical);
        let column = ident(&col.physical);
        let before = ctx
            .catalog
            .table(&t.physical)
            .and_then(|ct| ct.column(&col.physical));
        let mut steps = OpSteps::default();
        if let Some(comment) = &self.comment {
            steps.start.push(sql_step(
                format!("comment on column {}.{}", self.table, self.column),
                format!(
                    "COMMENT ON COLUMN {table}.{column} IS {}",
                    comment
                        .as_deref()
                        .map(literal)
                        .unwrap_or_else(|| "NULL".to_owned())
                ),
            ));
            let old = before.and_then(|c| c.comment.as_deref());
            steps.rollback.push(sql_step(
                format!("restore the comment of {}.{}", self.table, self.column),
                format!(
                    "COMMENT ON COLUMN {table}.{column} IS {}",
                    old.map(literal).unwrap_or_else(|| "NULL".to_owned())
                ),
            ));
        }
        if let Some(default) = &self.default {
            steps.start.push(sql_step(
                format!("default of {}.{}", self.table, self.column),
                match default {
                    Some(d) => {
                        format!("ALTER TABLE {table} ALTER COLUMN {column} SET DEFAULT {d}")
                    }
                    None => format!("ALTER TABLE {table} ALTER COLUMN {column} DROP DEFAULT"),
                },
            ));
            steps.rollback.push(sql_step(
                format!("restore the default of {}.{}", self.table, self.column),
                match before.and_then(|c| c.default.as_deref()) {
                    Some(d) => {
                        format!("ALTER TABLE {table} ALTER COLUMN {column} SET DEFAULT {d}")
                    }
                    None => format!("ALTER TABLE {table} ALTER COLUMN {column} DROP DEFAULT"),
                },
            ));
        }
        let in_place = InPlace {
            ctx,
            vs,
            table_name: &self.table,
            physical_table: &t.physical,
            column: &col.physical,
        };
        if self.nullable == Some(false) && !col.not_null {
            in_place.not_null(&mut steps);
        }
        if let Some(c) = &self.check {
            in_place.check(c, &mut steps);
        }
        if let Some(r) = &self.references {
            in_place.foreign_key(r, &mut steps);
        }
        if let Some(u) = &self.unique {
            in_place.unique(&u.name, &mut steps)?;
        }
        if let Some(new_type) = &self.data_type {
            if !same_type(&col.data_type, new_type) {
                // The server refuses a type change on a column a view reads, rewrite or
                // not: the views over it are made again around it, in one transaction.
                steps.complete.push(PlannedStep {
                    description: format!(
                        "type of {}.{} to {new_type} (binary-coercible: no rewrite), the views over it made again",
                        self.table, self.column
                    ),
                    action: Action::Swap(SwapSpec {
                scans_nothing: false,
                        schema: ctx.schema.to_owned(),
                        parts: vec![SwapPart {
                            table: t.physical.clone(),
                            copy: None,
                            columns: vec![SwapColumn {
                                old: col.physical.clone(),
                                name: col.physical.clone(),
                            }],
                        }],
                        statements: vec![format!(
                            "ALTER TABLE {table} ALTER COLUMN {column} TYPE {new_type}"
                        )],
                        after: Vec::new(),
                    }),
                });
            }
        }
        Ok(steps)
    }
}

impl OperationPlan for AlterColumn {
    fn validate(&self, vs: &VirtualSchema) -> Result<(), Invalid> {
        vs.require_not_partition(&self.table)?;
        vs.require_column(&self.table, &self.column)?;
        if matches!(self.strategy(vs), Strategy::Copy) {
            return self.copy().validate(vs);
        }
        if let Some(to) = &self.rename_to {
            if self.changes_shape() {
                return Err((
                    "alter_column renames (`name`) or changes the column, not both".to_owned(),
                    Some("split it into two operations".to_owned()),
                ));
            }
            not_internal(to)?;
            if vs.require_table(&self.table)?.column(to).is_some() {
                return Err((
                    format!("column {to:?} already exists in {:?}", self.table),
                    None,
                ));
            }
        }
        if let Some(r) = &self.references {
            if r.table != self.table {
                vs.require_column(&r.table, &r.column)?;
            }
        }
        if matches!(self.strategy(vs), Strategy::Duplicate) {
            require_not_pinned(vs, &self.table, &[&self.column])?;
        }
        Ok(())
    }

    fn apply(&self, vs: &mut VirtualSchema) {
        match self.strategy(vs) {
            Strategy::Rename => {
                if let (Some(to), Some(c)) = (
                    &self.rename_to,
                    vs.table_mut(&self.table)
                        .and_then(|t| t.column_mut(&self.column)),
                ) {
                    c.name = to.clone();
                    c.complete_name = to.clone();
                }
            }
            Strategy::InPlace => {
                if let Some(c) = vs
                    .table_mut(&self.table)
                    .and_then(|t| t.column_mut(&self.column))
                {
                    if let Some(ty) = &self.data_type {
                        c.data_type = ty.to_string();
                    }
                    if let Some(n) = self.nullable {
                        c.not_null = !n;
                    }
                }
            }
            Strategy::Duplicate => {
                let snapshot = vs.clone();
                self.duplication(&snapshot, None).apply(vs)
            }
            Strategy::Copy => self.copy().apply(vs),
        }
    }

    fn plan(&self, ctx: &PlanContext, vs: &VirtualSchema) -> super::Planned {
        let mut steps = self.plan_by_strategy(ctx, vs)?;
        steps.method = self.method_choice(vs);
        Ok(steps)
    }
}

impl AlterColumn {
    fn plan_by_strategy(&self, ctx: &PlanContext, vs: &VirtualSchema) -> super::Planned {
        match self.strategy(vs) {
            Strategy::Rename => rename_column_steps(
                ctx,
                vs,
                &self.table,
                &self.column,
                self.rename_to.as_deref().unwrap_or(&self.column),
            ),
            Strategy::InPlace => self.plan_in_place(ctx, vs),
            Strategy::Duplicate => self.duplication(vs, Some(ctx)).plan(ctx, vs),
            Strategy::Copy => self.copy().plan(ctx, vs),
        }
    }
}

/// Normalises a type name as written in a file towards `format_type`'s spelling.
fn normalise(ty: &str) -> String {
    let t = ty.trim().to_ascii_lowercase();
    let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
    for (short, long) in [
        ("varchar", "character varying"),
        ("int4", "integer"),
        ("int8", "bigint"),
        ("int2", "smallint"),
        ("int", "integer"),
        ("decimal", "numeric"),
        ("bool", "boolean"),
        ("varbit", "bit varying"),
        ("timestamptz", "timestamp with time zone"),
    ] {
        if t == short || t.starts_with(&format!("{short}(")) {
            return format!("{long}{}", &t[short.len()..]);
        }
    }
    t
}

fn same_type(old: &str, new: &str) -> bool {
    normalise(old) == normalise(new)
}

/// (base, modifiers) of a type: `character varying(50)` → ("character varying", [50]).
fn split_type(ty: &str) -> (String, Vec<u32>) {
    let t = normalise(ty);
    match t.split_once('(') {
        Some((base, rest)) => (
            base.trim().to_owned(),
            rest.trim_end_matches(')')
                .split(',')
                .filter_map(|n| n.trim().parse().ok())
                .collect(),
        ),
        None => (t, Vec::new()),
    }
}

/// Whether PostgreSQL changes `old` to `new` without rewriting the table or checking rows.
fn binary_coercible(old: &str, new: &str) -> bool {
    if same_type(old, new) {
        return true;
    }
    let (ob, om) = split_type(old);
    let (nb, nm) = split_type(new);
    match (ob.as_str(), nb.as_str()) {
        ("character varying", "character varying") | ("bit varying", "bit varying") => {
            nm.is_empty() || (om.len() == 1 && nm.len() == 1 && nm[0] >= om[0])
        }
        ("character varying", "text") | ("text", "character varying") => nm.is_empty(),
        ("numeric", "numeric") => {
            nm.is_empty() || (om.len() == 2 && nm.len() == 2 && nm[1] == om[1] && nm[0] >= om[0])
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_coercible_changes_are_recognised() {
        assert!(binary_coercible("character varying(50)", "varchar(100)"));
        assert!(binary_coercible("character varying(50)", "text"));
        assert!(binary_coercible("character varying(50)", "VARCHAR"));
        assert!(binary_coercible("text", "varchar"));
        assert!(binary_coercible("numeric(10,2)", "numeric(12,2)"));
        assert!(!binary_coercible("character varying(100)", "varchar(50)"));
        assert!(!binary_coercible("text", "varchar(10)"));
        assert!(!binary_coercible("integer", "bigint"));
        assert!(!binary_coercible("numeric(10,2)", "numeric(12,3)"));
        assert!(!binary_coercible("text", "integer"));
    }
}
