//! `pgshift plan <file>`: every step of start, complete and rollback with its SQL, the locks
//! it takes (PostgreSQL's names), whether it rewrites or scans a table, which client
//! statements it makes wait and for how long at most, and a time estimate from the tables'
//! current size (catalog statistics: `reltuples`, `pg_relation_size`).
//!
//! The estimates use throughputs measured on a 2-core machine (docs/benchmarks.md); they are
//! an order of magnitude, to tell a step of milliseconds from one of minutes.

use crate::catalog::Catalog;
use crate::locks::{self, TableLock, Work};
use crate::plan::{Action, Plan, PlannedStep, VerifySpec};
use std::time::Duration;

/// Rows per second of an in-place backfill (UPDATE in key batches).
const BACKFILL_UPDATE_ROWS_S: f64 = 100_000.0;
/// Rows per second of a copying backfill (INSERT ... SELECT in key batches).
const BACKFILL_COPY_ROWS_S: f64 = 600_000.0;
/// Rows per second of a B-tree build.
const INDEX_ROWS_S: f64 = 2_000_000.0;
/// A concurrent build reads the table twice and waits for older transactions.
const CONCURRENT_FACTOR: f64 = 2.5;
/// Bytes per second of a validating scan.
const SCAN_BYTES_S: f64 = 250.0 * 1_048_576.0;
/// Bytes per second of a table rewrite with its indexes.
const REWRITE_BYTES_S: f64 = 50.0 * 1_048_576.0;
/// Rows per second of a verification join.
const VERIFY_ROWS_S: f64 = 1_000_000.0;

/// One statement of a step.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatementReport {
    pub sql: String,
    pub locks: Vec<LockReport>,
    pub work: Work,
    pub work_on: Option<String>,
    pub estimate_s: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LockReport {
    pub table: String,
    pub mode: &'static str,
}

/// Client statements a step makes wait on one table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Blocked {
    pub table: String,
    pub lock: &'static str,
    pub statements: Vec<&'static str>,
    /// At most this long per attempt while the lock is queued (lock_timeout), then...
    pub queued_at_most_ms: u64,
    /// ...this long while it is held (the step's estimate: a transaction holds its locks
    /// until it commits).
    pub held_estimate_s: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StepReport {
    pub phase: &'static str,
    pub number: usize,
    pub description: String,
    /// sql, sql_outside_transaction, backfill, catch_up, version_schema, verify.
    pub kind: &'static str,
    pub statements: Vec<StatementReport>,
    pub rewrites: bool,
    pub scans: bool,
    pub blocks: Vec<Blocked>,
    pub estimate_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The whole plan.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlanReport {
    pub migration: String,
    pub version_schema: String,
    /// The method of each operation that rewrites or fills every row, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<crate::plan::MethodChoice>,
    pub steps: Vec<StepReport>,
    /// Estimated seconds per phase: start, complete, rollback.
    pub start_s: f64,
    pub complete_s: f64,
    pub rollback_s: f64,
}

struct Sizes<'a> {
    catalog: &'a Catalog,
    /// Tables that the phase itself creates (start's new partitions): no client uses them
    /// before the phase ends.
    unused: Vec<String>,
}

impl Sizes<'_> {
    /// (rows, heap bytes) of a table as a statement names it; a table's copy
    /// (`_pgshift_copy_<t>`) is as large as the table.
    fn of(&self, name: &str) -> (f64, f64) {
        let bare = name.rsplit('.').next().unwrap_or(name);
        let bare = bare.strip_prefix("_pgshift_copy_").unwrap_or(bare);
        self.catalog
            .table(bare)
            .map(|t| (t.estimated_rows as f64, t.heap_bytes as f64))
            .unwrap_or((0.0, 0.0))
    }

    fn estimate(&self, work: Work, on: Option<&str>) -> f64 {
        let Some(on) = on else {
            return 0.0;
        };
        let (rows, bytes) = self.of(on);
        match work {
            Work::Catalog | Work::Rows => 0.0,
            Work::Scan => bytes / SCAN_BYTES_S,
            Work::IndexBuild => rows / INDEX_ROWS_S,
            Work::ConcurrentIndexBuild => rows / INDEX_ROWS_S * CONCURRENT_FACTOR,
            Work::Rewrite => bytes / REWRITE_BYTES_S,
        }
    }
}

