//! The schema as a version's clients see it: visible table and column names, each mapped to
//! the physical table and column that hold the data.

use crate::catalog::Catalog;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct VirtualSchema {
    pub tables: BTreeMap<String, VTable>,
    /// The volatile functions the catalog has, for the planners' choices (not stored).
    #[serde(skip)]
    pub volatile_functions: std::collections::BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct VTable {
    pub physical: String,
    pub columns: Vec<VColumn>,
    /// The physical key columns a backfill can walk (primary key or unique NOT NULL).
    pub key: Vec<String>,
    pub constraints: Vec<String>,
    /// Physical columns that cannot be swapped for a copy by a duplication: the primary
    /// key's, and those other tables' foreign keys reference.
    pub pinned: Vec<String>,
    /// The physical primary key columns.
    pub primary_key: Vec<String>,
    /// Physical identity columns (GENERATED ... AS IDENTITY).
    pub identity: Vec<String>,
    /// Foreign keys of this schema's tables that reference this table.
    pub referenced_by: Vec<VReference>,
    /// Why a copy of the table cannot replace it, read from the catalog (something uses
    /// its row type, it is partitioned), or because the migration makes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncopyable: Option<String>,
    /// Whether another operation of the migration being planned names the table too (set
    /// by the planner for each operation; not stored): a copy made for one would lose the
    /// other's change.
    #[serde(skip)]
    pub shared: bool,
    /// The physical table this one is a partition of: its columns are its parent's, and an
    /// operation changes the parent, never one partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_of: Option<String>,
    /// Its size with its indexes and TOAST, in bytes, when the migration began.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bytes: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// A foreign key that references a table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VReference {
    pub constraint: String,
    /// The referencing table and its columns (physical).
    pub table: String,
    pub columns: Vec<String>,
    /// The referenced columns (physical), in the same order.
    pub referenced: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VColumn {
    pub name: String,
    pub physical: String,
    /// The physical column's name once the earlier operations' complete steps have run
    /// (a duplicated column's copy takes the column's name in the swap).
    pub complete_name: String,
    pub data_type: String,
    pub not_null: bool,
}

impl VTable {
    pub fn column(&self, name: &str) -> Option<&VColumn> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn column_mut(&mut self, name: &str) -> Option<&mut VColumn> {
        self.columns.iter_mut().find(|c| c.name == name)
    }
}

impl VirtualSchema {
    /// Every table and column of the catalog under its own name. pgshift's internal
    /// tables and columns (of an open migration) are not part of any version.
    pub fn from_catalog(catalog: &Catalog) -> VirtualSchema {
        let tables = catalog
            .tables
            .values()
            .filter(|t| !t.name.starts_with(super::INTERNAL_PREFIX))
            .map(|t| {
                (
                    t.name.clone(),
                    VTable {
                        physical: t.name.clone(),
                        columns: t
                            .columns
                            .iter()
                            .filter(|c| !c.name.starts_with(super::INTERNAL_PREFIX))
                            .map(|c| VColumn {
                                name: c.name.clone(),
                                physical: c.name.clone(),
                                complete_name: c.name.clone(),
                                data_type: c.data_type.clone(),
                                not_null: c.not_null,
                            })
                            .collect(),
                        key: t.backfill_key().map(|k| k.to_vec()).unwrap_or_default(),
                        constraints: t.constraints.keys().cloned().collect(),
                        pinned: t
                            .primary_key
                            .iter()
                            .chain(&t.referenced_columns)
                            .cloned()
                            .collect(),
                        primary_key: t.primary_key.clone(),
                        identity: t
                            .columns
                            .iter()
                            .filter(|c| !c.identity.is_empty())
                            .map(|c| c.name.clone())
                            .collect(),
                        referenced_by: catalog
                            .tables
                            .values()
                            .flat_map(|r| r.constraints.values().map(move |k| (r, k)))
                            .filter(|(_, k)| {
                                k.kind == "f"
                                    && !k.inherited
                                    && k.foreign_table.as_deref() == Some(&t.name)
                            })
                            .map(|(r, k)| VReference {
                                constraint: k.name.clone(),
                                table: r.name.clone(),
                                columns: k.columns.clone(),
                                referenced: k.foreign_columns.clone(),
                            })
                            .collect(),
                        uncopyable: if t.partitioned {
                            Some(format!("{} is partitioned, which a copy cannot replace yet", t.name))
                        } else if let Some(parent) = &t.partition_of {
                            Some(format!("{} is a partition of {parent}, which a copy cannot replace yet", t.name))
                        } else if !t.row_type_users.is_empty() {
                            Some(format!(
                                "{} uses the row type of {}, which a copy of the table (a new row type) cannot take over",
                                t.row_type_users.join(", "),
                                t.name
                            ))
                        } else if !t.publications_not_ours.is_empty() {
                            Some(format!(
                                "{} is in the publication {}, whose owner pgshift's role cannot act for, and a copy could not be put in it",
                                t.name,
                                t.publications_not_ours.join(", ")
                            ))
                        } else {
                            None
                        },
                        bytes: t.total_bytes,
                        partition_of: t.partition_of.clone(),
                        shared: false,
                    },
                )
            })
            .collect();
        VirtualSchema {
            tables,
            volatile_functions: catalog.volatile_functions.clone(),
        }
    }

    pub fn table(&self, name: &str) -> Option<&VTable> {
        self.tables.get(name)
    }

    /// Gives every partition its parent's columns as this version names them (an
    /// operation changes the parent, and with it every partition), and forgets the
    /// partitions of a table the version no longer has.
    pub fn follow_parents(&mut self) {
        let by_physical: BTreeMap<String, Vec<VColumn>> = self
            .tables
            .values()
            .map(|t| (t.physical.clone(), t.columns.clone()))
            .collect();
        // Parents before their partitions' partitions: as deep as the tree goes.
        for _ in 0..by_physical.len() {
            let mut changed = false;
            let current: BTreeMap<String, Vec<VColumn>> = self
                .tables
                .values()
                .map(|t| (t.physical.clone(), t.columns.clone()))
                .collect();
            let mut gone = Vec::new();
            for (name, t) in self.tables.iter_mut() {
                let Some(parent) = &t.partition_of else {
                    continue;
                };
                match current.get(parent) {
                    Some(columns) if *columns != t.columns => {
                        t.columns = columns.clone();
                        changed = true;
                    }
                    Some(_) => {}
                    None => gone.push(name.clone()),
                }
            }
            for name in &gone {
                self.tables.remove(name);
                changed = true;
            }
            if !changed {
                break;
            }
        }
    }

    /// `Err` when `table` is a partition: an operation on its columns or constraints
    /// changes the partitioned table instead.
    pub fn require_not_partition(&self, table: &str) -> Result<(), (String, Option<String>)> {
        match self.tables.get(table).and_then(|t| t.partition_of.as_ref()) {
            Some(parent) => Err((
                format!("{table} is a partition of {parent}: its columns and constraints are its partitioned table's"),
                Some(format!("name {parent} in the operation; the change reaches every partition")),
            )),
            None => Ok(()),
        }
    }

    pub fn table_mut(&mut self, name: &str) -> Option<&mut VTable> {
        self.tables.get_mut(name)
    }

    /// `Err` with a message and hint unless `table` exists in this version.
    pub fn require_table(&self, table: &str) -> Result<&VTable, (String, Option<String>)> {
        self.tables.get(table).ok_or_else(|| {
            let names: Vec<&str> = self.tables.keys().map(String::as_str).collect();
            (
                format!("table {table:?} does not exist"),
                Some(if names.is_empty() {
                    "the schema has no tables yet".to_owned()
                } else {
                    format!("tables in this version: {}", names.join(", "))
                }),
            )
        })
    }

    /// `Err` unless `table.column` exists in this version.
    pub fn require_column(
        &self,
        table: &str,
        column: &str,
    ) -> Result<&VColumn, (String, Option<String>)> {
        let t = self.require_table(table)?;
        t.column(column).ok_or_else(|| {
            let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
            (
                format!("column {column:?} does not exist in table {table:?}"),
                Some(format!("columns of {table}: {}", names.join(", "))),
            )
        })
    }
}

impl VirtualSchema {
    /// The tables and columns `catalog` has (pgshift's own included): what a version schema
    /// planned against it knew of.
    pub fn known(catalog: &Catalog) -> BTreeMap<String, Vec<String>> {
        catalog
            .tables
            .values()
            .map(|t| {
                (
                    t.name.clone(),
                    t.columns.iter().map(|c| c.name.clone()).collect(),
                )
            })
            .collect()
    }

    /// The planned schema brought up to date with `catalog` as it is when the version schema
    /// is made, `known` being what the catalog had when it was planned: the migration's own
    /// mapping of each table and column is kept; a table or column the catalog no longer
    /// has is left out; a table or column made since (by a `sql` operation, or by anyone
    /// else meanwhile) that no planned one maps is added under its own name. What the
    /// migration hides (a dropped column, say) stays hidden: it was known.
    pub fn refreshed(
        &self,
        catalog: &Catalog,
        known: &BTreeMap<String, Vec<String>>,
    ) -> VirtualSchema {
        let internal = |name: &str| name.starts_with(super::INTERNAL_PREFIX);
        let new_since = |table: &str, column: &str| {
            !internal(column)
                && !known
                    .get(table)
                    .is_some_and(|c| c.iter().any(|k| k == column))
        };
        let mut out = VirtualSchema::default();
        for (name, planned) in &self.tables {
            let Some(now) = catalog.table(&planned.physical) else {
                continue;
            };
            let mut table = planned.clone();
            table
                .columns
                .retain(|c| now.columns.iter().any(|n| n.name == c.physical));
            for c in &now.columns {
                let mapped = table.columns.iter().any(|p| p.physical == c.name);
                if !mapped && new_since(&now.name, &c.name) {
                    table.columns.push(VColumn {
                        name: c.name.clone(),
                        physical: c.name.clone(),
                        complete_name: c.name.clone(),
                        data_type: c.data_type.clone(),
                        not_null: c.not_null,
                    });
                }
            }
            out.tables.insert(name.clone(), table);
        }
        let live = VirtualSchema::from_catalog(catalog);
        for (name, table) in live.tables {
            let mapped = self.tables.values().any(|t| t.physical == table.physical);
            if !mapped && !known.contains_key(&name) && !out.tables.contains_key(&name) {
                out.tables.insert(name, table);
            }
        }
        out
    }
}
