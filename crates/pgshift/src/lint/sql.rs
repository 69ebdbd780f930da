//! The SQL rules: each statement of a file, parsed by PostgreSQL's parser, checked with
//! what the statements before it did (tables created, timeouts set, transactions open,
//! NOT NULL checks validated).

use super::config::SqlExecutor;
use super::{Linted, RawFinding};
use crate::locks::{self, LockMode};
use pg_query::protobuf::{
    AlterTableType, ConstrType, ObjectType, TransactionStmtKind, VariableSetKind,
};
use pg_query::{NodeEnum, NodeRef};
use std::collections::HashSet;

/// Functions whose value differs per row: a DEFAULT calling one fills every existing row
/// by rewriting the table.
const VOLATILE: &[&str] = &[
    "random",
    "gen_random_uuid",
    "uuid_generate_v1",
    "uuid_generate_v1mc",
    "uuid_generate_v4",
    "uuidv4",
    "uuidv7",
    "clock_timestamp",
    "timeofday",
    "nextval",
    "gen_random_bytes",
    "random_normal",
];

/// PostgreSQL cuts identifiers at this many bytes (NAMEDATALEN - 1).
const MAX_IDENTIFIER: usize = 63;

pub(crate) fn lint(source: &str, executor: SqlExecutor, assume_lock_timeout: bool) -> Linted {
    let mut state = State {
        executor,
        assume_lock_timeout,
        source,
        findings: Vec::new(),
        created: HashSet::new(),
        validated: HashSet::new(),
        partition_keys: std::collections::HashMap::new(),
        created_indexes: HashSet::new(),
        dropped_if_exists: HashSet::new(),
        explicit_tx: false,
        session_timeout: assume_lock_timeout,
        local_timeout: false,
        timeout_reported: false,
        tx_locks: Vec::new(),
        not_null_checks: Vec::new(),
        validated_not_null: HashSet::new(),
        not_valid_in_tx: Vec::new(),
        anchor: 1,
        start: 0,
        end: 0,
    };
    let parsed = match pg_query::parse(source) {
        Ok(p) => p,
        Err(e) => {
            let (offset, message) = crate::sql::parse_error_at(source, &e);
            state.findings.push(RawFinding {
                rule: super::rules::SYNTAX_ERROR,
                offset,
                anchor_line: crate::diag::line_col(source, offset).0,
                message: format!("SQL does not parse: {message}"),
                hint: "fix the statement; pgshift reads SQL with PostgreSQL's own parser, so this is what the server would say".to_owned(),
            });
            return Linted {
                findings: state.findings,
                anchors: Vec::new(),
            };
        }
    };
    if parsed.protobuf.stmts.is_empty() {
        // migrate refuses such a file; so does lint.
        state.findings.push(RawFinding {
            rule: super::rules::SYNTAX_ERROR,
            offset: 0,
            anchor_line: 1,
            message: "the migration has no SQL statement".to_owned(),
            hint: "add the statements to run, or delete the file".to_owned(),
        });
        return Linted {
            findings: state.findings,
            anchors: Vec::new(),
        };
    }
    let crate::sql::Scanned {
        starts,
        long_identifiers: long,
    } = crate::sql::scan(source);
    let mut anchors = Vec::new();
    for raw in &parsed.protobuf.stmts {
        let Some(node) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) else {
            continue;
        };
        let from = usize::try_from(raw.stmt_location).unwrap_or(0);
        let end = match usize::try_from(raw.stmt_len) {
            Ok(0) | Err(_) => source.len(),
            Ok(len) => (from + len).min(source.len()),
        };
        // The statement's first token, after any comments before it.
        let start = starts
            .iter()
            .copied()
            .find(|s| *s >= from && *s < end)
            .unwrap_or(from);
        state.start = start;
        state.end = end;
        state.anchor = crate::diag::line_col(source, start).0;
        anchors.push(state.anchor);
        let text = source.get(start..end).unwrap_or_default().trim().to_owned();
        state.statement(node, text);
        for (at, name) in long.iter().filter(|(at, _)| *at >= start && *at < end) {
            state.report("identifier-too-long", *at as i32, format!("the name {name:?} is {} bytes long; PostgreSQL silently keeps only the first {MAX_IDENTIFIER}: two names that start alike become one, and tools that compare names see another", name.len()), "shorten the name to 63 bytes or fewer");
        }
    }
    if state.explicit_tx {
        state.findings.push(RawFinding {
            rule: "ban-uncommitted-transaction",
            offset: source.trim_end().len(),
            anchor_line: state.anchor,
            message: "the file ends inside a transaction: BEGIN without COMMIT".to_owned(),
            hint: "end the transaction with COMMIT; otherwise the session's next statements run in it and its locks are held until the session ends".to_owned(),
        });
    }
    Linted {
        findings: state.findings,
        anchors,
    }
}

struct State<'a> {
    executor: SqlExecutor,
    /// The runner sets lock_timeout; the file's own SET and RESET do not matter.
    assume_lock_timeout: bool,
    source: &'a str,
    findings: Vec<RawFinding>,
    /// Tables (by name, without schema) that this file creates: changing them is safe,
    /// nobody uses them yet.
    created: HashSet<String>,
    created_indexes: HashSet<String>,
    /// Indexes dropped with IF EXISTS: a concurrent build of the same name after it can
    /// run again.
    dropped_if_exists: HashSet<String>,
    explicit_tx: bool,
    session_timeout: bool,
    local_timeout: bool,
    timeout_reported: bool,
    /// Tables locked against writes by earlier statements of the open transaction.
    tx_locks: Vec<(String, LockMode)>,
    /// (table, constraint, column) of each `CHECK (column IS NOT NULL)`.
    not_null_checks: Vec<(String, String, String)>,
    /// (table, constraint) added NOT VALID in the transaction that is open now.
    not_valid_in_tx: Vec<(String, String)>,
    /// (table, column) proven NOT NULL by a validated CHECK.
    validated_not_null: HashSet<(String, String)>,
    /// Tables with a constraint validated by this file (a CHECK proving a partition's
    /// bound before ATTACH PARTITION, say).
    validated: HashSet<String>,
    /// The partition key columns of the partitioned tables this file creates.
    partition_keys: std::collections::HashMap<String, Vec<String>>,
    /// The current statement's first line, and where it starts and ends.
    anchor: usize,
    start: usize,
    end: usize,
}

