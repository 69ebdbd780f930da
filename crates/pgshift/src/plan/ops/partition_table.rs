//! `partition_table` (pgshift's own): an existing table turned into a partitioned one of
//! the same name while clients read and write it. Two methods:
//!
//! - by attach (the file names `existing`, the partition the table becomes): the table
//!   itself is attached as one partition of a new partitioned table; no row is copied,
//!   seconds at any size.
//! - by copy (no `existing`; or `method: copy`): the rows are copied into the new
//!   partitions, the way `alter_column`'s copy does (a log of written keys, the copy in key
//!   batches, indexes built in bulk partition by partition, a catch-up, a trigger that keeps
//!   the copy in step once it has caught up, a verification before the swap). Every row
//!   must fit a partition (a DEFAULT partition takes the rest), or the copy stops with
//!   PostgreSQL's error, nothing changed; a primary key's columns, with the partition key's,
//!   become NOT NULL. Clients use the table until complete; complete verifies, then swaps
//!   the copy in (one short lock), as `alter_column`'s copy does.
//!
//! By attach, start builds, beside the table, the partitioned table it becomes: its columns, defaults
//! and checks (`LIKE`), its primary key extended with the partition key (a partitioned
//! table's unique keys must hold it), its indexes and foreign keys, and the new partitions
//! the file names, all empty and unused. On the table itself: the unique index of that
//! key, built concurrently, and a CHECK that every row is in the bound its rows will have,
//! validated while clients go on. Complete swaps them in one short transaction: the table
//! takes the name of its partition (its indexes theirs), its primary key moves onto the new
//! index, the partitioned table takes the table's name, the table is attached (the
//! validated CHECK spares the scan; its indexes, key and foreign keys are taken over, none
//! built), and everything that hung on the table (owner, privileges, row-level security
//! and policies, triggers, comments, views over it) moves to the partitioned table.
//! Rollback before complete drops what start built: the table is as it was.

use super::copy_table::{
    drop_built_on_sql, drop_functions_sql, drop_statistics_sql, log_steps, swap_step, vacuum_step,
    validate_carried_step,
};
use super::partition_ops::bound_expression;
use super::Invalid;
use crate::model::{PartitionItem, PartitionMethod, PartitionTable};
use crate::plan::partitions::{partition_index_name, take_over_step};
use crate::plan::{
    concurrent_step, drop_index_step, internal_name, sql_step, together_step, Action, BackfillSpec,
    CatchUpSpec, InsertSpec, OpSteps, OperationPlan, PlanContext, PlannedStep, SwapPart,
    VerifySpec, VirtualSchema,
};
use crate::quote::{ident, literal, qualified};
use crate::sql::ConcurrentIndex;

impl PartitionTable {
    /// The method: the file's, else attach when it names the partition the table becomes
    /// (`existing`), else copy.
    fn chosen_method(&self) -> PartitionMethod {
        self.method.unwrap_or(if self.existing.is_some() {
            PartitionMethod::Attach
        } else {
            PartitionMethod::Copy
        })
    }

    /// The partition key's columns, from `by` (`RANGE (created_at)`).
    fn key_columns(&self) -> Vec<String> {
        use pg_query::protobuf::node::Node;
        let Some(Node::CreateStmt(c)) = first_statement(&format!(
            "CREATE TABLE t (a int) PARTITION BY {}",
            self.by.as_str()
        )) else {
            return Vec::new();
        };
        c.partspec
            .iter()
            .flat_map(|s| s.part_params.iter())
            .filter_map(|p| match p.node.as_ref() {
                Some(Node::PartitionElem(e)) => Some(e.name.clone()),
                _ => None,
            })
            .collect()
    }

    /// An index of the table made on `shadow_name` and its partitions, under its temporary
    /// name: (the name, the statement).
    fn index_on(
        &self,
        ix: &crate::catalog::Index,
        shadow_name: &str,
    ) -> Result<(String, String), Invalid> {
        let tmp = internal_name("ix", &[&ix.name]);
        let sql = super::rewrite_index_for(
            &ix.definition,
            &tmp,
            Some(shadow_name),
            &[],
            false,
            Some(false),
        )
        .map_err(|(e, h)| (format!("index {} of {}: {e}", ix.name, self.table), h))?;
        Ok((tmp, sql))
    }

