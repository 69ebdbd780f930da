//! `pgshift data status|run`: data migrations, the files of the data folder that change
//! rows, not the schema, run once each by the backfill engine (or in one transaction).

use crate::error::{EditedMigration, Error, Result};
use crate::event::RunEvent;
use crate::quote;
use crate::session::Session;
use crate::source::{self, Body, MigrationFile};
use crate::state::{self, AuditEvent, Event};
use std::path::Path;
use std::time::Instant;

/// A data migration as `data status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DataMigration {
    pub name: String,
    /// pending, running, applied, failed, or edited (applied, and the file changed since).
    pub status: String,
    pub file: String,
    pub rows: Option<i64>,
    pub run_by: Option<String>,
    pub run_from_host: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_ms: Option<i64>,
    pub last_error: Option<String>,
}

/// The data migrations in `data_dir`; a folder that does not exist holds none (data
/// migrations are optional, and most projects have no folder for them).
fn discover_data(data_dir: &Path) -> Result<Vec<MigrationFile>> {
    if !data_dir.exists() {
        return Ok(Vec::new());
    }
    source::discover(data_dir)
}

/// The recorded data migrations: name → (checksum, status, rows, by, host, started, finished,
/// duration, error).
async fn data_records(
    client: &tokio_postgres::Client,
) -> Result<std::collections::BTreeMap<String, (String, DataMigration)>> {
    if state::installed_version(client)
        .await?
        .is_none_or(|v| v < 6)
    {
        return Ok(Default::default());
    }
    let rows = client
        .query(
            &format!(
                "SELECT name, checksum, status, rows, run_by, run_from_host, {}, {},
                        duration_ms, last_error
                 FROM {}",
                state::rfc3339_sql("started_at"),
                state::rfc3339_sql("finished_at"),
                state::table("data_migrations")
            ),
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let name: String = r.try_get(0)?;
            Ok((
                name.clone(),
                (
                    r.try_get::<_, String>(1)?,
                    DataMigration {
                        name,
                        status: r.try_get(2)?,
                        file: String::new(),
                        rows: Some(r.try_get(3)?),
                        run_by: Some(r.try_get(4)?),
                        run_from_host: Some(r.try_get(5)?),
                        started_at: r.try_get(6)?,
                        finished_at: r.try_get(7)?,
                        duration_ms: r.try_get(8)?,
                        last_error: r.try_get(9)?,
                    },
                ),
            ))
        })
        .collect()
}

/// `pgshift data status`: every data migration file with what is recorded of it.
pub async fn data_status(
    client: &tokio_postgres::Client,
    data_dir: &Path,
) -> Result<Vec<DataMigration>> {
    let files = discover_data(data_dir)?;
    let records = data_records(client).await?;
    Ok(files
        .iter()
        .map(|f| match records.get(&f.name) {
            Some((checksum, d)) => {
                let mut d = d.clone();
                d.file = f.path.display().to_string();
                if d.status == "applied" && *checksum != f.checksum {
                    d.status = "edited".to_owned();
                }
                d
            }
            None => DataMigration {
                name: f.name.clone(),
                status: "pending".to_owned(),
                file: f.path.display().to_string(),
                rows: None,
                run_by: None,
                run_from_host: None,
                started_at: None,
                finished_at: None,
                duration_ms: None,
                last_error: None,
            },
        })
        .collect())
}

