//! `burnrate report` over the real samples: golden text, Markdown, CSV and JSON reports, the
//! JSON's numbers checked against direct SQL over the same Parquet, and clear one-line errors.
//!
//! `BURNRATE_BLESS=1 cargo test --test report` rewrites the goldens after a deliberate change.

mod support;

use std::path::{Path, PathBuf};

use support::*;

const DAY: &str = "2026-11-24";

fn report(data: &Path, args: &[&str]) -> String {
    let mut all = vec![
        "report",
        "daily",
        "--date",
        DAY,
        "--data",
        data.to_str().unwrap(),
    ];
    all.extend(args);
    let out = burnrate(&all);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/golden/report")
        .join(name);
    if std::env::var_os("BURNRATE_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("no golden {}; run with BURNRATE_BLESS=1", path.display()));
    assert_eq!(actual, expected, "golden {name} differs");
}

#[test]
fn daily_report_goldens_and_numbers_from_direct_sql() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    assert!(run_files(&samples(), &data).status.success());

    golden("daily.txt", &report(&data, &[]));
    golden("daily.md", &report(&data, &["--format", "markdown"]));
    golden("daily.csv", &report(&data, &["--format", "csv"]));
    let json = report(&data, &["--format", "json"]);
    golden("daily.json", &json);

    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    let h = &parsed["headline"];
    let direct = one(
        &data,
        "SELECT sum(cost_usd) AS spend, count(*) AS requests, \
         sum(CASE WHEN success THEN 0 ELSE 1 END) AS errors, count(DISTINCT user_id) AS users, \
         count(DISTINCT session_id) AS sessions, sum(input_tokens) AS input, \
         sum(cache_read_tokens) AS cache_read, sum(cache_creation_tokens) AS cache_creation \
         FROM api_requests WHERE time >= '2026-11-24T00:00:00Z' AND time < '2026-11-25T00:00:00Z'",
    );
    assert!(close(
        h["spend_usd"].as_f64().unwrap(),
        num(&direct, "spend")
    ));
    for (field, column) in [
        ("requests", "requests"),
        ("errors", "errors"),
        ("active_users", "users"),
        ("sessions", "sessions"),
    ] {
        assert_eq!(h[field].as_f64().unwrap(), num(&direct, column), "{field}");
    }
    let all_input =
        num(&direct, "input") + num(&direct, "cache_read") + num(&direct, "cache_creation");
    assert!(close(
        h["cache_hit_ratio"].as_f64().unwrap(),
        num(&direct, "cache_read") / all_input
    ));
    // The README's per-run totals: four users, the opus runs' spend.
    let models = parsed["top_models"].as_array().unwrap();
    assert_eq!(models[0]["name"], "claude-opus-4-8");
    assert!(close(
        models[0]["cost_usd"].as_f64().unwrap(),
        0.29192 + 0.215259
    ));
    let shares: f64 = models.iter().map(|m| m["share"].as_f64().unwrap()).sum();
    assert!(close(shares, 1.0));
    let hours: f64 = parsed["spend_by_hour"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert!(close(hours, num(&direct, "spend")));
    assert_eq!(parsed["trend"].as_array().unwrap().len(), 30);
    // The p95 comes from merged sketches: within 1% of the exact nearest-rank p95.
    let mut durations: Vec<f64> = query(
        &data,
        "SELECT duration_ms FROM api_requests WHERE duration_ms IS NOT NULL ORDER BY duration_ms",
    )
    .iter()
    .map(|r| num(r, "duration_ms"))
    .collect();
    durations.sort_by(f64::total_cmp);
    let exact = durations[((0.95 * durations.len() as f64).ceil() as usize).max(1) - 1];
    let p95 = h["latency_p95_ms"].as_f64().unwrap();
    assert!((p95 - exact).abs() <= 0.01 * exact, "{p95} vs {exact}");
}

#[test]
fn a_day_without_data_reports_zeros_and_bad_dates_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    assert!(run_files(&samples(), &data).status.success());
    let out = burnrate(&[
        "report",
        "daily",
        "--date",
        "2026-01-01",
        "--data",
        data.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let parsed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(parsed["headline"]["requests"], 0);
    assert_eq!(parsed["headline"]["error_rate"], serde_json::Value::Null);

    let bad = burnrate(&["report", "daily", "--date", "2026-13-01"]);
    assert_eq!(bad.status.code(), Some(2));
    assert_eq!(stderr(&bad).trim().lines().count(), 1, "{}", stderr(&bad));
    let backwards = burnrate(&[
        "report",
        "range",
        "--from",
        "2026-11-24",
        "--to",
        "2026-11-01",
        "--data",
        data.to_str().unwrap(),
    ]);
    assert_eq!(backwards.status.code(), Some(1));
    assert!(
        stderr(&backwards).contains("before it starts"),
        "{}",
        stderr(&backwards)
    );
    assert_eq!(stderr(&backwards).trim().lines().count(), 1);
}
