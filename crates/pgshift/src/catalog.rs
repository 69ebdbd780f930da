//! What the live database looks like: the tables of a schema, their columns, keys,
//! constraints and indexes, read from pg_catalog.
//!
//! The planner works on this snapshot and never queries the database itself, so that a plan
//! is a pure function of (operation, catalog) and can be tested without a server.

use crate::error::Result;
use std::collections::BTreeMap;
use tokio_postgres::Client;

#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Catalog {
    pub schema: String,
    pub tables: BTreeMap<String, Table>,
    /// Index name → table name, for every index in the schema.
    pub indexes: BTreeMap<String, String>,
    pub server_version_num: i32,
    /// Names of volatile functions: a default that calls one must not be added in place.
    pub volatile_functions: std::collections::BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
    pub constraints: BTreeMap<String, Constraint>,
    pub indexes: Vec<Index>,
    /// Columns of this table that foreign keys of other tables (or of itself) reference.
    pub referenced_columns: Vec<String>,
    /// Columns of a UNIQUE index whose columns are all NOT NULL: usable as a backfill key.
    pub unique_not_null_keys: Vec<Vec<String>>,
    pub estimated_rows: i64,
    /// The heap's size in bytes (`pg_relation_size`).
    #[serde(default)]
    pub heap_bytes: i64,
    /// The table, its TOAST table and its indexes, in bytes (`pg_total_relation_size`):
    /// about what a copy of it needs free on the server.
    #[serde(default)]
    pub total_bytes: i64,
    /// What uses the table's row type (`pg_describe_object`): a copy, a new table with a
    /// new row type, cannot take it over.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub row_type_users: Vec<String>,
    /// The publications the table is in whose owner the current role cannot act for (none
    /// for a superuser): a copy could not be put in them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publications_not_ours: Vec<String>,
    /// Every publication the table is in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publications: Vec<String>,
    /// The publications that would publish the table's partitions under their own names,
    /// were it partitioned: those it is in (by name or FOR ALL TABLES) without
    /// `publish_via_partition_root`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publications_by_partition: Vec<String>,
    /// A partitioned table (`relkind 'p'`): it holds no rows itself, its partitions do.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partitioned: bool,
    /// The partitioned table this table is a partition of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_of: Option<String>,
    /// A partition's bound as `pg_get_expr` writes it (`FOR VALUES ...`, `DEFAULT`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub partition_bound: String,
    /// A partitioned table's partitions (those in this schema), by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<String>,
    /// A partitioned table's partition key columns (empty when the key has an expression),
    /// and the key as `pg_get_partkeydef` writes it (`RANGE (created_at)`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partition_key: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub partition_key_definition: String,
    /// `relreplident`: d (default), n (nothing), f (full) or i (index).
    pub replica_identity: String,
    /// The index used as replica identity, when `replica_identity` is i.
    pub replica_index: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Constraint {
    pub name: String,
    /// p, u, f, c or x.
    pub kind: String,
    pub columns: Vec<String>,
    /// `pg_get_constraintdef`: `CHECK (...)`, `FOREIGN KEY (...) REFERENCES ...`, ...
    pub definition: String,
    /// A foreign key's referenced table (in the same schema; None for another schema's)
    /// and columns.
    #[serde(default)]
    pub foreign_table: Option<String>,
    #[serde(default)]
    pub foreign_columns: Vec<String>,
    /// A partition's constraint made for its partitioned table's (`conparentid`): it goes
    /// with that one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inherited: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Index {
    pub name: String,
    /// `pg_get_indexdef`: a complete CREATE INDEX statement.
    pub definition: String,
    /// The constraint the index backs, if any.
    pub constraint: Option<String>,
    /// The partitioned table's index this partition's index is attached to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_of: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Column {
    pub name: String,
    /// `format_type` of the column: `character varying(255)`, `integer`, ...
    pub data_type: String,
    pub not_null: bool,
    pub default: Option<String>,
    /// 'a' (ALWAYS) or 'd' (BY DEFAULT) for identity columns, empty otherwise.
    pub identity: String,
    /// 's' for stored generated columns, empty otherwise.
    pub generated: String,
    pub comment: Option<String>,
    /// The sequence the column owns (serial, or OWNED BY): schema and name.
    #[serde(default)]
    pub owned_sequence: Option<(String, String)>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The key a backfill walks: the primary key, else a unique key of NOT NULL columns.
    pub fn backfill_key(&self) -> Option<&[String]> {
        if !self.primary_key.is_empty() {
            return Some(&self.primary_key);
        }
        self.unique_not_null_keys.first().map(|k| k.as_slice())
    }
}