impl State<'_> {
    /// True while statements run inside a transaction block.
    fn in_transaction(&self) -> bool {
        self.explicit_tx || self.executor != SqlExecutor::Autocommit
    }

    /// True when a CONCURRENTLY statement here would fail for running in a transaction
    /// (pgshift runs each such statement on its own).
    fn concurrent_refused(&self) -> bool {
        self.explicit_tx || self.executor == SqlExecutor::Transaction
    }

    fn report(&mut self, rule: &'static str, location: i32, message: String, hint: &str) {
        let offset = usize::try_from(location)
            .ok()
            .filter(|o| *o >= self.start && *o <= self.source.len())
            .unwrap_or(self.start);
        self.findings
            .push(RawFinding::new(rule, offset, self.anchor, message, hint));
    }

    /// A statement that cannot run twice, in a file run statement by statement.
    fn not_rerunnable(&mut self, what: &str, hint: &str) {
        let message =
            format!("{what}: if the file fails after this statement, running it again fails here");
        self.not_rerunnable_because(message, hint);
    }

    fn not_rerunnable_because(&mut self, message: String, hint: &str) {
        if self.executor == SqlExecutor::Autocommit && !self.explicit_tx {
            self.report("prefer-robust-stmts", -1, message, hint);
        }
    }

    /// The offset of `needle` (any case) in the current statement, as a location.
    fn find(&self, needle: &str) -> i32 {
        let rest = self.source.get(self.start..self.end).unwrap_or_default();
        let lower = rest.to_ascii_lowercase();
        lower
            .find(&needle.to_ascii_lowercase())
            .map(|i| (self.start + i) as i32)
            .unwrap_or(-1)
    }

    fn is_new(&self, table: &str) -> bool {
        self.created.contains(table)
    }

    fn statement(&mut self, node: &NodeEnum, text: String) {
        let effect = locks::analyze_node(node, text, &|_| None);
        // pgshift runs such a statement on its own, between two transactions.
        let own_segment = !crate::sql::is_transactional(node);
        if own_segment && self.executor == SqlExecutor::Pgshift {
            self.tx_locks.clear();
            self.not_valid_in_tx.clear();
        }
        self.timeout_check(&effect);
        match node {
            NodeEnum::TransactionStmt(t) => self.transaction(t),
            NodeEnum::VariableSetStmt(v) => self.variable_set(v),
            NodeEnum::CreateStmt(c) => self.create_table(c),
            NodeEnum::IndexStmt(ix) => self.create_index(ix),
            NodeEnum::DropStmt(d) => self.drop(d),
            NodeEnum::DropdbStmt(_) => self.report(
                "ban-drop-database",
                -1,
                "DROP DATABASE in a migration".to_owned(),
                "drop databases by hand, never from a migration",
            ),
            NodeEnum::ReindexStmt(r) => self.reindex(r),
            NodeEnum::RenameStmt(r) => self.rename(r),
            NodeEnum::AlterTableStmt(a) => self.alter_table(a),
            NodeEnum::TruncateStmt(t)
                if t.behavior == pg_query::protobuf::DropBehavior::DropCascade as i32 =>
            {
                let at = self.find("cascade");
                self.report("ban-truncate-cascade", at, "TRUNCATE ... CASCADE also empties every table with a foreign key to these, and theirs in turn".to_owned(), "name every table to empty, without CASCADE");
            }
            NodeEnum::VacuumStmt(v) => {
                let full = v.options.iter().any(|o| {
                    matches!(o.node.as_ref(), Some(NodeEnum::DefElem(d)) if d.defname.eq_ignore_ascii_case("full"))
                });
                if full && v.is_vacuumcmd {
                    let at = self.find("full");
                    self.report("table-rewrite", at, "VACUUM FULL rewrites the table under ACCESS EXCLUSIVE: reads and writes wait until it ends".to_owned(), "let autovacuum and plain VACUUM keep the table; to give space back to the system, use pg_repack or pg_squeeze, which hold the strong lock only at the end");
                }
            }
            NodeEnum::ClusterStmt(_) => self.report("table-rewrite", -1, "CLUSTER rewrites the table under ACCESS EXCLUSIVE: reads and writes wait until it ends".to_owned(), "use pg_repack --order-by, which holds the strong lock only at the end"),
            NodeEnum::RefreshMatViewStmt(r) if !r.concurrent => {
                let name = r.relation.as_ref().map(|r| r.relname.clone()).unwrap_or_default();
                self.report("require-concurrent-refresh", -1, format!("REFRESH MATERIALIZED VIEW {name} without CONCURRENTLY blocks every read of the view while it runs"), "REFRESH MATERIALIZED VIEW CONCURRENTLY (the view needs a unique index), outside a transaction block");
            }
            NodeEnum::CreateDomainStmt(d) => {
                if let Some(loc) = d.constraints.iter().find_map(|c| match c.node.as_ref() {
                    Some(NodeEnum::Constraint(k)) if k.contype == ConstrType::ConstrCheck as i32 => Some(k.location),
                    _ => None,
                }) {
                    self.report("ban-create-domain-with-constraint", loc, "a domain with a CHECK: changing the check later scans every column of the domain, in every table, under locks".to_owned(), "put the CHECK on the table's column instead, where it can be added NOT VALID and validated");
                }
            }
            NodeEnum::AlterDomainStmt(d) if d.subtype == "C" => {
                self.report("ban-alter-domain-with-add-constraint", -1, "ALTER DOMAIN ... ADD CONSTRAINT checks every column of the domain in every table while it holds locks on them".to_owned(), "add the CHECK to each table's column NOT VALID, then VALIDATE CONSTRAINT");
            }
            NodeEnum::AlterEnumStmt(e) if !e.new_val.is_empty() && e.old_val.is_empty() && e.new_val_neighbor.is_empty() => {
                let at = self.find("add value");
                self.report("require-enum-value-ordering", at, format!("ADD VALUE '{}' without BEFORE or AFTER puts it after every existing value", e.new_val), "say where it goes in the order: ADD VALUE 'x' BEFORE 'y' or AFTER 'z'");
            }
            NodeEnum::UpdateStmt(u) => {
                if let Some(r) = &u.relation {
                    self.data_change(&r.relname, r.location, u.where_clause.is_none(), "UPDATE");
                }
            }
            NodeEnum::DeleteStmt(d) => {
                if let Some(r) = &d.relation {
                    self.data_change(&r.relname, r.location, d.where_clause.is_none(), "DELETE");
                }
            }
            NodeEnum::InsertStmt(i) if i.select_stmt.is_some() => {
                if let Some(r) = &i.relation {
                    self.data_change(&r.relname, r.location, false, "INSERT");
                }
            }
            _ => {}
        }
        // Locks the transaction now holds until it ends.
        if self.in_transaction() && (!own_segment || self.concurrent_refused()) {
            for l in &effect.locks {
                if !l.mode.blocks().is_empty() {
                    let table = l.table.rsplit('.').next().unwrap_or(&l.table).to_owned();
                    self.tx_locks.push((table, l.mode));
                }
            }
        }
        if !self.in_transaction() {
            self.tx_locks.clear();
            self.not_valid_in_tx.clear();
        }
    }

    fn timeout_check(&mut self, effect: &locks::StatementEffect) {
        if self.executor == SqlExecutor::Pgshift
            || self.timeout_reported
            || self.session_timeout
            || self.local_timeout
        {
            return;
        }
        let blocking = effect.locks.iter().find(|l| {
            !l.mode.blocks().is_empty()
                && !self.is_new(l.table.rsplit('.').next().unwrap_or(&l.table))
        });
        if let Some(l) = blocking {
            self.timeout_reported = true;
            let message = format!(
                "{} on {} without a lock_timeout: while it waits for the lock, every {} on the table queues behind it",
                l.mode.name(),
                l.table,
                l.mode.blocks().join(", ")
            );
            self.report("require-timeout-settings", -1, message, "start the file with SET lock_timeout = '2s' (and a statement_timeout), and retry when it runs out; pgshift's executor does both for you");
        }
    }

    fn transaction(&mut self, t: &pg_query::protobuf::TransactionStmt) {
        let kind = TransactionStmtKind::try_from(t.kind).unwrap_or(TransactionStmtKind::Undefined);
        let begins = matches!(
            kind,
            TransactionStmtKind::TransStmtBegin | TransactionStmtKind::TransStmtStart
        );
        let ends = matches!(
            kind,
            TransactionStmtKind::TransStmtCommit
                | TransactionStmtKind::TransStmtRollback
                | TransactionStmtKind::TransStmtPrepare
        );
        if !begins && !ends {
            return;
        }
        if self.executor == SqlExecutor::Pgshift {
            self.report("pgshift-transaction-control", t.location, "transaction control in a pgshift migration: pgshift refuses BEGIN, COMMIT and ROLLBACK in .sql files".to_owned(), "remove it: pgshift runs the file's statements in one transaction itself, and each CONCURRENTLY statement on its own");
        } else if begins && self.in_transaction() {
            self.report("transaction-nesting", t.location, "BEGIN inside a transaction that is already open (PostgreSQL only warns, and the first COMMIT ends both)".to_owned(), "remove the inner BEGIN and COMMIT; the file already runs in a transaction");
        } else if ends && !self.explicit_tx {
            let message = if self.executor == SqlExecutor::Transaction {
                "COMMIT or ROLLBACK ends the transaction the migration tool wrapped the file in; what follows runs outside it"
            } else {
                "COMMIT or ROLLBACK with no transaction open"
            };
            self.report(
                "transaction-nesting",
                t.location,
                message.to_owned(),
                "remove it, or open the transaction with BEGIN first",
            );
        }
        if begins {
            self.explicit_tx = true;
        } else {
            self.explicit_tx = false;
            self.local_timeout = false;
            self.tx_locks.clear();
            self.not_valid_in_tx.clear();
        }
    }

    fn variable_set(&mut self, v: &pg_query::protobuf::VariableSetStmt) {
        if self.assume_lock_timeout || !v.name.eq_ignore_ascii_case("lock_timeout") {
            return;
        }
        let reset = v.kind == VariableSetKind::VarReset as i32
            || v.kind == VariableSetKind::VarSetDefault as i32
            || v.args.iter().any(is_zero);
        if v.is_local {
            // SET LOCAL outside a transaction block does nothing.
            self.local_timeout = !reset && self.in_transaction();
        } else {
            self.session_timeout = !reset;
        }
    }

    fn create_table(&mut self, c: &pg_query::protobuf::CreateStmt) {
        let Some(rel) = &c.relation else {
            return;
        };
        if !c.if_not_exists {
            self.not_rerunnable(
                &format!("CREATE TABLE {} without IF NOT EXISTS", rel.relname),
                "CREATE TABLE IF NOT EXISTS",
            );
        }
        // Key columns: a primary key or a foreign key, declared on the column or the table.
        let mut keys: HashSet<String> = HashSet::new();
        for elt in &c.table_elts {
            if let Some(NodeEnum::Constraint(k)) = elt.node.as_ref() {
                let list = match ConstrType::try_from(k.contype) {
                    Ok(ConstrType::ConstrPrimary) => &k.keys,
                    Ok(ConstrType::ConstrForeign) => &k.fk_attrs,
                    _ => continue,
                };
                keys.extend(list.iter().filter_map(string_value));
            }
        }
        for elt in &c.table_elts {
            if let Some(NodeEnum::ColumnDef(col)) = elt.node.as_ref() {
                let key = keys.contains(&col.colname) || column_is_key(col);
                self.column_types(col, key);
            }
        }
        if let Some(spec) = &c.partspec {
            let key: Vec<String> = spec
                .part_params
                .iter()
                .filter_map(|p| match p.node.as_ref() {
                    Some(NodeEnum::PartitionElem(e)) if !e.name.is_empty() => Some(e.name.clone()),
                    _ => None,
                })
                .collect();
            if key.len() == spec.part_params.len() {
                self.partition_keys.insert(rel.relname.clone(), key);
            }
        }
        if c.partbound.is_some() {
            let parent = c.inh_relations.iter().find_map(|r| match r.node.as_ref() {
                Some(NodeEnum::RangeVar(r)) => Some(r.relname.clone()),
                _ => None,
            });
            if let Some(parent) = parent.filter(|p| !self.is_new(p)) {
                let at = self.find("partition of");
                self.report("prefer-attach-partition", at, format!("CREATE TABLE {} PARTITION OF {parent} takes ACCESS EXCLUSIVE on {parent} (every query on it waits) and scans its default partition, if it has one, under that lock", rel.relname), "create the table on its own (LIKE the partitioned table), add a validated CHECK that the default partition holds no row of the bound, then ATTACH PARTITION (SHARE UPDATE EXCLUSIVE); pgshift's create_partition does this");
            }
        }
        self.created.insert(rel.relname.clone());
    }

    /// A unique index or constraint on a partitioned table this file created must hold
    /// its partition key.
    fn unique_on_partitioned(&mut self, table: &str, columns: &[String], location: i32) {
        let Some(key) = self.partition_keys.get(table) else {
            return;
        };
        let missing: Vec<String> = key
            .iter()
            .filter(|k| !columns.contains(k))
            .cloned()
            .collect();
        if !missing.is_empty() {
            self.report("unique-without-partition-key", location, format!("a unique index on partitioned table {table} without its partition key column {}: PostgreSQL refuses it (uniqueness is enforced partition by partition)", missing.join(", ")), "add the partition key's columns to the index, or make it not unique");
        }
    }

    /// The type rules of one column definition.
    fn column_types(&mut self, col: &pg_query::protobuf::ColumnDef, key: bool) {
        if let Some(t) = &col.type_name {
            self.type_rules(t, &col.colname, key);
        }
    }

    fn type_rules(&mut self, t: &pg_query::protobuf::TypeName, column: &str, key: bool) {
        for (rule, message, hint) in
            type_problems(&type_name(t), !t.typmods.is_empty(), column, key)
        {
            self.report(rule, t.location, message, hint);
        }
    }

    fn create_index(&mut self, ix: &pg_query::protobuf::IndexStmt) {
        let Some(rel) = &ix.relation else {
            return;
        };
        if ix.concurrent && !self.dropped_if_exists.contains(&ix.idxname) {
            self.not_rerunnable_because(format!("CREATE INDEX CONCURRENTLY {} without DROP INDEX CONCURRENTLY IF EXISTS before it: a failed build leaves an INVALID index, so running the file again fails here, or with IF NOT EXISTS keeps the INVALID index", ix.idxname), "put DROP INDEX CONCURRENTLY IF EXISTS with the same name before it (pgshift finds and rebuilds an INVALID index by itself)");
        } else if !ix.concurrent && !ix.if_not_exists {
            self.not_rerunnable(
                &format!("CREATE INDEX {} without IF NOT EXISTS", ix.idxname),
                "CREATE INDEX IF NOT EXISTS",
            );
        }
        if !ix.idxname.is_empty() {
            self.created_indexes.insert(ix.idxname.clone());
        }
        if ix.unique {
            let columns: Vec<String> = ix
                .index_params
                .iter()
                .filter_map(|p| match p.node.as_ref() {
                    Some(NodeEnum::IndexElem(e)) if !e.name.is_empty() => Some(e.name.clone()),
                    _ => None,
                })
                .collect();
            self.unique_on_partitioned(&rel.relname, &columns, -1);
        }
        if ix.concurrent && rel.inh && self.partition_keys.contains_key(&rel.relname) {
            let at = self.find("concurrently");
            self.report("concurrent-index-on-partitioned-table", at, format!("CREATE INDEX CONCURRENTLY on partitioned table {}: PostgreSQL refuses it", rel.relname), "CREATE INDEX ... ON ONLY the partitioned table, then each partition's index CONCURRENTLY and ALTER INDEX ... ATTACH PARTITION; pgshift's create_index does this");
        }
        if self.is_new(&rel.relname) {
            return;
        }
        if !ix.concurrent {
            let kind = if ix.unique {
                "CREATE UNIQUE INDEX"
            } else {
                "CREATE INDEX"
            };
            self.report("require-concurrent-index-creation", -1, format!("{kind} on {} without CONCURRENTLY holds a SHARE lock for the whole build: every INSERT, UPDATE and DELETE on the table waits", rel.relname), "CREATE INDEX CONCURRENTLY, as its own statement outside a transaction block (pgshift runs it so, and rebuilds it if a failed build left it INVALID); on a partitioned table, which refuses CONCURRENTLY: CREATE INDEX ... ON ONLY it, then each partition's CONCURRENTLY and ALTER INDEX ... ATTACH PARTITION (pgshift's create_index does this)");
        } else if self.concurrent_refused() {
            let at = self.find("concurrently");
            self.report("ban-concurrent-index-creation-in-transaction", at, "CREATE INDEX CONCURRENTLY inside a transaction block: PostgreSQL refuses it".to_owned(), "run it outside the transaction: a migration of its own, or one that your tool does not wrap in a transaction");
        }
    }

    fn drop(&mut self, d: &pg_query::protobuf::DropStmt) {
        let kind = ObjectType::try_from(d.remove_type).unwrap_or(ObjectType::Undefined);
        let names: Vec<String> = d.objects.iter().filter_map(last_name).collect();
        if d.missing_ok && kind == ObjectType::ObjectIndex {
            self.dropped_if_exists.extend(names.iter().cloned());
        } else if !d.missing_ok {
            self.not_rerunnable(
                &format!("DROP {} without IF EXISTS", names.join(", ")),
                "DROP ... IF EXISTS",
            );
        }
        match kind {
            ObjectType::ObjectIndex => {
                if names.iter().all(|n| self.created_indexes.contains(n)) {
                    return;
                }
                if !d.concurrent {
                    self.report("require-concurrent-index-deletion", -1, format!("DROP INDEX {} without CONCURRENTLY takes ACCESS EXCLUSIVE on its table: reads and writes wait, and queue behind it while it waits", names.join(", ")), "DROP INDEX CONCURRENTLY, one index per statement, outside a transaction block");
                } else if self.concurrent_refused() {
                    let at = self.find("concurrently");
                    self.report(
                        "ban-concurrent-index-creation-in-transaction",
                        at,
                        "DROP INDEX CONCURRENTLY inside a transaction block: PostgreSQL refuses it"
                            .to_owned(),
                        "run it outside the transaction",
                    );
                }
            }
            ObjectType::ObjectTable => {
                let dropped: Vec<String> = names
                    .into_iter()
                    .filter(|n| !self.created.contains(n))
                    .collect();
                for n in dropped {
                    self.report("ban-drop-table", -1, format!("DROP TABLE {n}: clients that still use it fail, and its data is gone"), "first deploy code that no longer uses the table; with pgshift, drop_table hides it from the new version at start and drops it at complete");
                }
            }
            _ => {}
        }
    }

    fn reindex(&mut self, r: &pg_query::protobuf::ReindexStmt) {
        let concurrent = r.params.iter().any(|p| {
            matches!(p.node.as_ref(), Some(NodeEnum::DefElem(d)) if d.defname.eq_ignore_ascii_case("concurrently"))
        });
        if !concurrent {
            self.report("require-concurrent-reindex", -1, "REINDEX without CONCURRENTLY blocks writes to the table, and reads that would use the index, until it ends".to_owned(), "REINDEX ... CONCURRENTLY (PostgreSQL 12 and later), outside a transaction block");
        } else if self.concurrent_refused() {
            let at = self.find("concurrently");
            self.report(
                "ban-concurrent-index-creation-in-transaction",
                at,
                "REINDEX CONCURRENTLY inside a transaction block: PostgreSQL refuses it".to_owned(),
                "run it outside the transaction",
            );
        }
    }

    fn rename(&mut self, r: &pg_query::protobuf::RenameStmt) {
        let Some(rel) = &r.relation else {
            return;
        };
        if self.is_new(&rel.relname) {
            return;
        }
        match ObjectType::try_from(r.rename_type) {
            Ok(ObjectType::ObjectColumn) => {
                let at = self.find("rename");
                self.report("renaming-column", at, format!("renaming {}.{} to {}: clients still running with the old name fail at once", rel.relname, r.subname, r.newname), "with pgshift, rename_column keeps both names working (a view per version) until complete; by hand, add the new column, write both, backfill, move the readers, then drop the old one");
            }
            Ok(ObjectType::ObjectTable) => {
                let at = self.find("rename");
                self.report("renaming-table", at, format!("renaming table {} to {}: clients still running with the old name fail at once", rel.relname, r.newname), "with pgshift, rename_table keeps both names working (a view per version) until complete; by hand, leave a view under the old name until no client uses it");
            }
            _ => {}
        }
    }

    fn alter_table(&mut self, a: &pg_query::protobuf::AlterTableStmt) {
        let Some(rel) = &a.relation else {
            return;
        };
        let table = rel.relname.clone();
        let new = self.is_new(&table);
        for cmd in &a.cmds {
            let Some(NodeEnum::AlterTableCmd(c)) = cmd.node.as_ref() else {
                continue;
            };
            let subtype = AlterTableType::try_from(c.subtype).unwrap_or(AlterTableType::Undefined);
            let def = c.def.as_ref().and_then(|d| d.node.as_ref());
            match (subtype, def) {
                (AlterTableType::AtAddColumn, Some(NodeEnum::ColumnDef(col))) => {
                    self.column_types(col, column_is_key(col));
                    if !c.missing_ok {
                        self.not_rerunnable(
                            &format!("ADD COLUMN {} without IF NOT EXISTS", col.colname),
                            "ADD COLUMN IF NOT EXISTS",
                        );
                    }
                    if !new {
                        self.add_column(&table, col);
                    }
                }
                (AlterTableType::AtAlterColumnType, Some(NodeEnum::ColumnDef(col))) => {
                    if let Some(t) = &col.type_name {
                        self.type_rules(t, &c.name, false);
                    }
                    if !new {
                        let at = col.type_name.as_ref().map(|t| t.location).unwrap_or(-1);
                        self.report("changing-column-type", at, format!("changing the type of {table}.{} rewrites the table and every index under ACCESS EXCLUSIVE: reads and writes wait until it ends (only varchar(n) to a longer varchar or to text, and a few other binary-coercible changes, skip the rewrite)", c.name), "with pgshift, alter_column with `type` and `up` adds a column of the new type, fills it in batches and swaps it in; `method: copy` copies the table instead");
                    }
                }
                (AlterTableType::AtAddConstraint, Some(NodeEnum::Constraint(k))) => {
                    self.note_not_null_check(&table, k);
                    if matches!(
                        ConstrType::try_from(k.contype),
                        Ok(ConstrType::ConstrUnique | ConstrType::ConstrPrimary)
                    ) && k.indexname.is_empty()
                    {
                        let columns: Vec<String> = k.keys.iter().filter_map(string_value).collect();
                        self.unique_on_partitioned(&table, &columns, k.location);
                    }
                    if k.skip_validation && !k.conname.is_empty() && self.in_transaction() {
                        self.not_valid_in_tx
                            .push((table.clone(), k.conname.clone()));
                    }
                    if !new {
                        self.constraint(&table, k, false);
                    }
                }
                (AlterTableType::AtValidateConstraint, _) => {
                    self.validated.insert(table.clone());
                    if self.in_transaction()
                        && self
                            .not_valid_in_tx
                            .iter()
                            .any(|(t, n)| *t == table && *n == c.name)
                    {
                        let at = self.find("validate");
                        self.report("validate-in-same-transaction", at, format!("VALIDATE CONSTRAINT {} runs in the transaction that added it NOT VALID: the ADD's lock on {table} is held while the validation scans every row", c.name), "validate in another transaction: with pgshift, put VALIDATE CONSTRAINT in the next migration file (or use create_constraint, which validates at complete)");
                    }
                    if let Some((t, _, col)) = self
                        .not_null_checks
                        .iter()
                        .find(|(t, n, _)| *t == table && *n == c.name)
                        .cloned()
                    {
                        self.validated_not_null.insert((t, col));
                    }
                }
                (AlterTableType::AtSetNotNull, _)
                    if !new
                        && !self
                            .validated_not_null
                            .contains(&(table.clone(), c.name.clone())) =>
                {
                    let at = self.find("set not null");
                    self.report("adding-not-nullable-field", at, format!("SET NOT NULL on {table}.{} scans the whole table under ACCESS EXCLUSIVE: reads and writes wait until it ends", c.name), "first ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID, then VALIDATE CONSTRAINT c (no blocking lock), then SET NOT NULL uses it without a scan (PostgreSQL 12 and later); pgshift's alter_column `nullable: false` does these steps");
                }
                (AlterTableType::AtDropNotNull, _) if !new => {
                    let at = self.find("drop not null");
                    self.report("ban-drop-not-null", at, format!("DROP NOT NULL on {table}.{}: NULLs written from now on reach code that does not expect them, and a rollback that sets it again fails", c.name), "make sure every reader handles NULL before dropping the constraint");
                }
                (AlterTableType::AtDropColumn, _) if !new => {
                    if !c.missing_ok {
                        self.not_rerunnable(
                            &format!("DROP COLUMN {} without IF EXISTS", c.name),
                            "DROP COLUMN IF EXISTS",
                        );
                    }
                    let at = self.find("drop");
                    self.report("ban-drop-column", at, format!("dropping {table}.{}: clients that still read or write it fail, and its data is gone", c.name), "first deploy code that no longer uses the column; with pgshift, drop_column hides it from the new version at start and drops it at complete");
                }
                (
                    AlterTableType::AtSetTableSpace
                    | AlterTableType::AtSetLogged
                    | AlterTableType::AtSetUnLogged,
                    _,
                ) if !new => {
                    self.report("table-rewrite", -1, format!("this ALTER TABLE rewrites {table} under ACCESS EXCLUSIVE: reads and writes wait until it ends"), "copy the table with pgshift's method: copy, or do it at a quiet hour with the deploy stopped");
                }
                (AlterTableType::AtAttachPartition, Some(NodeEnum::PartitionCmd(p)))
                    if a.objtype == pg_query::protobuf::ObjectType::ObjectTable as i32 =>
                {
                    let partition = p
                        .name
                        .as_ref()
                        .map(|r| r.relname.clone())
                        .unwrap_or_default();
                    if !self.is_new(&partition) && !self.validated.contains(&partition) {
                        let at = self.find("attach");
                        self.report("require-check-before-attach-partition", at, format!("ATTACH PARTITION {partition} scans {partition} under ACCESS EXCLUSIVE unless a validated CHECK constraint proves its rows are in the bound (and scans a default partition of {table} the same way unless a validated CHECK proves it holds none of them)"), "first ADD CONSTRAINT ... CHECK (<the bound as an expression>) NOT VALID on the table and VALIDATE CONSTRAINT it (no blocking lock), the same with the negation on the default partition, then ATTACH PARTITION; pgshift's attach_partition does this");
                    }
                }
                (AlterTableType::AtDetachPartition, Some(NodeEnum::PartitionCmd(p)))
                    if !p.concurrent =>
                {
                    let at = self.find("detach");
                    self.report("require-concurrent-partition-detach", at, format!("DETACH PARTITION without CONCURRENTLY takes ACCESS EXCLUSIVE on {table}: every query on the parent waits"), "DETACH PARTITION ... CONCURRENTLY (PostgreSQL 14 and later), outside a transaction block");
                }
                _ => {}
            }
        }
    }

    /// ADD COLUMN on a table that has rows.
    fn add_column(&mut self, table: &str, col: &pg_query::protobuf::ColumnDef) {
        let mut default = col.raw_default.as_deref();
        let mut not_null = col.is_not_null;
        let mut auto = false;
        for k in &col.constraints {
            let Some(NodeEnum::Constraint(k)) = k.node.as_ref() else {
                continue;
            };
            match ConstrType::try_from(k.contype) {
                Ok(ConstrType::ConstrDefault) => default = k.raw_expr.as_deref().or(default),
                Ok(ConstrType::ConstrNotnull) => not_null = true,
                Ok(ConstrType::ConstrIdentity) => {
                    auto = true;
                    self.report("adding-auto-increment-column", k.location, format!("adding identity column {table}.{} fills every row from the sequence: the table is rewritten under ACCESS EXCLUSIVE", col.colname), "add the column without identity, fill it in batches (pgshift's add_column with `up`), then attach a sequence as its default");
                }
                Ok(ConstrType::ConstrGenerated) => {
                    auto = true;
                    self.report("adding-stored-generated-column", k.location, format!("adding stored generated column {table}.{} computes it for every row: the table is rewritten under ACCESS EXCLUSIVE", col.colname), "add a plain column filled by a trigger and backfilled in batches (pgshift's add_column with `up`)");
                }
                _ => self.constraint(table, k, true),
            }
        }
        let type_name = col.type_name.as_ref().map(type_name).unwrap_or_default();
        if crate::sql::serial_type(&type_name).is_some() {
            auto = true;
            let at = col.type_name.as_ref().map(|t| t.location).unwrap_or(-1);
            self.report("adding-auto-increment-column", at, format!("adding {type_name} column {table}.{} fills every row from its sequence: the table is rewritten under ACCESS EXCLUSIVE", col.colname), "add a bigint column, fill it in batches (pgshift's add_column with `up`), then set its default to a sequence");
        }
        if let Some(d) = default {
            if let Some((name, loc)) = volatile_call(d) {
                self.report("adding-field-with-volatile-default", loc, format!("DEFAULT {name}() is volatile: adding {table}.{} computes it for every row by rewriting the table under ACCESS EXCLUSIVE", col.colname), "add the column without the default (or with a constant one), SET DEFAULT afterwards for new rows, and fill old rows in batches (pgshift's add_column with `up`)");
            }
        }
        if not_null && default.is_none() && !auto {
            self.report("adding-required-field", col.location, format!("{table}.{} is NOT NULL without a DEFAULT: the ALTER fails on a table with rows, and old clients' INSERTs fail once it exists", col.colname), "give it a constant DEFAULT, or add it nullable, backfill, then add NOT NULL through a validated CHECK");
        }
    }

    /// A constraint added to a table with rows (on its own, or with a new column).
    fn constraint(&mut self, table: &str, k: &pg_query::protobuf::Constraint, on_new_column: bool) {
        match ConstrType::try_from(k.contype) {
            Ok(ConstrType::ConstrForeign) if !k.skip_validation => {
                let target = k
                    .pktable
                    .as_ref()
                    .map(|p| p.relname.clone())
                    .unwrap_or_default();
                let what = if on_new_column {
                    "a column with REFERENCES"
                } else {
                    "a FOREIGN KEY without NOT VALID"
                };
                self.report("adding-foreign-key-constraint", k.location, format!("{what} on {table} checks every row while it holds SHARE ROW EXCLUSIVE on {table} and {target}: writes to both wait"), "ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID, then VALIDATE CONSTRAINT in another transaction (it takes only SHARE UPDATE EXCLUSIVE)");
            }
            Ok(ConstrType::ConstrCheck) if !k.skip_validation => {
                self.report("constraint-missing-not-valid", k.location, format!("a CHECK without NOT VALID on {table} checks every row under ACCESS EXCLUSIVE: reads and writes wait"), "ADD CONSTRAINT ... CHECK (...) NOT VALID, then VALIDATE CONSTRAINT in another transaction (it takes only SHARE UPDATE EXCLUSIVE)");
            }
            Ok(kind @ (ConstrType::ConstrUnique | ConstrType::ConstrPrimary))
                if k.indexname.is_empty() =>
            {
                let what = if kind == ConstrType::ConstrPrimary {
                    "PRIMARY KEY"
                } else {
                    "UNIQUE"
                };
                self.report("disallowed-unique-constraint", k.location, format!("{what} on {table} builds its index under ACCESS EXCLUSIVE: reads and writes wait for the whole build"), "CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT ... {what} USING INDEX (a catalog change)");
            }
            Ok(ConstrType::ConstrExclusion) => {
                self.report("adding-exclusion-constraint", k.location, format!("an exclusion constraint on {table} builds its index and checks every row under ACCESS EXCLUSIVE; it cannot be built concurrently"), "add it at a quiet hour with the deploy stopped, or enforce the rule in a new table that you fill and swap in");
            }
            _ => {}
        }
    }

    /// Remembers `CHECK (col IS NOT NULL)`, which lets a later SET NOT NULL skip its scan.
    fn note_not_null_check(&mut self, table: &str, k: &pg_query::protobuf::Constraint) {
        if k.contype != ConstrType::ConstrCheck as i32 {
            return;
        }
        let Some(NodeEnum::NullTest(t)) = k.raw_expr.as_ref().and_then(|e| e.node.as_ref()) else {
            return;
        };
        if t.nulltesttype != pg_query::protobuf::NullTestType::IsNotNull as i32 {
            return;
        }
        let Some(NodeEnum::ColumnRef(c)) = t.arg.as_ref().and_then(|a| a.node.as_ref()) else {
            return;
        };
        let Some(col) = c.fields.last().and_then(string_value) else {
            return;
        };
        if !k.skip_validation {
            self.validated_not_null
                .insert((table.to_owned(), col.clone()));
        }
        self.not_null_checks
            .push((table.to_owned(), k.conname.clone(), col));
    }

    fn data_change(&mut self, table: &str, location: i32, whole_table: bool, verb: &str) {
        if self.is_new(table) {
            return;
        }
        let held = self
            .tx_locks
            .iter()
            .filter(|(t, _)| t == table)
            .map(|(_, m)| *m)
            .max();
        if let Some(mode) = held {
            let mode = mode.name();
            self.report("backfill-in-schema-transaction", location, format!("{verb} on {table} in the same transaction as a schema change that holds {mode} on it: clients wait for the whole data change"), "change the data in its own migration, in batches: pgshift's `update` operation or a data migration (pgshift data run)");
        } else if whole_table && verb != "INSERT" {
            self.report("unbatched-data-change", location, format!("{verb} of every row of {table} in one statement: it locks every row until it commits, and leaves one dead row version per row"), "change the rows in batches: pgshift's `update` operation or a data migration (pgshift data run) does it throttled and resumable");
        }
    }
}

