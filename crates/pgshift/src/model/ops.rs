//! The operations of a migration, in pgroll's vocabulary.

use super::fragment::{
    ExcludeElements, Expression, ExpressionOrQuery, Parameter, PartitionBound, PartitionBy,
    SequenceOptions, SqlText, StorageParameters, TypeName,
};
use super::{identifier, identifier_opt, identifiers, present_or_null};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

/// The one list of operations: (variant, the name written in files, the type it holds).
/// Everything that enumerates operations expands it with a macro of its own: the enum, its
/// names, its parsing and its kind (here), the planner's dispatch (`plan::ops`). Adding an
/// operation is a line here, its type, and its planner.
macro_rules! with_operations {
    ($then:ident) => {
        $then! {
            CreateTable = "create_table" (CreateTable),
            DropTable = "drop_table" (DropTable),
            RenameTable = "rename_table" (RenameTable),
            AddColumn = "add_column" (AddColumn),
            DropColumn = "drop_column" (DropColumn),
            RenameColumn = "rename_column" (RenameColumn),
            AlterColumn = "alter_column" (AlterColumn),
            CreateIndex = "create_index" (CreateIndex),
            DropIndex = "drop_index" (DropIndex),
            CreateConstraint = "create_constraint" (CreateConstraint),
            DropConstraint = "drop_constraint" (DropConstraint),
            DropMulticolumnConstraint = "drop_multicolumn_constraint" (DropMulticolumnConstraint),
            RenameConstraint = "rename_constraint" (RenameConstraint),
            SetReplicaIdentity = "set_replica_identity" (SetReplicaIdentity),
            Sql = "sql" (RawSql),
            Update = "update" (Update),
            AlterPrimaryKey = "alter_primary_key" (AlterPrimaryKey),
            Extract = "extract" (Extract),
            CreatePartition = "create_partition" (CreatePartition),
            AttachPartition = "attach_partition" (AttachPartition),
            DetachPartition = "detach_partition" (DetachPartition),
            DropPartition = "drop_partition" (DropPartition),
            PartitionTable = "partition_table" (PartitionTable),
        }
    };
}
pub(crate) use with_operations;

macro_rules! operation_enum {
    ($($variant:ident = $name:literal ($ty:ty)),+ $(,)?) => {
        /// One operation: a map with one key naming it, `{ create_table: { ... } }` in
        /// YAML/JSON, `[operations.create_table]` under `[[operations]]` in TOML.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Operation {
            $($variant($ty)),+
        }

        /// The operation names, as written in files.
        pub const OPERATION_NAMES: &[&str] = &[$($name),+];

        impl Operation {
            /// The operation's name as written in a file.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Operation::$variant(_) => $name),+
                }
            }
        }

        /// The operation named `key`, its body read from `map`.
        fn operation_named<'de, A: serde::de::MapAccess<'de>>(
            key: &str,
            map: &mut A,
        ) -> Result<Operation, A::Error> {
            match key {
                $($name => Ok(Operation::$variant(map.next_value()?)),)+
                other => Err(A::Error::unknown_variant(other, OPERATION_NAMES)),
            }
        }
    };
}
with_operations!(operation_enum);

/// The SQL fragments of an operation, which the server checks and lint iterate instead
/// of each keeping its own `match`: the types it names, each `up` expression with the
/// table it reads, and the raw SQL it runs.
#[derive(Debug, Default, PartialEq)]
pub struct Fragments<'a> {
    pub types: Vec<TypeUse<'a>>,
    /// (table, expression over the old version's columns)
    pub ups: Vec<(&'a str, &'a str)>,
    /// Raw SQL the operation runs as written (a `sql` operation's `up`; its `down` only
    /// undoes it while the migration is open, before any client uses it).
    pub sql: Vec<&'a str>,
}

/// A type an operation gives a column.
#[derive(Debug, PartialEq)]
pub struct TypeUse<'a> {
    /// The column (for `alter_primary_key`, the table whose key it is).
    pub column: &'a str,
    pub data_type: &'a str,
    /// Whether the column is (or points at) a key: int keys are linted as such.
    pub key: bool,
}

/// What each operation lists of its fragments (see [`Fragments`]); an operation that
/// names no type, expression or SQL keeps the empty default.
pub trait HasFragments {
    fn fragments<'a>(&'a self, _into: &mut Fragments<'a>) {}
}

