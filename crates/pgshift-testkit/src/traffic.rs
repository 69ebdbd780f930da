//! Client traffic for scenario tests and the demo: N connections at a fixed total rate,
//! reading and writing random keys, some through the old schema version and some through
//! the new one, with a latency histogram per phase and every error kept.
//!
//! Each statement takes the random key as `$1` (bigint) when it mentions `$1`. Old-version
//! clients run from the start until [`Traffic::retire_old`]; new-version clients wait until
//! [`Traffic::set_new_version`] names the version schema, then put it first on their
//! search_path. The driver marks phases with [`Traffic::phase`].
//!
//! A second connection samples `pg_stat_activity` every few milliseconds for client
//! sessions waiting on a lock that a pgshift session holds or queues for
//! (`pg_blocking_pids`). A client statement seen in such a wait counts as "waited behind
//! pgshift", and its whole latency is that wait: this separates pgshift's locks from a
//! slow machine.

use hdrhistogram::Histogram;
use rand::Rng;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The application_name of the traffic's sessions.
pub const APPLICATION_NAME: &str = "pgshift-traffic";

/// What the clients run.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Statements of old-version clients (the raw tables, or the old version schema).
    pub old: Vec<String>,
    /// Statements of new-version clients, run with the new version schema first on the
    /// search_path.
    pub new: Vec<String>,
    /// Keys are drawn uniformly from 1..=keys.
    pub keys: i64,
}

#[derive(Debug, Clone)]
pub struct TrafficConfig {
    /// Connection URL (`postgresql://...`).
    pub url: String,
    /// Connections per version (old and new each get this many).
    pub clients_per_version: usize,
    /// Statements per second per version, spread over its connections.
    pub rate: u32,
    /// Sampling interval of the lock-wait watcher.
    pub sample_every: Duration,
}

/// Which version a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Old = 0,
    New = 1,
}

impl Version {
    pub fn name(self) -> &'static str {
        match self {
            Version::Old => "old",
            Version::New => "new",
        }
    }
}

/// One client statement: when it started (ms since the traffic began), how long it took.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at_ms: f64,
    pub latency_ms: f64,
    pub version: Version,
    pub ok: bool,
    pub behind_pgshift: bool,
}

#[derive(Debug, Clone)]
pub struct ClientError {
    pub at_ms: f64,
    pub phase: String,
    pub version: Version,
    pub statement: String,
    pub message: String,
}

/// Latency figures of one phase.
#[derive(Debug, Clone)]
pub struct PhaseReport {
    pub name: String,
    /// When the phase began, ms since the traffic began.
    pub started_ms: f64,
    pub ops: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Statements seen waiting on a lock of a pgshift session, and the longest of them.
    pub behind_pgshift: u64,
    pub max_behind_pgshift_ms: f64,
}

#[derive(Debug, Clone)]
pub struct TrafficReport {
    pub phases: Vec<PhaseReport>,
    /// Over the whole run.
    pub total: PhaseReport,
    pub errors: Vec<ClientError>,
    pub samples: Vec<Sample>,
    pub duration_ms: f64,
    /// The longest write-blocking lock a pgshift session was seen holding, and how many
    /// such locks were seen (sampled; see [`HeldLock::ms`]).
    pub longest_lock: Option<HeldLock>,
    pub locks_seen: usize,
}

struct PhaseState {
    name: String,
    started_ms: f64,
    histogram: Histogram<u64>,
    errors: u64,
    behind_pgshift: u64,
    max_behind_us: u64,
}

impl PhaseState {
    fn new(name: &str, started_ms: f64) -> PhaseState {
        PhaseState {
            name: name.to_owned(),
            started_ms,
            // 1 µs to 10 minutes, 3 significant digits.
            histogram: Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds"),
            errors: 0,
            behind_pgshift: 0,
            max_behind_us: 0,
        }
    }

    fn report(&self) -> PhaseReport {
        let ms = |us: u64| us as f64 / 1000.0;
        let h = &self.histogram;
        let empty = h.is_empty();
        PhaseReport {
            name: self.name.clone(),
            started_ms: self.started_ms,
            ops: h.len(),
            errors: self.errors,
            p50_ms: if empty {
                0.0
            } else {
                ms(h.value_at_quantile(0.5))
            },
            p99_ms: if empty {
                0.0
            } else {
                ms(h.value_at_quantile(0.99))
            },
            max_ms: if empty { 0.0 } else { ms(h.max()) },
            behind_pgshift: self.behind_pgshift,
            max_behind_pgshift_ms: ms(self.max_behind_us),
        }
    }
}

