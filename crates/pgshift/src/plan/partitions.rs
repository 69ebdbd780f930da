//! Indexes on partitioned tables. PostgreSQL builds no index CONCURRENTLY on a partitioned
//! table, and a plain CREATE INDEX there holds SHARE on every partition for the whole
//! build. So the index is made on the partitioned table alone (`ON ONLY`: no build, INVALID
//! until every partition has its index attached), then each partition's index is built
//! CONCURRENTLY and attached, the partitioned table's index turning valid with the last.
//! A sub-partitioned partition gets an `ON ONLY` index of its own, its partitions' indexes
//! attached to it, and it to the one above.

use super::ops::Invalid;
use super::{concurrent_step, drop_index_step, naming::fit, sql_step, PlanContext, PlannedStep};
use crate::quote::{ident, qualified};
use crate::sql::ConcurrentIndex;

/// An index to build on a table, from `definition`: a CREATE INDEX statement on the
/// table (a `pg_get_indexdef`, or one pgshift writes), whose name and table are replaced,
/// and its columns renamed by `renames`.
pub struct IndexBuild<'a> {
    pub table: &'a str,
    pub name: &'a str,
    pub definition: &'a str,
    pub renames: &'a [(String, String)],
}

/// The name pgshift gives a partition's part of index `index`.
pub fn partition_index_name(partition: &str, index: &str) -> String {
    fit(&format!("{partition}_{index}"))
}

/// What a build's planner returns: its steps, and those that undo them at rollback.
pub type BuildSteps = (Vec<PlannedStep>, Vec<PlannedStep>);

impl IndexBuild<'_> {
    fn create(
        &self,
        concurrently: bool,
        only: bool,
        table: &str,
        name: &str,
    ) -> Result<String, Invalid> {
        super::ops::rewrite_index_for(
            self.definition,
            name,
            Some(table),
            self.renames,
            concurrently,
            Some(only),
        )
    }

    /// The index's name on `table`, the build's table or one of its partitions.
    pub fn name_on(&self, table: &str) -> String {
        if table == self.table {
            self.name.to_owned()
        } else {
            partition_index_name(table, self.name)
        }
    }

    /// The steps that build the index (`what` describes the build on a table that is not
    /// partitioned), and those that drop it again at rollback.
    pub fn steps(&self, ctx: &PlanContext, what: &str) -> Result<BuildSteps, Invalid> {
        let schema = ctx.schema;
        if !is_partitioned(ctx, self.table) {
            return Ok((
                vec![concurrent_step(
                    what.to_owned(),
                    self.create(true, false, self.table, self.name)?,
                    Some(ConcurrentIndex::Create {
                        schema: Some(schema.to_owned()),
                        table: self.table.to_owned(),
                        name: Some(self.name.to_owned()),
                    }),
                )],
                vec![drop_index_step(
                    format!("drop index {}", self.name),
                    schema,
                    self.name,
                )],
            ));
        }
        let mut start = vec![sql_step(
            format!(
                "index {} on {} alone (no build; valid once every partition's index is attached)",
                self.name, self.table
            ),
            self.create(false, true, self.table, self.name)?,
        )];
        let mut rollback = vec![sql_step(
            format!(
                "drop index {} with the partitions' indexes attached to it",
                self.name
            ),
            format!("DROP INDEX IF EXISTS {}", qualified(schema, self.name)),
        )];
        // Sub-partitioned partitions' indexes are attached once their own partitions' are,
        // deepest first.
        let mut attach_later = Vec::new();
        for (partition, parent, sub) in ctx.catalog.partition_tree(self.table) {
            let own = self.name_on(&partition);
            let attach = sql_step(
                format!(
                    "attach index {own} of {partition} to {}",
                    self.name_on(&parent)
                ),
                format!(
                    "ALTER INDEX {} ATTACH PARTITION {}",
                    qualified(schema, &self.name_on(&parent)),
                    qualified(schema, &own)
                ),
            );
            if sub {
                start.push(sql_step(
                    format!("index {own} on {partition} alone (it is partitioned too)"),
                    self.create(false, true, &partition, &own)?,
                ));
                attach_later.push(attach);
                rollback.push(sql_step(
                    format!("drop index {own} if it was not attached"),
                    format!("DROP INDEX IF EXISTS {}", qualified(schema, &own)),
                ));
            } else {
                start.push(concurrent_step(
                    format!("index {own} on partition {partition}, built concurrently"),
                    self.create(true, false, &partition, &own)?,
                    Some(ConcurrentIndex::Create {
                        schema: Some(schema.to_owned()),
                        table: partition.clone(),
                        name: Some(own.clone()),
                    }),
                ));
                start.push(attach);
                rollback.push(drop_index_step(
                    format!("drop index {own} if it was not attached"),
                    schema,
                    &own,
                ));
            }
        }
        start.extend(attach_later.into_iter().rev());
        Ok((start, rollback))
    }
}