macro_rules! fragments_dispatch {
    ($($variant:ident = $name:literal ($ty:ty)),+ $(,)?) => {
        impl Operation {
            /// The fragments this operation carries (see [`Fragments`]).
            pub fn fragments(&self) -> Fragments<'_> {
                let mut f = Fragments::default();
                match self {
                    $(Operation::$variant(op) => HasFragments::fragments(op, &mut f)),+
                }
                f
            }
        }
    };
}
with_operations!(fragments_dispatch);

impl HasFragments for CreateTable {
    fn fragments<'a>(&'a self, f: &mut Fragments<'a>) {
        let keys: Vec<&String> = self
            .constraints
            .iter()
            .filter(|k| {
                matches!(
                    k.kind,
                    ConstraintType::PrimaryKey | ConstraintType::ForeignKey
                )
            })
            .flat_map(|k| &k.columns)
            .collect();
        f.types.extend(self.columns.iter().map(|c| TypeUse {
            column: &c.name,
            data_type: &c.data_type,
            key: c.pk || c.references.is_some() || keys.contains(&&c.name),
        }));
    }
}

impl HasFragments for AddColumn {
    fn fragments<'a>(&'a self, f: &mut Fragments<'a>) {
        f.types.push(TypeUse {
            column: &self.column.name,
            data_type: &self.column.data_type,
            key: self.column.pk || self.column.references.is_some(),
        });
        f.ups
            .extend(self.up.as_deref().map(|up| (self.table.as_str(), up)));
    }
}

impl HasFragments for AlterColumn {
    fn fragments<'a>(&'a self, f: &mut Fragments<'a>) {
        f.types.extend(self.data_type.as_deref().map(|t| TypeUse {
            column: &self.column,
            data_type: t,
            key: self.references.is_some(),
        }));
        f.ups
            .extend(self.up.as_deref().map(|up| (self.table.as_str(), up)));
    }
}

impl HasFragments for CreateConstraint {
    fn fragments<'a>(&'a self, f: &mut Fragments<'a>) {
        f.ups
            .extend(self.up.values().map(|u| (self.table.as_str(), u.as_str())));
    }
}

impl HasFragments for AlterPrimaryKey {
    fn fragments<'a>(&'a self, f: &mut Fragments<'a>) {
        f.types.push(TypeUse {
            column: &self.table,
            data_type: &self.data_type,
            key: true,
        });
    }
}

impl HasFragments for RawSql {
    fn fragments<'a>(&'a self, f: &mut Fragments<'a>) {
        f.sql.push(&self.up);
    }
}

impl HasFragments for DropTable {}
impl HasFragments for RenameTable {}
impl HasFragments for DropColumn {}
impl HasFragments for RenameColumn {}
impl HasFragments for CreateIndex {}
impl HasFragments for DropIndex {}
impl HasFragments for DropConstraint {}
impl HasFragments for DropMulticolumnConstraint {}
impl HasFragments for RenameConstraint {}
impl HasFragments for SetReplicaIdentity {}
impl HasFragments for Update {}
impl HasFragments for Extract {}
impl HasFragments for CreatePartition {}
impl HasFragments for AttachPartition {}
impl HasFragments for DetachPartition {}
impl HasFragments for DropPartition {}
impl HasFragments for PartitionTable {}

