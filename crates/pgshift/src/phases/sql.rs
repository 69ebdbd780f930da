//! The journaled applier of a raw SQL migration.
//!
//! A `.sql` migration runs as segments: consecutive statements that can share a transaction
//! run in one, each statement that cannot (CONCURRENTLY, VACUUM) runs alone. Each segment is
//! journaled in `pgshift.steps`; a transactional segment's journal entry commits with the
//! segment, and the last segment's transaction also marks the migration applied. So after a
//! crash at any point, the next run skips the segments that committed and runs the rest:
//! a migration with no concurrent statement is one transaction and simply runs again.

use crate::error::{Error, Result};
use crate::event::RunEvent;
use crate::session::Session;
use crate::source::MigrationFile;
use crate::sql::Statement;
use crate::state::{self, Phase, StepState};
use std::time::Instant;

/// Statements grouped the way they run: a transaction, or one statement alone.
#[derive(Debug)]
enum Segment<'a> {
    Transaction(&'a [Statement]),
    Alone(&'a Statement),
}

fn segments(statements: &[Statement]) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, s) in statements.iter().enumerate() {
        if !s.transactional {
            if start < i {
                out.push(Segment::Transaction(&statements[start..i]));
            }
            out.push(Segment::Alone(s));
            start = i + 1;
        }
    }
    if start < statements.len() {
        out.push(Segment::Transaction(&statements[start..]));
    }
    out
}

/// Applies the statements of `file` as journaled segments; the last segment's transaction
/// also marks the migration applied.
pub async fn apply(s: &Session<'_>, file: &MigrationFile, statements: &[Statement]) -> Result<()> {
    let client = s.client();
    s.begin_migration(file).await?;
    let journal = state::journal(client, &file.name, Phase::Apply).await?;
    let segments = segments(statements);
    let total = segments.len();
    for (i, segment) in segments.iter().enumerate() {
        let number = i as i32 + 1;
        let last = i + 1 == total;
        let journaled = journal.iter().find(|(n, _)| *n == number).map(|(_, s)| *s);
        let (line, description) = match segment {
            Segment::Transaction(stmts) => (
                stmts[0].line,
                format!("{} statement(s) from line {}", stmts.len(), stmts[0].line),
            ),
            Segment::Alone(s) => (
                s.line,
                format!("line {}: {}", s.line, crate::exec::abbreviate(&s.sql, 80)),
            ),
        };
        if journaled == Some(StepState::Done) {
            s.emit(&RunEvent::StepSkipped {
                migration: file.name.clone(),
                step: i + 1,
                reason: "done in an earlier run".to_owned(),
            });
            if last {
                s.exec()
                    .bookkeeping(
                        "recording the migration",
                        &[state::mark_applied_sql(&file.name)],
                    )
                    .await?;
            }
            continue;
        }
        let t0 = Instant::now();
        let mut finish = vec![state::step_done_sql(
            &file.name,
            Phase::Apply,
            number,
            &description,
        )];
        if last {
            finish.push(state::mark_applied_sql(&file.name));
        }
        match segment {
            Segment::Transaction(stmts) => {
                s.exec().run_transaction(stmts, &finish).await?;
            }
            Segment::Alone(stmt) => {
                let resuming = journaled == Some(StepState::Running);
                state::step_running(s.exec(), &file.name, Phase::Apply, number, &description)
                    .await?;
                s.exec().run_alone(stmt, resuming).await.map_err(|e| {
                    if resuming {
                        Error::CannotResume(format!(
                            "{}:{}: this statement was interrupted in an earlier run and may have been partly done; running it again failed:\n{e}\nhint: check what the statement did, undo or finish it by hand, then run pgshift migrate again",
                            file.path.display(),
                            stmt.line
                        ))
                    } else {
                        e
                    }
                })?;
                s.exec().run_transaction(&[], &finish).await?;
            }
        }
        s.emit(&RunEvent::StepDone {
            migration: file.name.clone(),
            step: i + 1,
            of: total,
            what: format!("line {line}"),
            ms: t0.elapsed().as_millis() as u64,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::split;
    use std::path::Path;

    #[test]
    fn segments_group_transactional_runs() {
        let stmts = split(
            Path::new("m.sql"),
            "CREATE TABLE a (id int);\nINSERT INTO a VALUES (1);\nCREATE INDEX CONCURRENTLY a_id ON a (id);\nALTER TABLE a ADD x int;\n",
        )
        .unwrap();
        let shape: Vec<String> = segments(&stmts)
            .iter()
            .map(|s| match s {
                Segment::Transaction(t) => format!("tx{}", t.len()),
                Segment::Alone(_) => "alone".to_owned(),
            })
            .collect();
        assert_eq!(shape, vec!["tx2", "alone", "tx1"]);
    }
}