    /// The swap of `shadow_name` in for the table.
    fn swap(
        &self,
        ctx: &PlanContext,
        physical: &str,
        shadow_name: &str,
        statements: Vec<String>,
    ) -> PlannedStep {
        swap_step(
            ctx,
            &self.table,
            vec![SwapPart {
                table: physical.to_owned(),
                copy: Some(shadow_name.to_owned()),
                columns: Vec::new(),
            }],
            statements,
        )
    }
}

impl OperationPlan for PartitionTable {
    fn validate(&self, vs: &VirtualSchema) -> Result<(), Invalid> {
        vs.require_not_partition(&self.table)?;
        let t = vs.require_table(&self.table)?;
        let key = self.key_columns();
        if key.is_empty() || key.iter().any(String::is_empty) {
            return Err((
                format!(
                    "partition_table of {}: `by` must name columns of the table ({:?})",
                    self.table,
                    self.by.as_str()
                ),
                Some("an expression key is not supported yet; partition by columns".to_owned()),
            ));
        }
        for k in &key {
            vs.require_column(&self.table, k)?;
        }
        if let Some(why) = &t.uncopyable {
            return Err((
                format!("{} cannot be partitioned by pgshift: {why}", self.table),
                None,
            ));
        }
        // Foreign keys can point at the partitioned table only where the key they reference
        // holds the partition key (its unique index must); the swap points them at it.
        let blocked: Vec<String> = t
            .referenced_by
            .iter()
            .filter(|r| !key.iter().all(|k| r.referenced.contains(k)))
            .map(|r| format!("{}.{}", r.table, r.constraint))
            .collect();
        if !blocked.is_empty() {
            return Err((
                format!(
                    "{} is referenced by foreign keys ({}) on columns without the partition key ({}): a partitioned table's unique keys must hold it, so those keys could not point at it",
                    self.table,
                    blocked.join(", "),
                    key.join(", ")
                ),
                Some("partition by the referenced key's columns (`RANGE (id)`, `HASH (id)`), or drop the foreign keys first".to_owned()),
            ));
        }
        if let Some(r) = t.referenced_by.iter().find(|r| r.table == t.physical) {
            return Err((
                format!(
                    "{} references itself ({}): not carried to a partitioned table yet",
                    self.table, r.constraint
                ),
                Some("drop the foreign key first and add it again after".to_owned()),
            ));
        }
        for p in &self.partitions {
            super::not_internal(&p.name)?;
            if vs.table(&p.name).is_some() {
                return Err((format!("table {:?} already exists", p.name), None));
            }
        }
        match (&self.existing, self.chosen_method()) {
            (None, PartitionMethod::Attach) => {
                return Err((
                    format!("partition_table of {} by attach needs `existing`: the name and bound of the partition the table becomes", self.table),
                    Some("add `existing: {name: ..., bound: ...}`, or leave out `method` to copy the rows into `partitions`".to_owned()),
                ));
            }
            (None, PartitionMethod::Copy) if self.partitions.is_empty() => {
                return Err((
                    format!(
                        "partition_table of {} by copy needs `partitions` for its rows",
                        self.table
                    ),
                    None,
                ));
            }
            _ => {}
        }
        if let (Some(existing), PartitionMethod::Attach) = (&self.existing, self.chosen_method()) {
            let bound = existing.bound.as_str().to_ascii_uppercase();
            if bound.contains("MODULUS") && !bound.contains("MODULUS 1,") {
                return Err((
                    format!(
                        "partition_table of {} by attach: every row must be in the bound of `existing`, and a hash partition ({}) holds only some of them",
                        self.table,
                        existing.bound.as_str()
                    ),
                    Some("leave out `existing` (and `method`) to copy the rows into the hash partitions".to_owned()),
                ));
            }
        }
        if let Some(existing) = &self.existing {
            super::not_internal(&existing.name)?;
            if vs.table(&existing.name).is_some() {
                return Err((
                    format!("table {:?} already exists", existing.name),
                    Some("name the table's partition something new".to_owned()),
                ));
            }
        }
        Ok(())
    }

    fn apply(&self, _vs: &mut VirtualSchema) {}

    fn plan(&self, ctx: &PlanContext, vs: &VirtualSchema) -> super::Planned {
        let prep = self.prepare(ctx, vs)?;
        match (self.chosen_method(), &self.existing) {
            (PartitionMethod::Attach, Some(existing)) => self.plan_attach(ctx, &prep, existing),
            _ => self.plan_copy(ctx, &prep),
        }
    }
}

