//! The states and names pgshift writes to its state schema, as enums, with the one place
//! that maps each to and from the database ([`names!`]): a value read back that pgshift never
//! writes means the state schema was edited by hand, and is an error, never a panic. The
//! state schema's CHECK lists are generated from the same lists (`sql_list`).

use super::table;
use crate::error::Result;
use crate::quote::literal;

/// An enum whose variants are stored as text: `as_str`, `parse`, `ALL`, `sql_list` and
/// `Display` from one list of (variant, name).
macro_rules! names {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident in $table:literal . $column:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
        #[serde(rename_all = "snake_case")]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// A value read from the database; one pgshift never writes is an error.
            pub fn parse(s: &str) -> Result<$name> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| {
                        crate::Error::CannotResume(format!(
                            "{} has {} {s:?}, which pgshift never writes (was the state schema edited by hand?)",
                            table($table),
                            $column
                        ))
                    })
            }

            /// `'a', 'b', ...`: the values of a CHECK or an `IN` list.
            pub fn sql_list(values: &[$name]) -> String {
                values
                    .iter()
                    .map(|v| literal(v.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

names! {
    /// Where a migration stands: the `status` column of `pgshift.migrations`.
    pub enum MigrationState in "migrations"."status" {
        /// A phase is running (start, or a raw SQL file being applied), or was interrupted.
        Running = "running",
        /// A raw SQL migration failed.
        Failed = "failed",
        /// Started and open: both versions are served.
        Started = "started",
        /// Complete is under way.
        Completing = "completing",
        /// Rollback is under way.
        RollingBack = "rolling_back",
        Applied = "applied",
        /// Recorded as skipped in an environment (`skip_environments`).
        Skipped = "skipped",
    }
}

impl MigrationState {
    /// Started and not yet completed or rolled back: the one migration that can be open.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            MigrationState::Running
                | MigrationState::Started
                | MigrationState::Completing
                | MigrationState::RollingBack
        )
    }

    /// Nothing more will run of it here.
    pub fn is_done(self) -> bool {
        matches!(self, MigrationState::Applied | MigrationState::Skipped)
    }
}

names! {
    /// The state of one journaled step (`pgshift.steps.status`).
    pub enum StepState in "steps"."status" {
        /// Begun (a step outside a transaction journals this first) and not known done.
        Running = "running",
        Done = "done",
    }
}

names! {
    /// The phase a journal entry belongs to (`pgshift.steps.phase`).
    pub enum Phase in "steps"."phase" {
        Start = "start",
        Complete = "complete",
        Rollback = "rollback",
        /// A raw SQL migration's segments.
        Apply = "apply",
    }
}

names! {
    /// The state of one part of a backfill (`pgshift.backfills.state`).
    pub enum BackfillState in "backfills"."state" {
        Running = "running",
        /// `pgshift backfill pause`: the part waits before its next batch.
        Paused = "paused",
        /// `pgshift backfill cancel`: the part stops before its next batch.
        Cancelled = "cancelled",
        Done = "done",
    }
}

names! {
    /// What an entry of the audit log says happened (`pgshift.events.event`).
    pub enum AuditEvent in "events"."event" {
        StateSchema = "state_schema",
        MigrationStarted = "migration_started",
        MigrationCompleted = "migration_completed",
        MigrationRolledBack = "migration_rolled_back",
        MigrationApplied = "migration_applied",
        MigrationFailed = "migration_failed",
        MigrationSkipped = "migration_skipped",
        MigrationMarkedApplied = "migration_marked_applied",
        MigrationEditedAfterFailure = "migration_edited_after_failure",
        BackfillsPaused = "backfills_paused",
        BackfillsResumed = "backfills_resumed",
        BackfillsCancelled = "backfills_cancelled",
        DataMigrationApplied = "data_migration_applied",
        DataMigrationFailed = "data_migration_failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_states_round_trip_and_group() {
        for &m in MigrationState::ALL {
            assert_eq!(MigrationState::parse(m.as_str()).unwrap(), m);
            assert!(!(m.is_open() && m.is_done()), "{m}");
        }
        let open: Vec<&str> = MigrationState::ALL
            .iter()
            .copied()
            .filter(|m| m.is_open())
            .map(MigrationState::as_str)
            .collect();
        assert_eq!(open, ["running", "started", "completing", "rolling_back"]);
        assert!(
            MigrationState::parse("half-done").is_err(),
            "an edited state schema is an error"
        );
        assert_eq!(
            MigrationState::sql_list(&[MigrationState::Applied, MigrationState::Skipped]),
            "'applied', 'skipped'"
        );
    }

    #[test]
    fn every_name_round_trips_and_an_unknown_one_is_an_error() {
        for &s in StepState::ALL {
            assert_eq!(StepState::parse(s.as_str()).unwrap(), s);
        }
        for &p in Phase::ALL {
            assert_eq!(Phase::parse(p.as_str()).unwrap(), p);
        }
        for &b in BackfillState::ALL {
            assert_eq!(BackfillState::parse(b.as_str()).unwrap(), b);
        }
        for &e in AuditEvent::ALL {
            assert_eq!(AuditEvent::parse(e.as_str()).unwrap(), e);
        }
        let err = BackfillState::parse("stopped").unwrap_err().to_string();
        assert!(
            err.contains("backfills") && err.contains("\"stopped\""),
            "{err}"
        );
    }
}
