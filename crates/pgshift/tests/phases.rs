//! The phase runner and the migration's state transitions, at the library level: a start
//! that fails part-way keeps the steps it finished journaled and the next start skips
//! them; a migration moves running -> started -> applied (complete) or is forgotten
//! (rollback), and each command refuses the states it cannot act on with its own kind.

use pgshift::conn::ConnectionSpec;
use pgshift::event::RunEvent;
use pgshift::exec::{ExecSettings, Silent};
use pgshift::session::Session;
use pgshift::state::{self, MigrationState, Phase, StepState};
use pgshift::{commands, Error, Refusal};
use pgshift_testkit::TestDb;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The events a command emitted.
#[derive(Default)]
struct Events(Mutex<Vec<RunEvent>>);

impl Events {
    fn skipped(&self) -> Vec<usize> {
        let seen = self.0.lock().unwrap();
        seen.iter()
            .filter_map(|e| match e {
                RunEvent::StepSkipped { step, .. } => Some(*step),
                _ => None,
            })
            .collect()
    }

    fn done(&self) -> Vec<usize> {
        let seen = self.0.lock().unwrap();
        seen.iter()
            .filter_map(|e| match e {
                RunEvent::StepDone { step, .. } => Some(*step),
                _ => None,
            })
            .collect()
    }
}

async fn session<'a>(db: &TestDb, events: &'a (dyn Fn(&RunEvent) + Sync)) -> Session<'a> {
    let spec = ConnectionSpec::resolve(Some(&db.url)).unwrap();
    Session::connect(
        &spec,
        ExecSettings::default(),
        Arc::new(Silent),
        "public",
        events,
    )
    .await
    .unwrap()
}

fn write(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

async fn state_of(client: &tokio_postgres::Client, name: &str) -> Option<MigrationState> {
    state::migrations(client)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.name == name)
        .map(|r| r.status)
}

