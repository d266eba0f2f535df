//! The `burnrate` binary end to end: OTLP files → `run --source files --drain` → Parquet →
//! `burnrate query`, on the real Claude Code captures in `shared/otlp-samples/` and on
//! deliberately broken input.

use crate::support::*;
use prost::Message;

#[test]
fn samples_end_to_end_match_the_readme_totals() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = run_files(&samples(), &data);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_sample_totals(&data, 1.0);

    // Per session: cost, tokens and latency of each run.
    let rows = query(
        &data,
        "SELECT team, project, min(model) AS model, sum(cost_usd) AS cost,
                sum(input_tokens) AS input, max(duration_ms) AS max_ms,
                median(duration_ms) AS p50
         FROM api_requests WHERE success GROUP BY team, project ORDER BY project",
    );
    let got: Vec<(String, String, f64, f64, f64)> = rows
        .iter()
        .map(|r| {
            (
                r["project"].as_str().unwrap().to_string(),
                r["model"].as_str().unwrap().to_string(),
                num(r, "cost"),
                num(r, "input"),
                num(r, "max_ms"),
            )
        })
        .collect();
    let want = [
        ("android-app", "claude-opus-4-8", 0.215259, 13658.0, 1429.0),
        ("auth-service", "claude-opus-4-8", 0.29192, 27570.0, 1247.0),
        ("ci-tools", "claude-sonnet-4-5", 0.13198695, 17035.0, 1351.0),
        ("ios-app", "claude-sonnet-4-5", 0.15498105, 21820.0, 1009.0),
    ];
    assert_eq!(got.len(), want.len(), "{got:?}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!((g.0.as_str(), g.1.as_str()), (w.0, w.1));
        assert!(close(g.2, w.2), "{g:?}");
        assert_eq!((g.3, g.4), (w.3, w.4), "{g:?}");
    }

    // The metrics tell the same story once cumulative series are converted to deltas.
    let m = one(
        &data,
        "SELECT sum(value) FILTER (WHERE metric = 'claude_code.cost.usage') AS cost,
                sum(value) FILTER (WHERE metric = 'claude_code.token.usage' AND type = 'input') AS input,
                sum(value) FILTER (WHERE metric = 'claude_code.session.count') AS sessions
         FROM usage_metrics",
    );
    assert!(close(num(&m, "cost"), TOTAL_COST), "{m:?}");
    assert_eq!(num(&m, "input"), TOTAL_INPUT);
    assert_eq!(num(&m, "sessions"), 5.0);

    let tools = one(
        &data,
        "SELECT count(*) AS n, count(*) FILTER (WHERE success) AS ok FROM tool_calls",
    );
    assert_eq!((num(&tools, "n"), num(&tools, "ok")), (12.0, 12.0));

    // Hive partitions: one day of data, the `date` column is queryable.
    let days = query(&data, "SELECT DISTINCT date FROM api_requests");
    assert_eq!(days.len(), 1);
    assert!(
        data.join("api_requests")
            .join(format!("date={}", days[0]["date"].as_str().unwrap()))
            .is_dir()
    );

    // Every output format answers.
    for format in ["table", "csv", "json"] {
        let out = burnrate(&[
            "query",
            "--data",
            data.to_str().unwrap(),
            "--format",
            format,
            "SELECT count(*) AS n FROM spans",
        ]);
        assert!(out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("58"),
            "{format}"
        );
    }
}

#[test]
fn rerun_is_idempotent_and_a_grown_directory_adds_only_new_files() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    let data = tmp.path().join("data");
    copy_dir(&samples().join("r01"), &input.join("r01"));
    assert!(run_files(&input, &data).status.success());
    let first = one(
        &data,
        "SELECT count(*) AS n, sum(cost_usd) AS cost FROM api_requests",
    );
    assert_eq!(num(&first, "n"), 4.0);

    let again = run_files(&input, &data);
    assert!(again.status.success());
    assert!(
        stderr(&again).contains("8 already ingested"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        one(&data, "SELECT count(*) AS n FROM api_requests")["n"],
        first["n"]
    );

    for run in ["r03", "r04", "r12", "r31"] {
        copy_dir(&samples().join(run), &input.join(run));
    }
    assert!(run_files(&input, &data).status.success());
    assert_sample_totals(&data, 1.0);
}

