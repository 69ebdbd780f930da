//! Throwaway PostgreSQL for pgshift's tests (and, later, its demo).
//!
//! One cluster per test process, started on first use from the machine's server binaries;
//! one fresh database per test, so tests run in parallel without seeing each other.
//!
//! - Binaries: `$PGSHIFT_PG_BIN` (or `$PG_BIN`), else `pg_config --bindir`, else the newest
//!   `/usr/lib/postgresql/<major>/bin`.
//! - As root, `initdb` and `postgres` refuse to run, so the data directory belongs to the
//!   `postgres` user and both run as that user.
//! - Clean-up: at normal process exit the cluster is stopped and its directory removed. If
//!   the process dies some other way, the server gets SIGQUIT from the kernel (parent-death
//!   signal) and the next test run removes the directory.

pub mod production;
pub mod scenario;
pub mod traffic;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A running throwaway cluster.
#[derive(Debug)]
pub struct Cluster {
    pub bin_dir: PathBuf,
    pub root: PathBuf,
    pub port: u16,
    pub version_num: u32,
    pub pid: u32,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
/// Servers to stop and folders to remove at exit: the cluster and any replicas.
static CLEANUP: Mutex<Vec<(u32, PathBuf)>> = Mutex::new(Vec::new());
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);
/// Clusters started by this process (the shared one and those of [`start_another_cluster`]).
static NEXT_CLUSTER: AtomicUsize = AtomicUsize::new(0);

/// The process's cluster, started on first call. Panics with instructions if PostgreSQL's
/// server binaries cannot be found or started.
pub fn cluster() -> &'static Cluster {
    match try_cluster() {
        Ok(c) => c,
        Err(e) => panic!("pgshift-testkit could not start PostgreSQL: {e}"),
    }
}

/// The process's cluster, started on first call, or why it could not start.
pub fn try_cluster() -> Result<&'static Cluster, String> {
    CLUSTER
        .get_or_init(start_cluster)
        .as_ref()
        .map_err(Clone::clone)
}

impl Cluster {
    /// A connection URL to `dbname` on this cluster (superuser `postgres`, trust auth).
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "postgresql://postgres@127.0.0.1:{}/{dbname}?sslmode=disable",
            self.port
        )
    }

    /// The cluster's server log, for diagnosing a failed test.
    pub fn log_path(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// Path of a server binary (pg_basebackup, psql, ...): beside the server's, else the
    /// installed client's (`pg_config --bindir`; a build of only the server, as
    /// scripts/test-pg-version.sh fetches, has no client tools, and a newer client works
    /// with an older server), else the name alone, for `PATH`.
    pub fn bin(&self, name: &str) -> PathBuf {
        let beside = self.bin_dir.join(name);
        if beside.is_file() {
            return beside;
        }
        Command::new("pg_config")
            .arg("--bindir")
            .output()
            .ok()
            .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join(name))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from(name))
    }
}

/// A fresh, empty database of its own for one test.
#[derive(Debug, Clone)]
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// Creates a new database on the process's cluster.
    pub async fn new() -> TestDb {
        match TestDb::try_new().await {
            Ok(db) => db,
            Err(e) => panic!("{e}"),
        }
    }

    /// Creates a new database on the process's cluster, or says why it cannot.
    pub async fn try_new() -> Result<TestDb, String> {
        let cluster = try_cluster()?;
        let n = NEXT_DB.fetch_add(1, Ordering::SeqCst);
        let name = format!("t{}_{n}", std::process::id());
        let admin = connect_url(&cluster.url("postgres")).await;
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {} TEMPLATE template0",
                pgshift::quote::ident(&name)
            ))
            .await
            .map_err(|e| format!("CREATE DATABASE {name}: {e}"))?;
        Ok(TestDb {
            url: cluster.url(&name),
            name,
        })
    }

    /// Drops this database (its sessions are ended first).
    pub async fn drop_database(&self) -> Result<(), String> {
        let admin = connect_url(&try_cluster()?.url("postgres")).await;
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                pgshift::quote::ident(&self.name)
            ))
            .await
            .map_err(|e| format!("DROP DATABASE {}: {e}", self.name))
    }

    /// A new connection to this database.
    pub async fn client(&self) -> tokio_postgres::Client {
        connect_url(&self.url).await
    }
}

/// Connects to `url` (no TLS), retrying briefly while the server starts.
pub async fn connect_url(url: &str) -> tokio_postgres::Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                return client;
            }
            Err(e) if Instant::now() > deadline => panic!("cannot connect to {url}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Finds the PostgreSQL server binaries.
pub fn find_bin_dir() -> Result<PathBuf, String> {
    for var in ["PGSHIFT_PG_BIN", "PG_BIN"] {
        if let Some(dir) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            let dir = PathBuf::from(dir);
            return if dir.join("postgres").is_file() {
                Ok(dir)
            } else {
                Err(format!(
                    "{var}={} holds no `postgres` binary",
                    dir.display()
                ))
            };
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("postgres").is_file() && dir.join("initdb").is_file() {
            return Ok(dir);
        }
    }
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((major, bin))
        })
        .collect();
    candidates.sort();
    candidates.pop().map(|(_, dir)| dir).ok_or_else(|| {
        "no PostgreSQL server binaries found: install them (Debian: apt-get install postgresql) or set PGSHIFT_PG_BIN to the folder holding `postgres` and `initdb`".to_owned()
    })
}