fn is_zero(n: &pg_query::protobuf::Node) -> bool {
    match n.node.as_ref() {
        Some(NodeEnum::AConst(c)) => match &c.val {
            Some(pg_query::protobuf::a_const::Val::Ival(i)) => i.ival == 0,
            Some(pg_query::protobuf::a_const::Val::Sval(s)) => s.sval.trim() == "0",
            _ => false,
        },
        _ => false,
    }
}

fn string_value(n: &pg_query::protobuf::Node) -> Option<String> {
    match n.node.as_ref() {
        Some(NodeEnum::String(s)) => Some(s.sval.clone()),
        _ => None,
    }
}

/// The last part of a dotted name in a DROP's object list.
fn last_name(o: &pg_query::protobuf::Node) -> Option<String> {
    match o.node.as_ref() {
        Some(NodeEnum::List(l)) => l.items.last().and_then(string_value),
        _ => None,
    }
}

/// The type's own name, without `pg_catalog.`: int4, varchar, json, serial, ...
pub(crate) fn type_name(t: &pg_query::protobuf::TypeName) -> String {
    t.names.last().and_then(string_value).unwrap_or_default()
}

fn display_type(name: &str) -> &str {
    match name {
        "int4" => "integer",
        "int2" => "smallint",
        other => other,
    }
}