impl<'de> Deserialize<'de> for Operation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OperationVisitor;

        impl<'de> serde::de::Visitor<'de> for OperationVisitor {
            type Value = Operation;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an operation: a map with one key naming the operation")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Operation, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(A::Error::custom(
                        "empty operation: give one key naming the operation, such as create_table",
                    ));
                };
                let op = operation_named(&key, &mut map)?;
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(A::Error::custom(format!(
                        "one operation per list item: `{extra}` follows `{key}` in the same item; start a new item for it"
                    )));
                }
                Ok(op)
            }
        }

        d.deserialize_map(OperationVisitor)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTable {
    #[serde(deserialize_with = "identifier")]
    pub name: String,
    pub columns: Vec<Column>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub constraints: Vec<TableConstraint>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    #[serde(deserialize_with = "identifier")]
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: TypeName,
    /// pgroll's default: a column is NOT NULL unless it says `nullable: true`.
    #[serde(default)]
    pub nullable: bool,
    #[serde(default)]
    pub pk: bool,
    #[serde(default)]
    pub unique: bool,
    #[serde(default)]
    pub default: Option<Expression>,
    #[serde(default)]
    pub check: Option<CheckConstraint>,
    #[serde(default)]
    pub references: Option<ForeignKeyReference>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub generated: Option<Generated>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generated {
    #[serde(default)]
    pub expression: Option<Expression>,
    #[serde(default)]
    pub identity: Option<Identity>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    #[serde(default)]
    pub user_specified_values: Option<IdentityKind>,
    #[serde(default)]
    pub sequence_options: Option<SequenceOptions>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum IdentityKind {
    #[serde(rename = "ALWAYS")]
    Always,
    #[serde(rename = "BY DEFAULT")]
    ByDefault,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConstraint {
    #[serde(deserialize_with = "identifier")]
    pub name: String,
    pub constraint: Expression,
    #[serde(default)]
    pub no_inherit: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ReferentialAction {
    #[serde(rename = "NO ACTION", alias = "no action")]
    NoAction,
    #[serde(rename = "RESTRICT", alias = "restrict")]
    Restrict,
    #[serde(rename = "CASCADE", alias = "cascade")]
    Cascade,
    #[serde(rename = "SET NULL", alias = "set null")]
    SetNull,
    #[serde(rename = "SET DEFAULT", alias = "set default")]
    SetDefault,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum MatchType {
    #[serde(rename = "SIMPLE", alias = "simple")]
    Simple,
    #[serde(rename = "FULL", alias = "full")]
    Full,
}

/// A single-column foreign key (`references` on a column).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForeignKeyReference {
    #[serde(deserialize_with = "identifier")]
    pub name: String,
    #[serde(deserialize_with = "identifier")]
    pub table: String,
    #[serde(deserialize_with = "identifier")]
    pub column: String,
    #[serde(default)]
    pub on_delete: Option<ReferentialAction>,
    #[serde(default)]
    pub on_update: Option<ReferentialAction>,
    #[serde(default)]
    pub match_type: Option<MatchType>,
    #[serde(default)]
    pub deferrable: bool,
    #[serde(default)]
    pub initially_deferred: bool,
}

/// The referenced side of a multi-column foreign key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableReference {
    #[serde(deserialize_with = "identifier")]
    pub table: String,
    #[serde(deserialize_with = "identifiers")]
    pub columns: Vec<String>,
    #[serde(default)]
    pub on_delete: Option<ReferentialAction>,
    #[serde(default)]
    pub on_update: Option<ReferentialAction>,
    #[serde(default)]
    pub match_type: Option<MatchType>,
    #[serde(default, deserialize_with = "identifiers")]
    pub on_delete_set_columns: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConstraintType {
    Unique,
    Check,
    PrimaryKey,
    ForeignKey,
    Exclude,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexParameters {
    #[serde(default, deserialize_with = "identifiers")]
    pub include_columns: Vec<String>,
    #[serde(default)]
    pub storage_parameters: Option<StorageParameters>,
    #[serde(default, deserialize_with = "identifier_opt")]
    pub tablespace: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExcludeSpec {
    #[serde(default, deserialize_with = "identifier_opt")]
    pub index_method: Option<String>,
    pub elements: ExcludeElements,
    #[serde(default)]
    pub predicate: Option<Expression>,
}

/// The fields shared by a table constraint in `create_table` and by `create_constraint`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConstraint {
    #[serde(deserialize_with = "identifier")]
    name: String,
    #[serde(rename = "type")]
    kind: ConstraintType,
    #[serde(default, deserialize_with = "identifiers")]
    columns: Vec<String>,
    #[serde(default)]
    check: Option<Expression>,
    #[serde(default)]
    no_inherit: bool,
    #[serde(default)]
    references: Option<TableReference>,
    #[serde(default)]
    deferrable: bool,
    #[serde(default)]
    initially_deferred: bool,
    #[serde(default)]
    nulls_not_distinct: bool,
    #[serde(default)]
    index_parameters: Option<IndexParameters>,
    #[serde(default)]
    exclude: Option<ExcludeSpec>,
    // Only in create_constraint.
    #[serde(default)]
    table: Option<String>,
    #[serde(default, deserialize_with = "super::fragment::expression_map_opt")]
    up: Option<BTreeMap<String, ExpressionOrQuery>>,
    #[serde(default, deserialize_with = "super::fragment::expression_map_opt")]
    down: Option<BTreeMap<String, ExpressionOrQuery>>,
}

/// A constraint declared with its table in `create_table`.
#[derive(Debug, Clone, PartialEq)]
pub struct TableConstraint {
    pub name: String,
    pub kind: ConstraintType,
    pub columns: Vec<String>,
    pub check: Option<Expression>,
    pub no_inherit: bool,
    pub references: Option<TableReference>,
    pub deferrable: bool,
    pub initially_deferred: bool,
    pub nulls_not_distinct: bool,
    pub index_parameters: IndexParameters,
    pub exclude: Option<ExcludeSpec>,
}

impl RawConstraint {
    fn check_shape(&self) -> Result<(), String> {
        let needs_columns = matches!(
            self.kind,
            ConstraintType::Unique | ConstraintType::PrimaryKey | ConstraintType::ForeignKey
        );
        if needs_columns && self.columns.is_empty() {
            return Err(format!(
                "constraint {:?} of type {:?} needs `columns`",
                self.name, self.kind
            ));
        }
        match self.kind {
            ConstraintType::Check if self.check.as_deref().is_none_or(str::is_empty) => Err(
                format!("check constraint {:?} needs `check` (the expression)", self.name),
            ),
            ConstraintType::ForeignKey => match &self.references {
                None => Err(format!(
                    "foreign key {:?} needs `references` (table and columns)",
                    self.name
                )),
                Some(r) if r.columns.len() != self.columns.len() => Err(format!(
                    "foreign key {:?} has {} columns but references {}",
                    self.name,
                    self.columns.len(),
                    r.columns.len()
                )),
                Some(_) => Ok(()),
            },
            ConstraintType::Exclude if self.exclude.is_none() => Err(format!(
                "exclusion constraint {:?} needs `exclude` (elements and optional method, predicate)",
                self.name
            )),
            _ => Ok(()),
        }
    }

    fn into_table_constraint(self) -> TableConstraint {
        TableConstraint {
            name: self.name,
            kind: self.kind,
            columns: self.columns,
            check: self.check,
            no_inherit: self.no_inherit,
            references: self.references,
            deferrable: self.deferrable,
            initially_deferred: self.initially_deferred,
            nulls_not_distinct: self.nulls_not_distinct,
            index_parameters: self.index_parameters.unwrap_or_default(),
            exclude: self.exclude,
        }
    }
}

impl<'de> Deserialize<'de> for TableConstraint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawConstraint::deserialize(d)?;
        if raw.table.is_some() || raw.up.is_some() || raw.down.is_some() {
            return Err(D::Error::custom(
                "a constraint inside create_table takes no `table`, `up` or `down`",
            ));
        }
        raw.check_shape().map_err(D::Error::custom)?;
        Ok(raw.into_table_constraint())
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropTable {
    #[serde(deserialize_with = "identifier")]
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameTable {
    #[serde(deserialize_with = "identifier")]
    pub from: String,
    #[serde(deserialize_with = "identifier")]
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddColumn {
    #[serde(deserialize_with = "identifier")]
    pub table: String,
    pub column: Column,
    /// SQL expression that fills the new column from the old columns of each row.
    #[serde(default)]
    pub up: Option<ExpressionOrQuery>,
    /// `copy` or `in_place` (pgshift's own field); without it pgshift chooses.
    #[serde(default)]
    pub method: Option<AlterMethod>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropColumn {
    #[serde(deserialize_with = "identifier")]
    pub table: String,
    #[serde(deserialize_with = "identifier")]
    pub column: String,
    /// SQL expression that fills the dropped column for rows written by new-version clients.
    #[serde(default)]
    pub down: Option<ExpressionOrQuery>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameColumn {
    #[serde(deserialize_with = "identifier")]
    pub table: String,
    #[serde(deserialize_with = "identifier")]
    pub from: String,
    #[serde(deserialize_with = "identifier")]
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UniqueConstraint {
    #[serde(deserialize_with = "identifier")]
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlterColumn {
    #[serde(deserialize_with = "identifier")]
    table: String,
    #[serde(deserialize_with = "identifier")]
    column: String,
    /// pgroll's older spelling of a rename inside alter_column.
    #[serde(default, deserialize_with = "identifier_opt")]
    name: Option<String>,
    #[serde(default, rename = "type")]
    data_type: Option<TypeName>,
    #[serde(default)]
    nullable: Option<bool>,
    #[serde(default)]
    unique: Option<UniqueConstraint>,
    #[serde(default)]
    check: Option<CheckConstraint>,
    #[serde(default)]
    references: Option<ForeignKeyReference>,
    #[serde(default, deserialize_with = "present_or_null")]
    default: Option<Option<Expression>>,
    #[serde(default, deserialize_with = "present_or_null")]
    comment: Option<Option<String>>,
    #[serde(default)]
    up: Option<ExpressionOrQuery>,
    #[serde(default)]
    down: Option<ExpressionOrQuery>,
    #[serde(default)]
    method: Option<AlterMethod>,
}

/// How a column's type change is carried out (pgshift's own field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlterMethod {
    /// In the table: a copy of the column (or the new column) filled by a backfill
    /// (`column`, its earlier name, is still read).
    #[serde(alias = "column")]
    InPlace,
    /// A copy of the whole table with the new type, filled in bulk, its indexes built
    /// after the copy, swapped in at complete: as fast as the blocking ALTER's rewrite.
    /// pgshift's choice, without `method`, whenever the table can be copied.
    Copy,
}

/// Changes to one column, in any combination.
#[derive(Debug, Clone, PartialEq)]
pub struct AlterColumn {
    pub table: String,
    pub column: String,
    pub rename_to: Option<String>,
    pub data_type: Option<TypeName>,
    pub nullable: Option<bool>,
    pub unique: Option<UniqueConstraint>,
    pub check: Option<CheckConstraint>,
    pub references: Option<ForeignKeyReference>,
    /// `Some(None)`: drop the default. `None`: leave it.
    pub default: Option<Option<Expression>>,
    /// `Some(None)`: remove the comment. `None`: leave it.
    pub comment: Option<Option<String>>,
    pub up: Option<ExpressionOrQuery>,
    pub down: Option<ExpressionOrQuery>,
    pub method: Option<AlterMethod>,
}

impl<'de> Deserialize<'de> for AlterColumn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = RawAlterColumn::deserialize(d)?;
        let changes_shape = r.data_type.is_some()
            || r.nullable.is_some()
            || r.unique.is_some()
            || r.check.is_some()
            || r.references.is_some()
            || r.default.is_some()
            || r.comment.is_some();
        if !changes_shape && r.name.is_none() {
            return Err(D::Error::custom(format!(
                "alter_column on {}.{} changes nothing: give at least one of type, nullable, unique, check, references, default, comment or name",
                r.table, r.column
            )));
        }
        Ok(AlterColumn {
            table: r.table,
            column: r.column,
            rename_to: r.name,
            data_type: r.data_type,
            nullable: r.nullable,
            unique: r.unique,
            check: r.check,
            references: r.references,
            default: r.default,
            comment: r.comment,
            up: r.up,
            down: r.down,
            method: r.method,
        })
    }
}

/// One column of an index: `{ column: name, opclass: ..., sort: ..., nulls: ..., collate: ... }`,
/// or just the column's name.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexColumn {
    pub column: String,
    pub collate: Option<ObjectName>,
    pub sort: Option<SortOrder>,
    pub nulls: Option<NullsOrder>,
    pub opclass: Option<OpClass>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SortOrder {
    #[serde(rename = "ASC", alias = "asc")]
    Asc,
    #[serde(rename = "DESC", alias = "desc")]
    Desc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum NullsOrder {
    #[serde(rename = "FIRST", alias = "first")]
    First,
    #[serde(rename = "LAST", alias = "last")]
    Last,
}

/// A name that may be schema-qualified: `name`, or `{schema: s, name: n}` for one that
/// is not on the search_path (a dot inside a string is part of the name, as in the
/// collation `en_US.utf8`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectName {
    pub schema: Option<String>,
    pub name: String,
}

impl ObjectName {
    /// The name as SQL: quoted, and qualified when it has a schema.
    pub fn sql(&self) -> String {
        match &self.schema {
            Some(schema) => crate::quote::qualified(schema, &self.name).into(),
            None => crate::quote::ident(&self.name).into(),
        }
    }
}

impl<'de> Deserialize<'de> for ObjectName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Qualified {
            #[serde(default, deserialize_with = "identifier_opt")]
            schema: Option<String>,
            #[serde(deserialize_with = "identifier")]
            name: String,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bare(String),
            Qualified(Qualified),
        }
        match Raw::deserialize(d).map_err(|_| {
            D::Error::custom(
                "a name: a string, or {schema: ..., name: ...} for a schema-qualified one",
            )
        })? {
            Raw::Bare(name) => {
                crate::quote::validate_identifier(&name)
                    .map_err(|e| D::Error::custom(format!("invalid name {name:?}: {e}")))?;
                Ok(ObjectName { schema: None, name })
            }
            Raw::Qualified(q) => Ok(ObjectName {
                schema: q.schema,
                name: q.name,
            }),
        }
    }
}

impl OpClass {
    /// The operator class's name as SQL, qualified when it has a schema.
    pub fn sql_name(&self) -> String {
        ObjectName {
            schema: self.schema.clone(),
            name: self.name.clone(),
        }
        .sql()
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpClass {
    #[serde(deserialize_with = "identifier")]
    pub name: String,
    /// The operator class's schema, when it is not found on the search_path.
    #[serde(default, deserialize_with = "identifier_opt")]
    pub schema: Option<String>,
    #[serde(default)]
    pub params: Vec<Parameter>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexColumnSettings {
    #[serde(default, deserialize_with = "identifier_opt")]
    column: Option<String>,
    #[serde(default)]
    collate: Option<ObjectName>,
    #[serde(default)]
    sort: Option<SortOrder>,
    #[serde(default)]
    nulls: Option<NullsOrder>,
    #[serde(default)]
    opclass: Option<OpClass>,
}

impl IndexColumnSettings {
    fn into_column(self, name: String) -> IndexColumn {
        IndexColumn {
            column: name,
            collate: self.collate,
            sort: self.sort,
            nulls: self.nulls,
            opclass: self.opclass,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IndexColumnItem {
    Name(String),
    Settings(IndexColumnSettings),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IndexColumnsRaw {
    List(Vec<IndexColumnItem>),
    Map(BTreeMap<String, Option<IndexColumnSettings>>),
}

fn index_columns<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IndexColumn>, D::Error> {
    let raw = IndexColumnsRaw::deserialize(d).map_err(|_| {
        D::Error::custom(
            "`columns` must be a list of column names, a list of `{ column: name, ... }`, or a map from column name to its settings",
        )
    })?;
    let columns: Vec<IndexColumn> = match raw {
        IndexColumnsRaw::List(items) => items
            .into_iter()
            .map(|item| match item {
                IndexColumnItem::Name(name) => Ok(IndexColumnSettings {
                    column: None,
                    collate: None,
                    sort: None,
                    nulls: None,
                    opclass: None,
                }
                .into_column(name)),
                IndexColumnItem::Settings(mut s) => match s.column.take() {
                    Some(name) => Ok(s.into_column(name)),
                    None => Err(D::Error::custom("an index column needs `column`")),
                },
            })
            .collect::<Result<_, _>>()?,
        IndexColumnsRaw::Map(map) => map
            .into_iter()
            .map(|(name, s)| {
                let s = s.unwrap_or(IndexColumnSettings {
                    column: None,
                    collate: None,
                    sort: None,
                    nulls: None,
                    opclass: None,
                });
                if s.column.is_some() {
                    return Err(D::Error::custom(
                        "in the map form of `columns` the key is the column; drop `column`",
                    ));
                }
                Ok(s.into_column(name))
            })
            .collect::<Result<_, _>>()?,
    };
    if columns.is_empty() {
        return Err(D::Error::custom("an index needs at least one column"));
    }
    for c in &columns {
        crate::quote::validate_identifier(&c.column)
            .map_err(|e| D::Error::custom(format!("invalid column name {:?}: {e}", c.column)))?;
    }
    Ok(columns)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexMethod {
    Btree,
    Hash,
    Gist,
    Spgist,
    Gin,
    Brin,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateIndex {
    #[serde(deserialize_with = "identifier")]
    pub name: String,
    #[serde(deserialize_with = "identifier")]
    pub table: String,
    #[serde(deserialize_with = "index_columns")]
    pub columns: Vec<IndexColumn>,
    #[serde(default)]
    pub predicate: Option<Expression>,
    #[serde(default)]
    pub method: Option<IndexMethod>,
    #[serde(default)]
    pub storage_parameters: Option<StorageParameters>,
    #[serde(default)]
    pub unique: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropIndex {
    #[serde(deserialize_with = "identifier")]
    pub name: String,
}

/// `create_constraint`: a constraint on existing columns, with `up`/`down` per column.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateConstraint {
    pub table: String,
    pub constraint: TableConstraint,
    pub up: BTreeMap<String, ExpressionOrQuery>,
    pub down: BTreeMap<String, ExpressionOrQuery>,
}

impl<'de> Deserialize<'de> for CreateConstraint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut raw = RawConstraint::deserialize(d)?;
        let table = raw
            .table
            .take()
            .ok_or_else(|| D::Error::custom("create_constraint needs `table`"))?;
        crate::quote::validate_identifier(&table)
            .map_err(|e| D::Error::custom(format!("invalid table name {table:?}: {e}")))?;
        raw.check_shape().map_err(D::Error::custom)?;
        let up = raw.up.take().unwrap_or_default();
        let down = raw.down.take().unwrap_or_default();
        for key in up.keys().chain(down.keys()) {
            if !raw.columns.contains(key) {
                return Err(D::Error::custom(format!(
                    "`up`/`down` name column {key:?}, which is not among the constraint's columns {:?}",
                    raw.columns
                )));
            }
        }
        Ok(CreateConstraint {
            table,
            constraint: raw.into_table_constraint(),
            up,
            down,
        })
    }
}

/// `drop_constraint`: pgroll's older single-column form.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropConstraint {
    #[serde(deserialize_with = "identifier")]
    pub table: String,
    #[serde(deserialize_with = "identifier")]
    pub name: String,
    #[serde(default)]
    pub up: Option<ExpressionOrQuery>,
    #[serde(default)]
    pub down: Option<ExpressionOrQuery>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropMulticolumnConstraint {
    #[serde(deserialize_with = "identifier")]
    pub table: String,
    #[serde(deserialize_with = "identifier")]
    pub name: String,
    #[serde(default, deserialize_with = "super::fragment::expression_map")]
    pub up: BTreeMap<String, ExpressionOrQuery>,
    #[serde(deserialize_with = "super::fragment::expression_map")]
    pub down: BTreeMap<String, ExpressionOrQuery>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameConstraint {
    #[serde(deserialize_with = "identifier")]
    pub table: String,
    #[serde(deserialize_with = "identifier")]
    pub from: String,
    #[serde(deserialize_with = "identifier")]
    pub to: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ReplicaIdentityType {
    #[serde(rename = "default", alias = "DEFAULT")]
    Default,
    #[serde(rename = "full", alias = "FULL")]
    Full,
    #[serde(rename = "nothing", alias = "NOTHING")]
    Nothing,
    #[serde(rename = "index", alias = "INDEX")]
    Index,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaIdentity {
    pub kind: ReplicaIdentityType,
    pub index: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReplicaIdentity {
    #[serde(rename = "type")]
    kind: ReplicaIdentityType,
    #[serde(default, deserialize_with = "identifier_opt")]
    index: Option<String>,
}

impl<'de> Deserialize<'de> for ReplicaIdentity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = RawReplicaIdentity::deserialize(d)?;
        match (r.kind, &r.index) {
            (ReplicaIdentityType::Index, None) => Err(D::Error::custom(
                "replica identity of type index needs `index` (the index's name)",
            )),
            (ReplicaIdentityType::Index, Some(_)) | (_, None) => Ok(ReplicaIdentity {
                kind: r.kind,
                index: r.index,
            }),
            (_, Some(_)) => Err(D::Error::custom(
                "`index` is only used with replica identity of type index",
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetReplicaIdentity {
    #[serde(deserialize_with = "identifier")]
    pub table: String,
    pub identity: ReplicaIdentity,
}

/// Raw SQL: `up` at start (or at complete with `onComplete`), `down` at rollback.
#[derive(Debug, Clone, PartialEq)]
pub struct RawSql {
    pub up: SqlText,
    pub down: Option<SqlText>,
    pub on_complete: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRawSql {
    up: SqlText,
    #[serde(default)]
    down: Option<SqlText>,
    #[serde(default, rename = "onComplete", alias = "on_complete")]
    on_complete: bool,
}

impl<'de> Deserialize<'de> for RawSql {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = RawRawSql::deserialize(d)?;
        if r.up.trim().is_empty() {
            return Err(D::Error::custom("`up` of a sql operation is empty"));
        }
        if r.on_complete && r.down.is_some() {
            return Err(D::Error::custom(
                "a sql operation that runs on complete cannot have `down`: nothing runs before complete to roll back",
            ));
        }
        Ok(RawSql {
            up: r.up,
            down: r.down,
            on_complete: r.on_complete,
        })
    }
}

/// `update`: a data change in batches on the backfill engine (throttled, resumable).
/// `where` should select the rows that still need the change, so that a rerun skips the
/// rows already done.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Update {
    #[serde(deserialize_with = "identifier")]
    pub table: String,
    #[serde(deserialize_with = "super::fragment::expression_map")]
    pub set: BTreeMap<String, ExpressionOrQuery>,
    #[serde(default, rename = "where")]
    pub condition: Option<Expression>,
}

/// `alter_primary_key`: a new type for a table's one-column primary key and, with it, for
/// every foreign-key column of the schema that references it (an int key running out of
/// values becomes bigint without downtime).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlterPrimaryKey {
    #[serde(deserialize_with = "identifier")]
    pub table: String,
    #[serde(rename = "type")]
    pub data_type: TypeName,
    /// `copy` or `in_place` (pgshift's own field); without it pgshift chooses: a copy of
    /// the key's table and of every referencing table whenever they can all be copied.
    #[serde(default)]
    pub method: Option<AlterMethod>,
}

/// `create_partition` (pgshift's own): a new, empty partition of a partitioned table, made
/// as a table of its own and attached, so that the partitioned table is never locked
/// against its clients (a `CREATE TABLE ... PARTITION OF` would hold ACCESS EXCLUSIVE on it
/// and scan a default partition under that lock).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePartition {
    /// The partitioned table.
    #[serde(deserialize_with = "identifier")]
    pub table: String,
    /// The new partition.
    #[serde(deserialize_with = "identifier")]
    pub name: String,
    /// `FOR VALUES FROM (...) TO (...)`, `FOR VALUES IN (...)`,
    /// `FOR VALUES WITH (MODULUS m, REMAINDER r)`, or `DEFAULT`.
    pub bound: PartitionBound,
}

/// `attach_partition` (pgshift's own): an existing table attached as a partition, its
/// rows proved to fit the bound by a CHECK validated beforehand (and a default partition's
/// rows proved not to), the partitioned table's indexes built on it concurrently and its
/// foreign keys and checks validated on it first, so that the attach scans and builds
/// nothing under its lock.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachPartition {
    #[serde(deserialize_with = "identifier")]
    pub table: String,
    /// The table to attach.
    #[serde(deserialize_with = "identifier")]
    pub partition: String,
    pub bound: PartitionBound,
}

/// `detach_partition` (pgshift's own): at complete (the old version may read its rows
/// through the partitioned table until then), `DETACH PARTITION ... CONCURRENTLY` where the
/// server has it; the partition stays, as a table of its own.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetachPartition {
    #[serde(deserialize_with = "identifier")]
    pub table: String,
    #[serde(deserialize_with = "identifier")]
    pub partition: String,
}

/// `drop_partition` (pgshift's own): detached as by `detach_partition` at complete, then
/// dropped (no client reaches it through the partitioned table any more).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropPartition {
    #[serde(deserialize_with = "identifier")]
    pub table: String,
    #[serde(deserialize_with = "identifier")]
    pub partition: String,
}

/// `partition_table` (pgshift's own): an existing table turned into a partitioned table of
/// the same name: by attach, the table itself becomes one of its partitions (`existing`),
/// with new empty partitions beside it (`partitions`), no row copied; by copy, the rows are
/// copied into the new partitions (`existing`, if given, is one more of them).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionTable {
    #[serde(deserialize_with = "identifier")]
    pub table: String,
    /// The partition key: `RANGE (created_at)`, `LIST (region)`, `HASH (id)`.
    pub by: PartitionBy,
    /// By attach: the partition the table's rows form, and its bound (every row must be in
    /// it). By copy: one more new partition.
    #[serde(default)]
    pub existing: Option<PartitionItem>,
    /// New partitions (by attach, empty; by copy, the rows go into them).
    #[serde(default)]
    pub partitions: Vec<PartitionItem>,
    /// `attach` (the default when `existing` is given) or `copy` (the default without it).
    #[serde(default)]
    pub method: Option<PartitionMethod>,
}

/// A partition of `partition_table`: its name and bound.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionItem {
    #[serde(deserialize_with = "identifier")]
    pub name: String,
    pub bound: PartitionBound,
}

/// How `partition_table` partitions a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionMethod {
    /// The table attached as a partition of the new partitioned table.
    Attach,
    /// The rows copied into the new partitions.
    Copy,
}

/// `extract`: columns of a table move into a new table, one row per row of the source
/// (a 1:1 split), which references the source's primary key. The new version sees the new
/// table and no longer sees the columns in the source; complete verifies that both hold
/// the same values, then drops the columns from the source.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extract {
    /// The source table.
    #[serde(deserialize_with = "identifier")]
    pub table: String,
    /// The columns that move.
    #[serde(deserialize_with = "identifiers")]
    pub columns: Vec<String>,
    /// The new table.
    #[serde(deserialize_with = "identifier")]
    pub into: String,
    /// The new table's column that references the source's primary key (NOT NULL, UNIQUE).
    #[serde(deserialize_with = "identifier")]
    pub reference_column: String,
    /// A bigint identity primary key for the new table; without it the reference column
    /// is the primary key.
    #[serde(default, deserialize_with = "identifier_opt")]
    pub id_column: Option<String>,
    /// What deleting a source row does to its row in the new table (default CASCADE: the
    /// moved columns were part of it).
    #[serde(default)]
    pub on_delete: Option<ReferentialAction>,
}
