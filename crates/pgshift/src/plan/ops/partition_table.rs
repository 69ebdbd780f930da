//! `partition_table` (pgshift's own): an existing table turned into a partitioned one of
//! the same name while clients read and write it, by attaching the table itself as one
//! partition of a new partitioned table (no row is copied: seconds at any size).
//!
//! Start builds, beside the table, the partitioned table it becomes: its columns, defaults
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

use super::copy_table::swap_step;
use super::partition_ops::bound_expression;
use super::Invalid;
use crate::model::PartitionTable;
use crate::plan::partitions::partition_index_name;
use crate::plan::{
    concurrent_step, drop_index_step, internal_name, sql_step, Action, OpSteps, OperationPlan,
    PlanContext, PlannedStep, SwapPart, VirtualSchema,
};
use crate::quote::{ident, literal, qualified};
use crate::sql::ConcurrentIndex;

impl PartitionTable {
    /// The partition key's columns, from `by` (`RANGE (created_at)`).
    fn key_columns(&self) -> Vec<String> {
        use pg_query::protobuf::node::Node;
        let Ok(parsed) = pg_query::parse(&format!(
            "CREATE TABLE t (a int) PARTITION BY {}",
            self.by.as_str()
        )) else {
            return Vec::new();
        };
        let Some(Node::CreateStmt(c)) = parsed
            .protobuf
            .stmts
            .first()
            .and_then(|s| s.stmt.as_ref()?.node.as_ref())
        else {
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
        if !t.referenced_by.is_empty() {
            return Err((
                format!(
                    "{} is referenced by foreign keys ({}): a partitioned table's key must hold its partition key, so those keys could not point at it",
                    self.table,
                    t.referenced_by.iter().map(|r| format!("{}.{}", r.table, r.constraint)).collect::<Vec<_>>().join(", ")
                ),
                Some("drop the foreign keys first, or make them include the partition key".to_owned()),
            ));
        }
        for p in &self.partitions {
            super::not_internal(&p.name)?;
            if vs.table(&p.name).is_some() {
                return Err((format!("table {:?} already exists", p.name), None));
            }
        }
        super::not_internal(&self.existing.name)?;
        if vs.table(&self.existing.name).is_some() {
            return Err((
                format!("table {:?} already exists", self.existing.name),
                Some("name the table's partition something new".to_owned()),
            ));
        }
        Ok(())
    }

    fn apply(&self, _vs: &mut VirtualSchema) {}

    fn plan(&self, ctx: &PlanContext, vs: &VirtualSchema) -> super::Planned {
        if self.method == Some(crate::model::PartitionMethod::Copy) {
            return Err((
                "partition_table method: copy is not built yet".to_owned(),
                Some("use method: attach (the default): the table becomes a partition, no row is copied".to_owned()),
            ));
        }
        let physical = vs.require_table(&self.table)?.physical.clone();
        let Some(t) = ctx.catalog.table(&physical) else {
            return Err(super::missing("table", &physical));
        };
        if !t.publications.is_empty() {
            return Err((
                format!(
                    "{} is in the publication {}: its subscribers would receive the new partitions' changes under their names",
                    self.table,
                    t.publications.join(", ")
                ),
                Some("take the table out of the publication for the change, or set the publication's publish_via_partition_root and partition it by hand".to_owned()),
            ));
        }
        if t.columns.iter().any(|c| !c.identity.is_empty()) {
            return Err((format!("{} has an identity column, which pgshift does not carry to a partitioned table yet", self.table), None));
        }
        let key = self.key_columns();
        let schema = ctx.schema;
        let table = qualified(schema, &physical);
        let shadow_name = internal_name("part", &[&physical]);
        let shadow = qualified(schema, &shadow_name);
        let existing = &self.existing.name;
        let mut steps = OpSteps::default();
        // The key: the table's primary key with the partition key's columns after it.
        // (A table without a primary key gets none: the partition key alone is no key.)
        let mut pk: Vec<String> = t.primary_key.clone();
        if !pk.is_empty() {
            for k in &key {
                if !pk.contains(k) {
                    pk.push(k.clone());
                }
            }
        }
        // Whether the key changes (the partition key was not in it): a unique index of the
        // new key is built on the table at start and becomes its primary key in the swap.
        let pk_changes = pk != t.primary_key;
        // Unique constraints other than the key must hold the partition key already.
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
        let columns_of = |cols: &[String]| {
            cols.iter()
                .map(|c| ident(c).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        // The partitioned table, beside the table: columns, defaults, checks; its key; its
        // indexes (on a partitioned table with no partition yet: nothing to build); the
        // new partitions, which take its indexes; its foreign keys.
        let mut build = vec![format!(
            "CREATE TABLE {shadow} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING COMMENTS) PARTITION BY {}",
            self.by.as_str()
        )];
        let pk_name = t
            .constraints
            .values()
            .find(|k| k.kind == "p")
            .map(|k| k.name.clone());
        let shadow_pk = internal_name("pk", &[&shadow_name]);
        if !pk.is_empty() {
            build.push(format!(
                "ALTER TABLE {shadow} ADD CONSTRAINT {} PRIMARY KEY ({})",
                ident(&shadow_pk),
                columns_of(&pk)
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
            let tmp = internal_name("ix", &[&ix.name]);
            let sql = super::rewrite_index_for(
                &ix.definition,
                &tmp,
                Some(&shadow_name),
                &[],
                false,
                Some(false),
            )
            .map_err(|(e, h)| (format!("index {} of {}: {e}", ix.name, self.table), h))?;
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
        for p in &self.partitions {
            build.push(format!(
                "CREATE TABLE {} PARTITION OF {shadow} {}",
                qualified(schema, &p.name),
                p.bound.as_str()
            ));
        }
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
        steps.start.push(sql_step(
            format!(
                "create {shadow_name}, the partitioned table {} becomes (empty, unused until complete), with its key {}, indexes, foreign keys and the new partitions",
                self.table,
                pk.join(", ")
            ),
            build.join(";\n"),
        ));
        for p in &self.partitions {
            steps.start.push(PlannedStep {
                description: format!(
                    "give {} the privileges, row-level security and policies of {}",
                    p.name, self.table
                ),
                action: Action::CarryAccess {
                    schema: schema.to_owned(),
                    from: physical.clone(),
                    to: p.name.clone(),
                    through: None,
                },
            });
        }
        // On the table: the new key's index, and the CHECK that proves its bound.
        let pk_index = internal_name("pk", &[&physical]);
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
                    columns_of(&pk)
                ),
                Some(ConcurrentIndex::Create {
                    schema: Some(schema.to_owned()),
                    table: physical.clone(),
                    name: Some(pk_index.clone()),
                }),
            ));
        }
        let parent_like = crate::catalog::Table {
            name: shadow_name.clone(),
            partition_key: key.clone(),
            ..t.clone()
        };
        let check = internal_name("pb", &[existing]);
        let expression = bound_expression(ctx, &parent_like, self.existing.bound.as_str());
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
            ident(&physical)
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
            self.existing.bound.as_str()
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
        let mut step = swap_step(
            ctx,
            &self.table,
            vec![SwapPart {
                table: physical.clone(),
                copy: Some(shadow_name.clone()),
                columns: Vec::new(),
            }],
            swap,
        );
        step.description = format!(
            "partition {}: it becomes partition {existing} of {shadow_name}, which takes its name, its indexes' names and everything that hung on it (attached without a scan: the validated CHECK proves its rows are in the bound{})",
            self.table,
            notes.iter().map(|n| format!("; {n}")).collect::<String>()
        );
        if let (Action::Swap(spec), Some(_)) = (&mut step.action, &expression) {
            spec.scans_nothing = true;
        }
        steps.complete.push(step);
        Ok(steps)
    }
}