fn column_is_key(col: &pg_query::protobuf::ColumnDef) -> bool {
    col.constraints.iter().any(|k| {
        matches!(k.node.as_ref(), Some(NodeEnum::Constraint(k))
            if k.contype == ConstrType::ConstrPrimary as i32 || k.contype == ConstrType::ConstrForeign as i32)
    })
}

/// The first call of a volatile function in an expression.
fn volatile_call(expr: &pg_query::protobuf::Node) -> Option<(String, i32)> {
    let node = expr.node.as_ref()?;
    let own = match node {
        NodeEnum::FuncCall(f) => Some(f.as_ref()),
        _ => None,
    };
    let nested = node.nodes().into_iter().filter_map(|(n, _, _, _)| match n {
        NodeRef::FuncCall(f) => Some(f),
        _ => None,
    });
    own.into_iter().chain(nested).find_map(|f| {
        let name = f.funcname.last().and_then(string_value)?;
        VOLATILE
            .contains(&name.as_str())
            .then_some((name, f.location))
    })
}

/// The type rules for a column of type `name` (as [`type_name`] gives it): each rule
/// broken, with its message and hint.
pub(crate) fn type_problems(
    name: &str,
    has_typmods: bool,
    column: &str,
    key: bool,
) -> Vec<(&'static str, String, &'static str)> {
    let mut out = Vec::new();
    let serial = crate::sql::serial_type(name);
    match name {
        "json" => {
            out.push(("prefer-jsonb", format!("column {column} is json: it has no equality operator, so DISTINCT, UNION and GROUP BY on it fail, and it is reparsed on every read"), "use jsonb"));
            out.push(("no-json", format!("column {column} is json; the team's policy bans json and jsonb columns"), "model the data as columns and tables, or put a `pgshift-lint: ignore no-json` comment above it, with the reason"));
        }
        "jsonb" => out.push(("no-json", format!("column {column} is jsonb; the team's policy bans json and jsonb columns"), "model the data as columns and tables, or put a `pgshift-lint: ignore no-json` comment above it, with the reason")),
        _ if key && matches!(serial.unwrap_or(name), "int4" | "int2" | "integer" | "int" | "smallint") => {
            let limit = if matches!(serial.unwrap_or(name), "int2" | "smallint") { "32,767" } else { "2,147,483,647" };
            out.push(("prefer-bigint-keys", format!("key column {column} is {}: it runs out at {limit}, and changing a key's type later rewrites it and every foreign key", display_type(name)), "use bigint (bigint GENERATED ALWAYS AS IDENTITY for a new key); for an existing key, pgshift's alter_primary_key changes it and its foreign keys without downtime"));
        }
        "timestamp" => out.push(("prefer-timestamptz", format!("column {column} is timestamp without time zone: the offset is dropped, and the same value means another instant in another session's time zone"), "use timestamptz (timestamp with time zone)")),
        "bpchar" => out.push(("ban-char-field", format!("column {column} is char(n): it pads with spaces, compares oddly, and is no faster than text"), "use text (with a CHECK on its length if needed)")),
        "varchar" if has_typmods => out.push(("prefer-text-field", format!("column {column} is varchar(n): a shorter limit later takes ACCESS EXCLUSIVE and scans the table"), "use text with CHECK (char_length(col) <= n): that CHECK can be replaced NOT VALID and validated without blocking")),
        _ => {}
    }
    if serial.is_some() {
        out.push(("prefer-identity", format!("column {column} is {name}: its sequence is a separate object with its own grants, owner and dump order"), "use bigint GENERATED ALWAYS AS IDENTITY (or BY DEFAULT)"));
    }
    out
}
