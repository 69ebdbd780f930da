//! What a statement does to the tables it touches, read from PostgreSQL's own parse tree:
//! the lock it takes on each (by PostgreSQL's name for it), whether it rewrites or scans the
//! table while holding it, and which client statements that lock stops. `pgshift plan` shows
//! it for every step; the facts are those of the PostgreSQL documentation's "Explicit
//! Locking" and ALTER TABLE pages (PostgreSQL 13 and later).

use pg_query::protobuf::node::Node;
use pg_query::protobuf::{AlterTableType, ConstrType, ObjectType};

/// PostgreSQL's table lock modes, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LockMode {
    AccessShare,
    RowShare,
    RowExclusive,
    ShareUpdateExclusive,
    Share,
    ShareRowExclusive,
    Exclusive,
    AccessExclusive,
}

/// In JSON, by PostgreSQL's name.
impl serde::Serialize for LockMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl LockMode {
    /// PostgreSQL's name for the mode, as `LOCK TABLE` spells it.
    pub fn name(self) -> &'static str {
        match self {
            LockMode::AccessShare => "ACCESS SHARE",
            LockMode::RowShare => "ROW SHARE",
            LockMode::RowExclusive => "ROW EXCLUSIVE",
            LockMode::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            LockMode::Share => "SHARE",
            LockMode::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            LockMode::Exclusive => "EXCLUSIVE",
            LockMode::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }

    /// The client statements this mode makes wait (while it is held, and while it is
    /// queued: a waiting lock queues every later conflicting one behind it).
    pub fn blocks(self) -> &'static [&'static str] {
        match self {
            LockMode::AccessExclusive => &["SELECT", "INSERT", "UPDATE", "DELETE"],
            LockMode::Exclusive => &["SELECT FOR UPDATE/SHARE", "INSERT", "UPDATE", "DELETE"],
            LockMode::ShareRowExclusive | LockMode::Share => &["INSERT", "UPDATE", "DELETE"],
            _ => &[],
        }
    }

    fn from_lock_stmt(mode: i32) -> LockMode {
        match mode {
            1 => LockMode::AccessShare,
            2 => LockMode::RowShare,
            3 => LockMode::RowExclusive,
            4 => LockMode::ShareUpdateExclusive,
            5 => LockMode::Share,
            6 => LockMode::ShareRowExclusive,
            7 => LockMode::Exclusive,
            _ => LockMode::AccessExclusive,
        }
    }
}

/// A lock on one relation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableLock {
    /// The relation as the statement names it (an index is given by its own name when its
    /// table is not known).
    pub table: String,
    pub mode: LockMode,
}

/// The work a statement does under its locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Work {
    /// Catalog changes only: milliseconds once the lock is granted.
    #[default]
    Catalog,
    /// Reads the whole table (validation, a NOT NULL check).
    Scan,
    /// Builds an index: reads the table and sorts.
    IndexBuild,
    /// Builds an index without blocking writes: two passes over the table.
    ConcurrentIndexBuild,
    /// Writes the whole table again (and rebuilds its indexes).
    Rewrite,
    /// Reads and writes rows (DML).
    Rows,
}

/// What one statement does.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StatementEffect {
    pub sql: String,
    pub locks: Vec<TableLock>,
    pub work: Work,
    /// The table the work is done on, if any.
    pub work_on: Option<String>,
}

impl StatementEffect {
    /// The strongest lock the statement takes.
    pub fn strongest(&self) -> Option<&TableLock> {
        self.locks.iter().max_by_key(|l| l.mode)
    }
}

/// Every statement of `sql`, with its effect. `index_table` names the table of an index
/// (for DROP INDEX). Statements that do not parse are left out.
pub fn analyze(sql: &str, index_table: &dyn Fn(&str) -> Option<String>) -> Vec<StatementEffect> {
    let Ok(parsed) = pg_query::parse(sql) else {
        return Vec::new();
    };
    parsed
        .protobuf
        .stmts
        .iter()
        .filter_map(|raw| {
            let node = raw.stmt.as_ref()?.node.as_ref()?;
            let start = raw.stmt_location.max(0) as usize;
            let text = if raw.stmt_len > 0 {
                sql.get(start..start + raw.stmt_len as usize)
            } else {
                sql.get(start..)
            }
            .unwrap_or(sql)
            .trim()
            .to_owned();
            Some(analyze_node(node, text, index_table))
        })
        .collect()
}