impl Catalog {
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.get(name)
    }

    /// The default partition of partitioned table `name`, if it has one.
    pub fn default_partition(&self, name: &str) -> Option<&str> {
        self.table(name)?
            .partitions
            .iter()
            .find(|p| {
                self.table(p)
                    .is_some_and(|t| t.partition_bound == "DEFAULT")
            })
            .map(String::as_str)
    }

    /// The leaf partitions under partitioned table `name` and the partitioned tables
    /// between (sub-partitioned ones), depth first: (partition, its parent, whether it is
    /// partitioned itself). Empty for a table that is not partitioned.
    pub fn partition_tree(&self, name: &str) -> Vec<(String, String, bool)> {
        let mut out = Vec::new();
        let mut stack: Vec<(String, String)> = self
            .table(name)
            .map(|t| {
                t.partitions
                    .iter()
                    .rev()
                    .map(|p| (p.clone(), name.to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        while let Some((p, parent)) = stack.pop() {
            let sub = self.table(&p).map(|t| t.partitioned).unwrap_or(false);
            if let Some(t) = self.table(&p) {
                stack.extend(t.partitions.iter().rev().map(|c| (c.clone(), p.clone())));
            }
            out.push((p, parent, sub));
        }
        out
    }

    /// Reads every ordinary and partitioned table of `schema`.
    pub async fn load(client: &Client, schema: &str) -> Result<Catalog> {
        let server_version_num: i32 = client
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .await?
            .try_get(0)?;
        let mut tables: BTreeMap<String, Table> = BTreeMap::new();
        let rows = client
            .query(
                "SELECT c.relname::text, greatest(c.reltuples, 0)::bigint, c.relreplident::text,
                        (SELECT ic.relname::text FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                         WHERE i.indrelid = c.oid AND i.indisreplident),
                        pg_relation_size(c.oid), pg_total_relation_size(c.oid),
                        ARRAY(SELECT pg_describe_object(d.classid, d.objid, d.objsubid)
                              FROM pg_depend d
                              WHERE d.refclassid = 'pg_type'::regclass AND d.refobjid = c.reltype
                                AND d.deptype = 'n'
                              ORDER BY 1),
                        c.relkind = 'p',
                        ARRAY(SELECT p.pubname::text
                              FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
                              WHERE pr.prrelid = c.oid
                                AND NOT pg_has_role(current_user, p.pubowner, 'USAGE')
                                AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
                              ORDER BY 1),
                        ARRAY(SELECT p.pubname::text
                              FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
                              WHERE pr.prrelid = c.oid ORDER BY 1),
                        ARRAY(SELECT p.pubname::text FROM pg_publication p
                              WHERE NOT p.pubviaroot
                                AND (p.puballtables OR EXISTS (SELECT FROM pg_publication_rel pr
                                                               WHERE pr.prpubid = p.oid AND pr.prrelid = c.oid))
                              ORDER BY 1)
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')",
                &[&schema],
            )
            .await?;
        for r in &rows {
            let name: String = r.try_get(0)?;
            tables.insert(
                name.clone(),
                Table {
                    name,
                    estimated_rows: r.try_get(1)?,
                    replica_identity: r.try_get(2)?,
                    replica_index: r.try_get(3)?,
                    heap_bytes: r.try_get(4)?,
                    total_bytes: r.try_get(5)?,
                    row_type_users: r.try_get(6)?,
                    partitioned: r.try_get(7)?,
                    publications_not_ours: r.try_get(8)?,
                    publications: r.try_get(9)?,
                    publications_by_partition: r.try_get(10)?,
                    ..Table::default()
                },
            );
        }
        let rows = client
            .query(
                "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod),
                        a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity::text,
                        a.attgenerated::text, col_description(c.oid, a.attnum)
                 FROM pg_attribute a
                 JOIN pg_class c ON c.oid = a.attrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
                 ORDER BY c.relname, a.attnum",
                &[&schema],
            )
            .await?;
        for r in &rows {
            let table: String = r.try_get(0)?;
            if let Some(t) = tables.get_mut(&table) {
                t.columns.push(Column {
                    name: r.try_get(1)?,
                    data_type: r.try_get(2)?,
                    not_null: r.try_get(3)?,
                    default: r.try_get(4)?,
                    identity: r.try_get(5)?,
                    generated: r.try_get(6)?,
                    comment: r.try_get(7)?,
                    owned_sequence: None,
                });
            }
        }
        let rows = client
            .query(
                "SELECT c.relname::text, a.attname::text, sn.nspname::text, s.relname::text
                 FROM pg_depend d
                 JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
                 JOIN pg_namespace sn ON sn.oid = s.relnamespace
                 JOIN pg_class c ON c.oid = d.refobjid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.refobjsubid
                 WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                   AND d.deptype IN ('a', 'i') AND n.nspname = $1",
                &[&schema],
            )
            .await?;
        for r in &rows {
            let (table, column): (String, String) = (r.try_get(0)?, r.try_get(1)?);
            if let Some(c) = tables
                .get_mut(&table)
                .and_then(|t| t.columns.iter_mut().find(|c| c.name == column))
            {
                c.owned_sequence = Some((r.try_get(2)?, r.try_get(3)?));
            }
        }
        let rows = client
            .query(
                "SELECT c.relname::text, k.conname::text, k.contype::text,
                        ARRAY(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY u(n, i)
                              JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.i),
                        pg_get_constraintdef(k.oid),
                        (SELECT f.relname::text FROM pg_class f WHERE f.oid = k.confrelid AND f.relnamespace = c.relnamespace),
                        ARRAY(SELECT a.attname::text FROM unnest(k.confkey) WITH ORDINALITY u(n, i)
                              JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n ORDER BY u.i),
                        k.conparentid <> 0
                 FROM pg_constraint k
                 JOIN pg_class c ON c.oid = k.conrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1
                   -- A foreign key to a partitioned table has one more row per partition
                   -- it references, on the same referencing table: the key is the first.
                   AND (k.conparentid = 0 OR k.conrelid <> (SELECT x.conrelid FROM pg_constraint x WHERE x.oid = k.conparentid))",
                &[&schema],
            )
            .await?;
        for r in &rows {
            let table: String = r.try_get(0)?;
            if let Some(t) = tables.get_mut(&table) {
                let constraint = Constraint {
                    name: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    columns: r.try_get(3)?,
                    definition: r.try_get(4)?,
                    foreign_table: r.try_get(5)?,
                    foreign_columns: r.try_get(6)?,
                    inherited: r.try_get(7)?,
                };
                if constraint.kind == "p" {
                    t.primary_key = constraint.columns.clone();
                }
                t.constraints.insert(constraint.name.clone(), constraint);
            }
        }
        let rows = client
            .query(
                "SELECT c.relname::text, a.attname::text
                 FROM pg_constraint k
                 JOIN pg_class c ON c.oid = k.confrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN LATERAL unnest(k.confkey) u(n) ON true
                 JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n
                 WHERE n.nspname = $1 AND k.contype = 'f' AND k.conparentid = 0",
                &[&schema],
            )
            .await?;
        for r in &rows {
            let table: String = r.try_get(0)?;
            let column: String = r.try_get(1)?;
            if let Some(t) = tables.get_mut(&table) {
                if !t.referenced_columns.contains(&column) {
                    t.referenced_columns.push(column);
                }
            }
        }
        let rows = client
            .query(
                "SELECT t.relname::text, ic.relname::text, i.indisunique AND i.indisvalid AND i.indpred IS NULL
                        AND i.indexprs IS NULL
                        AND NOT EXISTS (SELECT 1 FROM unnest(i.indkey) k JOIN pg_attribute a
                                        ON a.attrelid = i.indrelid AND a.attnum = k WHERE NOT a.attnotnull),
                        ARRAY(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY u(n, o)
                              JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = u.n ORDER BY u.o),
                        pg_get_indexdef(i.indexrelid),
                        (SELECT k.conname::text FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid LIMIT 1),
                        (SELECT p.relname::text FROM pg_inherits h JOIN pg_class p ON p.oid = h.inhparent WHERE h.inhrelid = i.indexrelid)
                 FROM pg_index i
                 JOIN pg_class ic ON ic.oid = i.indexrelid
                 JOIN pg_class t ON t.oid = i.indrelid
                 JOIN pg_namespace n ON n.oid = ic.relnamespace
                 WHERE n.nspname = $1
                 ORDER BY ic.relname",
                &[&schema],
            )
            .await?;
        let mut indexes = BTreeMap::new();
        for r in &rows {
            let table: String = r.try_get(0)?;
            let name: String = r.try_get(1)?;
            indexes.insert(name.clone(), table.clone());
            let usable: bool = r.try_get(2)?;
            if let Some(t) = tables.get_mut(&table) {
                if usable {
                    t.unique_not_null_keys.push(r.try_get(3)?);
                }
                t.indexes.push(Index {
                    name,
                    definition: r.try_get(4)?,
                    constraint: r.try_get(5)?,
                    partition_of: r.try_get(6)?,
                });
            }
        }
        let rows = client
            .query(
                "SELECT c.relname::text, p.relname::text, pg_get_expr(c.relpartbound, c.oid)
                 FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_inherits h ON h.inhrelid = c.oid
                 JOIN pg_class p ON p.oid = h.inhparent
                 WHERE n.nspname = $1 AND c.relispartition AND c.relkind IN ('r', 'p')
                 ORDER BY c.relname",
                &[&schema],
            )
            .await?;
        for r in &rows {
            let (name, parent): (String, String) = (r.try_get(0)?, r.try_get(1)?);
            if let Some(t) = tables.get_mut(&name) {
                t.partition_of = Some(parent.clone());
                t.partition_bound = r.try_get::<_, Option<String>>(2)?.unwrap_or_default();
            }
            if let Some(p) = tables.get_mut(&parent) {
                p.partitions.push(name);
            }
        }
        let rows = client
            .query(
                "SELECT c.relname::text, pg_get_partkeydef(c.oid),
                        ARRAY(SELECT a.attname::text FROM unnest(pt.partattrs::int2[]) WITH ORDINALITY u(n, i)
                              JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = u.n ORDER BY u.i),
                        pt.partexprs IS NOT NULL
                 FROM pg_partitioned_table pt
                 JOIN pg_class c ON c.oid = pt.partrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1",
                &[&schema],
            )
            .await?;
        for r in &rows {
            let name: String = r.try_get(0)?;
            if let Some(t) = tables.get_mut(&name) {
                t.partition_key_definition = r.try_get(1)?;
                let expressions: bool = r.try_get(3)?;
                if !expressions {
                    t.partition_key = r.try_get(2)?;
                }
            }
        }
        let volatile_functions = client
            .query(
                "SELECT DISTINCT proname::text FROM pg_proc WHERE provolatile = 'v'",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        Ok(Catalog {
            schema: schema.to_owned(),
            tables,
            indexes,
            server_version_num,
            volatile_functions,
        })
    }
}
