//! `burnrate report` over the real samples: golden text, Markdown, CSV and JSON reports, the
//! JSON's numbers checked against direct SQL over the same Parquet, and clear one-line errors;
//! over generated data: the HTML report opened in headless Chromium.
//!
//! `BURNRATE_BLESS=1 cargo test --test end_to_end report::` rewrites the goldens after a deliberate change.

use std::path::{Path, PathBuf};

use crate::support::chromium;
use crate::support::*;

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

/// A generated team's day as an HTML report, opened in headless Chromium: the four charts are
/// there with one mark per value, the budget table too, and the console is silent. The
/// screenshot is kept under `target/tmp/` as the test's artifact.
#[test]
fn html_report_opens_in_chromium_with_its_charts_and_no_console_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = generated_dataset(
        tmp.path(),
        &["--start", "2026-10-05", "--days", "3", "--users", "6"],
    );
    let config = tmp.path().join("burnrate.toml");
    std::fs::write(
        &config,
        "[[anomalies.budgets]]\ndimension = \"team\"\nvalue = \"team-0\"\ndaily_usd = 1.0\nmonthly_usd = 1000.0\n",
    )
    .unwrap();
    let day_report = |format: &str| {
        let out = burnrate(&[
            "--config",
            config.to_str().unwrap(),
            "report",
            "daily",
            "--date",
            "2026-10-06",
            "--data",
            data.to_str().unwrap(),
            "--format",
            format,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let page = tmp.path().join("report.html");
    let html = day_report("html");
    std::fs::write(&page, &html).unwrap();
    // Nothing from the network: the only addresses are the SVG namespace.
    assert_eq!(
        html.matches("http").count(),
        html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count()
    );
    assert!(
        !html.contains("<script"),
        "no script: nothing to fail in the console"
    );

    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("report-daily.png");
    let rendered = chromium::render(&page, &screenshot, 1280, 2400);
    assert!(
        rendered.console.is_empty(),
        "console: {:?}",
        rendered.console
    );

    // Each chart is a figure with an SVG and one mark per value, as Chromium parsed it.
    let figure = |id: &str| {
        let start = rendered
            .dom
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("no {id}"));
        let end = start + rendered.dom[start..].find("</figure>").unwrap();
        rendered.dom[start..end].to_string()
    };
    let hours = figure("chart-spend-by-hour");
    assert!(hours.contains("<svg"));
    assert_eq!(hours.matches("class=\"bar\"").count(), 24);
    let json: serde_json::Value = serde_json::from_str(&day_report("json")).unwrap();
    let models = json["top_models"].as_array().unwrap().len();
    assert!(models >= 2, "a model mix: {models}");
    assert_eq!(
        figure("chart-spend-by-model")
            .matches("class=\"bar\"")
            .count(),
        models
    );
    let users = json["top_users"].as_array().unwrap().len().min(10);
    assert_eq!(
        figure("chart-top-users").matches("class=\"bar\"").count(),
        users
    );
    let trend = figure("chart-trend");
    assert!(trend.contains("<polyline"));
    assert_eq!(trend.matches("<circle").count(), 30);
    // The headline's spend is on the page as the JSON has it.
    let spend = json["headline"]["spend_usd"].as_f64().unwrap();
    assert!(
        rendered.dom.contains(&format!("${spend:.2}")),
        "spend ${spend:.2} not shown"
    );
    // The budget: team-0 spent more than $1 that day, so it is exceeded.
    let budget = &json["budgets"][0];
    assert_eq!(budget["value"], "team-0");
    let direct = one(
        &data,
        "SELECT sum(cost_usd) AS usd FROM api_requests WHERE team = 'team-0' \
         AND time >= '2026-10-06T00:00:00Z' AND time < '2026-10-07T00:00:00Z'",
    );
    assert!(close(
        budget["day_spend_usd"].as_f64().unwrap(),
        num(&direct, "usd")
    ));
    assert_eq!(budget["status"], "exceeded");
    assert!(rendered.dom.contains("class=\"exceeded\""));

    // A real picture: far more detail than a blank page of the same size.
    let blank = tmp.path().join("blank.html");
    std::fs::write(&blank, "<!DOCTYPE html><html><body></body></html>").unwrap();
    let blank_shot = tmp.path().join("blank.png");
    chromium::render(&blank, &blank_shot, 1280, 2400);
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    assert!(
        size(&screenshot) > 10 * size(&blank_shot),
        "{} vs {}",
        size(&screenshot),
        size(&blank_shot)
    );
}

/// What the daily report CronJob runs: three formats into a directory and the Markdown posted
/// to a webhook (a listener on loopback here).
#[test]
fn several_formats_go_to_a_directory_and_markdown_to_the_webhook() {
    use std::io::{BufRead, BufReader, Read, Write};

    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    assert!(run_files(&samples(), &data).status.success());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let received = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        (&stream)
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .unwrap();
        String::from_utf8(body).unwrap()
    });
    let reports = tmp.path().join("reports");
    let out = burnrate(&[
        "report",
        "daily",
        "--date",
        DAY,
        "--data",
        data.to_str().unwrap(),
        "--format",
        "html,markdown,json",
        "--out-dir",
        reports.to_str().unwrap(),
        "--webhook",
        &url,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut names: Vec<String> = std::fs::read_dir(&reports)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            format!("report-{DAY}.html"),
            format!("report-{DAY}.json"),
            format!("report-{DAY}.md")
        ]
    );
    let markdown = std::fs::read_to_string(reports.join(format!("report-{DAY}.md"))).unwrap();
    assert_eq!(markdown, report(&data, &["--format", "markdown"]));
    let posted: serde_json::Value = serde_json::from_str(&received.join().unwrap()).unwrap();
    assert_eq!(posted["text"], markdown);

    // Several formats without a directory, or an unreachable webhook: one line, non-zero.
    let out = burnrate(&[
        "report",
        "daily",
        "--date",
        DAY,
        "--data",
        data.to_str().unwrap(),
        "--format",
        "html,json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--out-dir"), "{}", stderr(&out));
    let closed = format!("http://127.0.0.1:{}/hook", free_port());
    let out = burnrate(&[
        "report",
        "daily",
        "--date",
        DAY,
        "--data",
        data.to_str().unwrap(),
        "--out-dir",
        reports.to_str().unwrap(),
        "--webhook",
        &closed,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("webhook"), "{}", stderr(&out));
}

