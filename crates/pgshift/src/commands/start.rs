//! `pgshift start <file>`: expands one structured migration and leaves it open (a `.sql`
//! file is applied whole), after the same checks `migrate` makes of it.

use super::pending::{check_not_edited, forget_edited, lint_before_run, recorded};
use crate::checks;
use crate::error::{Error, Refusal, Result};
use crate::event::RunEvent;
use crate::phases::{sql, structured};
use crate::session::Session;
use crate::source::{self, Body, MigrationFile};
use crate::state::{self, MigrationRecord, MigrationState};
use std::path::Path;

/// Options of `pgshift start`.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Start the file although files that sort before it are not applied yet.
    pub allow_out_of_order: bool,
    /// The project's lint settings; None skips linting (`--no-lint`).
    pub lint: Option<crate::lint::Config>,
}

/// `pgshift start <file>`: expands one migration (a `.sql` file is applied whole).
/// Returns the version schema ("" for a `.sql` file).
pub async fn start(
    s: &Session<'_>,
    path: &Path,
    dir: &Path,
    options: &StartOptions,
) -> Result<String> {
    let file = MigrationFile::read(path)?;
    let files = source::discover(dir)?;
    check_in_folder(&file, &files, dir)?;
    let body = file.parse().map_err(|d| Error::Input(vec![d]))?;
    let client = s.client();
    let (version, records) = recorded(client).await?;
    check_not_edited(&file, &records)?;
    if !options.allow_out_of_order {
        check_nothing_pending_before(&file, &files, &records)?;
    }
    if let (Some(config), false) = (&options.lint, records.iter().any(|r| r.name == file.name)) {
        lint_before_run(s, &[&file], config)?;
    }
    // On a database pgshift has not touched yet, the plan and its pre-checks (every row
    // converts, every expression type-checks) run before the state schema is created: a
    // refusal then leaves the database exactly as it was.
    let rows_checked = if let (None, Body::Operations(migration)) = (version, &body) {
        checks::plan_for(client, &file, migration, s.schema()).await?;
        true
    } else {
        false
    };
    s.locked(|| async {
        let mut records = state::migrations(client).await?;
        if check_not_edited(&file, &records)? {
            forget_edited(s, "start", &file, &records).await?;
            records = state::migrations(client).await?;
        }
        if records
            .iter()
            .any(|r| r.name == file.name && r.status == MigrationState::Applied)
        {
            return Err(Error::refused(
                Refusal::AlreadyApplied,
                format!("migration {} is already applied", file.name),
                None,
            ));
        }
        match &body {
            Body::Sql(statements) => {
                s.emit(&RunEvent::MigrationStarted {
                    name: file.name.clone(),
                    resumed: false,
                });
                sql::apply(s, &file, statements).await?;
                Ok(String::new())
            }
            Body::Operations(migration) => {
                structured::start(s, &file, migration, rows_checked).await
            }
        }
    })
    .await
}

/// `start` runs files of the migrations folder only: a file elsewhere would be recorded
/// under a name that `status` and `migrate` never find again.
fn check_in_folder(file: &MigrationFile, files: &[MigrationFile], dir: &Path) -> Result<()> {
    let canonical = |p: &Path| std::fs::canonicalize(p).ok();
    let here = canonical(&file.path);
    if files
        .iter()
        .any(|f| here.is_some() && canonical(&f.path) == here)
    {
        return Ok(());
    }
    Err(Error::refused(Refusal::NotInFolder,
        format!(
            "{} is not in the migrations folder {}",
            file.path.display(),
            dir.display()
        ),
        Some("move the file into the folder (pgshift records and checks the migrations there), or point --dir at the folder it is in"),
    ))
}

/// `start` applies what `migrate` would: not a file while files before it wait.
fn check_nothing_pending_before(
    file: &MigrationFile,
    files: &[MigrationFile],
    records: &[MigrationRecord],
) -> Result<()> {
    let done = |f: &MigrationFile| {
        records.iter().any(|r| {
            r.name == f.name
                && matches!(
                    r.status,
                    MigrationState::Applied
                        | MigrationState::Skipped
                        | MigrationState::Started
                        | MigrationState::Completing
                )
        })
    };
    let waiting: Vec<&str> = files
        .iter()
        .filter(|f| f.name < file.name && !done(f))
        .map(|f| f.name.as_str())
        .collect();
    if waiting.is_empty() {
        return Ok(());
    }
    Err(Error::refused(Refusal::OutOfOrder,
        format!(
            "{} sorts after migration(s) that are not applied yet: {}",
            file.name,
            waiting.join(", ")
        ),
        Some("run pgshift migrate (it applies them in order), start them first, or pass --allow-out-of-order if this one does not depend on them"),
    ))
}
