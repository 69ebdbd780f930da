//! The state schema's DDL, one upgrade step per version.

use super::{BackfillState, MigrationState, StepState, SCHEMA};
use crate::quote::ident;

/// The DDL that brings the state schema from `version - 1` to `version`.
pub(super) fn upgrade(version: i32) -> Vec<String> {
    let s = ident(SCHEMA);
    // The CHECK lists of the states pgshift writes, from the enums that name them.
    let steps = StepState::sql_list(StepState::ALL);
    let backfills = BackfillState::sql_list(BackfillState::ALL);
    match version {
        1 => vec![
            format!(
                "CREATE TABLE {s}.migrations (
                    name text PRIMARY KEY,
                    checksum text NOT NULL,
                    kind text NOT NULL CHECK (kind IN ('sql', 'toml', 'yaml', 'json')),
                    status text NOT NULL CHECK (status IN ('running', 'failed', 'applied')),
                    attempts int NOT NULL DEFAULT 1,
                    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                    completed_at timestamptz,
                    duration_ms bigint,
                    applied_by text NOT NULL,
                    applied_from_host text NOT NULL,
                    application_name text NOT NULL,
                    db_user text NOT NULL DEFAULT session_user,
                    pgshift_version text NOT NULL,
                    last_error text
                )"
            ),
            format!(
                "COMMENT ON TABLE {s}.migrations IS 'pgshift: one row per migration that was started; status applied once done'"
            ),
            format!(
                "CREATE TABLE {s}.steps (
                    migration text NOT NULL REFERENCES {s}.migrations (name) ON DELETE CASCADE,
                    phase text NOT NULL,
                    step int NOT NULL,
                    description text NOT NULL,
                    status text NOT NULL CHECK (status IN ({steps})),
                    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                    finished_at timestamptz,
                    PRIMARY KEY (migration, phase, step)
                )"
            ),
            format!(
                "COMMENT ON TABLE {s}.steps IS 'pgshift: journal of the steps of each migration, for resuming after a crash'"
            ),
            format!(
                "CREATE TABLE {s}.events (
                    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    at timestamptz NOT NULL DEFAULT clock_timestamp(),
                    command text NOT NULL,
                    event text NOT NULL,
                    migration text,
                    result text NOT NULL CHECK (result IN ('ok', 'error')),
                    duration_ms bigint,
                    os_user text NOT NULL,
                    host text NOT NULL,
                    application_name text NOT NULL,
                    db_user text NOT NULL DEFAULT session_user,
                    pgshift_version text NOT NULL,
                    detail jsonb NOT NULL DEFAULT '{{}}'
                )"
            ),
            format!(
                "CREATE FUNCTION {s}.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $body$
                 BEGIN
                   RAISE EXCEPTION 'pgshift.events is an append-only audit log';
                 END
                 $body$"
            ),
            format!(
                "CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON {s}.events
                 FOR EACH ROW EXECUTE FUNCTION {s}.refuse_change()"
            ),
            format!(
                "CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON {s}.events
                 FOR EACH STATEMENT EXECUTE FUNCTION {s}.refuse_change()"
            ),
        ],
        // Expand/contract migrations: their plan, source and version schema, and the
        // statuses of an open migration.
        2 => vec![
            format!(
                "ALTER TABLE {s}.migrations
                    ADD COLUMN version_schema text,
                    ADD COLUMN plan jsonb,
                    ADD COLUMN source text"
            ),
            format!("ALTER TABLE {s}.migrations DROP CONSTRAINT migrations_status_check"),
            format!(
                "ALTER TABLE {s}.migrations ADD CONSTRAINT migrations_status_check
                    CHECK (status IN ('running', 'failed', 'started', 'completing', 'rolling_back', 'applied'))"
            ),
        ],
        // Backfill runs: their cursor, counts and control state.
        3 => vec![format!(
            "CREATE TABLE {s}.backfills (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                migration text NOT NULL,
                step int NOT NULL,
                table_schema text NOT NULL,
                table_name text NOT NULL,
                spec jsonb NOT NULL,
                cursor text[],
                pages_done bigint NOT NULL DEFAULT 0,
                rows_done bigint NOT NULL DEFAULT 0,
                total_estimate bigint NOT NULL DEFAULT 0,
                batch_size int NOT NULL,
                state text NOT NULL CHECK (state IN ({backfills})),
                throttle_reason text,
                started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                finished_at timestamptz,
                UNIQUE (migration, step)
            )"
        )],
        // Parallel backfill workers: one row per worker (part), each over its own key or
        // block range: it starts after `cursor` (or at `pages_done`) and ends at
        // `upper_bound` (inclusive key, or exclusive page; NULL: the end of the table).
        // `start_xid`: the next transaction id when the backfill was registered.
        4 => vec![
            format!("ALTER TABLE {s}.backfills ADD COLUMN part int NOT NULL DEFAULT 0"),
            format!("ALTER TABLE {s}.backfills ADD COLUMN upper_bound text[]"),
            format!("ALTER TABLE {s}.backfills ADD COLUMN start_xid bigint NOT NULL DEFAULT 0"),
            format!("ALTER TABLE {s}.backfills DROP CONSTRAINT backfills_migration_step_key"),
            format!(
                "ALTER TABLE {s}.backfills ADD CONSTRAINT backfills_migration_step_part_key UNIQUE (migration, step, part)"
            ),
        ],
        // Migrations skipped in an environment (`skip_environments`).
        5 => vec![
            format!("ALTER TABLE {s}.migrations ADD COLUMN environment text"),
            format!("ALTER TABLE {s}.migrations DROP CONSTRAINT migrations_status_check"),
            format!(
                "ALTER TABLE {s}.migrations ADD CONSTRAINT migrations_status_check
                    CHECK (status IN ({}))",
                MigrationState::sql_list(MigrationState::ALL)
            ),
        ],
        // Data migrations (`pgshift data run`), tracked apart from schema migrations.
        6 => vec![format!(
            "CREATE TABLE {s}.data_migrations (
                name text PRIMARY KEY,
                checksum text NOT NULL,
                kind text NOT NULL,
                status text NOT NULL CHECK (status IN ('running', 'applied', 'failed')),
                rows bigint NOT NULL DEFAULT 0,
                attempts int NOT NULL DEFAULT 1,
                started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                finished_at timestamptz,
                duration_ms bigint,
                run_by text NOT NULL,
                run_from_host text NOT NULL,
                db_user text NOT NULL DEFAULT session_user,
                last_error text
            )"
        )],
        // Foreign keys a swap re-pointed at a table's copy (added NOT VALID in the swap's
        // transaction), until each is validated.
        7 => vec![format!(
            "CREATE TABLE {s}.validations (
                migration text NOT NULL,
                relation text NOT NULL,
                constraint_name text NOT NULL,
                added_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                PRIMARY KEY (migration, relation, constraint_name)
            )"
        )],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_lists_are_the_enums_values() {
        let all: String = (1..=crate::state::VERSION).flat_map(upgrade).collect();
        assert!(
            all.contains("CHECK (status IN ('running', 'done'))"),
            "{all}"
        );
        assert!(
            all.contains("CHECK (state IN ('running', 'paused', 'cancelled', 'done'))"),
            "{all}"
        );
    }
}