struct Recorder {
    phases: Vec<PhaseState>,
    total: PhaseState,
    errors: Vec<ClientError>,
    samples: Vec<Sample>,
}

struct Shared {
    began: Instant,
    /// Statements of old- and new-version clients (swappable between phases).
    statements: Mutex<[Arc<Vec<String>>; 2]>,
    in_flight: std::sync::atomic::AtomicUsize,
    locks: Mutex<LockTracker>,
    stop: AtomicBool,
    old_on: AtomicBool,
    new_schema: Mutex<Option<String>>,
    recorder: Mutex<Recorder>,
    /// Backend pid of a client -> the last instant it was seen waiting behind pgshift.
    waits: Mutex<HashMap<i32, Instant>>,
}

impl Shared {
    fn ms(&self, at: Instant) -> f64 {
        at.duration_since(self.began).as_secs_f64() * 1000.0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorder> {
        self.recorder.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Running traffic; [`Traffic::finish`] stops it and returns the report.
pub struct Traffic {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    /// Connects the clients and the watcher, and starts the old-version clients. The first
    /// phase is `phase`.
    pub async fn start(
        config: &TrafficConfig,
        workload: &Workload,
        phase: &str,
    ) -> Result<Traffic, String> {
        let shared = Arc::new(Shared {
            began: Instant::now(),
            stop: AtomicBool::new(false),
            old_on: AtomicBool::new(true),
            new_schema: Mutex::new(None),
            recorder: Mutex::new(Recorder {
                phases: vec![PhaseState::new(phase, 0.0)],
                total: PhaseState::new("all", 0.0),
                errors: Vec::new(),
                samples: Vec::new(),
            }),
            waits: Mutex::new(HashMap::new()),
            statements: Mutex::new([
                Arc::new(workload.old.clone()),
                Arc::new(workload.new.clone()),
            ]),
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            locks: Mutex::new(LockTracker {
                sample_ms: config.sample_every.as_secs_f64() * 1000.0,
                ..LockTracker::default()
            }),
        });
        let mut tasks = Vec::new();
        let watcher = connect(&config.url, APPLICATION_NAME).await?;
        tasks.push(tokio::spawn(watch(
            watcher,
            shared.clone(),
            config.sample_every,
        )));
        let interval = Duration::from_secs_f64(
            config.clients_per_version as f64 / f64::from(config.rate.max(1)),
        );
        for version in [Version::Old, Version::New] {
            for n in 0..config.clients_per_version {
                let client = connect(&config.url, APPLICATION_NAME).await?;
                let pid: i32 = client
                    .query_one("SELECT pg_backend_pid()", &[])
                    .await
                    .map_err(|e| e.to_string())?
                    .get(0);
                tasks.push(tokio::spawn(run_client(Client {
                    client,
                    pid,
                    version,
                    keys: workload.keys.max(1),
                    interval,
                    // Spread the clients' start over one interval.
                    offset: interval.mul_f64(n as f64 / config.clients_per_version as f64),
                    shared: shared.clone(),
                })));
            }
        }
        Ok(Traffic { shared, tasks })
    }

    /// Begins a new phase: later statements count towards it.
    pub fn phase(&self, name: &str) {
        let now = self.shared.ms(Instant::now());
        self.shared.lock().phases.push(PhaseState::new(name, now));
    }

    /// New-version clients start, with `schema` first on their search_path.
    pub fn set_new_version(&self, schema: &str) {
        *self
            .shared
            .new_schema
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(schema.to_owned());
    }

    /// New-version clients stop (until the next `set_new_version`).
    pub fn clear_new_version(&self) {
        *self
            .shared
            .new_schema
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Old-version clients stop: the old application version is gone.
    pub fn retire_old(&self) {
        self.shared.old_on.store(false, Ordering::SeqCst);
    }

    /// Replaces the statements of one version's clients (from their next statement on).
    pub fn set_statements(&self, version: Version, statements: Vec<String>) {
        self.shared
            .statements
            .lock()
            .unwrap_or_else(|e| e.into_inner())[version as usize] = Arc::new(statements);
    }

    /// Waits until no client statement is running (after the clients were told to stop).
    pub async fn quiesce(&self) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        while self.shared.in_flight.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops every client (each finishes its statement) and reports.
    pub async fn finish(self) -> TrafficReport {
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            let _ = t.await;
        }
        let duration_ms = self.shared.ms(Instant::now());
        let (longest_lock, locks_seen) = {
            let l = self.shared.locks.lock().unwrap_or_else(|e| e.into_inner());
            (l.longest.clone(), l.seen)
        };
        let r = self.shared.lock();
        TrafficReport {
            phases: r.phases.iter().map(PhaseState::report).collect(),
            total: r.total.report(),
            errors: r.errors.clone(),
            samples: r.samples.clone(),
            duration_ms,
            longest_lock,
            locks_seen,
        }
    }
}

impl TrafficReport {
    /// The figures of the phase named `name` (the last one of that name).
    pub fn phase(&self, name: &str) -> Option<&PhaseReport> {
        self.phases.iter().rev().find(|p| p.name == name)
    }

    /// The longest statement seen waiting behind pgshift, over all phases.
    pub fn max_behind_pgshift_ms(&self) -> f64 {
        self.total.max_behind_pgshift_ms
    }
}

/// Connects to `url` as `application_name` (no TLS).
pub(crate) async fn connect(
    url: &str,
    application_name: &str,
) -> Result<tokio_postgres::Client, String> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| format!("{url}: {e}"))?;
    config.application_name(application_name);
    let (client, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Samples lock waits of traffic sessions behind pgshift sessions.
async fn watch(client: tokio_postgres::Client, shared: Arc<Shared>, every: Duration) {
    let query = "SELECT a.pid FROM pg_stat_activity a
                 WHERE a.application_name = $1 AND a.wait_event_type = 'Lock'
                   AND EXISTS (SELECT 1 FROM pg_stat_activity b
                               WHERE b.pid = ANY (pg_blocking_pids(a.pid))
                                 AND b.application_name <> $1
                                 AND b.application_name LIKE 'pgshift%')";
    // Locks held by pgshift sessions on the database's own tables, in the modes that stop
    // client writes (every mode from SHARE up conflicts with ROW EXCLUSIVE).
    // Tables only, and only those other sessions can see (a relation created by pgshift's
    // open transaction, a view of the new version say, blocks nobody), and not pgshift's own
    // (`_pgshift_` tables: a table's copy while its indexes are built, which no client
    // reads or writes yet; its swap at complete also locks the table itself, which counts).
    let locks = "SELECT l.pid, c.relname::text, l.mode
                 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                 JOIN pg_class c ON c.oid = l.relation AND c.relkind IN ('r', 'p')
                      AND c.relname NOT LIKE '\\_pgshift\\_%'
                 JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname <> 'pgshift'
                 WHERE l.granted AND l.locktype = 'relation' AND l.relation >= 16384
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
                   AND a.application_name <> $1 AND a.application_name LIKE 'pgshift%'";
    let (Ok(statement), Ok(locks)) = (client.prepare(query).await, client.prepare(locks).await)
    else {
        return;
    };
    while !shared.stop.load(Ordering::Relaxed) {
        if let Ok(rows) = client.query(&statement, &[&APPLICATION_NAME]).await {
            let now = Instant::now();
            let mut waits = shared.waits.lock().unwrap_or_else(|e| e.into_inner());
            for r in rows {
                waits.insert(r.get(0), now);
            }
        }
        if let Ok(rows) = client.query(&locks, &[&APPLICATION_NAME]).await {
            let now = Instant::now();
            let held: Vec<(i32, String, String)> = rows
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            shared
                .locks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .observe(now, held);
        }
        tokio::time::sleep(every).await;
    }
    let now = Instant::now();
    shared
        .locks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .observe(now, Vec::new());
}

/// A lock that blocks client writes, held by a pgshift session, as the watcher saw it.
#[derive(Debug, Clone, Default)]
pub struct HeldLock {
    pub relation: String,
    pub mode: String,
    /// From the first sample that saw it to the last (a lower bound: the lock may have been
    /// taken up to one sampling interval earlier and released up to one later).
    pub ms: f64,
    /// The sampling interval: the lock was held for less than `ms + 2 * sample_ms`.
    pub sample_ms: f64,
}

impl HeldLock {
    /// `12-32 ms, AccessExclusiveLock on orders`.
    pub fn describe(&self) -> String {
        format!(
            "{:.0}-{:.0} ms, {} on {}",
            self.ms,
            self.ms + 2.0 * self.sample_ms,
            self.mode,
            self.relation
        )
    }
}

#[derive(Default)]
struct LockTracker {
    sample_ms: f64,
    open: HashMap<(i32, String, String), (Instant, Instant)>,
    longest: Option<HeldLock>,
    seen: usize,
}

impl LockTracker {
    fn observe(&mut self, now: Instant, held: Vec<(i32, String, String)>) {
        let held: std::collections::HashSet<(i32, String, String)> = held.into_iter().collect();
        let ended: Vec<_> = self
            .open
            .keys()
            .filter(|k| !held.contains(*k))
            .cloned()
            .collect();
        for k in ended {
            if let Some((first, last)) = self.open.remove(&k) {
                self.close(k, first, last);
            }
        }
        for k in held {
            self.open.entry(k).or_insert((now, now)).1 = now;
        }
    }

    fn close(&mut self, (_, relation, mode): (i32, String, String), first: Instant, last: Instant) {
        self.seen += 1;
        let ms = (last - first).as_secs_f64() * 1000.0;
        if self.longest.as_ref().is_none_or(|l| ms > l.ms) {
            self.longest = Some(HeldLock {
                relation,
                mode,
                ms,
                sample_ms: self.sample_ms,
            });
        }
    }
}

struct Client {
    client: tokio_postgres::Client,
    pid: i32,
    version: Version,
    keys: i64,
    interval: Duration,
    offset: Duration,
    shared: Arc<Shared>,
}

async fn run_client(c: Client) {
    let mut schema: Option<String> = None;
    let mut next = Instant::now() + c.offset;
    let mut turn = 0usize;
    while !c.shared.stop.load(Ordering::Relaxed) {
        let active = match c.version {
            Version::Old => c.shared.old_on.load(Ordering::Relaxed),
            Version::New => {
                let wanted = c
                    .shared
                    .new_schema
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                if wanted != schema {
                    if let Some(s) = &wanted {
                        let sql =
                            format!("SET search_path TO {}, public", pgshift::quote::ident(s));
                        if let Err(e) = c.client.batch_execute(&sql).await {
                            record_error(&c, Instant::now(), &sql, &e);
                        }
                    }
                    schema = wanted;
                }
                schema.is_some()
            }
        };
        if !active {
            tokio::time::sleep(Duration::from_millis(10)).await;
            next = Instant::now();
            continue;
        }
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        next += c.interval;
        let statements = c
            .shared
            .statements
            .lock()
            .unwrap_or_else(|e| e.into_inner())[c.version as usize]
            .clone();
        if statements.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
            next = Instant::now();
            continue;
        }
        let sql = &statements[turn % statements.len()];
        turn += 1;
        c.shared.in_flight.fetch_add(1, Ordering::SeqCst);
        let key: i64 = rand::thread_rng().gen_range(1..=c.keys);
        let t0 = Instant::now();
        let result = if sql.contains("$1") {
            c.client.execute(sql.as_str(), &[&key]).await
        } else {
            c.client.execute(sql.as_str(), &[]).await
        };
        let t1 = Instant::now();
        c.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        let behind = c
            .shared
            .waits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&c.pid)
            .is_some_and(|seen| *seen >= t0);
        let us = (t1 - t0).as_micros().max(1) as u64;
        let mut r = c.shared.lock();
        let at_ms = c.shared.ms(t0);
        r.samples.push(Sample {
            at_ms,
            latency_ms: us as f64 / 1000.0,
            version: c.version,
            ok: result.is_ok(),
            behind_pgshift: behind,
        });
        let r = &mut *r;
        for p in [r.phases.last_mut(), Some(&mut r.total)]
            .into_iter()
            .flatten()
        {
            let _ = p.histogram.record(us);
            if result.is_err() {
                p.errors += 1;
            }
            if behind {
                p.behind_pgshift += 1;
                p.max_behind_us = p.max_behind_us.max(us);
            }
        }
        if let Err(e) = &result {
            let phase = r.phases.last().map(|p| p.name.clone()).unwrap_or_default();
            r.errors.push(ClientError {
                at_ms,
                phase,
                version: c.version,
                statement: sql.clone(),
                message: pgshift::error::pg_error_text(e),
            });
        }
    }
}

fn record_error(c: &Client, at: Instant, sql: &str, e: &tokio_postgres::Error) {
    let mut r = c.shared.lock();
    let phase = r.phases.last().map(|p| p.name.clone()).unwrap_or_default();
    let at_ms = c.shared.ms(at);
    r.errors.push(ClientError {
        at_ms,
        phase,
        version: c.version,
        statement: sql.to_owned(),
        message: pgshift::error::pg_error_text(e),
    });
}
