//! `set_replica_identity`: one short statement at start, visible to both versions.

use super::Invalid;
use crate::model::{ReplicaIdentityType, SetReplicaIdentity};
use crate::plan::{sql_step, OpSteps, OperationPlan, PlanContext, VirtualSchema};
use crate::quote::{ident, qualified};

impl OperationPlan for SetReplicaIdentity {
    fn validate(&self, vs: &VirtualSchema) -> Result<(), Invalid> {
        vs.require_table(&self.table).map(|_| ())
    }

    fn apply(&self, _vs: &mut VirtualSchema) {}

    fn plan(&self, ctx: &PlanContext, vs: &VirtualSchema) -> super::Planned {
        let physical = vs
            .table(&self.table)
            .map(|t| t.physical.clone())
            .unwrap_or_default();
        // A partitioned table's replica identity is not its partitions' (logical replication
        // reads each partition's): every partition gets it too, with an index identity the
        // partition's index attached to the one named.
        let mut tables = vec![(physical.clone(), self.identity.index.clone())];
        let mut index_of: std::collections::BTreeMap<String, Option<String>> =
            [(physical.clone(), self.identity.index.clone())].into();
        for (partition, parent, _) in ctx.catalog.partition_tree(&physical) {
            let above = index_of.get(&parent).cloned().flatten();
            let index = above.and_then(|above| {
                ctx.catalog
                    .table(&partition)?
                    .indexes
                    .iter()
                    .find(|i| i.partition_of.as_deref() == Some(above.as_str()))
                    .map(|i| i.name.clone())
            });
            index_of.insert(partition.clone(), index.clone());
            tables.push((partition, index));
        }
        let mut set = Vec::new();
        let mut restore = Vec::new();
        for (name, index) in &tables {
            let table = qualified(ctx.schema, name);
            set.push(format!(
                "ALTER TABLE {table} REPLICA IDENTITY {}",
                identity_sql(self.identity.kind, index.as_deref())
            ));
            // Rollback restores what each table had before start.
            if let Some(t) = ctx.catalog.table(name) {
                let kind = match t.replica_identity.as_str() {
                    "n" => ReplicaIdentityType::Nothing,
                    "f" => ReplicaIdentityType::Full,
                    "i" => ReplicaIdentityType::Index,
                    _ => ReplicaIdentityType::Default,
                };
                restore.push(format!(
                    "ALTER TABLE {table} REPLICA IDENTITY {}",
                    identity_sql(kind, t.replica_index.as_deref())
                ));
            }
        }
        Ok(OpSteps {
            start: vec![sql_step(
                format!("set the replica identity of {}", self.table),
                set.join(";\n"),
            )],
            rollback: if restore.is_empty() {
                Vec::new()
            } else {
                vec![sql_step(
                    format!("restore the replica identity of {}", self.table),
                    restore.join(";\n"),
                )]
            },
            ..OpSteps::default()
        })
    }
}

fn identity_sql(kind: ReplicaIdentityType, index: Option<&str>) -> String {
    match (kind, index) {
        (ReplicaIdentityType::Full, _) => "FULL".to_owned(),
        (ReplicaIdentityType::Nothing, _) => "NOTHING".to_owned(),
        (ReplicaIdentityType::Index, Some(ix)) => format!("USING INDEX {}", ident(ix)),
        _ => "DEFAULT".to_owned(),
    }
}