/// The unprivileged user to run the server as when we are root.
fn server_user() -> Result<Option<(u32, u32)>, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = std::ffi::CString::new("postgres").map_err(|e| e.to_string())?;
    // SAFETY: getpwnam returns a pointer to static storage or null; we copy the ids out
    // immediately and, in tests, call it once before any thread could race it.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err("running as root, and there is no `postgres` user to run the server as: install PostgreSQL's Debian package (it creates the user) or `useradd --system postgres`".to_owned());
    }
    // SAFETY: pw is non-null and points to a valid passwd record.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(Some((uid, gid)))
}

fn as_server_user(cmd: &mut Command, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
}

fn chown_tree(path: &Path, user: Option<(u32, u32)>) -> Result<(), String> {
    let Some((uid, gid)) = user else {
        return Ok(());
    };
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| format!("chown {}: {e}", path.display()))?;
    if path.is_dir() {
        for entry in std::fs::read_dir(path).map_err(|e| e.to_string())? {
            chown_tree(&entry.map_err(|e| e.to_string())?.path(), user)?;
        }
    }
    Ok(())
}

fn base_dir() -> PathBuf {
    std::env::temp_dir().join("pgshift-testkit")
}

/// Removes directories of earlier test processes that are gone.
fn reap_stale(base: &Path) {
    for entry in std::fs::read_dir(base).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: kill with signal 0 only checks whether the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

/// A cluster of its own, beside the shared one (a logical replication subscriber, say),
/// stopped and removed when the process exits.
pub fn start_another_cluster() -> Result<Cluster, String> {
    start_cluster()
}

fn start_cluster() -> Result<Cluster, String> {
    let bin_dir = find_bin_dir()?;
    let user = server_user()?;
    let base = base_dir();
    std::fs::create_dir_all(&base).map_err(|e| format!("create {}: {e}", base.display()))?;
    // The base is shared by test processes; everyone may create their own folder in it.
    let _ = std::fs::set_permissions(&base, std::os::unix::fs::PermissionsExt::from_mode(0o1777));
    reap_stale(&base);
    let root = base.join(format!(
        "{}-{}",
        std::process::id(),
        NEXT_CLUSTER.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).map_err(|e| format!("create {}: {e}", root.display()))?;
    chown_tree(&root, user)?;
    let data = root.join("data");

    let mut initdb = Command::new(bin_dir.join("initdb"));
    initdb
        .args(["-D"])
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    as_server_user(&mut initdb, user);
    let out = initdb.output().map_err(|e| format!("run initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }

    // A free port can be taken by someone else before the server binds it: try a few.
    let mut last_error = String::new();
    for _ in 0..5 {
        let port = free_port()?;
        match launch(&bin_dir, &root, &data, port, user) {
            Ok(pid) => {
                let version_num = server_version_num(&data);
                CLEANUP
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((pid, root.clone()));
                // SAFETY: registering a plain extern "C" function with atexit.
                unsafe { libc::atexit(stop_at_exit) };
                return Ok(Cluster {
                    bin_dir,
                    root,
                    port,
                    version_num,
                    pid,
                });
            }
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}

fn server_version_num(data: &Path) -> u32 {
    std::fs::read_to_string(data.join("PG_VERSION"))
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .map(|major| major * 10000)
        .unwrap_or(0)
}

/// Starts `postgres` from a thread that lives as long as the server, so that the kernel's
/// parent-death signal (tied to the spawning thread) fires only when the process dies.
fn launch(
    bin_dir: &Path,
    root: &Path,
    data: &Path,
    port: u16,
    user: Option<(u32, u32)>,
) -> Result<u32, String> {
    let log = std::fs::File::create(root.join("server.log")).map_err(|e| e.to_string())?;
    let log_err = log.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(bin_dir.join("postgres"));
    cmd.arg("-D").arg(data);
    // Tests trade durability for speed; benchmarks (PGSHIFT_TESTKIT_DURABLE=1) must not.
    let durable = std::env::var_os("PGSHIFT_TESTKIT_DURABLE").is_some_and(|v| v == "1");
    let speed: &[&str] = if durable {
        &[]
    } else {
        &[
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
        ]
    };
    for setting in speed.iter().map(|s| s.to_string()).chain([
        format!("port={port}"),
        "listen_addresses=127.0.0.1".to_owned(),
        format!("unix_socket_directories={}", root.display()),
        "max_connections=300".to_owned(),
        "shared_buffers=128MB".to_owned(),
        // logical: a test can subscribe another cluster to a publication.
        "wal_level=logical".to_owned(),
        "max_wal_senders=10".to_owned(),
        "log_min_messages=warning".to_owned(),
    ]) {
        cmd.arg("-c").arg(setting);
    }
    cmd.stdin(Stdio::null()).stdout(log).stderr(log_err);
    as_server_user(&mut cmd, user);
    // SAFETY: prctl is async-signal-safe; it runs in the child between fork and exec,
    // after the uid change, so the setting survives into the server.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("pgshift-testkit-postgres".into())
        .spawn(move || match cmd.spawn() {
            Ok(mut child) => {
                let _ = tx.send(Ok(child.id()));
                let _ = child.wait();
            }
            Err(e) => {
                let _ = tx.send(Err(format!("start postgres: {e}")));
            }
        })
        .map_err(|e| e.to_string())?;
    let pid = rx.recv().map_err(|e| e.to_string())??;

    // Ready when postmaster.pid's status line says so.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = std::fs::read_to_string(data.join("postmaster.pid")).unwrap_or_default();
        // A primary says "ready"; a hot standby that accepts connections says "standby".
        if matches!(
            status.lines().nth(7).map(str::trim),
            Some("ready") | Some("standby")
        ) {
            return Ok(pid);
        }
        // SAFETY: signal 0 only checks that the process exists.
        if unsafe { libc::kill(pid as i32, 0) } != 0 || Instant::now() > deadline {
            let log = std::fs::read_to_string(root.join("server.log")).unwrap_or_default();
            return Err(format!("postgres did not start on port {port}:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

extern "C" fn stop_at_exit() {
    let servers: Vec<(u32, PathBuf)> = match CLEANUP.lock() {
        Ok(mut g) => g.drain(..).collect(),
        Err(_) => return,
    };
    for (pid, _) in &servers {
        // SAFETY: sending SIGQUIT (immediate shutdown) to a server we started.
        unsafe { libc::kill(*pid as i32, libc::SIGQUIT) };
    }
    for (pid, root) in servers {
        let deadline = Instant::now() + Duration::from_secs(5);
        // SAFETY: signal 0 only checks that the process exists.
        while unsafe { libc::kill(pid as i32, 0) } == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = std::fs::remove_dir_all(root);
    }
}

/// A streaming replica of the process's cluster.
#[derive(Debug)]
pub struct Replica {
    pub port: u16,
    pub root: PathBuf,
}

impl Replica {
    /// A connection URL to `dbname` on the replica (read-only).
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "postgresql://postgres@127.0.0.1:{}/{dbname}?sslmode=disable",
            self.port
        )
    }
}

/// Starts a streaming replica of the process's cluster (`pg_basebackup -R`, then a second
/// server), for tests of replica lag. Stopped and removed at exit like the cluster.
pub fn start_replica() -> Result<Replica, String> {
    let primary = cluster();
    let user = server_user()?;
    let root = base_dir().join(format!(
        "{}-replica-{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&root).map_err(|e| format!("create {}: {e}", root.display()))?;
    chown_tree(&root, user)?;
    let data = root.join("data");
    let tool = primary.bin("pg_basebackup");
    let mut backup = Command::new(&tool);
    if !tool.starts_with(&primary.bin_dir) {
        // The installed client's tool, with its own libpq, not the server build's.
        backup.env_remove("LD_LIBRARY_PATH");
    }
    backup
        .arg("-D")
        .arg(&data)
        .args([
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-p",
        ])
        .arg(primary.port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    as_server_user(&mut backup, user);
    let out = backup
        .output()
        .map_err(|e| format!("run pg_basebackup: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pg_basebackup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // A newer pg_basebackup writes connection options an older server's walreceiver does
    // not know (sslsni, ...), and it would never connect: a plain one, set last, wins.
    let auto = data.join("postgresql.auto.conf");
    let mut conf =
        std::fs::read_to_string(&auto).map_err(|e| format!("read {}: {e}", auto.display()))?;
    conf.push_str(&format!(
        "primary_conninfo = 'host=127.0.0.1 port={} user=postgres'\n",
        primary.port
    ));
    std::fs::write(&auto, conf).map_err(|e| format!("write {}: {e}", auto.display()))?;
    let mut last_error = String::new();
    for _ in 0..5 {
        let port = free_port()?;
        match launch(&primary.bin_dir, &root, &data, port, user) {
            Ok(pid) => {
                CLEANUP
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((pid, root.clone()));
                return Ok(Replica { port, root });
            }
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fresh_databases_are_separate() {
        let a = TestDb::new().await;
        let b = TestDb::new().await;
        assert_ne!(a.name, b.name);
        let ca = a.client().await;
        ca.batch_execute("CREATE TABLE only_in_a (id int)")
            .await
            .unwrap();
        let cb = b.client().await;
        let n: i64 = cb
            .query_one(
                "SELECT count(*) FROM pg_class WHERE relname = 'only_in_a'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0);
        let db: String = ca
            .query_one("SELECT current_database()", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(db, a.name);
    }
}