/// What both methods read from the catalog and check first.
struct Prepared<'a> {
    physical: String,
    t: &'a crate::catalog::Table,
    /// The partition key's columns.
    key: Vec<String>,
    /// The new primary key: the table's with the partition key's columns after it (none
    /// for a table without one: the partition key alone is no key).
    pk: Vec<String>,
    pk_name: Option<String>,
    shadow_name: String,
}

fn columns_of(cols: &[String]) -> String {
    crate::quote::ident_list(cols.iter().map(String::as_str))
}

/// The parse tree of the first statement of `sql`.
fn first_statement(sql: &str) -> Option<pg_query::protobuf::node::Node> {
    pg_query::parse(sql)
        .ok()?
        .protobuf
        .stmts
        .into_iter()
        .next()?
        .stmt?
        .node
}

/// The columns of a CREATE INDEX statement (empty for an expression).
fn indexed_columns(definition: &str) -> Vec<String> {
    use pg_query::protobuf::node::Node;
    let Some(Node::IndexStmt(ix)) = first_statement(definition) else {
        return Vec::new();
    };
    ix.index_params
        .iter()
        .filter_map(|p| match p.node.as_ref() {
            Some(Node::IndexElem(e)) => Some(e.name.clone()),
            _ => None,
        })
        .collect()
}

/// The new partitions of `shadow` (qualified), and the foreign keys of `t` on it.
fn partitions_and_foreign_keys<'a>(
    schema: &str,
    shadow: &str,
    t: &crate::catalog::Table,
    items: impl Iterator<Item = &'a PartitionItem>,
) -> Vec<String> {
    let mut build: Vec<String> = items
        .map(|p| {
            format!(
                "CREATE TABLE {} PARTITION OF {shadow} {}",
                qualified(schema, &p.name),
                p.bound.as_str()
            )
        })
        .collect();
    for k in t
        .constraints
        .values()
        .filter(|k| k.kind == "f" && !k.inherited)
    {
        build.push(format!(
            "ALTER TABLE {shadow} ADD CONSTRAINT {} {}",
            ident(&k.name),
            k.definition
        ));
    }
    build
}

