//! Hostile names everywhere, INVALID indexes from failed builds, and connection settings.

mod common;

use common::*;
use pgshift::quote::{ident, literal, qualified};

/// Quotes, spaces, capitals, unicode, a reserved word, and the 63-byte limit.
const HOSTILE_SCHEMA: &str = "Weird \"Schema\" ü";
const HOSTILE_TABLE: &str = "select";
const HOSTILE_COLUMN: &str = "Ordér \"Total\"";

fn index_name() -> String {
    // 63 bytes exactly: the longest name PostgreSQL keeps whole.
    let base = "ix ünïcode \"q\" ";
    let mut name = base.to_owned();
    while name.len() < 63 {
        name.push('x');
    }
    assert_eq!(name.len(), 63);
    name
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_names_work_in_migrate_state_and_index_rebuild() {
    let db = TestDb::new().await;
    let c = db.client().await;
    c.batch_execute(&format!("CREATE SCHEMA {}", ident(HOSTILE_SCHEMA)))
        .await
        .unwrap();
    let table = qualified(HOSTILE_SCHEMA, HOSTILE_TABLE).to_string();
    let ix = index_name();

    // A failed unique build leaves an INVALID index (built here by hand, as a crashed tool
    // would leave it).
    c.batch_execute(&format!(
        "CREATE TABLE {table} (id int PRIMARY KEY, {col} int);
         INSERT INTO {table} VALUES (1, 5), (2, 5);",
        col = ident(HOSTILE_COLUMN)
    ))
    .await
    .unwrap();
    let failed = c
        .batch_execute(&format!(
            "CREATE UNIQUE INDEX CONCURRENTLY {} ON {table} ({})",
            ident(&ix),
            ident(HOSTILE_COLUMN)
        ))
        .await;
    assert!(
        failed.is_err(),
        "duplicates must make the unique build fail"
    );
    assert_eq!(invalid_count(&c, &ix).await, 1);
    c.batch_execute(&format!("DELETE FROM {table} WHERE id = 2"))
        .await
        .unwrap();

    // The migration builds the same index; unqualified names resolve in --schema.
    let m = Migrations::new(&[(
        "0001_ix.sql",
        &format!(
            "CREATE UNIQUE INDEX CONCURRENTLY {} ON {} ({});\nALTER TABLE {} ADD COLUMN {} text;\n",
            ident(&ix),
            ident(HOSTILE_TABLE),
            ident(HOSTILE_COLUMN),
            ident(HOSTILE_TABLE),
            ident("ANOTHER one")
        ),
    )]);
    let r = run(&db, &m.path(), &["migrate", "--schema", HOSTILE_SCHEMA]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stderr.contains("dropped the INVALID index"),
        "{}",
        r.all()
    );
    assert_eq!(invalid_count(&c, &ix).await, 0);
    let valid: bool = c
        .query_one(
            "SELECT i.indisvalid AND i.indisunique FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = $1",
            &[&ix],
        )
        .await
        .unwrap()
        .get(0);
    assert!(valid);
    let has_column: bool = c
        .query_one(
            "SELECT count(*) = 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = 'ANOTHER one'",
            &[&table],
        )
        .await
        .unwrap()
        .get(0);
    assert!(has_column);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_concurrent_build_cleans_up_after_itself() {
    let db = TestDb::new().await;
    let c = db.client().await;
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 1), (2, 1);",
    )
    .await
    .unwrap();
    let m = Migrations::new(&[(
        "0001_u.sql",
        "CREATE UNIQUE INDEX CONCURRENTLY t_v ON t (v);",
    )]);
    let r = run(&db, &m.path(), &["migrate"]).await;
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("could not create unique index"),
        "{}",
        r.all()
    );
    assert_eq!(
        invalid_count(&c, "t_v").await,
        0,
        "the INVALID leftover must be dropped"
    );
    assert!(!table_exists(&c, "t_v").await);

    c.batch_execute("DELETE FROM t WHERE id = 2").await.unwrap();
    let r = run(&db, &m.path(), &["migrate"]).await;
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(table_exists(&c, "t_v").await);
}