/// A transactional step whose statement adds to a partitioned table a constraint its
/// partitions already have (validated, or on a built index): taken over, no scan or build.
pub fn take_over_step(description: String, sql: String) -> PlannedStep {
    let mut step = sql_step(description, sql);
    if let super::Action::Sql { statement, .. } = &mut step.action {
        statement.takes_over = true;
    }
    step
}

/// Why a unique index on `columns` cannot be made on `table`: a partitioned table's unique
/// index must hold its partition key's columns (at every level of partitions).
pub fn unique_needs_partition_key(
    ctx: &PlanContext,
    table: &str,
    columns: &[&str],
) -> Result<(), Invalid> {
    let mut levels = vec![table.to_owned()];
    levels.extend(
        ctx.catalog
            .partition_tree(table)
            .into_iter()
            .filter(|(_, _, sub)| *sub)
            .map(|(p, _, _)| p),
    );
    for level in levels {
        let Some(t) = ctx.catalog.table(&level) else {
            continue;
        };
        if !t.partitioned {
            continue;
        }
        let missing: Vec<&str> = t
            .partition_key
            .iter()
            .map(String::as_str)
            .filter(|k| !columns.contains(k))
            .collect();
        if !missing.is_empty() {
            return Err((
                format!(
                    "a unique index on {table} must include the partition key of {level} ({}): {} missing",
                    t.partition_key_definition,
                    missing.join(", ")
                ),
                Some(format!(
                    "PostgreSQL enforces uniqueness partition by partition; add {} to the columns, or make the index not unique",
                    missing.join(", ")
                )),
            ));
        }
    }
    Ok(())
}

/// The leaves of `table`'s partitions (the partitions that hold rows), and its partitioned
/// partitions deepest first (each takes a constraint after its own partitions).
pub fn leaves_and_levels(ctx: &PlanContext, table: &str) -> (Vec<String>, Vec<String>) {
    let tree = ctx.catalog.partition_tree(table);
    let leaves = tree
        .iter()
        .filter(|(_, _, sub)| !sub)
        .map(|(p, _, _)| p.clone())
        .collect();
    let levels = tree
        .iter()
        .rev()
        .filter(|(_, _, sub)| *sub)
        .map(|(p, _, _)| p.clone())
        .collect();
    (leaves, levels)
}

pub fn is_partitioned(ctx: &PlanContext, table: &str) -> bool {
    ctx.catalog.table(table).is_some_and(|t| t.partitioned)
}

/// Whether a foreign key on `table` goes partition by partition: a partitioned table on a
/// server before 18, which refuses a NOT VALID foreign key there.
pub fn foreign_key_by_partition(ctx: &PlanContext, table: &str) -> bool {
    is_partitioned(ctx, table) && ctx.catalog.server_version_num < 180000
}

/// A CHECK or FOREIGN KEY constraint added NOT VALID at start (writes go on) and validated
/// at complete. On a partitioned table before PostgreSQL 18, which refuses a NOT VALID
/// foreign key there: added NOT VALID to each partition and validated there, then added to
/// the partitioned table, which takes the partitions' validated ones over without a scan.
pub struct NotValidConstraint<'a> {
    pub table: &'a str,
    pub name: &'a str,
    /// `CHECK (...)` or `FOREIGN KEY (...) REFERENCES ...`.
    pub body: &'a str,
    pub foreign_key: bool,
}

/// Steps at start, at complete, and at rollback.
pub type ThreeSteps = (Vec<PlannedStep>, Vec<PlannedStep>, Vec<PlannedStep>);

impl NotValidConstraint<'_> {
    pub fn steps(&self, ctx: &PlanContext) -> ThreeSteps {
        let schema = ctx.schema;
        let name = ident(self.name);
        let on = |t: &str| qualified(schema, t);
        let by_partition = self.foreign_key && foreign_key_by_partition(ctx, self.table);
        if !by_partition {
            return (
                vec![sql_step(
                    format!(
                        "constraint {} on {}, not validated yet",
                        self.name, self.table
                    ),
                    format!(
                        "ALTER TABLE {} ADD CONSTRAINT {name} {} NOT VALID",
                        on(self.table),
                        self.body
                    ),
                )],
                vec![sql_step(
                    format!("validate constraint {}", self.name),
                    format!("ALTER TABLE {} VALIDATE CONSTRAINT {name}", on(self.table)),
                )],
                vec![sql_step(
                    format!("drop constraint {}", self.name),
                    format!(
                        "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {name}",
                        on(self.table)
                    ),
                )],
            );
        }
        let (leaves, levels) = leaves_and_levels(ctx, self.table);
        let mut start = Vec::new();
        let mut complete = Vec::new();
        let mut rollback = vec![sql_step(
            format!(
                "drop constraint {} with its partitions' constraints",
                self.name
            ),
            format!(
                "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {name}",
                on(self.table)
            ),
        )];
        for leaf in &leaves {
            start.push(sql_step(
                format!("constraint {} on partition {leaf}, not validated yet (PostgreSQL before 18 has no NOT VALID foreign key on a partitioned table)", self.name),
                format!("ALTER TABLE {} ADD CONSTRAINT {name} {} NOT VALID", on(leaf), self.body),
            ));
            complete.push(sql_step(
                format!("validate constraint {} on partition {leaf}", self.name),
                format!("ALTER TABLE {} VALIDATE CONSTRAINT {name}", on(leaf)),
            ));
            rollback.push(sql_step(
                format!("drop constraint {} on partition {leaf}", self.name),
                format!("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {name}", on(leaf)),
            ));
        }
        for level in levels.iter().chain(std::iter::once(&self.table.to_owned())) {
            complete.push(take_over_step(
                format!("constraint {} on {level}, taking over its partitions' validated ones (no scan)", self.name),
                format!("ALTER TABLE {} ADD CONSTRAINT {name} {}", on(level), self.body),
            ));
        }
        (start, complete, rollback)
    }
}