impl PartitionTable {
    /// The steps that give each new partition the table's privileges, row-level security
    /// and policies (the partitioned table gets them with the rest in the swap).
    fn carry_access<'a>(
        &self,
        schema: &str,
        physical: &str,
        items: impl Iterator<Item = &'a PartitionItem>,
    ) -> Vec<PlannedStep> {
        items
            .map(|p| PlannedStep {
                description: format!(
                    "give {} the privileges, row-level security and policies of {}",
                    p.name, self.table
                ),
                action: Action::CarryAccess {
                    schema: schema.to_owned(),
                    from: physical.to_owned(),
                    to: p.name.clone(),
                    through: None,
                },
            })
            .collect()
    }

    fn prepare<'a>(
        &self,
        ctx: &'a PlanContext,
        vs: &VirtualSchema,
    ) -> Result<Prepared<'a>, Invalid> {
        let physical = vs.require_table(&self.table)?.physical.clone();
        let Some(t) = ctx.catalog.table(&physical) else {
            return Err(super::missing("table", &physical));
        };
        // A publication that publishes via the partition root sends the partitioned
        // table's changes under its name, as it sent the table's; one that does not would
        // send them under the partitions' names, which its subscribers do not have.
        if !t.publications_by_partition.is_empty() {
            return Err((
                format!(
                    "{} is in the publication {} without publish_via_partition_root: its subscribers would receive the new partitions' changes under their names",
                    self.table,
                    t.publications_by_partition.join(", ")
                ),
                Some(format!(
                    "set it first (ALTER PUBLICATION {} SET (publish_via_partition_root = true)), or take the table out of the publication for the change",
                    ident(&t.publications_by_partition[0])
                )),
            ));
        }
        if t.columns.iter().any(|c| !c.identity.is_empty()) {
            return Err((format!("{} has an identity column, which pgshift does not carry to a partitioned table yet", self.table), None));
        }
        let key = self.key_columns();
        let mut pk: Vec<String> = t.primary_key.clone();
        if !pk.is_empty() {
            for k in &key {
                if !pk.contains(k) {
                    pk.push(k.clone());
                }
            }
        }
        // Unique constraints and indexes other than the key must hold the partition key
        // already.
        for k in t.constraints.values() {
            match k.kind.as_str() {
                "u" if !key.iter().all(|c| k.columns.contains(c)) => {
                    return Err((
                        format!("unique constraint {} of {} does not hold the partition key ({}), which a partitioned table's unique constraints must", k.name, self.table, key.join(", ")),
                        Some("add the key's columns to it or drop it first".to_owned()),
                    ));
                }
                "x" => {
                    return Err((
                        format!(
                            "exclusion constraint {} of {}: not carried to a partitioned table yet",
                            k.name, self.table
                        ),
                        None,
                    ));
                }
                _ => {}
            }
        }
        for ix in t.indexes.iter().filter(|ix| ix.constraint.is_none()) {
            if ix.definition.starts_with("CREATE UNIQUE INDEX") {
                let cols = indexed_columns(&ix.definition);
                if !key.iter().all(|c| cols.contains(c)) {
                    return Err((
                        format!("unique index {} of {} does not hold the partition key ({}), which a partitioned table's unique indexes must", ix.name, self.table, key.join(", ")),
                        Some("add the key's columns to it or drop it first".to_owned()),
                    ));
                }
            }
        }
        let pk_name = t
            .constraints
            .values()
            .find(|k| k.kind == "p")
            .map(|k| k.name.clone());
        let shadow_name = internal_name("part", &[&physical]);
        Ok(Prepared {
            physical,
            t,
            key,
            pk,
            pk_name,
            shadow_name,
        })
    }

    /// By attach: the table becomes a partition (see the module's note).
    fn plan_attach(
        &self,
        ctx: &PlanContext,
        prep: &Prepared,
        existing_item: &PartitionItem,
    ) -> super::Planned {
        let (physical, t, key, pk, pk_name, shadow_name) = (
            prep.physical.as_str(),
            prep.t,
            &prep.key,
            &prep.pk,
            &prep.pk_name,
            prep.shadow_name.as_str(),
        );
        let schema = ctx.schema;
        let table = qualified(schema, physical);
        let shadow = qualified(schema, shadow_name);
        let existing = &existing_item.name;
        let mut steps = OpSteps::default();
        // Whether the key changes (the partition key was not in it): a unique index of the
        // new key is built on the table at start and becomes its primary key in the swap.
        let pk_changes = *pk != t.primary_key;
        // The partitioned table, beside the table: columns, defaults, checks; its key; its
        // indexes (on a partitioned table with no partition yet: nothing to build); the
        // new partitions, which take its indexes; its foreign keys.
        let mut build = vec![format!(
            "CREATE TABLE {shadow} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING COMMENTS) PARTITION BY {}",
            self.by.as_str()
        )];
        let shadow_pk = internal_name("pk", &[shadow_name]);
        if !pk.is_empty() {
            build.push(format!(
                "ALTER TABLE {shadow} ADD CONSTRAINT {} PRIMARY KEY ({})",
                ident(&shadow_pk),
                columns_of(pk)
            ));
        }
        let mut names_back = Vec::new();
        let mut old_names = Vec::new();
        for ix in &t.indexes {
            let kind = ix
                .constraint
                .as_ref()
                .and_then(|c| t.constraints.get(c))
                .map(|c| c.kind.as_str());
            // The table's own indexes become the partition's: renamed out of the way of the
            // partitioned table's, which take their names.
            old_names.push(format!(
                "ALTER INDEX {} RENAME TO {}",
                qualified(schema, &ix.name),
                ident(&partition_index_name(existing, &ix.name))
            ));
            if kind == Some("p") {
                continue;
            }
            let (tmp, sql) = self.index_on(ix, shadow_name)?;
            build.push(sql);
            match (kind, &ix.constraint) {
                (Some("u"), Some(c)) => {
                    // A unique constraint is made on the partitioned table as a constraint
                    // (its index then backs it); the table's own is taken over by the attach.
                    build.pop();
                    build.push(format!(
                        "ALTER TABLE {shadow} ADD CONSTRAINT {} UNIQUE ({})",
                        ident(c),
                        columns_of(&t.constraints[c].columns)
                    ));
                }
                _ => names_back.push(format!(
                    "ALTER INDEX {} RENAME TO {}",
                    qualified(schema, &tmp),
                    ident(&ix.name)
                )),
            }
        }
        build.extend(partitions_and_foreign_keys(
            schema,
            &shadow.to_string(),
            t,
            self.partitions.iter(),
        ));
        steps.start.push(sql_step(
            format!(
                "create {shadow_name}, the partitioned table {} becomes (empty, unused until complete), with its key {}, indexes, foreign keys and the new partitions",
                self.table,
                pk.join(", ")
            ),
            build.join(";\n"),
        ));
        steps
            .start
            .extend(self.carry_access(schema, physical, self.partitions.iter()));
        // On the table: the new key's index, and the CHECK that proves its bound.
        let pk_index = internal_name("pk", &[physical]);
        if pk_changes {
            steps.start.push(concurrent_step(
                format!(
                    "unique index of {} ({}) on {}, built concurrently, for its key as a partition",
                    self.table,
                    pk.join(", "),
                    self.table
                ),
                format!(
                    "CREATE UNIQUE INDEX CONCURRENTLY {} ON {table} ({})",
                    ident(&pk_index),
                    columns_of(pk)
                ),
                Some(ConcurrentIndex::Create {
                    schema: Some(schema.to_owned()),
                    table: physical.to_owned(),
                    name: Some(pk_index.clone()),
                }),
            ));
        }
        let parent_like = crate::catalog::Table {
            name: shadow_name.to_owned(),
            partition_key: key.clone(),
            ..t.clone()
        };
        let check = internal_name("pb", &[existing]);
        let expression = bound_expression(ctx, &parent_like, existing_item.bound.as_str());
        let mut notes = Vec::new();
        match &expression {
            Some(e) => {
                steps.start.push(sql_step(
                    format!("check that every row of {} is in the bound of its partition, not validated yet", self.table),
                    format!("ALTER TABLE {table} ADD CONSTRAINT {} CHECK ({e}) NOT VALID", ident(&check)),
                ));
                steps.start.push(sql_step(
                    format!("validate it (reads and writes of {} go on)", self.table),
                    format!("ALTER TABLE {table} VALIDATE CONSTRAINT {}", ident(&check)),
                ));
            }
            None => notes.push(format!("the attach scans {} under the swap's lock: pgshift cannot write a CHECK for this bound", self.table)),
        }
        steps.rollback.push(sql_step(
            format!(
                "drop {shadow_name} with its partitions, and the CHECK on {}",
                self.table
            ),
            [
                format!("DROP TABLE IF EXISTS {shadow} CASCADE"),
                format!(
                    "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {}",
                    ident(&check)
                ),
            ]
            .join(";\n"),
        ));
        if pk_changes {
            steps.rollback.push(drop_index_step(
                format!("drop the unique index {pk_index}"),
                schema,
                &pk_index,
            ));
        }
        // The swap.
        let part_table = qualified(schema, existing);
        let mut swap = vec![format!("ALTER TABLE {table} RENAME TO {}", ident(existing))];
        swap.extend(old_names);
        if let Some(name) = pk_name.as_ref().filter(|_| pk_changes) {
            // The primary key's index was renamed with the others, its constraint with it.
            swap.push(format!(
                "ALTER TABLE {part_table} DROP CONSTRAINT {}",
                ident(&partition_index_name(existing, name))
            ));
        }
        if pk_changes {
            swap.push(format!(
                "ALTER TABLE {part_table} ADD CONSTRAINT {} PRIMARY KEY USING INDEX {}",
                ident(&partition_index_name(
                    existing,
                    pk_name.as_deref().unwrap_or("pkey")
                )),
                ident(&pk_index)
            ));
        }
        // Its statistics objects are made again on the partitioned table by the swap,
        // under their names: the partition's go.
        swap.push(drop_statistics_sql(&part_table.to_string()));
        // Its publications (each publishing via the partition root) get the partitioned
        // table in the swap, as a copy would; the partition leaves them.
        for p in &t.publications {
            swap.push(format!(
                "ALTER PUBLICATION {} DROP TABLE {part_table}",
                ident(p)
            ));
        }
        // The table's own triggers: the partitioned table gets them (its row triggers reach
        // every partition), so the partition must not keep a second copy.
        swap.push(format!(
            "DO $pgshift$ DECLARE g text; BEGIN
               FOR g IN SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass({}) AND NOT tgisinternal
               LOOP EXECUTE format('DROP TRIGGER %I ON %s', g, {}); END LOOP;
             END $pgshift$",
            literal(&part_table.to_string()),
            literal(&part_table.to_string())
        ));
        swap.push(format!(
            "ALTER TABLE {shadow} RENAME TO {}",
            ident(physical)
        ));
        if let Some(name) = &pk_name {
            swap.push(format!(
                "ALTER TABLE {table} RENAME CONSTRAINT {} TO {}",
                ident(&shadow_pk),
                ident(name)
            ));
        }
        swap.extend(names_back);
        swap.push(format!(
            "ALTER TABLE {table} ATTACH PARTITION {part_table} {}",
            existing_item.bound.as_str()
        ));
        swap.push(format!(
            "ALTER TABLE {part_table} DROP CONSTRAINT IF EXISTS {}",
            ident(&check)
        ));
        for c in &t.columns {
            if let Some((s, n)) = &c.owned_sequence {
                swap.push(format!(
                    "ALTER SEQUENCE {} OWNED BY {table}.{}",
                    qualified(s, n),
                    ident(&c.name)
                ));
            }
        }
        let mut step = self.swap(ctx, physical, shadow_name, swap);
        step.description = format!(
            "partition {}: it becomes partition {existing} of {shadow_name}, which takes its name, its indexes' names and everything that hung on it (attached without a scan: the validated CHECK proves its rows are in the bound{})",
            self.table,
            notes.iter().map(|n| format!("; {n}")).collect::<String>()
        );
        if let (Action::Swap(spec), Some(_)) = (&mut step.action, &expression) {
            spec.scans_nothing = true;
        }
        steps.complete.push(step);
        steps.complete.push(validate_carried_step(&self.table));
        // Autovacuum never analyzes a partitioned table: without this its planner
        // statistics (over all its partitions) would stay empty. Reads and writes go on.
        steps.complete.push(sql_step(
            format!(
                "analyze the partitioned {}, which autovacuum never does",
                self.table
            ),
            format!("ANALYZE {table}"),
        ));
        Ok(steps)
    }
}

