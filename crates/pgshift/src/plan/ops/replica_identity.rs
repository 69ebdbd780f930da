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

    fn plan(&self, ctx: &PlanContext, vs: &VirtualSchema) -> OpSteps {
        let physical = vs
            .table(&self.table)
            .map(|t| t.physical.clone())
            .unwrap_or_default();
        let identity = match (self.identity.kind, &self.identity.index) {
            (ReplicaIdentityType::Default, _) => "DEFAULT".to_owned(),
            (ReplicaIdentityType::Full, _) => "FULL".to_owned(),
            (ReplicaIdentityType::Nothing, _) => "NOTHING".to_owned(),
            (ReplicaIdentityType::Index, Some(ix)) => format!("USING INDEX {}", ident(ix)),
            (ReplicaIdentityType::Index, None) => "DEFAULT".to_owned(),
        };
        OpSteps {
            start: vec![sql_step(
                format!("set the replica identity of {}", self.table),
                format!(
                    "ALTER TABLE {} REPLICA IDENTITY {identity}",
                    qualified(ctx.schema, &physical)
                ),
            )],
            ..OpSteps::default()
        }
    }
}
