//! Cost that is never silently lost, end to end: both releases' real captures priced per model
//! through the files source and the daily report; a price table that lacks a model (the
//! reported cost stands in, in query, report and Pushgateway); a table that disagrees with the
//! reported cost (the report names it); `prices --check`; a LiteLLM price file. The receiver and
//! Kafka paths are checked in `receiver.rs` and `kafka.rs` with the same helpers.

use std::path::Path;

use serde_json::Value;

use crate::support::pushgateway::Pushgateway;
use crate::support::*;

/// The embedded table of a release that did not know claude-opus-5-5 yet.
const TABLE_WITHOUT_OPUS_5_5: &str = "[models.claude-sonnet-4-5]
input = 3.0
output = 15.0
cache_write_5m = 3.75
cache_read = 0.3
";

/// Sonnet 4.5 at $4 per million input tokens instead of $3: a stale (or wrong) price table.
const TABLE_WITH_A_WRONG_PRICE: &str = "[models.claude-sonnet-4-5]
input = 4.0
output = 15.0
cache_write_5m = 3.75
cache_read = 0.3
";

/// The 2.1.332 samples run with `table` as the price file (and `extra` arguments) into
/// `dir/data`: the data directory and what the run said.
fn run_priced_by(dir: &Path, table: &str, extra: &[&str]) -> (std::path::PathBuf, String) {
    let prices = dir.join("prices.toml");
    std::fs::write(&prices, table).unwrap();
    let data = dir.join("data");
    let mut args = vec!["--prices", prices.to_str().unwrap()];
    args.extend(extra);
    let out = run_files_with(&samples_2_1_332(), &data, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    (data, stderr(&out))
}

fn report_text(data: &Path, day: &str, format: &str) -> String {
    report_daily(data, day, &["--format", format])
}

#[test]
fn both_releases_through_files_cost_exactly_per_model_in_query_and_report() {
    let tmp = tempfile::tempdir().unwrap();
    for (input, by_model, day, runs) in [
        (samples(), &COST_BY_MODEL_2_1_197, DAY_2_1_197, 5.0),
        (samples_2_1_332(), &COST_BY_MODEL_2_1_332, DAY_2_1_332, 2.0),
    ] {
        let data = tmp.path().join(day);
        let out = run_files(&input, &data);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_cost_by_model(&data, by_model, 1.0);
        assert_report_cost(&data, day, by_model, 1.0);
        let sources = one(
            &data,
            "SELECT count(*) FILTER (WHERE cost_source = 'price_table') AS priced, \
             count(*) AS calls, count(DISTINCT session_id) AS sessions FROM api_requests",
        );
        assert_eq!(num(&sources, "priced"), num(&sources, "calls"));
        assert_eq!(num(&sources, "sessions"), runs);
        // Nothing unpriced, nothing disagreeing: the report says nothing about it.
        let text = report_text(&data, day, "text");
        assert!(!text.contains("unpriced calls"), "{text}");
        assert!(!text.contains("price table vs reported"), "{text}");
    }
    // Time to first token on every 2.1.332 call, and in the report next to the duration.
    let data = tmp.path().join(DAY_2_1_332);
    let ttft = one(
        &data,
        "SELECT count(ttft_ms) AS with_ttft, count(*) AS calls, \
         count(*) FILTER (WHERE speed = 'normal') AS normal, \
         count(*) FILTER (WHERE query_source = 'sdk') AS sdk FROM api_requests",
    );
    assert_eq!(num(&ttft, "with_ttft"), 8.0);
    assert_eq!(num(&ttft, "calls"), 8.0);
    assert_eq!(num(&ttft, "normal"), 8.0);
    assert_eq!(num(&ttft, "sdk"), 8.0);
    let report = report_json(&data, DAY_2_1_332, &[]);
    assert!(
        report["headline"]["ttft_p50_ms"].as_f64().is_some(),
        "{report}"
    );
    for model in report["latency_by_model"].as_array().unwrap() {
        assert!(model["ttft_p95_ms"].as_f64().is_some(), "{model}");
        assert!(model["duration_p95_ms"].as_f64().is_some(), "{model}");
    }
    let sources = report["by_query_source"].as_array().unwrap();
    assert_eq!(sources.len(), 1, "{sources:?}");
    assert_eq!(sources[0]["name"], "sdk");
    let text = report_text(&data, DAY_2_1_332, "text");
    for needle in [
        "time to first token p50 / p95",
        "latency by model",
        "query source",
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
    // `profile --by query-source` (and speed, effort) books the same spend.
    for by in ["query-source", "speed", "effort"] {
        let out = burnrate(&[
            "profile",
            "--since",
            "3650d",
            "--until",
            "latest",
            "--by",
            by,
            "--data",
            data.to_str().unwrap(),
            "--format",
            "json",
        ]);
        assert!(out.status.success(), "{by}: {}", stderr(&out));
        let spent: f64 = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|line| {
                let row: Value = serde_json::from_str(line).unwrap();
                row["cost_usd"].as_f64().unwrap()
            })
            .sum();
        assert!(close(spent, 0.218368 + 0.15498105), "{by}: {spent}");
    }
    // Windows carry the TTFT sketch and the new dimensions.
    let windows = one(
        &data,
        "SELECT sum(requests) AS requests, count(ttft_sketch) AS sketches, \
         count(DISTINCT query_source) AS sources FROM usage_windows WHERE requests > 0",
    );
    assert_eq!(num(&windows, "requests"), 8.0);
    assert!(num(&windows, "sketches") > 0.0);
    assert_eq!(num(&windows, "sources"), 1.0);
}

#[test]
fn a_model_missing_from_the_price_table_is_booked_at_its_reported_cost_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let pushgateway = Pushgateway::start();
    let (data, said) = run_priced_by(
        tmp.path(),
        TABLE_WITHOUT_OPUS_5_5,
        &["--no-embedded-prices", "--pushgateway", &pushgateway.url],
    );
    assert!(
        said.contains("no price for model \"claude-opus-5-5\""),
        "{said}"
    );

    // Query: the spend is there, with where it came from.
    assert_cost_by_model(&data, &COST_BY_MODEL_2_1_332, 1.0);
    let opus = one(
        &data,
        "SELECT count(*) AS calls, min(cost_source) AS source, max(cost_source) AS source_max \
         FROM api_requests WHERE model = 'claude-opus-5-5'",
    );
    assert_eq!(num(&opus, "calls"), 4.0);
    assert_eq!(opus["source"], "reported");
    assert_eq!(opus["source_max"], "reported");

    // Report: the model at its reported cost, and a line that says so, in every format.
    assert_report_cost(&data, DAY_2_1_332, &COST_BY_MODEL_2_1_332, 1.0);
    let report = report_json(&data, DAY_2_1_332, &[]);
    let sources = &report["cost_sources"];
    assert_eq!(sources["reported_calls"], 4, "{sources}");
    assert!(close(sources["reported_usd"].as_f64().unwrap(), 0.218368));
    assert_eq!(sources["models"][0]["model"], "claude-opus-5-5");
    for format in ["text", "markdown", "html"] {
        let text = report_text(&data, DAY_2_1_332, format);
        assert!(
            text.contains("unpriced calls (cost as reported)") && text.contains("$0.2184"),
            "{format}:\n{text}"
        );
    }
    let csv = report_text(&data, DAY_2_1_332, "csv");
    assert!(csv.contains("headline,,reported_cost_calls,4"), "{csv}");

    // Pushgateway: the window totals carry the same cost.
    let group = ["job=\"burnrate\"", "instance=\"local\""];
    let opus_label = ["job=\"burnrate\"", "model=\"claude-opus-5-5\""];
    let text = pushgateway.metrics();
    let pushed = crate::support::pushgateway::sum_samples(&text, "burnrate_cost_usd_total", &group);
    assert!(close(pushed, 0.218368 + 0.15498105), "{pushed}\n{text}");
    let pushed_opus =
        crate::support::pushgateway::sum_samples(&text, "burnrate_cost_usd_total", &opus_label);
    assert!(close(pushed_opus, 0.218368), "{pushed_opus}\n{text}");
    // TTFT is pushed as a summary per model, next to the duration.
    let ttft_count = crate::support::pushgateway::sum_samples(
        &text,
        "burnrate_time_to_first_token_seconds_count",
        &group,
    );
    assert_eq!(ttft_count, 8.0, "{text}");
    assert!(
        text.contains("burnrate_time_to_first_token_seconds{")
            && text.contains("quantile=\"0.95\""),
        "{text}"
    );
}