/// The effect of one parsed statement whose text is `sql`.
pub fn analyze_node(
    node: &Node,
    sql: String,
    index_table: &dyn Fn(&str) -> Option<String>,
) -> StatementEffect {
    let mut e = StatementEffect {
        sql,
        locks: Vec::new(),
        work: Work::Catalog,
        work_on: None,
    };
    effect(node, index_table, &mut e);
    e
}

fn range_name(r: &pg_query::protobuf::RangeVar) -> String {
    if r.schemaname.is_empty() {
        r.relname.clone()
    } else {
        format!("{}.{}", r.schemaname, r.relname)
    }
}

/// The dotted name of a DROP's object (a list of strings).
fn object_names(n: &pg_query::protobuf::Node) -> Vec<String> {
    match n.node.as_ref() {
        Some(Node::List(l)) => l
            .items
            .iter()
            .filter_map(|i| match i.node.as_ref() {
                Some(Node::String(s)) => Some(s.sval.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn lock(e: &mut StatementEffect, table: String, mode: LockMode) {
    match e.locks.iter_mut().find(|l| l.table == table) {
        Some(l) => l.mode = l.mode.max(mode),
        None => e.locks.push(TableLock { table, mode }),
    }
}

fn work(e: &mut StatementEffect, w: Work, table: &str) {
    // The heaviest work wins.
    let rank = |w: Work| match w {
        Work::Catalog => 0,
        Work::Rows => 1,
        Work::Scan => 2,
        Work::ConcurrentIndexBuild => 3,
        Work::IndexBuild => 4,
        Work::Rewrite => 5,
    };
    if rank(w) > rank(e.work) {
        e.work = w;
        e.work_on = Some(table.to_owned());
    }
}

fn effect(node: &Node, index_table: &dyn Fn(&str) -> Option<String>, e: &mut StatementEffect) {
    use LockMode::*;
    match node {
        Node::AlterTableStmt(a) => {
            let Some(r) = a.relation.as_ref() else {
                return;
            };
            let table = range_name(r);
            for cmd in &a.cmds {
                let Some(Node::AlterTableCmd(c)) = cmd.node.as_ref() else {
                    continue;
                };
                let subtype =
                    AlterTableType::try_from(c.subtype).unwrap_or(AlterTableType::Undefined);
                // ATTACH and DETACH PARTITION: the partition (or a partition's index) named
                // in the command, and the partitioned table (or index) the statement names.
                if matches!(
                    subtype,
                    AlterTableType::AtAttachPartition | AlterTableType::AtDetachPartition
                ) {
                    let Some(Node::PartitionCmd(p)) = c.def.as_ref().and_then(|d| d.node.as_ref())
                    else {
                        continue;
                    };
                    let Some(partition) = p.name.as_ref().map(range_name) else {
                        continue;
                    };
                    let index = ObjectType::try_from(a.objtype) == Ok(ObjectType::ObjectIndex);
                    if index {
                        // The partitioned index SHARE UPDATE EXCLUSIVE, the partition's
                        // index ACCESS EXCLUSIVE (queries planning on its table wait).
                        lock(
                            e,
                            index_table(&r.relname).unwrap_or(table.clone()),
                            ShareUpdateExclusive,
                        );
                        lock(e, partition, AccessExclusive);
                    } else if subtype == AlterTableType::AtAttachPartition {
                        // The partition is scanned unless a validated CHECK proves its bound.
                        work(e, Work::Scan, &partition);
                        lock(e, table.clone(), ShareUpdateExclusive);
                        lock(e, partition, AccessExclusive);
                    } else if p.concurrent {
                        lock(e, table.clone(), ShareUpdateExclusive);
                        lock(e, partition, ShareUpdateExclusive);
                    } else {
                        lock(e, table.clone(), AccessExclusive);
                        lock(e, partition, AccessExclusive);
                    }
                    continue;
                }
                let mode = match subtype {
                    AlterTableType::AtValidateConstraint => {
                        work(e, Work::Scan, &table);
                        ShareUpdateExclusive
                    }
                    AlterTableType::AtSetStatistics
                    | AlterTableType::AtClusterOn
                    | AlterTableType::AtDropCluster => ShareUpdateExclusive,
                    AlterTableType::AtEnableTrig
                    | AlterTableType::AtDisableTrig
                    | AlterTableType::AtEnableAlwaysTrig
                    | AlterTableType::AtEnableReplicaTrig
                    | AlterTableType::AtEnableTrigAll
                    | AlterTableType::AtDisableTrigAll
                    | AlterTableType::AtEnableTrigUser
                    | AlterTableType::AtDisableTrigUser => ShareRowExclusive,
                    AlterTableType::AtSetNotNull => {
                        // A scan, unless a validated CHECK (col IS NOT NULL) proves it
                        // (pgshift's plans always have one first).
                        AccessExclusive
                    }
                    AlterTableType::AtAlterColumnType => {
                        work(e, Work::Rewrite, &table);
                        AccessExclusive
                    }
                    AlterTableType::AtAddConstraint => {
                        let constraint = c.def.as_ref().and_then(|d| match d.node.as_ref() {
                            Some(Node::Constraint(k)) => Some(k),
                            _ => None,
                        });
                        match constraint {
                            Some(k) => match ConstrType::try_from(k.contype)
                                .unwrap_or(ConstrType::Undefined)
                            {
                                ConstrType::ConstrForeign => {
                                    if let Some(p) = k.pktable.as_ref() {
                                        lock(e, range_name(p), ShareRowExclusive);
                                    }
                                    if !k.skip_validation {
                                        work(e, Work::Scan, &table);
                                    }
                                    ShareRowExclusive
                                }
                                ConstrType::ConstrCheck => {
                                    if !k.skip_validation {
                                        work(e, Work::Scan, &table);
                                    }
                                    AccessExclusive
                                }
                                ConstrType::ConstrPrimary | ConstrType::ConstrUnique
                                    if k.indexname.is_empty() =>
                                {
                                    work(e, Work::IndexBuild, &table);
                                    AccessExclusive
                                }
                                ConstrType::ConstrExclusion => {
                                    work(e, Work::IndexBuild, &table);
                                    AccessExclusive
                                }
                                _ => AccessExclusive,
                            },
                            None => AccessExclusive,
                        }
                    }
                    _ => AccessExclusive,
                };
                lock(e, table.clone(), mode);
            }
        }
        Node::RenameStmt(r) => {
            let Some(rel) = r.relation.as_ref() else {
                return;
            };
            let mode = match ObjectType::try_from(r.rename_type).unwrap_or(ObjectType::Undefined) {
                // Renaming an index takes SHARE UPDATE EXCLUSIVE (PostgreSQL 12 and later).
                ObjectType::ObjectIndex => ShareUpdateExclusive,
                _ => AccessExclusive,
            };
            let name = range_name(rel);
            let name = if mode == ShareUpdateExclusive {
                index_table(&rel.relname).unwrap_or(name)
            } else {
                name
            };
            lock(e, name, mode);
        }
        // VACUUM and ANALYZE: SHARE UPDATE EXCLUSIVE on each table named (VACUUM FULL:
        // ACCESS EXCLUSIVE, and a rewrite), reading it whole.
        Node::VacuumStmt(v) => {
            let full = v.options.iter().any(|o| {
                matches!(o.node.as_ref(), Some(Node::DefElem(d)) if d.defname.eq_ignore_ascii_case("full"))
            });
            for r in &v.rels {
                let Some(Node::VacuumRelation(vr)) = r.node.as_ref() else {
                    continue;
                };
                let Some(rel) = vr.relation.as_ref() else {
                    continue;
                };
                let table = range_name(rel);
                if full {
                    work(e, Work::Rewrite, &table);
                    lock(e, table, AccessExclusive);
                } else {
                    work(e, Work::Scan, &table);
                    lock(e, table, ShareUpdateExclusive);
                }
            }
        }
        Node::IndexStmt(ix) => {
            let Some(r) = ix.relation.as_ref() else {
                return;
            };
            let table = range_name(r);
            if ix.concurrent {
                work(e, Work::ConcurrentIndexBuild, &table);
                lock(e, table, ShareUpdateExclusive);
            } else if !r.inh {
                // ON ONLY a partitioned table: the index is made, not built.
                lock(e, table, Share);
            } else {
                work(e, Work::IndexBuild, &table);
                lock(e, table, Share);
            }
        }
        Node::DropStmt(d) => {
            let kind = ObjectType::try_from(d.remove_type).unwrap_or(ObjectType::Undefined);
            for o in &d.objects {
                let names = object_names(o);
                match kind {
                    ObjectType::ObjectTable => {
                        lock(e, names.join("."), AccessExclusive);
                    }
                    ObjectType::ObjectIndex => {
                        let index = names.last().cloned().unwrap_or_default();
                        let table = index_table(&index).unwrap_or(index);
                        lock(
                            e,
                            table,
                            if d.concurrent {
                                ShareUpdateExclusive
                            } else {
                                AccessExclusive
                            },
                        );
                    }
                    ObjectType::ObjectTrigger => {
                        // [schema,] table, trigger
                        let table = names[..names.len().saturating_sub(1)].join(".");
                        lock(e, table, AccessExclusive);
                    }
                    _ => {}
                }
            }
        }
        Node::CreateTrigStmt(t) => {
            if let Some(r) = t.relation.as_ref() {
                lock(e, range_name(r), ShareRowExclusive);
            }
        }
        Node::CreateStmt(c) => {
            // A new table nobody sees yet; its foreign keys lock the tables they reference.
            let mut referenced = Vec::new();
            for elt in c.table_elts.iter().chain(&c.constraints) {
                let constraints: Vec<&pg_query::protobuf::Node> = match elt.node.as_ref() {
                    Some(Node::ColumnDef(col)) => col.constraints.iter().collect(),
                    Some(Node::Constraint(_)) => vec![elt],
                    _ => Vec::new(),
                };
                for k in constraints {
                    if let Some(Node::Constraint(k)) = k.node.as_ref() {
                        if let Some(p) = k.pktable.as_ref() {
                            referenced.push(range_name(p));
                        }
                    }
                }
            }
            for r in referenced {
                lock(e, r, ShareRowExclusive);
            }
        }
        Node::LockStmt(l) => {
            for r in &l.relations {
                if let Some(Node::RangeVar(r)) = r.node.as_ref() {
                    lock(e, range_name(r), LockMode::from_lock_stmt(l.mode));
                }
            }
        }
        Node::InsertStmt(i) => {
            if let Some(r) = i.relation.as_ref() {
                let t = range_name(r);
                work(e, Work::Rows, &t);
                lock(e, t, RowExclusive);
            }
        }
        Node::UpdateStmt(u) => {
            if let Some(r) = u.relation.as_ref() {
                let t = range_name(r);
                work(e, Work::Rows, &t);
                lock(e, t, RowExclusive);
            }
        }
        Node::DeleteStmt(d) => {
            if let Some(r) = d.relation.as_ref() {
                let t = range_name(r);
                work(e, Work::Rows, &t);
                lock(e, t, RowExclusive);
            }
        }
        Node::TruncateStmt(t) => {
            for r in &t.relations {
                if let Some(Node::RangeVar(r)) = r.node.as_ref() {
                    lock(e, range_name(r), AccessExclusive);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strongest(sql: &str) -> (String, &'static str, Work) {
        let e = analyze(sql, &|_| Some("t".to_owned()));
        let l = e[0].strongest().cloned().unwrap();
        (l.table, l.mode.name(), e[0].work)
    }

    #[test]
    fn partitions_lock_as_postgresql_does() {
        let effect = |sql: &str| {
            let e = analyze(sql, &|_| None);
            let mut locks: Vec<(String, &'static str)> = e[0]
                .locks
                .iter()
                .map(|l| (l.table.clone(), l.mode.name()))
                .collect();
            locks.sort();
            (locks, e[0].work)
        };
        assert_eq!(
            effect("CREATE INDEX i ON ONLY p (c)"),
            (vec![("p".into(), "SHARE")], Work::Catalog)
        );
        assert_eq!(
            effect("ALTER INDEX i ATTACH PARTITION p1_i"),
            (
                vec![
                    ("i".into(), "SHARE UPDATE EXCLUSIVE"),
                    ("p1_i".into(), "ACCESS EXCLUSIVE")
                ],
                Work::Catalog
            )
        );
        assert_eq!(
            effect("ALTER TABLE p ATTACH PARTITION p1 FOR VALUES FROM (1) TO (2)"),
            (
                vec![
                    ("p".into(), "SHARE UPDATE EXCLUSIVE"),
                    ("p1".into(), "ACCESS EXCLUSIVE")
                ],
                Work::Scan
            )
        );
        assert_eq!(
            effect("ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY").0,
            vec![
                ("p".into(), "SHARE UPDATE EXCLUSIVE"),
                ("p1".into(), "SHARE UPDATE EXCLUSIVE")
            ]
        );
        assert_eq!(
            effect("ALTER TABLE p DETACH PARTITION p1").0,
            vec![
                ("p".into(), "ACCESS EXCLUSIVE"),
                ("p1".into(), "ACCESS EXCLUSIVE")
            ]
        );
    }

    #[test]
    fn locks_follow_postgresql() {
        assert_eq!(
            strongest("ALTER TABLE t ADD COLUMN c int"),
            ("t".into(), "ACCESS EXCLUSIVE", Work::Catalog)
        );
        assert_eq!(
            strongest("ALTER TABLE t ALTER COLUMN c TYPE bigint"),
            ("t".into(), "ACCESS EXCLUSIVE", Work::Rewrite)
        );
        assert_eq!(
            strongest("ALTER TABLE t ADD CONSTRAINT k CHECK (c > 0) NOT VALID"),
            ("t".into(), "ACCESS EXCLUSIVE", Work::Catalog)
        );
        assert_eq!(
            strongest("ALTER TABLE t ADD CONSTRAINT k CHECK (c > 0)"),
            ("t".into(), "ACCESS EXCLUSIVE", Work::Scan)
        );
        assert_eq!(
            strongest("ALTER TABLE t VALIDATE CONSTRAINT k"),
            ("t".into(), "SHARE UPDATE EXCLUSIVE", Work::Scan)
        );
        assert_eq!(
            strongest("CREATE INDEX CONCURRENTLY i ON t (c)"),
            (
                "t".into(),
                "SHARE UPDATE EXCLUSIVE",
                Work::ConcurrentIndexBuild
            )
        );
        assert_eq!(
            strongest("CREATE INDEX i ON t (c)"),
            ("t".into(), "SHARE", Work::IndexBuild)
        );
        assert_eq!(
            strongest("VACUUM (ANALYZE) t"),
            ("t".into(), "SHARE UPDATE EXCLUSIVE", Work::Scan)
        );
        assert_eq!(
            strongest("ANALYZE t"),
            ("t".into(), "SHARE UPDATE EXCLUSIVE", Work::Scan)
        );
        assert_eq!(
            strongest("VACUUM (FULL) t"),
            ("t".into(), "ACCESS EXCLUSIVE", Work::Rewrite)
        );
        assert_eq!(
            strongest("DROP INDEX CONCURRENTLY i"),
            ("t".into(), "SHARE UPDATE EXCLUSIVE", Work::Catalog)
        );
        assert_eq!(
            strongest("CREATE TRIGGER g BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()"),
            ("t".into(), "SHARE ROW EXCLUSIVE", Work::Catalog)
        );
        assert_eq!(
            strongest("DROP TRIGGER g ON s.t"),
            ("s.t".into(), "ACCESS EXCLUSIVE", Work::Catalog)
        );
        assert_eq!(
            strongest("LOCK TABLE t IN SHARE ROW EXCLUSIVE MODE"),
            ("t".into(), "SHARE ROW EXCLUSIVE", Work::Catalog)
        );
        let fk = analyze(
            "ALTER TABLE a ADD CONSTRAINT f FOREIGN KEY (x) REFERENCES b (id) NOT VALID",
            &|_| None,
        );
        assert_eq!(
            fk[0].locks,
            vec![
                TableLock {
                    table: "b".into(),
                    mode: LockMode::ShareRowExclusive
                },
                TableLock {
                    table: "a".into(),
                    mode: LockMode::ShareRowExclusive
                }
            ]
        );
        assert_eq!(LockMode::Share.blocks(), &["INSERT", "UPDATE", "DELETE"]);
        assert!(LockMode::ShareUpdateExclusive.blocks().is_empty());
        // Two statements, each with its text.
        let two = analyze(
            "ALTER TABLE t DROP COLUMN c;\nALTER TABLE t RENAME COLUMN d TO c",
            &|_| None,
        );
        assert_eq!(two.len(), 2);
        assert_eq!(two[1].sql, "ALTER TABLE t RENAME COLUMN d TO c");
    }
}