#[test]
fn a_run_killed_between_writing_and_committing_is_replayed_without_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    assert!(run_files(&samples(), &data).status.success());

    // The crash: the Parquet files are on disk and in their tables' logs, and the ledger's
    // lines name them, but the positions table that commits those lines never got them.
    std::fs::remove_dir_all(data.join("_burnrate/positions")).unwrap();
    // ... and a half-written temporary file lies next to them.
    let partition = std::fs::read_dir(data.join("spans"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(partition.join("files-0123.parquet.tmp"), b"PAR1 half").unwrap();

    let out = run_files(&samples(), &data);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("removed"), "{}", stderr(&out));
    assert_sample_totals(&data, 1.0);
    let spans = one(&data, "SELECT count(*) AS n FROM spans");
    assert_eq!(num(&spans, "n"), 58.0);

    // Files no ledger line names at all (a ledger lost, or written before the positions
    // table) are removed and written again too.
    std::fs::write(data.join("_burnrate/files-ledger.jsonl"), "").unwrap();
    let out = run_files(&samples(), &data);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("removed"), "{}", stderr(&out));
    assert_sample_totals(&data, 1.0);
}

#[test]
fn cumulative_metric_state_survives_a_restart() {
    // r04 reports cumulative sums; split its exports over two processes.
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&input).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(samples().join("r04"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let (first, second) = files.split_at(3);
    for f in first {
        std::fs::copy(f, input.join(f.file_name().unwrap())).unwrap();
    }
    assert!(run_files(&input, &data).status.success());
    for f in second {
        std::fs::copy(f, input.join(f.file_name().unwrap())).unwrap();
    }
    assert!(run_files(&input, &data).status.success());
    let m = one(
        &data,
        "SELECT sum(value) FILTER (WHERE metric = 'claude_code.cost.usage') AS cost,
                sum(value) FILTER (WHERE metric = 'claude_code.token.usage' AND type = 'cacheRead') AS cache_read,
                min(value) AS min_delta
         FROM usage_metrics",
    );
    assert!(close(num(&m, "cost"), 0.215259), "{m:?}");
    assert_eq!(num(&m, "cache_read"), 13538.0);
    assert!(num(&m, "min_delta") >= 0.0, "no negative deltas: {m:?}");
}

/// A cumulative series unseen for longer than `--cumulative-staleness` leaves memory and is
/// read back from `metric_points` when it comes back: r04's session, quiet while another
/// session reports two hours later, converts as in a run that keeps every series, and was read
/// back.
#[test]
fn a_cumulative_series_forgotten_and_back_converts_as_if_never_forgotten() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    for (i, export) in session_away_and_back().iter().enumerate() {
        std::fs::write(input.join(format!("{i}.pb")), export).unwrap();
    }
    let rows = "SELECT metric, type, model, time, value FROM usage_metrics
                ORDER BY metric, type, model, time, value";
    let mut runs = Vec::new();
    for staleness in ["1m", "0s"] {
        let data = tmp.path().join(format!("data-{staleness}"));
        let out = run_files_command(&input, &data, &["--cumulative-staleness", staleness])
            // A segment a file, so each file's points are written before the next is read.
            .env("BURNRATE__FILES__SEGMENT_FILES", "1")
            .env("BURNRATE_LOG", "burnrate_engine::stream::delta_state=debug")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        runs.push((query(&data, rows), stderr(&out), data));
    }
    let (forgetting, forgetting_log, data) = &runs[0];
    let (keeping, keeping_log, _) = &runs[1];
    assert!(!keeping.is_empty());
    assert_eq!(forgetting, keeping);
    assert!(
        forgetting_log.contains(SESSION_READ_BACK),
        "{forgetting_log}"
    );
    assert!(!keeping_log.contains("read back"), "{keeping_log}");
    assert_session_away_and_back_totals(data);
}

