//! `burnrate profile` on the real samples' spans and events and on generated data: every line's
//! count and total checked against direct SQL over the same Parquet, the p95 against the exact
//! interpolated percentile, and bad arguments as one-line errors.

use std::path::Path;

use serde_json::Value;

use crate::support::*;

/// What `profile --data DATA ARGS...` prints; it must succeed.
fn profile_output(data: &Path, args: &[&str]) -> String {
    let mut all = vec!["profile", "--data", data.to_str().unwrap()];
    all.extend(args);
    let out = burnrate(&all);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// `profile --format json` lines as objects.
fn profile(data: &Path, args: &[&str]) -> Vec<serde_json::Map<String, Value>> {
    profile_output(data, &[&["--format", "json"], args].concat())
        .lines()
        .map(|l| match serde_json::from_str(l).unwrap() {
            Value::Object(o) => o,
            other => panic!("not an object: {other}"),
        })
        .collect()
}

fn line<'a>(
    lines: &'a [serde_json::Map<String, Value>],
    operation: &str,
) -> &'a serde_json::Map<String, Value> {
    lines
        .iter()
        .find(|l| l["operation"] == operation)
        .unwrap_or_else(|| panic!("no {operation} in {lines:?}"))
}

/// Linear-interpolated percentile, as `percentile_cont` computes it.
fn percentile(mut values: Vec<f64>, q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = q * (values.len() - 1) as f64;
    let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
    values[low] + (values[high] - values[low]) * (rank - low as f64)
}

fn sorted_by_total(lines: &[serde_json::Map<String, Value>]) -> bool {
    lines
        .windows(2)
        .all(|w| num(&w[0], "total_ms") >= num(&w[1], "total_ms"))
}

#[test]
fn samples_profile_by_operation_tool_and_model_matches_direct_sql() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    assert!(run_files(&samples(), &data).status.success());
    let range = ["--since", "3650d", "--until", "latest"];

    let operations = profile(&data, &[&range[..], &["--by", "operation"]].concat());
    assert!(sorted_by_total(&operations), "{operations:?}");
    // The samples' README: 4 llm_request spans per successful run, 1 for the run that failed.
    let llm = line(&operations, "claude_code.llm_request");
    let direct = one(
        &data,
        "SELECT count(*) AS n, sum(duration_ms) AS total FROM spans WHERE name = 'claude_code.llm_request'",
    );
    assert_eq!(num(llm, "count"), 17.0);
    assert_eq!(num(llm, "count"), num(&direct, "n"));
    assert!(close(num(llm, "total_ms"), num(&direct, "total")));
    let durations: Vec<f64> = query(
        &data,
        "SELECT duration_ms FROM spans WHERE name = 'claude_code.llm_request'",
    )
    .iter()
    .map(|r| num(r, "duration_ms"))
    .collect();
    // Interpolated as percentile_cont does, within floating-point noise.
    let exact = percentile(durations, 0.95);
    assert!(
        (num(llm, "p95_ms") - exact).abs() <= 1e-6 * exact,
        "{llm:?} vs {exact}"
    );
    // Tool spans carry their tool: Bash, Write and Read once per successful run.
    for tool in ["Bash", "Write", "Read"] {
        assert_eq!(
            num(
                line(&operations, &format!("claude_code.tool ({tool})")),
                "count"
            ),
            4.0
        );
    }
    let events = line(&operations, "api_request (event)");
    let direct = one(
        &data,
        "SELECT count(*) AS n, sum(duration_ms) AS total FROM api_requests WHERE source = 'claude_code.event'",
    );
    assert_eq!(num(events, "count"), num(&direct, "n"));
    assert!(close(num(events, "total_ms"), num(&direct, "total")));

    let tools = profile(&data, &[&range[..], &["--by", "tool"]].concat());
    assert_eq!(tools.len(), 3, "{tools:?}");
    for tool in &tools {
        let name = tool["operation"].as_str().unwrap();
        let direct = one(
            &data,
            &format!(
                "SELECT count(*) AS n, sum(duration_ms) AS total FROM tool_calls \
                 WHERE tool_name = '{name}' AND success IS NOT NULL"
            ),
        );
        assert_eq!(num(tool, "count"), 4.0, "{name}");
        assert_eq!(num(tool, "count"), num(&direct, "n"), "{name}");
        assert!(
            close(num(tool, "total_ms"), num(&direct, "total")),
            "{name}"
        );
    }

    let models = profile(&data, &[&range[..], &["--by", "model"]].concat());
    let calls: f64 = models.iter().map(|m| num(m, "count")).sum();
    let direct = one(
        &data,
        "SELECT count(*) AS n, sum(duration_ms) AS total FROM api_requests",
    );
    assert_eq!(calls, num(&direct, "n"));
    let total: f64 = models.iter().map(|m| num(m, "total_ms")).sum();
    assert!(close(total, num(&direct, "total")));

    // The terminal table has the columns; the captures are long past, so the last hour
    // before now is empty and says so.
    let text = profile_output(&data, &range);
    for column in [
        "Operation",
        "Count",
        "Avg(ms)",
        "P95(ms)",
        "Total(ms)",
        "claude_code.llm_request",
    ] {
        assert!(text.contains(column), "{column} missing:\n{text}");
    }
    assert!(profile_output(&data, &["--last-hour"]).starts_with("Nothing recorded"));
    let csv = profile_output(
        &data,
        &[&range[..], &["--by", "tool", "--format", "csv"]].concat(),
    );
    assert_eq!(
        csv.lines().next(),
        Some("operation,count,avg_ms,p95_ms,total_ms")
    );
    assert_eq!(csv.lines().count(), 4);
}

