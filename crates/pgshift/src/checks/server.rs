//! What the server says of a migration's fragments before anything changes: each type
//! exists, each `up` parses and type-checks against its table (PREPARE only plans a
//! statement), and (for a type change) every row converts.

use crate::catalog::Catalog;
use crate::diag::Diagnostic;
use crate::error::{Error, Result};
use crate::model::Migration;
use crate::plan;
use crate::source::MigrationFile;

/// Asks the server, without changing anything, whether each type exists and each `up`
/// expression parses and type-checks against its table (PREPARE only plans a statement).
pub(super) async fn check_on_server(
    client: &tokio_postgres::Client,
    file: &MigrationFile,
    migration: &Migration,
    catalog: &Catalog,
    schema: &str,
    check_rows: bool,
) -> Result<()> {
    use crate::model::Operation;
    use crate::quote::qualified;
    let mut diagnostics = Vec::new();
    let mut rows_refused = false;
    for (i, op) in migration.operations.iter().enumerate() {
        let crate::model::Fragments { types, ups, .. } = op.fragments();
        // (field, its value, message, hint)
        let mut problems: Vec<(&str, &str, String, &str)> = Vec::new();
        for ty in types.iter().map(|t| t.data_type) {
            // serial and friends are CREATE TABLE shorthand, not types: check what they stand for.
            let checked = crate::sql::serial_type(&ty.trim().to_ascii_lowercase()).unwrap_or(ty);
            if let Err(e) = client.prepare(&format!("SELECT NULL::{checked}")).await {
                problems.push((
                    "type",
                    ty,
                    format!("type {ty:?}: {}", crate::error::pg_error_text(&e)),
                    "use a type this server knows (bigint, text, numeric(10,2), timestamptz, ...), spelled as in SQL; a type from an extension needs the extension created first",
                ));
            }
        }
        for (table, up) in ups {
            // Tables made earlier in the same migration do not exist yet: nothing to check against.
            if catalog.table(table).is_none() {
                continue;
            }
            let sql = format!(
                "SELECT {} FROM {}",
                plan::expression(up),
                qualified(schema, table)
            );
            if let Err(e) = client.prepare(&sql).await {
                problems.push((
                    "up",
                    up,
                    format!("`up` {up:?}: {}", crate::error::pg_error_text(&e)),
                    "the server refused it as written; `up` is an expression over the table's columns as the old version names them",
                ));
            }
        }
        // Every row must convert before a type change starts (issue 5, S1).
        if let (true, true, Operation::AlterColumn(a)) = (check_rows, problems.is_empty(), op) {
            if let (Some(new_type), Some(table)) = (&a.data_type, catalog.table(&a.table)) {
                // Without `up`, the column is cast to the new type.
                let cast = format!("{}::{new_type}", crate::quote::ident(&a.column));
                let up = a.up.as_deref().unwrap_or(&cast);
                if let Some(bad) =
                    super::precheck::conversion(client, schema, table, &a.column, new_type, up)
                        .await?
                {
                    rows_refused = true;
                    diagnostics.push(
                        file.operation_diagnostic(
                            i,
                            op.kind(),
                            &format!(
                                "{} of {} rows of {} do not convert to {new_type} with `up` {up:?} (an error, NULL, or a different value); sample keys: {}",
                                bad.rows,
                                bad.of,
                                qualified(schema, &a.table),
                                bad.samples.join(", ")
                            ),
                        )
                        .with_hint("fix these rows, or write an `up` that converts them, then run again"),
                    );
                }
            }
        }
        for (field, value, message, hint) in problems {
            let mut d = file.operation_diagnostic(i, op.kind(), &message);
            if let Some((line, column)) = file.field_location(i, field, value) {
                d = Diagnostic::at_line_col(&file.path, &file.source, line, column, d.message);
            }
            diagnostics.push(d.with_hint(hint));
        }
    }
    if diagnostics.is_empty() {
        Ok(())
    } else if rows_refused {
        Err(Error::PrecheckRefused(diagnostics))
    } else {
        Err(Error::Input(diagnostics))
    }
}
