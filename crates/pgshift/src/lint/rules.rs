//! The lint rules: each name, its default level, and what it stands for. Names follow
//! squawk's where squawk has the rule, so a team moving over keeps its settings.

/// A rule's level in a project: off, or the severity its findings report at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Off,
    Warning,
    Error,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Off => "off",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct RuleInfo {
    pub name: &'static str,
    pub default: Level,
    pub summary: &'static str,
}

/// A file that does not parse.
pub const SYNTAX_ERROR: &str = "syntax-error";

const fn rule(name: &'static str, default: Level, summary: &'static str) -> RuleInfo {
    RuleInfo {
        name,
        default,
        summary,
    }
}

use Level::{Error, Off, Warning};

pub const RULES: &[RuleInfo] = &[
    rule(SYNTAX_ERROR, Error, "the file does not parse"),
    // Indexes.
    rule("require-concurrent-index-creation", Error, "CREATE INDEX without CONCURRENTLY blocks writes for the whole build"),
    rule("require-concurrent-index-deletion", Error, "DROP INDEX without CONCURRENTLY takes ACCESS EXCLUSIVE on the table"),
    rule("require-concurrent-reindex", Error, "REINDEX without CONCURRENTLY blocks writes (and reads that use the index)"),
    rule("ban-concurrent-index-creation-in-transaction", Error, "CONCURRENTLY cannot run inside a transaction block"),
    // Constraints.
    rule("adding-foreign-key-constraint", Error, "a foreign key without NOT VALID scans the table while it blocks writes to both tables"),
    rule("constraint-missing-not-valid", Error, "a CHECK without NOT VALID scans the table under ACCESS EXCLUSIVE"),
    rule("disallowed-unique-constraint", Error, "a UNIQUE or PRIMARY KEY constraint without USING INDEX builds its index under ACCESS EXCLUSIVE"),
    rule("adding-exclusion-constraint", Error, "an exclusion constraint builds its index under ACCESS EXCLUSIVE; it cannot be built concurrently"),
    rule("adding-not-nullable-field", Error, "SET NOT NULL scans the table under ACCESS EXCLUSIVE unless a validated CHECK (col IS NOT NULL) proves it"),
    rule("adding-required-field", Error, "ADD COLUMN ... NOT NULL without a default fails on a table with rows"),
    rule("ban-drop-not-null", Warning, "DROP NOT NULL lets new code write NULLs that old code and a rollback do not expect"),
    // Columns and tables.
    rule("changing-column-type", Error, "ALTER COLUMN ... TYPE rewrites the table and its indexes under ACCESS EXCLUSIVE"),
    rule("adding-field-with-volatile-default", Error, "ADD COLUMN with a volatile DEFAULT rewrites the table under ACCESS EXCLUSIVE"),
    rule("adding-auto-increment-column", Error, "adding a serial or identity column rewrites the table under ACCESS EXCLUSIVE"),
    rule("adding-stored-generated-column", Error, "adding a stored generated column rewrites the table under ACCESS EXCLUSIVE"),
    rule("renaming-column", Error, "renaming a column breaks clients that still use the old name"),
    rule("renaming-table", Error, "renaming a table breaks clients that still use the old name"),
    rule("ban-drop-column", Error, "dropping a column breaks clients that still read it, and loses its data"),
    rule("ban-drop-table", Error, "dropping a table breaks clients that still use it, and loses its data"),
    rule("ban-drop-database", Error, "dropping a database"),
    rule("ban-truncate-cascade", Error, "TRUNCATE ... CASCADE empties every table that references this one"),
    rule("table-rewrite", Error, "VACUUM FULL, CLUSTER, SET TABLESPACE and SET LOGGED/UNLOGGED rewrite the table under ACCESS EXCLUSIVE"),
    rule("require-concurrent-partition-detach", Error, "DETACH PARTITION without CONCURRENTLY takes ACCESS EXCLUSIVE on the parent"),
    rule("require-check-before-attach-partition", Warning, "ATTACH PARTITION scans the table (and a default partition) under locks unless a validated CHECK proves the bound"),
    rule("prefer-attach-partition", Warning, "CREATE TABLE ... PARTITION OF takes ACCESS EXCLUSIVE on the partitioned table and scans its default partition under it"),
    rule("unique-without-partition-key", Error, "a unique index or constraint on a partitioned table must include the partition key"),
    rule("concurrent-index-on-partitioned-table", Error, "PostgreSQL refuses CREATE INDEX CONCURRENTLY on a partitioned table"),
    rule("require-concurrent-refresh", Warning, "REFRESH MATERIALIZED VIEW without CONCURRENTLY blocks reads of the view"),
    rule("ban-create-domain-with-constraint", Warning, "a domain's CHECK cannot be added NOT VALID later without scanning every column using it"),
    rule("ban-alter-domain-with-add-constraint", Warning, "ALTER DOMAIN ADD CONSTRAINT scans every column of the domain under locks"),
    rule("require-enum-value-ordering", Warning, "ALTER TYPE ... ADD VALUE without BEFORE or AFTER puts the value last"),
    rule("identifier-too-long", Error, "PostgreSQL cuts names longer than 63 bytes, silently"),
    // Types.
    rule("prefer-jsonb", Error, "json has no equality operator (DISTINCT, UNION and unique indexes fail) and is reparsed on every read"),
    rule("prefer-bigint-keys", Error, "an int or serial key runs out at 2,147,483,647 and must then be rewritten"),
    rule("prefer-identity", Warning, "serial columns own a sequence with its own grants and dump order; identity columns do not"),
    rule("prefer-timestamptz", Warning, "timestamp without time zone drops the offset; values change meaning with the session's time zone"),
    rule("ban-char-field", Warning, "char(n) pads with spaces and is no faster than text"),
    rule("prefer-text-field", Warning, "changing varchar(n)'s length later takes ACCESS EXCLUSIVE; text with a CHECK is changed NOT VALID"),
    rule("no-json", Off, "team policy: no json or jsonb columns (seed 001); turn it on in pgshift.toml"),
    // Transactions and timeouts.
    rule("require-timeout-settings", Error, "a statement that takes a blocking lock without lock_timeout queues every client behind it while it waits"),
    rule("transaction-nesting", Error, "BEGIN inside an open transaction, or COMMIT/ROLLBACK with none open"),
    rule("ban-uncommitted-transaction", Error, "the file ends with its transaction still open"),
    rule("pgshift-transaction-control", Error, "pgshift runs each .sql migration in its own transaction and refuses BEGIN/COMMIT in it"),
    rule("backfill-in-schema-transaction", Error, "a data change in the transaction that changed the table's schema holds the schema change's lock for the whole data change"),
    rule("validate-in-same-transaction", Error, "VALIDATE CONSTRAINT in the transaction that added the constraint NOT VALID: the ADD's lock is held through the validating scan, so NOT VALID saves nothing"),
    rule("prefer-robust-stmts", Warning, "run statement by statement, a file that fails half-way must run again: CREATE and ADD need IF NOT EXISTS, DROP needs IF EXISTS, and a concurrent index build first drops the INVALID index a failed build leaves"),
    rule("unbatched-data-change", Warning, "an UPDATE or DELETE of a whole table in one statement locks every row and bloats the table"),
];

pub fn find(name: &str) -> Option<&'static RuleInfo> {
    RULES.iter().find(|r| r.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_kebab_case() {
        for (i, r) in RULES.iter().enumerate() {
            assert!(
                r.name.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{}",
                r.name
            );
            assert!(
                RULES[i + 1..].iter().all(|o| o.name != r.name),
                "{} twice",
                r.name
            );
        }
    }
}