/// `pgshift data run`: every pending data migration, once, in file-name order. A structured
/// file holds `update` operations, each run by the backfill engine (batched, throttled,
/// resumable: killed, the same command continues it); a `.sql` file runs in one
/// transaction. `pgshift migrate` never runs them. Returns the names applied.
pub async fn data_run(s: &Session<'_>, data_dir: &Path) -> Result<Vec<(String, i64)>> {
    let files = discover_data(data_dir)?;
    // Refuse bad input before anything changes.
    let mut bodies = Vec::new();
    let mut diagnostics = Vec::new();
    for f in &files {
        match f.parse() {
            Ok(Body::Operations(m)) => {
                for (i, op) in m.operations.iter().enumerate() {
                    if !matches!(op, crate::model::Operation::Update(_)) {
                        diagnostics.push(
                            f.operation_diagnostic(
                                i,
                                op.kind(),
                                &format!(
                                    "a data migration holds `update` operations only, not {}",
                                    op.kind()
                                ),
                            )
                            .with_hint(
                                "move schema changes to a migration in the migrations folder",
                            ),
                        );
                    }
                }
                bodies.push((f, Body::Operations(m)));
            }
            Ok(Body::Sql(statements)) => {
                if let Some(s) = statements.iter().find(|s| !s.transactional) {
                    diagnostics.push(
                        crate::diag::Diagnostic::at_line_col(
                            &f.path,
                            &f.source,
                            s.line,
                            1,
                            "a data migration runs in one transaction; this statement cannot",
                        )
                        .with_hint("move it to a migration in the migrations folder"),
                    );
                }
                bodies.push((f, Body::Sql(statements)));
            }
            Err(d) => diagnostics.push(d),
        }
    }
    if !diagnostics.is_empty() {
        return Err(Error::Input(diagnostics));
    }
    let client = s.client();
    s.locked(|| async {
        let records = data_records(client).await?;
        let edited: Vec<EditedMigration> = files
            .iter()
            .filter_map(|f| {
                let (checksum, d) = records.get(&f.name)?;
                (d.status == "applied" && *checksum != f.checksum).then(|| EditedMigration {
                    name: f.name.clone(),
                    path: f.path.display().to_string(),
                    applied_checksum: checksum.clone(),
                    file_checksum: f.checksum.clone(),
                    partly_applied: None,
                })
            })
            .collect();
        if !edited.is_empty() {
            return Err(Error::EditedAfterApply(edited));
        }
        let table = state::table("data_migrations");
        let mut applied = Vec::new();
        for (file, body) in &bodies {
            if records.get(&file.name).is_some_and(|(_, d)| d.status == "applied") {
                continue;
            }
            let resumed = records.contains_key(&file.name);
            s.emit(&RunEvent::MigrationStarted {
                name: format!("data/{}", file.name),
                resumed,
            });
            let t0 = Instant::now();
            s.exec()
                .bookkeeping_query(
                    &format!(
                        "INSERT INTO {table} AS d (name, checksum, kind, status, run_by, run_from_host)
                         VALUES ($1, $2, $3, 'running', $4, $5)
                         ON CONFLICT (name) DO UPDATE SET status = 'running', attempts = d.attempts + 1,
                             checksum = excluded.checksum, last_error = NULL"
                    ),
                    &[&file.name, &file.checksum, &file.kind.as_str(), &s.who().os_user, &s.who().host],
                )
                .await?;
            let done_sql = |rows: &str| {
                format!(
                    "UPDATE {table} SET status = 'applied', rows = {rows}, finished_at = clock_timestamp(),
                         duration_ms = (extract(epoch FROM clock_timestamp() - started_at) * 1000)::bigint
                     WHERE name = {}",
                    quote::literal(&file.name)
                )
            };
            let outcome: Result<i64> = async {
                match body {
                    Body::Sql(statements) => {
                        // The rows the statements changed are not counted here (0).
                        s.exec().run_transaction(statements, &[done_sql("0")]).await?;
                        Ok(0)
                    }
                    Body::Operations(m) => {
                        let mut rows = 0;
                        for (i, op) in m.operations.iter().enumerate() {
                            if let crate::model::Operation::Update(u) = op {
                                let spec = crate::plan::BackfillSpec {
                                    partition_of: None,
                                    schema: s.schema().to_owned(),
                                    table: u.table.clone(),
                                    set: u.set.iter().map(|(c, e)| (c.clone(), e.to_string())).collect(),
                                    condition: u.condition.clone().map(String::from),
                                    insert: None,
                                };
                                rows += crate::backfill::run(
                                    s,
                                    &format!("data/{}", file.name),
                                    i as i32 + 1,
                                    &spec,
                                )
                                .await?;
                            }
                        }
                        s.exec().bookkeeping("recording the data migration", &[done_sql(&rows.to_string())]).await?;
                        Ok(rows)
                    }
                }
            }
            .await;
            let ms = t0.elapsed().as_millis() as i64;
            let (ok, detail) = match &outcome {
                Ok(rows) => (true, serde_json::json!({ "rows": rows, "checksum": file.checksum })),
                Err(e) => {
                    let _ = s
                        .exec()
                        .bookkeeping_query(
                            &format!("UPDATE {table} SET status = 'failed', last_error = $2 WHERE name = $1"),
                            &[&file.name, &e.to_string()],
                        )
                        .await;
                    (false, serde_json::json!({ "error": e.to_string() }))
                }
            };
            let _ = s.record(&Event {
                    command: "data run",
                    event: if ok { AuditEvent::DataMigrationApplied } else { AuditEvent::DataMigrationFailed },
                    migration: Some(&file.name),
                    ok,
                    duration_ms: Some(ms),
                    detail,
                },
            )
            .await;
            let rows = outcome?;
            s.emit(&RunEvent::MigrationApplied {
                name: format!("data/{}", file.name),
                ms: ms as u64,
            });
            applied.push((file.name.clone(), rows));
        }
        Ok(applied)
    })
    .await
}