/// The report of `plan` against `catalog`, with `lock_timeout` as the longest wait of one
/// attempt at a lock.
pub fn report(name: &str, plan: &Plan, catalog: &Catalog, lock_timeout: Duration) -> PlanReport {
    let index_table = |index: &str| catalog.indexes.get(index).cloned();
    let mut steps = Vec::new();
    for (phase, list) in [
        ("start", &plan.start),
        ("complete", &plan.complete),
        ("rollback", &plan.rollback),
    ] {
        let sizes = Sizes {
            catalog,
            unused: if phase == "start" {
                created_tables(list)
                    .into_iter()
                    .filter(|t| catalog.table(t).is_none())
                    .collect()
            } else {
                Vec::new()
            },
        };
        if phase == "complete" {
            for (i, v) in plan.verify.iter().enumerate() {
                steps.push(verify_step(i + 1, v, &sizes));
            }
        }
        for (i, step) in list.iter().enumerate() {
            steps.push(step_report(
                phase,
                i + 1,
                step,
                &plan.version_schema,
                &sizes,
                &index_table,
                lock_timeout,
            ));
        }
    }
    let total = |phase: &str| {
        steps
            .iter()
            .filter(|s| s.phase == phase)
            .map(|s| s.estimate_s)
            .sum::<f64>()
    };
    PlanReport {
        migration: name.to_owned(),
        version_schema: plan.version_schema.clone(),
        start_s: total("start"),
        complete_s: total("complete"),
        rollback_s: total("rollback"),
        methods: plan.methods.clone(),
        steps,
    }
}

/// The tables that `steps` create (bare names), from their statements.
fn created_tables(steps: &[PlannedStep]) -> Vec<String> {
    use pg_query::protobuf::node::Node;
    let mut names = Vec::new();
    for step in steps {
        let Action::Sql { statement, .. } = &step.action else {
            continue;
        };
        let Ok(parsed) = pg_query::parse(&statement.sql) else {
            continue;
        };
        for s in &parsed.protobuf.stmts {
            if let Some(Node::CreateStmt(c)) = s.stmt.as_ref().and_then(|n| n.node.as_ref()) {
                if let Some(r) = &c.relation {
                    names.push(r.relname.clone());
                }
            }
        }
    }
    names
}

fn verify_step(number: usize, v: &VerifySpec, sizes: &Sizes) -> StepReport {
    let (rows, _) = sizes.of(&v.table);
    StepReport {
        phase: "complete",
        number: 0,
        description: format!("before anything else, verify: {}", v.description),
        kind: "verify",
        statements: Vec::new(),
        rewrites: false,
        scans: true,
        blocks: Vec::new(),
        estimate_s: rows / VERIFY_ROWS_S,
        note: Some(format!(
            "check {number}: one REPEATABLE READ snapshot, ACCESS SHARE on {} and {} (blocks no client); a difference stops complete before it changes anything",
            v.table, v.other
        )),
    }
}

/// The statements of `sql` (one step's), with their locks, work and estimate, and the
/// clients they block, added to `r`.
fn report_sql(
    r: &mut StepReport,
    sql: &str,
    sizes: &Sizes,
    lock_timeout: Duration,
    index_table: &dyn Fn(&str) -> Option<String>,
    takes_over: bool,
) {
    let effects = locks::analyze(sql, index_table);
    let mut held: Vec<TableLock> = Vec::new();
    for mut e in effects {
        if takes_over {
            e.work = Work::Catalog;
        }
        let estimate_s = sizes.estimate(e.work, e.work_on.as_deref());
        r.rewrites |= e.work == Work::Rewrite;
        r.scans |= matches!(
            e.work,
            Work::Scan | Work::IndexBuild | Work::ConcurrentIndexBuild | Work::Rewrite
        );
        r.estimate_s += estimate_s;
        for l in &e.locks {
            match held.iter_mut().find(|h| h.table == l.table) {
                Some(h) => h.mode = h.mode.max(l.mode),
                None => held.push(l.clone()),
            }
        }
        r.statements.push(StatementReport {
            sql: e.sql,
            locks: e
                .locks
                .iter()
                .map(|l| LockReport {
                    table: l.table.clone(),
                    mode: l.mode.name(),
                })
                .collect(),
            work: e.work,
            work_on: e.work_on,
            estimate_s,
        });
    }
    for h in held {
        // pgshift's own tables and a table's copy are not used by clients (a copy
        // is swapped in under a lock on the table itself, which counts).
        let bare = h.table.rsplit('.').next().unwrap_or(&h.table);
        if bare.starts_with(crate::plan::INTERNAL_PREFIX)
            || sizes.unused.iter().any(|u| u == bare)
            || h.mode.blocks().is_empty()
        {
            continue;
        }
        r.blocks.push(Blocked {
            table: h.table.clone(),
            lock: h.mode.name(),
            statements: h.mode.blocks().to_vec(),
            queued_at_most_ms: lock_timeout.as_millis() as u64,
            held_estimate_s: r.estimate_s,
        });
    }
}