/// A Claude Code api_request event as OTLP/JSON with the given extra attributes and times.
fn api_request_json(time_nanos: &str, extra: &str) -> String {
    format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"claude-code"}}}},{{"key":"team","value":{{"stringValue":"qa"}}}}]}},
        "scopeLogs":[{{"scope":{{"name":"com.anthropic.claude_code.events"}},"logRecords":[{{
          "timeUnixNano":"{time_nanos}","body":{{"stringValue":"claude_code.api_request"}},
          "attributes":[
            {{"key":"event.name","value":{{"stringValue":"api_request"}}}},
            {{"key":"session.id","value":{{"stringValue":"bad-session"}}}},
            {{"key":"model","value":{{"stringValue":"claude-haiku-4-5"}}}},
            {{"key":"duration_ms","value":{{"intValue":"10"}}}},
            {{"key":"cache_read_tokens","value":{{"intValue":"0"}}}},
            {{"key":"cache_creation_tokens","value":{{"intValue":"0"}}}}
            {extra}
          ]}}]}}]}}]}}"#
    )
}

#[test]
fn broken_input_becomes_dead_letters_or_counted_row_errors_and_the_rest_lands() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    let data = tmp.path().join("data");
    copy_dir(&samples().join("r01"), &input.join("good"));
    let bad = input.join("bad");
    std::fs::create_dir_all(&bad).unwrap();

    let logs = std::fs::read(samples().join("r01/0000-logs.pb")).unwrap();
    std::fs::write(bad.join("truncated.pb"), &logs[..logs.len() / 2]).unwrap();
    let mut noise = vec![0u8; 4096];
    let mut x: u32 = 0x9e37_79b9;
    for b in &mut noise {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    std::fs::write(bad.join("random.pb"), &noise).unwrap();
    std::fs::write(bad.join("wrong-types.json"), r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":{"not":"a number"}}]}]}]}"#).unwrap();
    std::fs::write(
        bad.join("year-3000.json"),
        api_request_json("32503680000000000000", ""),
    )
    .unwrap();
    std::fs::write(
        bad.join("truncated.json.gz"),
        [0x1f, 0x8b, 0x08, 0x00, 0x00],
    )
    .unwrap();

    // Decodable exports whose values are wrong: counted per row, not fatal.
    let nan = r#",{"key":"input_tokens","value":{"stringValue":"NaN"}},{"key":"output_tokens","value":{"intValue":"12"}}"#;
    std::fs::write(
        bad.join("nan-tokens.json"),
        api_request_json("1795536575568000000", nan),
    )
    .unwrap();
    let negative = r#",{"key":"input_tokens","value":{"intValue":"100"}},{"key":"output_tokens","value":{"intValue":"-5"}}"#;
    std::fs::write(
        bad.join("negative-tokens.json"),
        api_request_json("1795536575568000000", negative),
    )
    .unwrap();
    // 2^63-1 input tokens would cost $4.6e13 on one row: beyond any context window, an error.
    let absurd = r#",{"key":"input_tokens","value":{"intValue":"9223372036854775807"}},{"key":"output_tokens","value":{"intValue":"5"}},{"key":"cost_usd","value":{"doubleValue":0.5}}"#;
    std::fs::write(
        bad.join("absurd-tokens.json"),
        api_request_json("1795536575568000000", absurd),
    )
    .unwrap();
    let fine = r#",{"key":"input_tokens","value":{"intValue":"100"}},{"key":"output_tokens","value":{"intValue":"5"}}"#;
    std::fs::write(bad.join("time-zero.json"), api_request_json("0", fine)).unwrap();
    let far = r#",{"key":"input_tokens","value":{"intValue":"100"}},{"key":"output_tokens","value":{"intValue":"5"}},{"key":"event.timestamp","value":{"stringValue":"3000-01-01T00:00:00Z"}}"#;
    std::fs::write(
        bad.join("time-2500.json"),
        api_request_json("16725225600000000000", far),
    )
    .unwrap();

    // A 50 MB export: r01's log records repeated. It is large, not broken, and must decode.
    let mut big = burnrate_otlp::proto::collector::logs::v1::ExportLogsServiceRequest::decode(
        logs.as_slice(),
    )
    .unwrap();
    let records = big.resource_logs[0].scope_logs[0].log_records.clone();
    let one_copy: usize = records
        .iter()
        .map(|r| prost::length_delimiter_len(r.encoded_len()) + 1 + r.encoded_len())
        .sum();
    let copies = (50 << 20) / one_copy + 1;
    for _ in 1..copies {
        big.resource_logs[0].scope_logs[0]
            .log_records
            .extend(records.iter().cloned());
    }
    let big_bytes = big.encode_to_vec();
    assert!(big_bytes.len() >= 50 << 20);
    std::fs::write(bad.join("big.pb"), &big_bytes).unwrap();

    let out = run_files(&input, &data);
    assert_eq!(
        out.status.code(),
        Some(3),
        "dead letters exit with 3: {}",
        stderr(&out)
    );
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");

    let dead = query(
        &data,
        "SELECT origin, error, size FROM dead_letters ORDER BY origin",
    );
    let reasons: Vec<(String, String)> = dead
        .iter()
        .map(|r| {
            (
                r["origin"].as_str().unwrap().to_string(),
                r["error"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let names: Vec<&str> = reasons.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(
        names,
        [
            "bad/random.pb",
            "bad/truncated.json.gz",
            "bad/truncated.pb",
            "bad/wrong-types.json",
            "bad/year-3000.json"
        ],
        "{reasons:?}"
    );
    for (origin, error) in &reasons {
        assert!(
            !error.is_empty() && !error.contains('\n'),
            "{origin}: {error}"
        );
    }
    assert!(reasons[1].1.contains("gzip"), "{reasons:?}");
    assert!(reasons[2].1.contains("protobuf"), "{reasons:?}");
    assert!(reasons[4].1.contains("JSON"), "{reasons:?}");
    let kept = one(
        &data,
        "SELECT size, payload FROM dead_letters WHERE origin = 'bad/random.pb'",
    );
    let hex: String = noise.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(num(&kept, "size"), 4096.0);
    assert_eq!(
        kept["payload"].as_str(),
        Some(hex.as_str()),
        "raw bytes are kept"
    );

    let errors = query(
        &data,
        "SELECT parse_error, input_tokens, output_tokens, cost_usd, time FROM api_requests WHERE session_id = 'bad-session' ORDER BY parse_error",
    );
    let messages: Vec<&str> = errors
        .iter()
        .map(|r| r["parse_error"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(errors.len(), 5, "{errors:?}");
    let absurd = errors
        .iter()
        .find(|r| {
            r["parse_error"]
                .as_str()
                .is_some_and(|m| m.contains("context window"))
        })
        .unwrap_or_else(|| panic!("no row for 2^63-1 tokens: {errors:?}"));
    assert!(absurd["input_tokens"].is_null(), "{absurd:?}");
    assert_eq!(
        absurd["cost_usd"].as_f64(),
        Some(0.5),
        "the reported cost stands in: {absurd:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("input_tokens") && m.contains("NaN")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("output_tokens") && m.contains("negative")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("time") && m.contains("no timestamp")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("time") && m.contains("outside")),
        "{messages:?}"
    );
    assert!(errors.iter().all(|r| {
        r.get("cost_usd")
            .is_none_or(|c| c.is_null() || c.as_f64().is_some())
    }));
    let unknown_day = one(
        &data,
        "SELECT count(*) AS n FROM api_requests WHERE date = 'unknown'",
    );
    assert_eq!(num(&unknown_day, "n"), 2.0);

    // The good run and the large export are complete.
    let calls_per_copy = records
        .iter()
        .filter(|r| format!("{:?}", r.body).contains("claude_code.api_request"))
        .count();
    assert!(calls_per_copy > 0);
    let good = one(
        &data,
        "SELECT count(*) AS n FROM api_requests WHERE session_id <> 'bad-session'",
    );
    assert_eq!(num(&good, "n"), (4 + copies * calls_per_copy) as f64);
}

/// A full disk passes by itself: the exit code says so (75, `EX_TEMPFAIL`), apart from the
/// errors that need a fix (1), and the cause is named once.
#[test]
fn a_full_disk_exits_75_and_says_running_again_can_pass() {
    let data = tempfile::tempdir().unwrap();
    assert!(run_files(&samples(), data.path()).status.success());
    let d = data.path().to_str().unwrap();
    for args in [
        vec!["query", "--data", d, "SELECT count(*) FROM api_requests"],
        vec![
            "query",
            "--data",
            d,
            "--format",
            "csv",
            "SELECT * FROM api_requests",
        ],
        vec!["report", "daily", "--data", d],
    ] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("Linux has /dev/full");
        let out = burnrate_command(&args)
            .stdout(full)
            .output()
            .expect("burnrate runs");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(75), "{args:?}: {err}");
        let lines: Vec<&str> = err.trim_end().lines().collect();
        assert_eq!(lines.len(), 2, "{args:?}: {err}");
        assert!(lines[0].starts_with("burnrate: error: "), "{args:?}: {err}");
        assert_eq!(
            lines[0].matches("No space left on device").count(),
            1,
            "{args:?}: the cause once: {err}"
        );
        assert!(lines[1].contains("run again"), "{args:?}: {err}");
    }
}

/// A dataset of the first sample run, in a folder that goes with the returned guard.
fn dataset_of_one_run() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    assert!(run_files(&samples().join("r01"), &data).status.success());
    (tmp, data)
}

#[test]
fn bad_arguments_and_sql_get_one_line_and_a_non_zero_exit() {
    let (_tmp, data) = dataset_of_one_run();
    let d = data.to_str().unwrap();
    for (args, code) in [
        (vec!["query", "--data", d, "SELEC 1"], 1),
        (
            vec!["query", "--data", d, "SELECT nope FROM api_requests"],
            1,
        ),
        (vec!["query", "--data", d, "DROP TABLE spans"], 1),
        (
            vec!["query", "--data", "/nonexistent/burnrate", "SELECT 1"],
            1,
        ),
        (vec!["query", "--data", d, "--format", "xml", "SELECT 1"], 2),
        (
            vec![
                "run",
                "--input",
                "/nonexistent/otlp",
                "--output",
                d,
                "--drain",
            ],
            1,
        ),
        (vec!["run", "--bogus"], 2),
        (vec!["run", "--input", d, "--poll-interval", "soon"], 2),
        (vec!["launch"], 2),
    ] {
        let out = burnrate(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: one line, got {err:?}"
        );
        assert!(err.starts_with("burnrate: error: "), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let help = burnrate(&["run", "--help"]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("Examples:"));
}

#[test]
fn a_query_nested_past_the_limit_gets_an_error_and_one_at_it_runs() {
    let (_tmp, data) = dataset_of_one_run();
    let d = data.to_str().unwrap();
    let sum_of = |terms: usize| {
        format!(
            "SELECT sum({}) AS usd FROM api_requests",
            vec!["cost_usd"; terms].join(" + ")
        )
    };
    let one = query(&data, &sum_of(1))[0]["usd"].as_f64().unwrap();
    assert!(one > 0.0);
    // The sum, 998 operators and the last one's operands: 1,000 levels, the most allowed. It
    // is planned and evaluated (on the runtime's workers) in the debug build too, whose frames
    // are the largest.
    let deepest = query(&data, &sum_of(999))[0]["usd"].as_f64().unwrap();
    assert!(
        (deepest - 999.0 * one).abs() < 1e-6 * deepest,
        "{deepest} against {one} x 999"
    );
    // Past it, and far past it (these aborted the process with a stack overflow before): a
    // one-line error and exit 1.
    for sql in [
        sum_of(1_000),
        format!("SELECT {} AS two", vec!["1"; 60_000].join("+")),
        format!("EXPLAIN {}", sum_of(5_000)),
        format!(
            "SELECT count(*) FROM api_requests WHERE {}",
            vec!["cost_usd > 0"; 2_000].join(" AND ")
        ),
    ] {
        let out = burnrate(&["query", "--data", d, &sql]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(
            err.contains("nests expressions more than 1000 deep"),
            "{err}"
        );
    }
}