/// A week of a generated team (seeded, so the same bytes every run): golden text, Markdown,
/// CSV and JSON of the range report, and its numbers against direct SQL.
#[test]
fn range_report_goldens_over_a_generated_week() {
    let tmp = tempfile::tempdir().unwrap();
    let data = generated_dataset(
        tmp.path(),
        &["--start", "2026-10-05", "--days", "7", "--users", "8"],
    );
    let range = |format: &str| {
        let out = burnrate(&[
            "report",
            "range",
            "--from",
            "2026-10-05",
            "--to",
            "2026-10-11",
            "--data",
            data.to_str().unwrap(),
            "--format",
            format,
        ]);
        assert!(out.status.success(), "{format}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    golden("week.txt", &range("text"));
    golden("week.md", &range("markdown"));
    golden("week.csv", &range("csv"));
    let json = range("json");
    golden("week.json", &json);

    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    let direct = one(
        &data,
        "SELECT sum(cost_usd) AS spend, count(*) AS requests, count(DISTINCT user_id) AS users, \
         count(DISTINCT session_id) AS sessions FROM api_requests \
         WHERE time >= '2026-10-05T00:00:00Z' AND time < '2026-10-12T00:00:00Z'",
    );
    let h = &parsed["headline"];
    assert!(close(
        h["spend_usd"].as_f64().unwrap(),
        num(&direct, "spend")
    ));
    assert_eq!(h["requests"].as_f64().unwrap(), num(&direct, "requests"));
    assert_eq!(h["active_users"].as_f64().unwrap(), num(&direct, "users"));
    assert_eq!(h["sessions"].as_f64().unwrap(), num(&direct, "sessions"));
    for (list, column) in [
        ("top_users", "user_id"),
        ("top_teams", "team"),
        ("top_models", "model"),
    ] {
        for entry in parsed[list].as_array().unwrap() {
            let name = entry["name"].as_str().unwrap();
            let row = one(
                &data,
                &format!(
                    "SELECT sum(cost_usd) AS usd, count(*) AS n FROM api_requests WHERE {column} = '{name}' \
                     AND time >= '2026-10-05T00:00:00Z' AND time < '2026-10-12T00:00:00Z'"
                ),
            );
            assert!(
                close(entry["cost_usd"].as_f64().unwrap(), num(&row, "usd")),
                "{list} {name}"
            );
            assert_eq!(
                entry["requests"].as_f64().unwrap(),
                num(&row, "n"),
                "{list} {name}"
            );
        }
    }
    let days: f64 = parsed["trend"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["cost_usd"].as_f64().unwrap())
        .sum();
    assert!(close(days, num(&direct, "spend")));
}

/// The report's days and hours in a configured time zone: New York's 2026-11-24 runs from
/// 05:00 UTC to 05:00 UTC the next day, and the samples' calls (about 16:00 UTC) fall in its
/// 11 o'clock hour. A zone that does not exist is a one-line error naming the key.
#[test]
fn a_configured_time_zone_sets_the_days_and_hours() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    assert!(run_files(&samples(), &data).status.success());
    let json = report(
        &data,
        &["--time-zone", "America/New_York", "--format", "json"],
    );
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed["time_zone"], "America/New_York");
    let direct = one(
        &data,
        "SELECT sum(cost_usd) AS spend, \
         sum(cost_usd) FILTER (WHERE date_part('hour', time) = 16) AS at_16_utc \
         FROM api_requests WHERE time >= '2026-11-24T05:00:00Z' AND time < '2026-11-25T05:00:00Z'",
    );
    assert!(close(
        parsed["headline"]["spend_usd"].as_f64().unwrap(),
        num(&direct, "spend")
    ));
    let hours: Vec<f64> = parsed["spend_by_hour"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(close(hours[11], num(&direct, "at_16_utc")), "{hours:?}");
    assert_eq!(hours[16], 0.0, "{hours:?}");

    let config = tmp.path().join("burnrate.toml");
    std::fs::write(&config, "[report]\ntime_zone = \"Mars/Olympus_Mons\"\n").unwrap();
    let out = burnrate(&["--config", config.to_str().unwrap(), "report", "daily"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("report.time_zone"),
        "{}",
        stderr(&out)
    );
}