#[test]
fn generated_profile_matches_direct_sql_and_bad_arguments_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = generated_dataset(tmp.path(), &["--days", "2", "--users", "3"]);
    // One day of the two, by an explicit RFC 3339 end.
    let day = one(
        &data,
        "SELECT CAST(max(date_trunc('day', time)) AS VARCHAR) AS d FROM api_requests",
    );
    let end = format!(
        "{}Z",
        day["d"]
            .as_str()
            .unwrap()
            .replace(' ', "T")
            .trim_end_matches('Z')
    );
    let models = profile(&data, &["--since", "24h", "--until", &end, "--by", "model"]);
    assert!(!models.is_empty());
    for m in &models {
        let model = m["operation"].as_str().unwrap();
        let direct = one(
            &data,
            &format!(
                "SELECT count(*) AS n, sum(duration_ms) AS total FROM api_requests \
                 WHERE model = '{model}' AND time >= TIMESTAMP '{end}' - INTERVAL '1 day' AND time < TIMESTAMP '{end}'"
            ),
        );
        assert_eq!(num(m, "count"), num(&direct, "n"), "{model}");
        assert!(close(num(m, "total_ms"), num(&direct, "total")), "{model}");
    }
    let tools = profile(
        &data,
        &["--since", "7d", "--until", "latest", "--by", "tool"],
    );
    let direct = one(
        &data,
        "SELECT count(*) AS n FROM tool_calls WHERE success IS NOT NULL",
    );
    let counted: f64 = tools.iter().map(|t| num(t, "count")).sum();
    assert_eq!(counted, num(&direct, "n"));
    assert!(sorted_by_total(&tools));

    for bad in [
        vec!["profile", "--since", "soon"],
        vec!["profile", "--until", "yesterday"],
        vec!["profile", "--by", "colour"],
        vec!["profile", "--last-hour", "--since", "2h"],
    ] {
        let out = burnrate(&bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
        assert_eq!(
            stderr(&out).trim().lines().count(),
            1,
            "{bad:?}: {}",
            stderr(&out)
        );
    }
}
