//! `pgshift demo`: a throwaway PostgreSQL from the machine's server binaries, the seed
//! scenarios loaded at their scale, each run through this very binary under client
//! traffic, figures per scenario, and an HTML report with a latency chart per scenario.

use pgshift_testkit::scenario::{self, RunOptions, ScenarioRun};
use pgshift_testkit::traffic::Version;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

pub struct DemoOptions {
    /// Rows of S2's and S3's tables.
    pub rows: i64,
    /// Rows of S1's table.
    pub s1_rows: i64,
    pub s4_rows: i64,
    /// Only these scenarios (S1, S2, ...); all when empty.
    pub only: Vec<String>,
    pub report: PathBuf,
    pub json: bool,
    pub clients_per_version: usize,
    pub rate: u32,
    /// Flags passed on to every pgshift command the demo runs.
    pub pgshift_args: Vec<String>,
}

/// Runs the demo; Err when the server cannot start or a scenario fails its checks.
pub async fn run(options: DemoOptions) -> anyhow::Result<()> {
    let cluster = pgshift_testkit::try_cluster().map_err(|e| {
        pgshift::Error::usage(
            format!("pgshift demo could not start a throwaway PostgreSQL: {e}"),
            Some("install PostgreSQL's server binaries (Debian: apt-get install postgresql), or set PGSHIFT_PG_BIN to the folder that holds `postgres` and `initdb`"),
        )
    })?;
    if !options.json {
        eprintln!(
            "demo: throwaway PostgreSQL {} from {} on port {} (fsync off: a demo, not a benchmark); removed at exit",
            cluster.version_num / 10000,
            cluster.bin_dir.display(),
            cluster.port
        );
        eprintln!(
            "demo: clients: {} per version at {} statements/s per version, reading and writing random keys\n",
            options.clients_per_version, options.rate
        );
    }
    let pgshift = std::env::current_exe()?;
    let mut scenarios = vec![
        scenario::s1(options.s1_rows),
        scenario::s2(options.rows),
        scenario::s3(options.rows),
        scenario::s4(options.s4_rows),
    ];
    scenarios.retain(|s| {
        options.only.is_empty() || options.only.iter().any(|o| o.eq_ignore_ascii_case(s.name))
    });
    let mut runs = Vec::new();
    let mut failures = Vec::new();
    for s in &scenarios {
        if !options.json {
            eprintln!("{}: {} ({} rows) ...", s.name, s.title, s.rows);
        }
        let db = pgshift_testkit::TestDb::try_new()
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        let run = scenario::run(
            &db.url,
            s,
            &RunOptions {
                pgshift: pgshift.clone(),
                pgshift_args: options.pgshift_args.clone(),
                clients_per_version: options.clients_per_version,
                rate: options.rate,
                quiet: Duration::from_secs(2),
                rollback: false,
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
        let _ = db.drop_database().await;
        if !run.traffic.errors.is_empty() {
            failures.push(format!(
                "{}: {} client errors",
                run.name,
                run.traffic.errors.len()
            ));
        }
        if run.mismatches != 0 {
            failures.push(format!(
                "{}: {} rows differ from the reference",
                run.name, run.mismatches
            ));
        }
        if run.traffic.max_behind_pgshift_ms() >= 250.0 {
            failures.push(format!(
                "{}: a client waited {:.0} ms behind pgshift",
                run.name,
                run.traffic.max_behind_pgshift_ms()
            ));
        }
        if options.json {
            println!("{}", serde_json::to_string(&json(&run))?);
        } else {
            print!("{}", human(&run));
        }
        runs.push(run);
    }
    std::fs::write(&options.report, html(&runs))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", options.report.display()))?;
    let report = std::fs::canonicalize(&options.report).unwrap_or(options.report.clone());
    if options.json {
        println!(
            "{}",
            serde_json::json!({ "report": report.display().to_string() })
        );
    } else {
        println!(
            "report with a latency chart per scenario: {}",
            report.display()
        );
    }
    if failures.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("the demo found problems: {}", failures.join("; "))
    }
}

fn human(run: &ScenarioRun) -> String {
    let t = &run.traffic;
    let mut s = format!(
        "{}  {}\n  rows {}  load {:.1} s  start {:.1} s (backfill {:.1} s)  complete {:.1} s\n",
        run.name, run.title, run.rows, run.load_s, run.start_s, run.backfill_s, run.finish_s
    );
    let _ = writeln!(
        s,
        "  clients: {} statements, {} errors, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        t.total.ops, t.total.errors, t.total.p50_ms, t.total.p99_ms, t.total.max_ms
    );
    for p in &t.phases {
        let _ = writeln!(
            s,
            "    {:<9} {:>6} statements  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  errors {}",
            p.name, p.ops, p.p50_ms, p.p99_ms, p.max_ms, p.errors
        );
    }
    let _ = writeln!(
        s,
        "  waits behind a pgshift lock: {} statements, longest {:.1} ms",
        t.total.behind_pgshift, t.total.max_behind_pgshift_ms
    );
    let _ = writeln!(
        s,
        "  longest write-blocking lock pgshift held on a table: {}",
        match &t.longest_lock {
            Some(l) => l.describe(),
            None => "none seen (sampled every 10 ms)".to_owned(),
        }
    );
    let _ = writeln!(
        s,
        "  rows differing from the reference: {}\n",
        run.mismatches
    );
    s
}

fn json(run: &ScenarioRun) -> serde_json::Value {
    let t = &run.traffic;
    serde_json::json!({
        "name": run.name,
        "title": run.title,
        "rows": run.rows,
        "load_s": run.load_s,
        "start_s": run.start_s,
        "backfill_s": run.backfill_s,
        "complete_s": run.finish_s,
        "client_statements": t.total.ops,
        "client_errors": t.errors.len(),
        "client_p50_ms": t.total.p50_ms,
        "client_p99_ms": t.total.p99_ms,
        "client_max_ms": t.total.max_ms,
        "client_waits_behind_pgshift": t.total.behind_pgshift,
        "client_max_wait_behind_pgshift_ms": t.total.max_behind_pgshift_ms,
        "longest_lock_ms": t.longest_lock.as_ref().map(|l| l.ms),
        "longest_lock": t.longest_lock.as_ref().map(|l| l.describe()),
        "mismatches": run.mismatches,
        "phases": t.phases.iter().map(|p| serde_json::json!({
            "name": p.name,
            "started_ms": p.started_ms,
            "statements": p.ops,
            "errors": p.errors,
            "p50_ms": p.p50_ms,
            "p99_ms": p.p99_ms,
            "max_ms": p.max_ms,
        })).collect::<Vec<_>>(),
        "errors": t.errors.iter().take(20).map(|e| serde_json::json!({
            "at_ms": e.at_ms, "phase": e.phase, "version": e.version.name(), "message": e.message,
        })).collect::<Vec<_>>(),
    })
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The report: per scenario, the figures and an SVG chart of every client statement's
/// latency over time (log scale), old and new version apart, errors in red, phases marked.
fn html(runs: &[ScenarioRun]) -> String {
    let mut out = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>pgshift demo</title>\n<style>body{font-family:sans-serif;margin:2em;max-width:1000px}table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}th:first-child,td:first-child{text-align:left}svg{background:#fafafa;border:1px solid #ddd}</style>\n</head><body>\n<h1>pgshift demo</h1>\n<p>Each scenario ran under client traffic: old-version clients from the start until the old application left, new-version clients from the end of <code>pgshift start</code>. Every dot is one client statement.</p>\n",
    );
    // One latency scale for every scenario, so that their charts compare at a glance.
    let max_ms = runs
        .iter()
        .map(|r| r.traffic.total.max_ms)
        .fold(10.0f64, f64::max);
    for run in runs {
        let t = &run.traffic;
        let _ = write!(
            out,
            "<h2>{} — {}</h2>\n<p>{} rows; start {:.1} s (backfill {:.1} s), complete {:.1} s; {} client statements, {} errors; p99 {:.2} ms, max {:.2} ms; longest wait behind pgshift {:.1} ms; rows differing from the reference: {}.</p>\n",
            escape(&run.name),
            escape(&run.title),
            run.rows,
            run.start_s,
            run.backfill_s,
            run.finish_s,
            t.total.ops,
            t.errors.len(),
            t.total.p99_ms,
            t.total.max_ms,
            t.total.max_behind_pgshift_ms,
            run.mismatches
        );
        out.push_str(&chart(run, max_ms));
        out.push_str("<table><tr><th>phase</th><th>statements</th><th>p50 ms</th><th>p99 ms</th><th>max ms</th><th>errors</th></tr>\n");
        for p in &t.phases {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{}</td></tr>",
                escape(&p.name),
                p.ops,
                p.p50_ms,
                p.p99_ms,
                p.max_ms,
                p.errors
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("</body></html>\n");
    out
}

/// `max_ms`: the top of the latency axis, the same for every scenario of the report.
fn chart(run: &ScenarioRun, max_ms: f64) -> String {
    let t = &run.traffic;
    // The phase names sit in up to three rows above the plot, never over its dots.
    let (w, h, left, bottom, top) = (960.0, 345.0, 70.0, 44.0, 52.0);
    let plot_w = w - left - 10.0;
    let plot_h = h - bottom - top;
    let duration = t.duration_ms.max(1.0);
    let max_ms = max_ms.max(10.0);
    // Log scale from 0.1 ms to the slowest statement.
    let (lo, hi) = ((0.1f64).log10(), max_ms.log10());
    let x = |at: f64| left + at / duration * plot_w;
    let y = |ms: f64| top + plot_h - (ms.max(0.1).log10() - lo) / (hi - lo) * plot_h;
    let mut svg = format!(
        "<svg width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" xmlns=\"http://www.w3.org/2000/svg\" font-size=\"11\">\n"
    );
    // Phases: alternate bands and their names. A name goes in the first of three rows above
    // the plot where it does not run into the name before it (short phases sit close).
    let mut row_ends = [f64::MIN; 3];
    for (i, p) in t.phases.iter().enumerate() {
        let end = t
            .phases
            .get(i + 1)
            .map(|n| n.started_ms)
            .unwrap_or(duration);
        let (x0, x1) = (x(p.started_ms), x(end));
        if i % 2 == 1 {
            let _ = writeln!(
                svg,
                "<rect x=\"{x0:.1}\" y=\"{top}\" width=\"{:.1}\" height=\"{plot_h}\" fill=\"#eef\"/>",
                (x1 - x0).max(0.5)
            );
        }
        let label_x = x0 + 2.0;
        // About 6.5 px a character at font-size 11.
        let label_w = p.name.chars().count() as f64 * 6.5 + 6.0;
        let row = (0..row_ends.len())
            .find(|r| row_ends[*r] <= label_x)
            .unwrap_or_else(|| {
                (0..row_ends.len())
                    .min_by(|a, b| row_ends[*a].total_cmp(&row_ends[*b]))
                    .unwrap_or(0)
            });
        row_ends[row] = label_x + label_w;
        let _ = writeln!(
            svg,
            "<line x1=\"{x0:.1}\" y1=\"{:.1}\" x2=\"{x0:.1}\" y2=\"{:.1}\" stroke=\"#99a\"/><text x=\"{label_x:.1}\" y=\"{:.1}\" fill=\"#335\">{}</text>",
            top - 4.0 - 14.0 * row as f64,
            top + plot_h,
            top - 6.0 - 14.0 * row as f64,
            escape(&p.name)
        );
    }
    // Axes and gridlines at powers of ten.
    let mut tick = 0.1f64;
    while tick <= max_ms * 1.0001 {
        let ty = y(tick);
        let _ = writeln!(
            svg,
            "<line x1=\"{left}\" y1=\"{ty:.1}\" x2=\"{:.1}\" y2=\"{ty:.1}\" stroke=\"#ddd\"/><text x=\"18\" y=\"{:.1}\">{} ms</text>",
            left + plot_w,
            ty + 4.0,
            tick
        );
        tick *= 10.0;
    }
    let _ = writeln!(
        svg,
        "<line x1=\"{left}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#333\"/><text x=\"{:.1}\" y=\"{:.1}\">{:.1} s</text><text x=\"{left}\" y=\"{:.1}\">0 s</text>",
        top + plot_h,
        left + plot_w,
        top + plot_h,
        left + plot_w - 40.0,
        h - 8.0,
        duration / 1000.0,
        h - 8.0
    );
    // Axis titles.
    let _ = writeln!(
        svg,
        "<text transform=\"translate(11 {:.1}) rotate(-90)\" text-anchor=\"middle\">latency of each client statement (ms, log scale)</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">time since the scenario began</text>",
        top + plot_h / 2.0,
        left + plot_w / 2.0,
        h - 22.0
    );
    for s in &t.samples {
        let colour = match (s.ok, s.version) {
            (false, _) => "#d00",
            (true, Version::Old) => "#2a6",
            (true, Version::New) => "#36c",
        };
        let _ = writeln!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.5\" fill=\"{colour}\" fill-opacity=\"0.6\"/>",
            x(s.at_ms),
            y(s.latency_ms)
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\"><tspan fill=\"#2a6\">● old version</tspan> <tspan fill=\"#36c\">● new version</tspan> <tspan fill=\"#d00\">● error</tspan></text>",
        left + plot_w - 260.0,
        h - 8.0
    );
    svg.push_str("</svg>\n");
    svg
}