/// A UNIQUE or PRIMARY KEY constraint on an index built CONCURRENTLY at start and taken
/// over at complete. On a partitioned table, whose index cannot be built so: each
/// partition's unique index built CONCURRENTLY at start; at complete each partition's
/// constraint on its index, then the partitioned table's constraint, which takes them over
/// (no build).
pub struct UniqueConstraint<'a> {
    pub table: &'a str,
    pub name: &'a str,
    /// `UNIQUE` or `PRIMARY KEY`.
    pub kind: &'a str,
    /// The index's temporary name.
    pub index: &'a str,
    /// `(a, b)` and what follows (`INCLUDE (...)`, `WITH (...)`).
    pub columns: &'a str,
}

impl UniqueConstraint<'_> {
    pub fn steps(&self, ctx: &PlanContext) -> ThreeSteps {
        let schema = ctx.schema;
        let on = |t: &str| qualified(schema, t);
        let build = |table: &str, index: &str, what: String| {
            concurrent_step(
                what,
                format!(
                    "CREATE UNIQUE INDEX CONCURRENTLY {} ON {} {}",
                    ident(index),
                    on(table),
                    self.columns
                ),
                Some(ConcurrentIndex::Create {
                    schema: Some(schema.to_owned()),
                    table: table.to_owned(),
                    name: Some(index.to_owned()),
                }),
            )
        };
        let take_over = |table: &str, constraint: &str, index: &str| {
            sql_step(
                format!("{} constraint {constraint} from its index", self.kind),
                format!(
                    "ALTER TABLE {} ADD CONSTRAINT {} {} USING INDEX {}",
                    on(table),
                    ident(constraint),
                    self.kind,
                    ident(index)
                ),
            )
        };
        if !is_partitioned(ctx, self.table) {
            return (
                vec![build(
                    self.table,
                    self.index,
                    format!("unique index for {}, built concurrently", self.name),
                )],
                vec![take_over(self.table, self.name, self.index)],
                vec![drop_index_step(
                    format!("drop the index for {}", self.name),
                    schema,
                    self.index,
                )],
            );
        }
        let (leaves, levels) = leaves_and_levels(ctx, self.table);
        let mut start = Vec::new();
        let mut complete = Vec::new();
        let mut rollback = vec![sql_step(
            format!(
                "drop constraint {} with its partitions' constraints",
                self.name
            ),
            format!(
                "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
                on(self.table),
                ident(self.name)
            ),
        )];
        for leaf in &leaves {
            let index = partition_index_name(leaf, self.index);
            let constraint = partition_index_name(leaf, self.name);
            start.push(build(
                leaf,
                &index,
                format!(
                    "unique index for {} on partition {leaf}, built concurrently",
                    self.name
                ),
            ));
            complete.push(take_over(leaf, &constraint, &index));
            rollback.push(sql_step(
                format!("drop constraint {constraint} on partition {leaf}"),
                format!(
                    "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
                    on(leaf),
                    ident(&constraint)
                ),
            ));
            rollback.push(drop_index_step(
                format!("drop the index for {} on partition {leaf}", self.name),
                schema,
                &index,
            ));
        }
        for level in &levels {
            let constraint = partition_index_name(level, self.name);
            complete.push(take_over_step(
                format!(
                    "{} constraint {constraint} on {level}, taking over its partitions' (no build)",
                    self.kind
                ),
                format!(
                    "ALTER TABLE {} ADD CONSTRAINT {} {} {}",
                    on(level),
                    ident(&constraint),
                    self.kind,
                    self.columns
                ),
            ));
        }
        complete.push(take_over_step(
            format!(
                "{} constraint {} on {}, taking over its partitions' (no build)",
                self.kind, self.name, self.table
            ),
            format!(
                "ALTER TABLE {} ADD CONSTRAINT {} {} {}",
                on(self.table),
                ident(self.name),
                self.kind,
                self.columns
            ),
        ));
        (start, complete, rollback)
    }
}