#[test]
fn a_price_table_that_disagrees_with_the_reported_cost_is_named_in_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, _) = run_priced_by(tmp.path(), TABLE_WITH_A_WRONG_PRICE, &[]);
    // r03's 21,820 input tokens at $1 per million more than Claude Code charged.
    let difference = 0.02182;
    let mismatched = one(
        &data,
        "SELECT count(*) AS calls, sum(cost_usd - cost_usd_reported) AS difference \
         FROM api_requests WHERE cost_mismatch",
    );
    assert_eq!(num(&mismatched, "calls"), 4.0);
    assert!(close(num(&mismatched, "difference"), difference));
    let report = report_json(&data, DAY_2_1_332, &[]);
    let sources = &report["cost_sources"];
    assert_eq!(sources["mismatched_calls"], 4, "{sources}");
    assert!(close(sources["mismatch_usd"].as_f64().unwrap(), difference));
    let text = report_text(&data, DAY_2_1_332, "text");
    assert!(
        text.contains("price table vs reported cost")
            && text.contains("4 calls differ by +$0.0218 (claude-sonnet-4-5)"),
        "{text}"
    );
}

#[test]
fn prices_check_lists_unpriced_and_disagreeing_models_and_reads_litellm_files() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    assert!(run_files(&samples_2_1_332(), &data).status.success());
    let check = |extra: &[&str]| {
        let mut args = vec!["prices", "--check", "--data", data.to_str().unwrap()];
        args.extend(extra);
        let out = burnrate(&args);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr(&out),
        )
    };
    let (code, text, err) = check(&[]);
    assert_eq!(code, Some(0), "{text}{err}");
    assert!(text.contains("2 models, 8 successful calls"), "{text}");

    let old = tmp.path().join("old.toml");
    std::fs::write(&old, TABLE_WITHOUT_OPUS_5_5).unwrap();
    let (code, text, _) = check(&["--prices", old.to_str().unwrap(), "--no-embedded-prices"]);
    assert_eq!(code, Some(4), "{text}");
    assert!(
        text.contains("model without a price") && text.contains("claude-opus-5-5"),
        "{text}"
    );
    assert!(text.contains("$0.218368"), "{text}");

    let wrong = tmp.path().join("wrong.toml");
    std::fs::write(&wrong, TABLE_WITH_A_WRONG_PRICE).unwrap();
    let (code, text, _) = check(&["--prices", wrong.to_str().unwrap()]);
    assert_eq!(code, Some(4), "{text}");
    assert!(
        text.contains("4 of 4") && text.contains("+0.021820"),
        "{text}"
    );

    // LiteLLM's file format, alone: it prices both models exactly as Claude Code did.
    let litellm = tmp.path().join("model_prices_and_context_window.json");
    std::fs::write(
        &litellm,
        r#"{
            "sample_spec": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0},
            "claude-opus-5-5": {"litellm_provider": "anthropic", "mode": "chat",
                "input_cost_per_token": 4e-06, "output_cost_per_token": 2e-05,
                "cache_read_input_token_cost": 2e-07, "cache_creation_input_token_cost": 5e-06},
            "claude-sonnet-4-5-20250929": {"litellm_provider": "anthropic", "mode": "chat",
                "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
                "cache_read_input_token_cost": 3e-07, "cache_creation_input_token_cost": 3.75e-06,
                "input_cost_per_token_above_200k_tokens": 6e-06,
                "output_cost_per_token_above_200k_tokens": 2.25e-05}
        }"#,
    )
    .unwrap();
    let (code, text, err) = check(&[
        "--prices",
        litellm.to_str().unwrap(),
        "--no-embedded-prices",
    ]);
    assert_eq!(code, Some(0), "{text}{err}");
    let listed = burnrate(&[
        "prices",
        "--prices",
        litellm.to_str().unwrap(),
        "--no-embedded-prices",
    ]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        listed.contains("claude-opus-5-5") && listed.contains("> 200000"),
        "{listed}"
    );

    // A broken file is one clear line and no check.
    let broken = tmp.path().join("broken.json");
    std::fs::write(
        &broken,
        r#"{"m": {"input_cost_per_token": "cheap", "output_cost_per_token": 1}}"#,
    )
    .unwrap();
    let (code, _, err) = check(&["--prices", broken.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("model `m`") && err.contains("input_cost_per_token"),
        "{err}"
    );
}

#[test]
fn query_json_writes_null_columns_as_explicit_nulls() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    assert!(run_files(&samples().join("r31"), &data).status.success());
    let rows = query(
        &data,
        "SELECT model, ttft_ms, cache_creation_1h_tokens, cost_mismatch FROM api_requests",
    );
    assert_eq!(rows.len(), 1);
    for key in ["ttft_ms", "cache_creation_1h_tokens", "cost_mismatch"] {
        assert_eq!(rows[0].get(key), Some(&Value::Null), "{key}: {:?}", rows[0]);
    }
}
