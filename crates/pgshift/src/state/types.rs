//! The states a migration and a journaled step can be in, with their names in the database.

use super::table;
use crate::error::Result;
use crate::quote::literal;

/// Where a migration stands: the `status` column of `pgshift.migrations`. The one place
/// that maps it to and from the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationState {
    /// A phase is running (start, or a raw SQL file being applied), or was interrupted.
    Running,
    /// A raw SQL migration failed.
    Failed,
    /// Started and open: both versions are served.
    Started,
    /// Complete is under way.
    Completing,
    /// Rollback is under way.
    RollingBack,
    Applied,
    /// Recorded as skipped in an environment (`skip_environments`).
    Skipped,
}

impl MigrationState {
    pub const ALL: [MigrationState; 7] = [
        MigrationState::Running,
        MigrationState::Failed,
        MigrationState::Started,
        MigrationState::Completing,
        MigrationState::RollingBack,
        MigrationState::Applied,
        MigrationState::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MigrationState::Running => "running",
            MigrationState::Failed => "failed",
            MigrationState::Started => "started",
            MigrationState::Completing => "completing",
            MigrationState::RollingBack => "rolling_back",
            MigrationState::Applied => "applied",
            MigrationState::Skipped => "skipped",
        }
    }

    /// A value read from the database; anything else means the state schema was edited by
    /// hand (an error, never a panic).
    pub fn parse(s: &str) -> Result<MigrationState> {
        MigrationState::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                crate::Error::CannotResume(format!(
                    "{} has a migration with status {s:?}, which pgshift never writes (was the state schema edited by hand?)",
                    table("migrations")
                ))
            })
    }

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

    /// `'running', 'failed', ...`: the values of a CHECK or an `IN` list.
    pub fn sql_list(states: &[MigrationState]) -> String {
        states
            .iter()
            .map(|m| literal(m.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::fmt::Display for MigrationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of one journaled step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepState {
    Running,
    Done,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_states_round_trip_and_group() {
        for m in MigrationState::ALL {
            assert_eq!(MigrationState::parse(m.as_str()).unwrap(), m);
            assert!(!(m.is_open() && m.is_done()), "{m}");
        }
        let open: Vec<&str> = MigrationState::ALL
            .into_iter()
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
}
