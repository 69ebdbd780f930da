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
        let table = qualified(ctx.schema, &physical);
        let identity = identity_sql(self.identity.kind, self.identity.index.as_deref());
        // Rollback restores what the table had before start.
        let before = ctx.catalog.table(&physical).map(|t| {
            let kind = match t.replica_identity.as_str() {
                "n" => ReplicaIdentityType::Nothing,
                "f" => ReplicaIdentityType::Full,
                "i" => ReplicaIdentityType::Index,
                _ => ReplicaIdentityType::Default,
            };
            identity_sql(kind, t.replica_index.as_deref())
        });
        Ok(OpSteps {
            start: vec![sql_step(
                format!("set the replica identity of {}", self.table),
                format!("ALTER TABLE {table} REPLICA IDENTITY {identity}"),
            )],
            rollback: before
                .map(|before| {
                    vec![sql_step(
                        format!("restore the replica identity of {}", self.table),
                        format!("ALTER TABLE {table} REPLICA IDENTITY {before}"),
                    )]
                })
                .unwrap_or_default(),
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