/// The quoting helper against the real server: any name (up to 63 bytes, no NUL) makes a
/// table whose stored name is exactly that name, and a literal reads back as itself.
#[tokio::test(flavor = "multi_thread")]
async fn quoting_round_trips_through_the_server() {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;
    let db = TestDb::new().await;
    let c = db.client().await;
    let mut runner = TestRunner::deterministic();
    let names = "[^\u{0}]{1,30}".prop_filter("fits in 63 bytes", |s: &String| s.len() <= 63);
    for _ in 0..150 {
        let name = names.new_tree(&mut runner).unwrap().current();
        c.batch_execute(&format!(
            "CREATE TABLE {} ({} int)",
            ident(&name),
            ident(&name)
        ))
        .await
        .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        let stored: String = c
            .query_one(
                "SELECT c.relname::text FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid WHERE c.relname = $1 AND a.attname = $1",
                &[&name],
            )
            .await
            .unwrap_or_else(|e| panic!("{name:?}: {e}"))
            .get(0);
        assert_eq!(stored, name);
        let back: String = c
            .query_one(&format!("SELECT {}::text", literal(&name)), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(back, name);
        c.batch_execute(&format!("DROP TABLE {}", ident(&name)))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_password_never_appears_in_output() {
    let db = TestDb::new().await;
    let m = Migrations::new(&[("0001_bad.sql", "CREATE TABLE x (id int);\nSELEC 1;\n")]);
    let secret = "pw-Sup3rSecret";
    let with_password = db.url.replace("postgres@", &format!("postgres:{secret}@"));
    assert!(with_password.contains(secret));
    let unreachable = format!("postgresql://postgres:{secret}@127.0.0.1:1/none?sslmode=disable");
    for (url, args) in [
        (with_password.as_str(), vec!["migrate"]),
        (with_password.as_str(), vec!["migrate", "--output", "json"]),
        (with_password.as_str(), vec!["status", "--output", "json"]),
        (unreachable.as_str(), vec!["status"]),
        (unreachable.as_str(), vec!["migrate", "--output", "json"]),
        (
            "postgresql://postgres:pw-Sup3rSecret@127.0.0.1:notaport/x",
            vec!["status"],
        ),
    ] {
        let r = finish(&mut pgshift(url, &m.path(), &args)).await;
        assert!(
            !r.all().contains(secret),
            "{args:?} printed the password: {}",
            r.all()
        );
        assert!(r.code != 0 || args[0] == "status", "{args:?}: {}", r.all());
        if url == unreachable {
            assert_eq!(r.code, 1, "an unreachable server is exit 1: {}", r.all());
            assert!(
                r.stderr
                    .contains("cannot connect to postgres@127.0.0.1:1/none"),
                "{}",
                r.all()
            );
        }
    }
    // --help shows DATABASE_URL's name but never its value.
    let mut help = pgshift(&with_password, &m.path(), &["--help"]);
    let r = finish(&mut help).await;
    assert_eq!(r.code, 0);
    assert!(!r.all().contains(secret), "{}", r.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_database_url_counts_as_unset_and_libpq_variables_are_used() {
    let db = TestDb::new().await;
    let cluster = pgshift_testkit::cluster();
    let m = Migrations::new(&[("0001_a.sql", "CREATE TABLE a (id int);")]);
    let mut cmd = pgshift("", &m.path(), &["migrate"]);
    cmd.env("PGHOST", "127.0.0.1")
        .env("PGPORT", cluster.port.to_string())
        .env("PGUSER", "postgres")
        .env("PGDATABASE", &db.name)
        .env("PGSSLMODE", "disable");
    let r = finish(&mut cmd).await;
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(table_exists(&db.client().await, "a").await);
}

async fn invalid_count(c: &tokio_postgres::Client, index: &str) -> i64 {
    c.query_one(
        "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = $1 AND NOT i.indisvalid",
        &[&index],
    )
    .await
    .unwrap()
    .get(0)
}

/// A server that accepts TCP and never answers: every command gives up after
/// connect_timeout, exits 1 and names the host.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_never_answers_times_out_and_is_named() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept and hold every connection without a byte in reply.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let url = format!("postgres://app@127.0.0.1:{port}/shop?connect_timeout=2&sslmode=disable");
    let t0 = std::time::Instant::now();
    let out = finish(&mut pgshift(&url, dir.path(), &["status"])).await;
    let waited = t0.elapsed();
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("app@127.0.0.1") && out.stderr.contains("connect_timeout"),
        "{}",
        out.stderr
    );
    assert!(
        waited < std::time::Duration::from_secs(15),
        "gave up after {waited:?}, not after about 2 s"
    );
    // The same for the commands that change the database (their executor's connections).
    for command in [
        &["migrate"][..],
        &["start", "0001_x.sql"][..],
        &["complete"][..],
    ] {
        let t0 = std::time::Instant::now();
        // Bounded here too, so that a command that hangs fails the test instead of hanging it.
        let out = tokio::time::timeout(
            std::time::Duration::from_secs(40),
            finish(&mut pgshift(&url, dir.path(), command)),
        )
        .await
        .unwrap_or_else(|_| panic!("{command:?} hung against a server that never answers"));
        assert_eq!(out.code, 1, "{command:?}: {out:?}");
        assert!(
            out.stderr.contains("connect_timeout"),
            "{command:?}: {}",
            out.stderr
        );
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(15),
            "{command:?} waited {:?}",
            t0.elapsed()
        );
    }
    // Without connect_timeout, the default of 10 s applies (and also with the URL's TLS
    // default, which sends an SSLRequest first).
    let url = format!("postgres://app@127.0.0.1:{port}/shop");
    let t0 = std::time::Instant::now();
    let out = finish(&mut pgshift(&url, dir.path(), &["status"])).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("within 10 s"), "{}", out.stderr);
    assert!(t0.elapsed() < std::time::Duration::from_secs(30));
    holder.abort();
}

/// A server that asks for a password when none was given: the hint names PGPASSWORD and the
/// password file. The password file is read as libpq reads it.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_password_is_named_and_the_password_file_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Answers every startup with AuthenticationCleartextPassword and records the password
    // message it gets back, if any.
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let server = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let seen = seen_tx.clone();
            tokio::spawn(async move {
                let mut len = [0u8; 4];
                if socket.read_exact(&mut len).await.is_err() {
                    return;
                }
                let mut startup = vec![0u8; u32::from_be_bytes(len) as usize - 4];
                if socket.read_exact(&mut startup).await.is_err() {
                    return;
                }
                let _ = socket.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).await;
                let mut tag = [0u8; 1];
                if socket.read_exact(&mut tag).await.is_ok() && tag[0] == b'p' {
                    let mut len = [0u8; 4];
                    let _ = socket.read_exact(&mut len).await;
                    let mut body = vec![0u8; u32::from_be_bytes(len) as usize - 4];
                    let _ = socket.read_exact(&mut body).await;
                    let _ = seen.send(
                        String::from_utf8_lossy(&body)
                            .trim_end_matches('\0')
                            .to_owned(),
                    );
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let url = format!("postgres://app@127.0.0.1:{port}/shop?sslmode=disable&connect_timeout=3");
    let empty_passfile = dir.path().join("none");
    let out = finish(
        pgshift(&url, dir.path(), &["status"])
            .env("PGPASSFILE", &empty_passfile)
            .env("HOME", dir.path()),
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("password")
            && out.stderr.contains("PGPASSWORD")
            && out.stderr.contains(".pgpass"),
        "{}",
        out.stderr
    );
    // With a password file (0600), its password is sent.
    let passfile = dir.path().join("pgpass");
    std::fs::write(
        &passfile,
        format!("127.0.0.1:{port}:shop:app:from-the-file\n"),
    )
    .unwrap();
    std::fs::set_permissions(
        &passfile,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let _ = finish(pgshift(&url, dir.path(), &["status"]).env("PGPASSFILE", &passfile)).await;
    let sent = tokio::time::timeout(std::time::Duration::from_secs(5), seen_rx.recv())
        .await
        .expect("a password message")
        .unwrap();
    assert_eq!(sent, "from-the-file");
    server.abort();
}