impl PartitionTable {
    /// By copy: the rows are copied into a new partitioned table, which is swapped in for
    /// the table (see docs/partitions.md).
    fn plan_copy(&self, ctx: &PlanContext, prep: &Prepared) -> super::Planned {
        let (physical, t, pk, pk_name, shadow_name) = (
            prep.physical.as_str(),
            prep.t,
            &prep.pk,
            &prep.pk_name,
            prep.shadow_name.as_str(),
        );
        let [id] = t.primary_key.as_slice() else {
            return Err((
                format!("partition_table of {} by copy needs a one-column primary key to replay clients' writes by", self.table),
                Some("give `existing` (its name and bound) to partition it by attach instead: no row is copied".to_owned()),
            ));
        };
        let schema = ctx.schema;
        let source = qualified(schema, physical).to_string();
        let shadow = qualified(schema, shadow_name).to_string();
        // The log table and its trigger (and function) share one name.
        let log_trigger = internal_name("log", &[physical]);
        let log = qualified(crate::state::SCHEMA, &log_trigger).to_string();
        let sync = internal_name("sync", &[physical]);
        let key_type = t
            .column(id)
            .map(|c| c.data_type.clone())
            .unwrap_or_else(|| "bigint".to_owned());
        let items: Vec<&PartitionItem> = self.existing.iter().chain(&self.partitions).collect();
        let copied: Vec<&str> = t
            .columns
            .iter()
            .filter(|c| c.generated.is_empty())
            .map(|c| c.name.as_str())
            .collect();
        let names = crate::quote::ident_list(copied.iter().copied());
        let mut steps = OpSteps::default();

        // The partitioned table and its partitions, empty; its key's columns NOT NULL
        // (a primary key's must be); its foreign keys (checked row by row as the copy
        // fills it).
        let mut build = vec![format!(
            "CREATE TABLE {shadow} (LIKE {source} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING COMMENTS INCLUDING STORAGE) PARTITION BY {}",
            self.by.as_str()
        )];
        for c in pk {
            if t.column(c).is_some_and(|c| !c.not_null) {
                build.push(format!(
                    "ALTER TABLE {shadow} ALTER COLUMN {} SET NOT NULL",
                    ident(c)
                ));
            }
        }
        build.extend(partitions_and_foreign_keys(
            schema,
            &shadow,
            t,
            items.iter().copied(),
        ));
        steps.start.push(sql_step(
            format!(
                "create {shadow_name}, the partitioned table {} becomes, by copy (no `existing` partition named: its rows are copied into {}), empty, with its foreign keys",
                self.table,
                items.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
            build.join(";\n"),
        ));
        steps
            .start
            .extend(self.carry_access(schema, physical, items.iter().copied()));
        steps.start.extend(log_steps(
            &self.table,
            &source,
            &log,
            &log_trigger,
            id,
            &key_type,
        ));
        steps.backfills.push(BackfillSpec {
            partition_of: None,
            schema: schema.to_owned(),
            table: physical.to_owned(),
            set: Vec::new(),
            condition: None,
            insert: Some(InsertSpec {
                table: shadow_name.to_owned(),
                columns: copied
                    .iter()
                    .map(|c| ((*c).to_owned(), ident(c).to_string()))
                    .collect(),
                conflict: Vec::new(),
            }),
        });

        // On the filled copy, nobody else using it: the key's and unique constraints'
        // indexes partition by partition, and the other indexes, all at once; then each
        // partition's constraint on its index, and the partitioned table's, which takes
        // them over (no build).
        let mut names_back = Vec::new();
        let mut take_over = Vec::new();
        let mut constraints: Vec<(String, &str, Vec<String>, String)> = Vec::new();
        if let Some(name) = pk_name {
            constraints.push((
                name.clone(),
                "PRIMARY KEY",
                pk.clone(),
                internal_name("pk", &[shadow_name]),
            ));
        }
        for k in t.constraints.values().filter(|k| k.kind == "u") {
            constraints.push((
                k.name.clone(),
                "UNIQUE",
                k.columns.clone(),
                internal_name("uq", &[&k.name]),
            ));
        }
        for (name, kind, cols, tmp) in &constraints {
            for p in &items {
                let pix = partition_index_name(&p.name, name);
                steps.after_backfill.push(together_step(
                    format!("index of {name} on partition {}", p.name),
                    format!(
                        "CREATE UNIQUE INDEX {} ON {} ({})",
                        ident(&pix),
                        qualified(schema, &p.name),
                        columns_of(cols)
                    ),
                ));
                take_over.push(format!(
                    "ALTER TABLE {} ADD CONSTRAINT {} {kind} USING INDEX {}",
                    qualified(schema, &p.name),
                    ident(&pix),
                    ident(&pix)
                ));
            }
            take_over.push(format!(
                "ALTER TABLE {shadow} ADD CONSTRAINT {} {kind} ({})",
                ident(tmp),
                columns_of(cols)
            ));
            names_back.push(format!(
                "ALTER TABLE {source} RENAME CONSTRAINT {} TO {}",
                ident(tmp),
                ident(name)
            ));
        }
        for ix in t.indexes.iter().filter(|ix| ix.constraint.is_none()) {
            let (tmp, sql) = self.index_on(ix, shadow_name)?;
            steps.after_backfill.push(together_step(
                format!(
                    "index {} built on {shadow_name} and its partitions",
                    ix.name
                ),
                sql,
            ));
            names_back.push(format!(
                "ALTER INDEX {} RENAME TO {}",
                qualified(schema, &tmp),
                ident(&ix.name)
            ));
        }
        if !take_over.is_empty() {
            steps.after_backfill.push(take_over_step(
                format!(
                    "the key {} and unique constraints of {shadow_name}, on their partitions' indexes (no build)",
                    pk.join(", ")
                ),
                take_over.join(";\n"),
            ));
        }
        // Catch up with the log; switch to the trigger that writes each client's write to
        // the copy as well (nobody writes the copy but it: both versions use the table
        // until complete); replay the rest of the log.
        let catch_up = CatchUpSpec {
            source: source.clone(),
            shadow: shadow.clone(),
            log: log.clone(),
            key: id.clone(),
            key_type: key_type.clone(),
            columns: names.clone(),
            from_source: names.clone(),
            after_switch: false,
            upsert: String::new(),
            replace: true,
        };
        steps.after_backfill.push(PlannedStep {
            description: format!(
                "catch up {shadow_name} with the rows written to {} since the copy began",
                self.table
            ),
            action: Action::CatchUp(catch_up.clone()),
        });
        let k = ident(id);
        let values = copied
            .iter()
            .map(|c| format!("NEW.{}", ident(c)))
            .collect::<Vec<_>>()
            .join(", ");
        let body = format!(
            "BEGIN\n  IF TG_OP <> 'INSERT' THEN\n    DELETE FROM {shadow} WHERE {k} = OLD.{k};\n  END IF;\n  IF TG_OP <> 'DELETE' THEN\n    INSERT INTO {shadow} ({names}) VALUES ({values});\n  END IF;\n  RETURN NULL;\nEND\n"
        );
        steps.after_backfill.push(sql_step(
            format!(
                "block writes to {} for a moment to stop the log and keep {shadow_name} in step by a trigger from then on",
                self.table
            ),
            [
                format!("LOCK TABLE {source} IN SHARE ROW EXCLUSIVE MODE"),
                format!("DROP TRIGGER IF EXISTS {} ON {source}", ident(&log_trigger)),
                crate::plan::triggers::definer_function_sql(&sync, &body),
                crate::plan::triggers::row_trigger_sql(
                    &sync,
                    &source,
                    "AFTER INSERT OR UPDATE OR DELETE",
                    None,
                ),
            ]
            .join(";\n"),
        ));
        steps.after_backfill.push(PlannedStep {
            description: format!(
                "replay the rest of the log into {shadow_name}, each of its rows of {} locked while it is read",
                self.table
            ),
            action: Action::CatchUp(CatchUpSpec {
                after_switch: true,
                ..catch_up
            }),
        });
        steps.after_backfill.push(vacuum_step(shadow_name, &shadow));
        steps.verify.push(VerifySpec {
            description: format!(
                "{shadow_name} holds every row of {} with equal values",
                self.table
            ),
            schema: schema.to_owned(),
            table: physical.to_owned(),
            key: id.clone(),
            other: shadow_name.to_owned(),
            other_key: id.clone(),
            columns: copied
                .iter()
                .filter(|c| *c != id)
                .map(|c| ((*c).to_owned(), (*c).to_owned()))
                .collect(),
        });

        // The swap: the table renamed out of the way with its indexes and statistics
        // objects, the copy given its names and sequences and everything that hung on it;
        // the old table dropped after the commit.
        let mut swap = vec![format!(
            "DROP TRIGGER IF EXISTS {} ON {source}",
            ident(&sync)
        )];
        let sequences: Vec<(String, &str)> = t
            .columns
            .iter()
            .filter_map(|c| {
                let (s, n) = c.owned_sequence.as_ref()?;
                Some((qualified(s, n).to_string(), c.name.as_str()))
            })
            .collect();
        for (seq, _) in &sequences {
            swap.push(format!("ALTER SEQUENCE {seq} OWNED BY NONE"));
        }
        let old_name = internal_name("old", &[physical]);
        let old = qualified(schema, &old_name).to_string();
        swap.push(format!(
            "ALTER TABLE {source} RENAME TO {}",
            ident(&old_name)
        ));
        for ix in &t.indexes {
            swap.push(format!(
                "ALTER INDEX {} RENAME TO {}",
                qualified(schema, &ix.name),
                ident(&internal_name("old", &[&ix.name]))
            ));
        }
        swap.push(drop_statistics_sql(&old));
        swap.push(format!(
            "ALTER TABLE {shadow} RENAME TO {}",
            ident(physical)
        ));
        swap.extend(names_back);
        for (seq, column) in &sequences {
            swap.push(format!(
                "ALTER SEQUENCE {seq} OWNED BY {source}.{}",
                ident(column)
            ));
        }
        swap.extend(drop_functions_sql(&[&sync, &log_trigger]));
        swap.push(format!("DROP TABLE IF EXISTS {log}"));
        let mut step = self.swap(ctx, physical, shadow_name, swap);
        step.description = format!(
            "partition {}: {shadow_name}, its copy partitioned {}, takes its name, its indexes' names and everything that hung on it",
            self.table,
            self.by.as_str()
        );
        steps.complete.push(step);
        steps.complete.push(sql_step(
            format!(
                "drop the old {}, renamed {old_name} by the swap",
                self.table
            ),
            format!("DROP TABLE IF EXISTS {old}"),
        ));
        steps.complete.push(validate_carried_step(&self.table));
        let mut undo = vec![
            format!("DROP TRIGGER IF EXISTS {} ON {source}", ident(&log_trigger)),
            format!("DROP TRIGGER IF EXISTS {} ON {source}", ident(&sync)),
            drop_built_on_sql(&shadow),
            format!("DROP TABLE IF EXISTS {shadow} CASCADE"),
            format!("DROP TABLE IF EXISTS {log}"),
        ];
        undo.extend(drop_functions_sql(&[&sync, &log_trigger]));
        steps.rollback.push(sql_step(
            format!("drop {shadow_name} with its partitions, the log and the trigger"),
            undo.join(";\n"),
        ));
        Ok(steps)
    }
}