fn step_report(
    phase: &'static str,
    number: usize,
    step: &PlannedStep,
    version_schema: &str,
    sizes: &Sizes,
    index_table: &dyn Fn(&str) -> Option<String>,
    lock_timeout: Duration,
) -> StepReport {
    let mut r = StepReport {
        phase,
        number,
        description: step.description.clone(),
        kind: "sql",
        statements: Vec::new(),
        rewrites: false,
        scans: false,
        blocks: Vec::new(),
        estimate_s: 0.0,
        note: None,
    };
    match &step.action {
        Action::Sql {
            statement,
            together,
        } => {
            let sql = &statement.sql;
            if !statement.transactional {
                r.kind = "sql_outside_transaction";
            }
            if *together {
                r.note = Some(
                    "runs at the same time as the steps next to it that say so, each on its own connection"
                        .to_owned(),
                );
            }
            report_sql(
                &mut r,
                sql,
                sizes,
                lock_timeout,
                index_table,
                statement.takes_over,
            );
        }
        Action::Swap(spec) => {
            r.kind = "swap";
            let sql = std::iter::once(spec.lock_sql())
                .chain(spec.statements.iter().cloned())
                .collect::<Vec<_>>()
                .join(";\n");
            report_sql(
                &mut r,
                &sql,
                sizes,
                lock_timeout,
                index_table,
                spec.scans_nothing,
            );
            let what: Vec<String> = spec
                .parts
                .iter()
                .map(|p| match &p.copy {
                    Some(copy) => format!("{} to {copy} (the foreign keys that point at it too: each referencing table is locked ACCESS EXCLUSIVE for the swap, the key added again NOT VALID and validated next)", p.table),
                    None if p.columns.iter().all(|c| c.old == c.name) => format!(
                        "the columns {} of {}, changed where they are",
                        p.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", "),
                        p.table
                    ),
                    None => format!(
                        "the columns {} of {} to their copies",
                        p.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", "),
                        p.table
                    ),
                })
                .collect();
            let prebuilt = if spec.parts.iter().any(|p| p.copy.is_some()) {
                "; before the lock, each materialized view that reads a copied table is built on the copy, and the swap renames it in"
            } else {
                ""
            };
            r.note = Some(format!(
                "in the same transaction, after the lock, what hangs on them is read and carried from {} (privileges, row-level security and policies, triggers, rules, publications, storage parameters, comments, statistics, the views over them){prebuilt}; see docs/fidelity.md",
                what.join("; ")
            ));
        }
        Action::CarryAccess {
            from,
            to,
            through: Some(_),
            ..
        } => {
            r.kind = "carry_access";
            r.note = Some(format!(
                "gives {to} the owner and privileges {from} has when the step runs, the moved columns' privileges and settings, row-level security whose policies show a row of {to} exactly when {from} shows its row, and the publications {from} is in (blocks no client statement)"
            ));
        }
        Action::CarryAccess { from, to, .. } => {
            r.kind = "carry_access";
            r.note = Some(format!(
                "gives {to} the privileges, row-level security and policies {from} has when the step runs: clients keep the same rights and see the same rows through the triggers and the version schema (blocks no client statement)"
            ));
        }
        Action::ValidateCarried => {
            r.kind = "validate";
            r.scans = true;
            r.note = Some(
                "validates the foreign keys the swap pointed at the copy, one transaction each (SHARE UPDATE EXCLUSIVE on the referencing table: reads and writes go on)"
                    .to_owned(),
            );
        }
        Action::Backfill(b) => {
            r.kind = "backfill";
            let (rows, _) = sizes.of(&b.table);
            let copy = b.insert.is_some();
            r.estimate_s = rows
                / if copy {
                    BACKFILL_COPY_ROWS_S
                } else {
                    BACKFILL_UPDATE_ROWS_S
                };
            r.scans = true;
            r.note = Some(format!(
                "ROW EXCLUSIVE on {} (blocks no statement); batches sized to --backfill-batch-time (150 ms); {}",
                b.table,
                if copy && b.insert.as_ref().is_some_and(|i| !i.conflict.is_empty()) {
                    "a batch's source rows are locked FOR SHARE until it commits: a client updating one of them waits up to one batch"
                } else if copy {
                    "no row lock on the source (changes meanwhile are logged and replayed)"
                } else {
                    "a batch's rows are locked until it commits: a client writing one of them waits up to one batch"
                }
            ));
        }
        Action::CatchUp(c) => {
            r.kind = "catch_up";
            r.note = Some(if c.after_switch {
                format!(
                    "replays the rest of the log, 10,000 keys per transaction, each row of {} read FOR SHARE SKIP LOCKED (a client writing one waits for its batch; a row a client holds is left for a later batch, so the replay waits for no client)",
                    c.source
                )
            } else {
                format!(
                    "replays the keys logged while {} was copied, 10,000 per transaction, in rounds until few are left or the log stops shrinking (ROW EXCLUSIVE, blocks no statement)",
                    c.source
                )
            });
        }
        Action::RefreshVersionSchema { planned, .. } => {
            r.kind = "version_schema";
            // The views as planned; the tables and columns the sql operations make are added
            // when the step runs.
            for sql in crate::plan::version_schema_statements(
                &sizes.catalog.schema,
                version_schema,
                planned,
                sizes.catalog.server_version_num,
            ) {
                r.statements.push(StatementReport {
                    sql,
                    locks: Vec::new(),
                    work: Work::Catalog,
                    work_on: None,
                    estimate_s: 0.0,
                });
            }
            r.note = Some(
                "the views as planned; when the step runs, a table or column made or dropped since (by a sql operation or anyone else) is added or left out (no lock on any table)"
                    .to_owned(),
            );
        }
        Action::LegacyVersionSchema => {
            r.kind = "version_schema";
            r.note = Some(
                "creates views in the new version schema, refreshed from the catalog after the sql operations ran (no lock on any table)"
                    .to_owned(),
            );
        }
    }
    r
}

