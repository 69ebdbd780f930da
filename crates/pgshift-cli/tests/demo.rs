//! `pgshift demo` at a small scale: it needs no database URL, starts its own PostgreSQL,
//! prints one JSON object per scenario with the agreed fields, and writes the report.

use std::process::Command;

#[test]
fn demo_runs_every_scenario_and_writes_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.html");
    let out = Command::new(env!("CARGO_BIN_EXE_pgshift"))
        .args([
            "demo",
            "--rows",
            "4000",
            "--s1-rows",
            "3000",
            "--s4-rows",
            "3000",
            "--output",
            "json",
        ])
        .arg("--report")
        .arg(&report)
        .env_remove("DATABASE_URL")
        .env_remove("PGHOST")
        .env_remove("PGDATABASE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let scenarios: Vec<&serde_json::Value> =
        lines.iter().filter(|v| v.get("name").is_some()).collect();
    let names: Vec<&str> = scenarios
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["S1", "S2", "S3", "S4"]);
    for s in &scenarios {
        assert_eq!(s["client_errors"], 0, "{s}");
        assert_eq!(s["mismatches"], 0, "{s}");
        assert!(s["rows"].as_i64().unwrap() >= 3000, "{s}");
        assert!(s["client_statements"].as_u64().unwrap() > 0, "{s}");
        let p99 = s["client_p99_ms"].as_f64().unwrap();
        let max = s["client_max_ms"].as_f64().unwrap();
        assert!(p99 > 0.0 && max >= p99, "{s}");
        let phases: Vec<&str> = s["phases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        for phase in ["start", "open", "complete"] {
            assert!(phases.contains(&phase), "{phase} missing in {phases:?}");
        }
        let mut unique = phases.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), phases.len(), "phase names repeat: {phases:?}");
    }
    let last = lines.last().unwrap();
    assert_eq!(
        last["report"].as_str().map(std::path::Path::new),
        Some(std::fs::canonicalize(&report).unwrap().as_path())
    );
    let html = std::fs::read_to_string(&report).unwrap();
    assert_eq!(html.matches("<svg").count(), 4, "one chart per scenario");
    assert!(html.contains("complete"), "phases are marked");
    assert_eq!(
        html.matches("latency of each client statement (ms, log scale)")
            .count(),
        4,
        "every chart's y axis has a title"
    );
    // One latency scale for all: every chart has the same top tick.
    let top_ticks: Vec<&str> = html
        .split("<svg")
        .skip(1)
        .map(|chart| {
            let pieces: Vec<&str> = chart.split(" ms</text>").collect();
            // The piece before the last " ms</text>" ends with the top tick's number.
            pieces[..pieces.len() - 1]
                .last()
                .and_then(|piece| piece.rsplit('>').next())
                .unwrap_or("")
        })
        .collect();
    assert!(
        top_ticks.windows(2).all(|w| w[0] == w[1]) && !top_ticks[0].is_empty(),
        "{top_ticks:?}"
    );
}