/// The one value `sql` returns.
async fn one<T: for<'r> tokio_postgres::types::FromSql<'r>>(
    client: &tokio_postgres::Client,
    sql: &str,
) -> T {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

fn refusal(e: Error) -> Refusal {
    match e {
        Error::Refused { kind, .. } => kind,
        other => panic!("expected a refusal, got: {other}"),
    }
}

const ADD_AND_INDEX: &str = "operations:
  - add_column:
      table: t
      column: {name: note, type: text, nullable: true}
  - create_index:
      name: t_v_unique
      table: t
      columns: [v]
      unique: true
";

#[tokio::test]
async fn a_start_that_failed_part_way_resumes_after_the_steps_it_journaled() {
    let db = TestDb::new().await;
    let client = db.client().await;
    // Two rows share v = 1: the unique index's build fails after the column is added.
    client
        .batch_execute(
            "CREATE TABLE t (id bigint PRIMARY KEY, v int);
             INSERT INTO t SELECT g, g FROM generate_series(1, 50) g;
             UPDATE t SET v = 1 WHERE id = 2;",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "001_add_and_index.yaml", ADD_AND_INDEX);

    let first = Events::default();
    let sink = |e: &RunEvent| first.0.lock().unwrap().push(e.clone());
    let s = session(&db, &sink).await;
    let err = commands::start(&s, &file, dir.path(), &Default::default())
        .await
        .expect_err("the unique index cannot be built over duplicates");
    assert!(err.to_string().contains("t_v_unique"), "{err}");
    let journal = state::journal(&client, "001_add_and_index", Phase::Start)
        .await
        .unwrap();
    let done: Vec<i32> = journal
        .iter()
        .filter(|(_, st)| *st == StepState::Done)
        .map(|(step, _)| *step)
        .collect();
    assert!(
        !done.is_empty(),
        "nothing journaled done before the failure: {journal:?}"
    );
    assert!(
        first.done().len() == done.len(),
        "events {:?} against journal {journal:?}",
        first.done()
    );
    assert_eq!(
        state_of(&client, "001_add_and_index").await,
        Some(MigrationState::Running)
    );
    // The column the first run added is there, once.
    let columns: i64 = one(
        &client,
        "SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'note'",
    )
    .await;
    assert_eq!(columns, 1);
    drop(s);

    client
        .batch_execute("UPDATE t SET v = 2 WHERE id = 2")
        .await
        .unwrap();
    let second = Events::default();
    let sink = |e: &RunEvent| second.0.lock().unwrap().push(e.clone());
    let s = session(&db, &sink).await;
    commands::start(&s, &file, dir.path(), &Default::default())
        .await
        .unwrap();
    let skipped: Vec<i32> = second.skipped().iter().map(|&k| k as i32).collect();
    assert_eq!(
        skipped, done,
        "the second start skips exactly what the first journaled"
    );
    assert!(!second.done().is_empty());
    assert!(second
        .done()
        .iter()
        .all(|k| !skipped.contains(&(*k as i32))));
    assert_eq!(
        state_of(&client, "001_add_and_index").await,
        Some(MigrationState::Started)
    );
    let valid: bool = one(
        &client,
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_v_unique'::regclass",
    )
    .await;
    assert!(valid, "the index rebuilt by the second start is valid");
}

#[tokio::test]
async fn a_migration_moves_through_its_states_and_each_command_refuses_the_wrong_one() {
    let db = TestDb::new().await;
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE t (id bigint PRIMARY KEY, v int);
             INSERT INTO t SELECT g, g FROM generate_series(1, 20) g;",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let first = write(
        dir.path(),
        "001_note.yaml",
        "operations:\n  - add_column:\n      table: t\n      column: {name: note, type: text, nullable: true}\n",
    );
    let second = write(
        dir.path(),
        "002_tag.yaml",
        "operations:\n  - add_column:\n      table: t\n      column: {name: tag, type: text, nullable: true}\n",
    );
    let sink = |_: &RunEvent| {};
    let s = session(&db, &sink).await;

    // Nothing open: complete and rollback are refused as such.
    assert_eq!(
        refusal(commands::complete(&s).await.unwrap_err()),
        Refusal::NoMigrationOpen
    );
    assert_eq!(
        refusal(commands::rollback(&s).await.unwrap_err()),
        Refusal::NoMigrationOpen
    );

    // The second file before the first: out of order.
    assert_eq!(
        refusal(
            commands::start(&s, &second, dir.path(), &Default::default())
                .await
                .unwrap_err()
        ),
        Refusal::OutOfOrder
    );

    commands::start(&s, &first, dir.path(), &Default::default())
        .await
        .unwrap();
    assert_eq!(
        state_of(&client, "001_note").await,
        Some(MigrationState::Started)
    );
    // One open at a time.
    assert_eq!(
        refusal(
            commands::start(
                &s,
                &second,
                dir.path(),
                &commands::StartOptions {
                    allow_out_of_order: true,
                    ..Default::default()
                }
            )
            .await
            .unwrap_err()
        ),
        Refusal::AnotherOpen
    );

    // Rollback forgets it: no record, no column, and it can start again.
    commands::rollback(&s).await.unwrap();
    assert_eq!(state_of(&client, "001_note").await, None);
    let has_note: bool = one(&client, "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'note' AND NOT attisdropped)").await;
    assert!(!has_note, "rollback left the column");

    commands::start(&s, &first, dir.path(), &Default::default())
        .await
        .unwrap();
    commands::complete(&s).await.unwrap();
    assert_eq!(
        state_of(&client, "001_note").await,
        Some(MigrationState::Applied)
    );
    // Applied: starting it again is refused, and nothing is open to complete.
    assert_eq!(
        refusal(
            commands::start(&s, &first, dir.path(), &Default::default())
                .await
                .unwrap_err()
        ),
        Refusal::AlreadyApplied
    );
    assert_eq!(
        refusal(commands::complete(&s).await.unwrap_err()),
        Refusal::NoMigrationOpen
    );
}
