//! `burnrate generate` end to end: its exports decode with the code that decodes the real
//! samples, every signal agrees with the others (cumulative metrics included, through the real
//! delta conversion), and the same workload lands with the same totals whether it goes through
//! files, the OTLP receiver or a real Kafka broker.

use std::path::Path;

use crate::support::broker::Broker;
use crate::support::*;

const WORKLOAD: [&str; 8] = [
    "--scenario",
    "quiet",
    "--days",
    "2",
    "--users",
    "4",
    "--seed",
    "11",
];

fn generate(extra: &[&str]) {
    let mut args = vec!["generate"];
    args.extend(WORKLOAD);
    args.extend(extra);
    let out = burnrate(&args);
    assert!(out.status.success(), "generate {extra:?}: {}", stderr(&out));
}

/// Calls, cost and tokens from every table that has them.
fn totals(data: &Path) -> serde_json::Map<String, serde_json::Value> {
    one(
        data,
        "SELECT (SELECT count(*) FROM api_requests) AS calls, \
         (SELECT round(sum(cost_usd), 6) FROM api_requests) AS cost, \
         (SELECT sum(input_tokens) FROM api_requests) AS input, \
         (SELECT count(*) FROM spans WHERE name = 'claude_code.llm_request') AS llm_spans, \
         (SELECT count(*) FROM tool_calls) AS tools, \
         (SELECT round(sum(value), 6) FROM usage_metrics WHERE metric = 'claude_code.cost.usage') AS metric_cost, \
         (SELECT sum(value) FROM usage_metrics WHERE metric = 'claude_code.token.usage' AND type = 'input') AS metric_input, \
         (SELECT sum(parse_errors) FROM api_requests) AS parse_errors, \
         (SELECT count(*) FROM dead_letters) AS dead",
    )
}

fn assert_consistent(t: &serde_json::Map<String, serde_json::Value>) {
    assert!(num(t, "calls") > 500.0, "{t:?}");
    assert_eq!(num(t, "calls"), num(t, "llm_spans"), "{t:?}");
    assert!(close(num(t, "cost"), num(t, "metric_cost")), "{t:?}");
    assert_eq!(num(t, "input"), num(t, "metric_input"), "{t:?}");
    assert_eq!(num(t, "parse_errors"), 0.0, "{t:?}");
    assert_eq!(num(t, "dead"), 0.0, "{t:?}");
}

#[test]
fn generated_files_decode_and_every_signal_agrees() {
    let tmp = tempfile::tempdir().unwrap();
    for (format, temporality) in [("proto", "delta"), ("json", "cumulative")] {
        let (input, data) = (
            tmp.path().join(format!("{format}-in")),
            tmp.path().join(format!("{format}-data")),
        );
        generate(&[
            "--out",
            input.to_str().unwrap(),
            "--format",
            format,
            "--temporality",
            temporality,
        ]);
        let run = run_files(&input, &data);
        assert!(run.status.success(), "{}", stderr(&run));
        assert_consistent(&totals(&data));
    }
    let (a, b) = (
        totals(&tmp.path().join("proto-data")),
        totals(&tmp.path().join("json-data")),
    );
    assert_eq!(a, b, "the encoding and the temporality change nothing");
}

#[test]
fn the_same_workload_through_the_receiver_and_kafka_has_the_same_totals() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, by_files) = (tmp.path().join("in"), tmp.path().join("files"));
    generate(&["--out", input.to_str().unwrap()]);
    assert!(run_files(&input, &by_files).status.success());
    let expected = totals(&by_files);
    assert_consistent(&expected);

    // The OTLP receiver, as a laptop's Claude Code would reach it.
    let by_receiver = tmp.path().join("receiver");
    let (http, grpc, health) = (free_port(), free_port(), free_port());
    let addr = |port: u16| format!("127.0.0.1:{port}");
    let receiver = spawn_burnrate(
        &[
            "run",
            "--output",
            by_receiver.to_str().unwrap(),
            "--http-listen",
            &addr(http),
            "--grpc-listen",
            &addr(grpc),
            "--health-listen",
            &addr(health),
        ],
        &[],
    );
    wait_for_port(http, "the receiver");
    generate(&[
        "--post",
        &format!("http://127.0.0.1:{http}"),
        "--rate",
        "2000",
    ]);
    signal(&receiver, "TERM");
    let stopped = receiver.wait_with_output().unwrap();
    assert!(
        stopped.status.success(),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    assert_eq!(totals(&by_receiver), expected, "receiver vs files");

    // Kafka, as the OpenTelemetry Collector's kafka exporter would fill it.
    let broker = Broker::start();
    broker.create_topics(&["otlp_logs", "otlp_metrics", "otlp_spans"], 2);
    generate(&["--kafka", &broker.address]);
    let by_kafka = tmp.path().join("kafka");
    let out = burnrate(&[
        "run",
        "--source",
        "kafka",
        "--brokers",
        &broker.address,
        "--group",
        "generated",
        "--output",
        by_kafka.to_str().unwrap(),
        "--health-listen",
        &addr(free_port()),
        "--drain",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(totals(&by_kafka), expected, "kafka vs files");
}

#[test]
fn generate_needs_a_destination_and_says_so_in_one_line() {
    let out = burnrate(&["generate", "--days", "1"]);
    assert_eq!(out.status.code(), Some(2));
    let text = stderr(&out);
    assert_eq!(text.trim().lines().count(), 1, "{text}");
    assert!(text.contains("--out"), "{text}");
    let out = burnrate(&["generate", "--out", "/tmp/x", "--rate", "-3"]);
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
}