/// The report for a terminal.
pub fn render(report: &PlanReport) -> String {
    let mut out = if report.version_schema.is_empty() {
        format!(
            "plan for {} (raw SQL: applied whole, no version schema); estimates from the tables' current size\n",
            report.migration
        )
    } else {
        format!(
            "plan for {} (new version schema {}); estimates from the tables' current size\n",
            report.migration, report.version_schema
        )
    };
    if !report.methods.is_empty() {
        out.push_str("\nmethods\n");
        for m in &report.methods {
            out.push_str(&format!(
                "  operation {} ({}): {}: {}\n",
                m.operation + 1,
                m.what,
                m.method.replace('_', " "),
                m.why
            ));
        }
    }
    let mut phase = "";
    for s in &report.steps {
        if s.phase != phase {
            phase = s.phase;
            let total = match phase {
                "start" => report.start_s,
                "complete" => report.complete_s,
                _ => report.rollback_s,
            };
            out.push_str(&format!("\n{phase} (about {})\n", seconds(total)));
        }
        let number = if s.number == 0 {
            "-".to_owned()
        } else {
            s.number.to_string()
        };
        let mut what = Vec::new();
        let mut locks: Vec<String> = Vec::new();
        for st in &s.statements {
            for l in &st.locks {
                let text = format!("{} on {}", l.mode, l.table);
                if !locks.contains(&text) {
                    locks.push(text);
                }
            }
        }
        if !locks.is_empty() {
            what.push(locks.join(", "));
        }
        if s.rewrites {
            what.push("rewrites the table".to_owned());
        } else if s.scans {
            what.push("scans".to_owned());
        }
        what.push(format!("about {}", seconds(s.estimate_s)));
        out.push_str(&format!(
            "  {number}. {}  [{}]\n",
            s.description,
            what.join("; ")
        ));
        for st in &s.statements {
            for line in st.sql.lines() {
                out.push_str(&format!("       {}\n", line.trim_end()));
            }
        }
        for b in &s.blocks {
            out.push_str(&format!(
                "     blocks {} on {} ({}): while queued at most {} ms per attempt (lock_timeout), then about {} held\n",
                b.statements.join(", "),
                b.table,
                b.lock,
                b.queued_at_most_ms,
                seconds(b.held_estimate_s)
            ));
        }
        if s.blocks.is_empty() && matches!(s.kind, "sql" | "sql_outside_transaction") {
            out.push_str("     blocks no client statement\n");
        }
        if let Some(n) = &s.note {
            out.push_str(&format!("     {n}\n"));
        }
    }
    out
}

fn seconds(s: f64) -> String {
    if s < 0.1 {
        "< 0.1 s".to_owned()
    } else if s < 60.0 {
        format!("{s:.1} s")
    } else {
        format!("{:.0} min {:.0} s", (s / 60.0).floor(), s % 60.0)
    }
}
