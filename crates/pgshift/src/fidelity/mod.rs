//! What hangs on a table or a column, carried over when a swap replaces it.
//!
//! A copy of a table (`method: copy`) is a new relation, and a column's copy is a new
//! column: everything PostgreSQL keys by the old one's OID or attribute number would go with
//! it at the swap. [`read`] reads it from the catalog inside the swap's transaction, after
//! the swap has locked the tables, so what is carried is what is there at that moment (a
//! grant made while the migration was open included); [`apply`] turns it into the
//! statements that give it to the replacement in the same transaction. `docs/fidelity.md`
//! lists what is carried and how.

pub mod apply;
pub mod extracted;
pub mod prebuild;
pub mod read;
mod version;

pub use version::{access_to, version_access};

/// One entry of an access control list: `grantee` None is PUBLIC.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    pub grantee: Option<String>,
    pub privilege: String,
    pub grantable: bool,
}

/// A row-level security policy, as `CREATE POLICY` takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub permissive: bool,
    /// `*` (ALL), `r` (SELECT), `a` (INSERT), `w` (UPDATE), `d` (DELETE).
    pub command: String,
    /// None is PUBLIC.
    pub roles: Vec<Option<String>>,
    pub using: Option<String>,
    pub with_check: Option<String>,
}

/// A user trigger or rule: its definition as the server prints it (naming the table, so it
/// binds to whichever relation has the name when it runs) and its enabled state
/// (`O` origin, `D` disabled, `R` replica, `A` always).
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    pub name: String,
    pub sql: String,
    pub enabled: String,
}

/// A publication the table is in, with its column list and row filter (PostgreSQL 15+).
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    pub name: String,
    pub columns: Option<Vec<String>>,
    pub row_filter: Option<String>,
}

/// An extended statistics object.
#[derive(Debug, Clone, PartialEq)]
pub struct Statistics {
    pub name: String,
    pub sql: String,
    /// Its own statistics target, when set.
    pub target: Option<i32>,
}

/// What a column carries beyond its type, default, NOT NULL, identity and generation (which
/// the copy or the column's copy is made with).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ColumnDressing {
    pub name: String,
    pub grants: Vec<Grant>,
    /// `SET STATISTICS`, when not the default.
    pub statistics_target: Option<i32>,
    /// `SET STORAGE`, when not the type's default.
    pub storage: Option<String>,
    /// `SET COMPRESSION` (PostgreSQL 14+), when set.
    pub compression: Option<String>,
    pub comment: Option<String>,
    /// (provider, label)
    pub security_labels: Vec<(String, String)>,
}

/// What hangs on a table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TableDressing {
    pub schema: String,
    pub name: String,
    pub owner: String,
    /// The table's privileges, the owner's own included (a table with no grants reads as
    /// the owner's defaults).
    pub grants: Vec<Grant>,
    pub row_security: bool,
    pub force_row_security: bool,
    pub policies: Vec<Policy>,
    pub triggers: Vec<Definition>,
    pub rules: Vec<Definition>,
    pub publications: Vec<Publication>,
    /// `name=value` storage parameters of the table and of its TOAST table.
    pub options: Vec<String>,
    pub toast_options: Vec<String>,
    pub comment: Option<String>,
    pub security_labels: Vec<(String, String)>,
    /// `d`, `n`, `f` or `i`, with the index for `i`.
    pub replica_identity: String,
    pub replica_index: Option<String>,
    pub statistics: Vec<Statistics>,
    pub columns: Vec<ColumnDressing>,
}

/// A view or materialized view that depends on a table or a column, with what hangs on it.
#[derive(Debug, Clone, PartialEq)]
pub struct DependentView {
    pub schema: String,
    pub name: String,
    pub materialized: bool,
    /// How many views lie between it and the table (1: it reads the table itself): views
    /// are made again in this order.
    pub depth: i32,
    pub definition: String,
    pub options: Vec<String>,
    pub populated: bool,
    pub owner: String,
    pub grants: Vec<Grant>,
    pub comment: Option<String>,
    pub columns: Vec<ColumnDressing>,
    /// Column defaults of a view (`ALTER VIEW ... ALTER COLUMN ... SET DEFAULT`).
    pub defaults: Vec<(String, String)>,
    pub triggers: Vec<Definition>,
    pub rules: Vec<Definition>,
    /// A materialized view's indexes, as `CREATE INDEX` statements.
    pub indexes: Vec<String>,
}

/// A table, or one of its partitions (at any depth), as `read::partition_tree` reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeRelation {
    /// The table itself (a partition's name stays, the table's may change).
    pub root: bool,
    /// Quoted and qualified, as it is named when read.
    pub name: String,
    /// It holds rows: a partition without partitions of its own, or the table when it is
    /// not partitioned.
    pub leaf: bool,
    pub owner: String,
}

/// A foreign key of another table (or of the table itself) that references the table.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferencingKey {
    pub schema: String,
    pub table: String,
    pub name: String,
    /// `FOREIGN KEY (...) REFERENCES ...`, naming the referenced table.
    pub definition: String,
    pub validated: bool,
}
