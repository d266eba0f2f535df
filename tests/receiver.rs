//! The embedded OTLP receiver end to end: the real Claude Code samples sent the way Claude Code
//! sends them (OTLP/HTTP protobuf and JSON, gzip or not, and OTLP/gRPC) land with the same
//! totals as the files and Kafka paths; protocol errors get the OTLP answers; a SIGKILL after
//! the 200s loses nothing.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::support::*;
use burnrate_otlp_proto::collector::logs::v1::ExportLogsServiceRequest;
use burnrate_otlp_proto::collector::logs::v1::logs_service_client::LogsServiceClient;
use burnrate_otlp_proto::collector::metrics::v1::ExportMetricsServiceRequest;
use burnrate_otlp_proto::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use burnrate_otlp_proto::collector::trace::v1::ExportTraceServiceRequest;
use burnrate_otlp_proto::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic as burnrate_otlp_proto;
use prost::Message;
use tonic::codec::CompressionEncoding;

pub(crate) struct Receiver {
    pub(crate) child: Child,
    pub(crate) http: u16,
    pub(crate) grpc: u16,
    pub(crate) health: u16,
}

impl Receiver {
    pub(crate) fn start(data: &Path, config: &Path) -> Receiver {
        Self::start_with(data, config, &[], &[])
    }

    /// A receiver with more flags, run under `shell_limits` (`ulimit` commands) when given.
    pub(crate) fn start_with(
        data: &Path,
        config: &Path,
        flags: &[&str],
        shell_limits: &[&str],
    ) -> Receiver {
        Self::start_in(data, config, flags, shell_limits, &[])
    }

    /// The same, with more environment (`env`).
    pub(crate) fn start_in(
        data: &Path,
        config: &Path,
        flags: &[&str],
        shell_limits: &[&str],
        env: &[(&str, &str)],
    ) -> Receiver {
        // A port found free can be taken before the receiver binds it (by a connection another
        // test opens, say): the receiver then exits, and starts again on other ports.
        let mut attempt = 1;
        loop {
            match Self::spawn(data, config, flags, shell_limits, env) {
                Ok(receiver) => return receiver,
                Err(reason) if attempt < 3 && reason.contains("Address already in use") => {
                    eprintln!("the receiver's ports were taken, starting it again: {reason}");
                    attempt += 1;
                }
                Err(reason) => panic!("the receiver never became ready: {reason}"),
            }
        }
    }

    /// One start on ports found free: the receiver once ready, or why it is not.
    fn spawn(
        data: &Path,
        config: &Path,
        flags: &[&str],
        shell_limits: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Receiver, String> {
        let (http, grpc, health) = (free_port(), free_port(), free_port());
        let addr = |port: u16| format!("127.0.0.1:{port}");
        let mut args = vec![
            "run".to_string(),
            "--output".into(),
            data.to_str().unwrap().into(),
            "--config".into(),
            config.to_str().unwrap().into(),
            "--http-listen".into(),
            addr(http),
            "--grpc-listen".into(),
            addr(grpc),
            "--health-listen".into(),
            addr(health),
        ];
        args.extend(flags.iter().map(|f| f.to_string()));
        let child = if shell_limits.is_empty() {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            spawn_burnrate(&args, env)
        } else {
            std::process::Command::new("bash")
                .arg("-c")
                .arg(format!("{}; exec \"$0\" \"$@\"", shell_limits.join("; ")))
                .arg(burnrate_bin())
                .args(&args)
                .env_remove("BURNRATE_CONFIG")
                .envs(env.iter().copied())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let mut receiver = Receiver {
            child,
            http,
            grpc,
            health,
        };
        receiver.ready().map(|()| receiver)
    }

    /// Waits up to 30 s for `/readyz` to answer 200; if it does not, why: the receiver exited
    /// (its status and what it wrote to stderr), or the time ran out.
    fn ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.get_health("/readyz").0 != 200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                return Err(format!("it exited ({status}): {stderr}"));
            }
            if Instant::now() >= deadline {
                return Err("/readyz did not answer 200 within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Waits up to 30 s for `/readyz` to answer 200, failing with `why` and the reason after.
    pub(crate) fn wait_ready(&mut self, why: &str) {
        if let Err(reason) = self.ready() {
            panic!("{why}: {reason}");
        }
    }

    pub(crate) fn get_health(&self, path: &str) -> (u16, String) {
        match agent()
            .get(format!("http://127.0.0.1:{}{path}", self.health))
            .call()
        {
            Ok(mut response) => (
                response.status().as_u16(),
                response.body_mut().read_to_string().unwrap_or_default(),
            ),
            Err(_) => (0, String::new()),
        }
    }

    pub(crate) fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Vec<u8>) {
        let mut request = agent().post(format!("http://127.0.0.1:{}{path}", self.http));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut response = request.send(body).unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_vec().unwrap())
    }

    /// SIGTERM, and the exit status once it has flushed.
    pub(crate) fn stop(mut self) -> (std::process::ExitStatus, String) {
        signal(&self.child, "TERM");
        let out = std::mem::replace(
            &mut self.child,
            std::process::Command::new("true").spawn().unwrap(),
        )
        .wait_with_output()
        .unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A receiver writing `dir/data` (returned with it) that flushes every 200 ms.
fn flushing_often(dir: &Path) -> (std::path::PathBuf, Receiver) {
    let (data, config) = (dir.join("data"), dir.join("burnrate.toml"));
    std::fs::write(&config, "[receiver]\nflush_interval_ms = 200\n").unwrap();
    let receiver = Receiver::start(&data, &config);
    (data, receiver)
}

fn small_limits(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("burnrate.toml");
    std::fs::write(&config, "[receiver]\nmax_body_bytes = 1048576\n").unwrap();
    config
}

/// Sends every sample the way Claude Code's exporters could: r01 as OTLP/HTTP protobuf, r04 as
/// gzipped OTLP/HTTP protobuf, r03 as OTLP/JSON, r12 as gzipped OTLP/JSON, r31 over gRPC with
/// gzip. Every request is answered 200 / OK.
fn send_samples(receiver: &Receiver) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for export in sample_exports() {
        let path = format!("/v1/{}", export.signal);
        let (content_type, body, gzipped) = match export.run.as_str() {
            "r01" => ("application/x-protobuf", export.bytes.clone(), false),
            "r04" => ("application/x-protobuf", gzip(&export.bytes), true),
            "r03" => ("application/json", export.bytes.clone(), false),
            "r12" => ("application/json", gzip(&export.bytes), true),
            _ => {
                runtime.block_on(send_grpc(receiver.grpc, &export));
                continue;
            }
        };
        let mut headers = vec![("Content-Type", content_type)];
        if gzipped {
            headers.push(("Content-Encoding", "gzip"));
        }
        let (status, response) = receiver.post(&path, &headers, &body);
        assert_eq!(
            status,
            200,
            "{} {}: {}",
            export.run,
            export.name,
            String::from_utf8_lossy(&response)
        );
        if content_type == "application/json" {
            assert_eq!(response, b"{}");
        }
    }
}

async fn send_grpc(port: u16, export: &SampleExport) {
    let endpoint = format!("http://127.0.0.1:{port}");
    let bytes = export.bytes.as_slice();
    match export.signal {
        "logs" => {
            let mut client = LogsServiceClient::connect(endpoint)
                .await
                .unwrap()
                .send_compressed(CompressionEncoding::Gzip);
            let response = client
                .export(ExportLogsServiceRequest::decode(bytes).unwrap())
                .await
                .unwrap();
            assert!(response.into_inner().partial_success.is_none());
        }
        "metrics" => {
            let mut client = MetricsServiceClient::connect(endpoint)
                .await
                .unwrap()
                .send_compressed(CompressionEncoding::Gzip);
            client
                .export(ExportMetricsServiceRequest::decode(bytes).unwrap())
                .await
                .unwrap();
        }
        _ => {
            let mut client = TraceServiceClient::connect(endpoint)
                .await
                .unwrap()
                .send_compressed(CompressionEncoding::Gzip);
            client
                .export(ExportTraceServiceRequest::decode(bytes).unwrap())
                .await
                .unwrap();
        }
    }
}

/// `google.rpc.Status` as OTLP/HTTP failures carry it.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

#[test]
fn http_and_grpc_requests_land_with_the_sample_totals() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let receiver = Receiver::start(&data, &small_limits(tmp.path()));
    assert_eq!(receiver.get_health("/healthz").0, 200);
    send_samples(&receiver);

    // What the OTLP specification asks of a server that cannot take a request.
    let logs = std::fs::read(samples().join("r01/0000-logs.pb")).unwrap();
    let (status, _) = receiver.post("/v1/logs", &[("Content-Type", "text/plain")], &logs);
    assert_eq!(status, 415, "unknown content type");
    let (status, _) = receiver.post(
        "/v1/logs",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "br"),
        ],
        &logs,
    );
    assert_eq!(status, 415, "unknown content encoding");
    let (status, body) = receiver.post(
        "/v1/logs",
        &[("Content-Type", "application/x-protobuf")],
        b"\xff\xff\xff garbage",
    );
    assert_eq!(status, 400);
    let failure = RpcStatus::decode(body.as_slice()).unwrap();
    assert_eq!(failure.code, 3, "INVALID_ARGUMENT");
    assert!(failure.message.contains("protobuf"), "{failure:?}");
    let (status, _) = receiver.post(
        "/v1/logs",
        &[("Content-Type", "application/x-protobuf")],
        &vec![0u8; 2 << 20],
    );
    assert_eq!(status, 413, "over max_body_bytes");
    // gzip that inflates past the limit is refused as too large, not decoded.
    let bomb = gzip(&vec![b' '; 4 << 20]);
    assert!(bomb.len() < 1 << 20);
    let (status, _) = receiver.post(
        "/v1/logs",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        &bomb,
    );
    assert_eq!(status, 413, "inflates over the limit");
    assert_eq!(
        receiver
            .post(
                "/v1/nothing",
                &[("Content-Type", "application/json")],
                b"{}"
            )
            .0,
        404
    );

    let exports = sample_exports().len();
    let (_, metrics) = receiver.get_health("/metrics");
    assert!(
        metrics.contains(&format!(
            "burnrate_receiver_requests_total{{status=\"accepted\"}} {exports}"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("burnrate_receiver_requests_total{status=\"rejected\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("burnrate_receiver_requests_total{status=\"too_large\"} 2"),
        "{metrics}"
    );
    // The captures' two cumulative runs (r04, r12), ten series each: each one's last point is
    // kept for the next.
    assert!(metrics.contains("burnrate_delta_series 20\n"), "{metrics}");
    assert!(metrics.contains("burnrate_ready 1"), "{metrics}");

    let (status, log) = receiver.stop();
    assert!(
        status.success(),
        "SIGTERM exits 0 after flushing: {status:?} {log}"
    );
    // Every export, the undecodable one and the one that inflates too far reached the writer.
    assert!(
        log.contains(&format!("{} requests (2 rejected)", exports + 2)),
        "{log}"
    );
    assert_sample_totals(&data, 1.0);
    assert_metric_cost(&data, 1.0);
    assert_eq!(
        num(&one(&data, "SELECT count(*) AS n FROM spans"), "n"),
        58.0
    );
    // The two bodies answered 400 and 413 after decoding are kept, bytes and reason.
    let dead = query(
        &data,
        "SELECT origin, error FROM dead_letters ORDER BY error",
    );
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(
        dead[0]["error"].as_str().unwrap().contains("protobuf"),
        "{dead:?}"
    );
    assert!(
        dead[1]["error"]
            .as_str()
            .unwrap()
            .contains("over the 1048576-byte limit"),
        "{dead:?}"
    );
    for letter in &dead {
        assert!(
            letter["origin"]
                .as_str()
                .unwrap()
                .starts_with("receiver/logs/"),
            "{dead:?}"
        );
    }
    assert!(
        walk(&data.join("_burnrate/receiver")).is_empty(),
        "logs are gone after a clean stop"
    );
}

/// Both releases' captures, each priced per model: 2.1.197 the way `send_samples` sends it,
/// 2.1.332's r01 (claude-opus-5-5, protobuf) over gRPC with gzip and r03 (JSON) over OTLP/HTTP.
#[test]
fn both_releases_over_http_and_grpc_cost_exactly_per_model() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let receiver = Receiver::start(&data, &small_limits(tmp.path()));
    send_samples(&receiver);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for export in sample_exports_2_1_332() {
        if export.is_json() {
            let path = format!("/v1/{}", export.signal);
            let headers = [("Content-Type", "application/json")];
            let (status, body) = receiver.post(&path, &headers, &export.bytes);
            assert_eq!(
                status,
                200,
                "{}: {}",
                export.name,
                String::from_utf8_lossy(&body)
            );
        } else {
            runtime.block_on(send_grpc(receiver.grpc, &export));
        }
    }
    // The gRPC clients' runtime is still alive, so their connections stay open and idle: the
    // receiver closes them after its drain period instead of holding its shutdown on them.
    let stopping = Instant::now();
    let (status, log) = receiver.stop();
    assert!(status.success(), "{log}");
    assert!(stopping.elapsed() < Duration::from_secs(15), "{log}");
    drop(runtime);
    assert_cost_by_model(&data, &cost_by_model_of_both_releases(), 1.0);
    assert_report_cost(&data, DAY_2_1_197, &COST_BY_MODEL_2_1_197, 1.0);
    assert_report_cost(&data, DAY_2_1_332, &COST_BY_MODEL_2_1_332, 1.0);
    let ttft = one(
        &data,
        "SELECT count(ttft_ms) AS n FROM api_requests WHERE model = 'claude-opus-5-5' \
         OR time >= TIMESTAMP '2026-11-30T00:00:00Z'",
    );
    assert_eq!(num(&ttft, "n"), 8.0);
}

/// A report of a day still going on: the receiver has flushed the calls, but no window has
/// closed (nothing newer has arrived to move the watermark). Latency and time to first token
/// come from the calls themselves, never a dash.
#[test]
fn a_live_day_reports_latency_before_its_windows_close() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, receiver) = flushing_often(tmp.path());
    for export in sample_exports_2_1_332() {
        let content_type = if export.is_json() {
            "application/json"
        } else {
            "application/x-protobuf"
        };
        let path = format!("/v1/{}", export.signal);
        let (status, _) = receiver.post(&path, &[("Content-Type", content_type)], &export.bytes);
        assert_eq!(status, 200, "{}", export.name);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !data.join("api_requests").is_dir()
        || num(&one(&data, "SELECT count(*) AS n FROM api_requests"), "n") < 8.0
    {
        assert!(Instant::now() < deadline, "the calls were never flushed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let windows = one(
        &data,
        "SELECT coalesce(sum(requests), 0) AS n FROM usage_windows",
    );
    assert!(
        num(&windows, "n") < 8.0,
        "the windows are still open: {windows:?}"
    );
    let report = report_json(&data, DAY_2_1_332, &[]);
    let h = &report["headline"];
    assert_eq!(h["requests"], 8, "{h}");
    let exact = one(
        &data,
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS p50, \
         percentile_cont(0.95) WITHIN GROUP (ORDER BY ttft_ms) AS ttft_p95 FROM api_requests",
    );
    assert!(
        close(h["latency_p50_ms"].as_f64().unwrap(), num(&exact, "p50")),
        "{h}"
    );
    assert!(
        close(h["ttft_p95_ms"].as_f64().unwrap(), num(&exact, "ttft_p95")),
        "{h}"
    );
    for model in report["latency_by_model"].as_array().unwrap() {
        assert!(model["duration_p50_ms"].as_f64().is_some(), "{model}");
    }
    let (status, log) = receiver.stop();
    assert!(status.success(), "{log}");
}

/// Metrics in OTLP/JSON posted to /v1/logs: JSON ignores keys it does not know, so this used to
/// read as an empty logs export, answered 200 with the data dropped. It is a 400, kept as a dead
/// letter, as the same mix-up in protobuf is.
#[test]
fn otlp_json_of_another_signal_is_refused_and_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let receiver = Receiver::start(&data, &small_limits(tmp.path()));
    let metrics = std::fs::read(samples().join("r03/0002-metrics.json")).unwrap();
    let (status, body) = receiver.post(
        "/v1/logs",
        &[("Content-Type", "application/json")],
        &metrics,
    );
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    // The right path still takes it.
    let (status, _) = receiver.post(
        "/v1/metrics",
        &[("Content-Type", "application/json")],
        &metrics,
    );
    assert_eq!(status, 200);
    let (status, log) = receiver.stop();
    assert!(status.success(), "{log}");
    let dead = one(&data, "SELECT origin, error FROM dead_letters");
    assert!(
        dead["error"]
            .as_str()
            .unwrap()
            .contains("OTLP/JSON metrics export"),
        "{dead:?}"
    );
    assert!(
        dead["origin"]
            .as_str()
            .unwrap()
            .starts_with("receiver/logs/")
    );
}

/// What a broken or hostile gRPC client sends gets the OTLP answers, the same as over HTTP:
/// a body that is not an export of the service's signal is INVALID_ARGUMENT (not retried), kept
/// in `dead_letters` and counted; one over `max_body_bytes` is RESOURCE_EXHAUSTED, not the
/// OUT_OF_RANGE clients would retry forever.
#[test]
fn grpc_bodies_that_are_not_exports_are_refused_kept_and_counted() {
    use crate::support::grpc::export_raw;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let receiver = Receiver::start(&data, &small_limits(tmp.path()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let logs = std::fs::read(samples().join("r01/0000-logs.pb")).unwrap();
    let traces = std::fs::read(samples().join("r01/0001-traces.pb")).unwrap();
    let mut noise = vec![0u8; 4096];
    let mut x: u32 = 0x2545_f491;
    for b in &mut noise {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let broken = [
        ("truncated", logs[..logs.len() / 2].to_vec()),
        ("random bytes", noise),
        ("traces sent to the logs service", traces),
    ];
    for (what, body) in &broken {
        let code = runtime.block_on(export_raw(receiver.grpc, "logs", body.clone()));
        assert_eq!(code, tonic::Code::InvalidArgument, "{what}");
    }
    let code = runtime.block_on(export_raw(receiver.grpc, "logs", vec![0u8; 2 << 20]));
    assert_eq!(code, tonic::Code::ResourceExhausted, "over max_body_bytes");
    // A real export still lands.
    let code = runtime.block_on(export_raw(receiver.grpc, "logs", logs.clone()));
    assert_eq!(code, tonic::Code::Ok);

    let (_, metrics) = receiver.get_health("/metrics");
    for counted in [
        "burnrate_receiver_requests_total{status=\"rejected\"} 3",
        "burnrate_receiver_requests_total{status=\"too_large\"} 1",
        "burnrate_receiver_requests_total{status=\"accepted\"} 1",
    ] {
        assert!(metrics.contains(counted), "{counted}:\n{metrics}");
    }
    drop(runtime);
    let (status, log) = receiver.stop();
    assert!(status.success(), "{log}");
    let dead = query(&data, "SELECT origin, size FROM dead_letters ORDER BY size");
    assert_eq!(dead.len(), 3, "{dead:?}");
    assert!(
        dead.iter()
            .all(|d| d["origin"].as_str().unwrap().starts_with("receiver/logs/")),
        "{dead:?}"
    );
    let calls = one(&data, "SELECT count(*) AS n FROM api_requests");
    assert_eq!(
        num(&calls, "n"),
        1.0,
        "r01's first logs export has one model call"
    );
}

/// One model call as OTLP/JSON, told apart by `request_id`, padded to about 2 KB.
pub(crate) fn numbered_call(i: usize) -> Vec<u8> {
    format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"claude-code"}}}}]}},
        "scopeLogs":[{{"scope":{{"name":"com.anthropic.claude_code.events"}},"logRecords":[{{
          "timeUnixNano":"1795536575568000000","body":{{"stringValue":"claude_code.api_request"}},
          "attributes":[
            {{"key":"event.name","value":{{"stringValue":"api_request"}}}},
            {{"key":"session.id","value":{{"stringValue":"group-commit"}}}},
            {{"key":"request_id","value":{{"stringValue":"req-{i}"}}}},
            {{"key":"model","value":{{"stringValue":"claude-haiku-4-5"}}}},
            {{"key":"input_tokens","value":{{"intValue":"100"}}}},
            {{"key":"output_tokens","value":{{"intValue":"10"}}}},
            {{"key":"padding","value":{{"stringValue":"{}"}}}}
          ]}}]}}]}}]}}"#,
        "x".repeat(2000)
    )
    .into_bytes()
}

/// A log write that fails partway through a group commit (the file-size limit reached, as a
/// full disk would) answers the whole group 503, and the receiver stays up. 503 must mean "not
/// stored": the log is cut back to the last acknowledged request, so the retries the 503s ask
/// for store each request once.
#[test]
fn a_group_commit_that_fails_leaves_none_of_its_503s_in_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = tmp.path().join("burnrate.toml");
    std::fs::write(
        &config,
        "[receiver]\nflush_interval_ms = 600000\nflush_bytes = 1073741824\n",
    )
    .unwrap();
    let (http, grpc, health) = (free_port(), free_port(), free_port());
    let addr = |port: u16| format!("127.0.0.1:{port}");
    // 48 KiB per file, and SIGXFSZ ignored so a write past it fails instead of killing.
    let mut limited = std::process::Command::new("bash")
        .args(["-c", "trap '' XFSZ; ulimit -f 48; exec \"$0\" \"$@\""])
        .arg(burnrate_bin())
        .args([
            "run",
            "--output",
            data.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--http-listen",
            &addr(http),
            "--grpc-listen",
            &addr(grpc),
            "--health-listen",
            &addr(health),
        ])
        .env_remove("BURNRATE_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_port(http, "the limited receiver");
    let post = move |i: usize| -> u16 {
        match agent()
            .post(format!("http://127.0.0.1:{http}/v1/logs"))
            .header("Content-Type", "application/json")
            .send(&numbered_call(i)[..])
        {
            Ok(response) => response.status().as_u16(),
            Err(_) => 0,
        }
    };
    let requests = 61;
    // Ten on their own first, each its own group, well under the limit: acknowledged.
    let mut answers: Vec<(usize, u16)> = (0..10).map(|i| (i, post(i))).collect();
    assert!(answers.iter().all(|(_, s)| *s == 200), "{answers:?}");
    // Then the rest at once, in groups that run past the limit partway.
    answers.extend(std::thread::scope(|scope| {
        let sent: Vec<_> = (10..requests)
            .map(|i| scope.spawn(move || (i, post(i))))
            .collect();
        sent.into_iter()
            .map(|s| s.join().unwrap())
            .collect::<Vec<_>>()
    }));
    assert!(
        answers.iter().any(|(_, s)| *s == 503),
        "the limit was never reached: {answers:?}"
    );
    assert!(
        answers.iter().all(|(_, s)| *s == 200 || *s == 503),
        "{answers:?}"
    );
    // The same process takes the retries: the failed log's segment is written and the next
    // log starts empty. Each client retries until it hears 200, as OTLP clients do.
    let deadline = Instant::now() + Duration::from_secs(60);
    for (i, status) in &answers {
        let mut status = *status;
        while status != 200 {
            assert!(Instant::now() < deadline, "req-{i} never stored");
            std::thread::sleep(Duration::from_millis(100));
            status = post(*i);
        }
    }
    assert!(limited.try_wait().unwrap().is_none(), "the receiver exited");
    signal(&limited, "TERM");
    let out = limited.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = one(
        &data,
        "SELECT count(*) AS n, count(DISTINCT request_id) AS distinct_requests FROM api_requests",
    );
    assert_eq!(
        num(&calls, "distinct_requests"),
        requests as f64,
        "{calls:?}"
    );
    assert_eq!(num(&calls, "n"), requests as f64, "stored twice: {calls:?}");
}

/// The flush threshold counts what an export weighs decoded: gzip exports of a few KB that
/// inflate to MiBs used to stay in memory until the flush interval, however many arrived.
#[test]
fn the_flush_threshold_counts_gzip_bodies_inflated() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = tmp.path().join("burnrate.toml");
    std::fs::write(
        &config,
        "[receiver]\nflush_interval_ms = 600000\nflush_bytes = 1048576\nmax_body_bytes = 8388608\n",
    )
    .unwrap();
    let receiver = Receiver::start(&data, &config);
    // 4 MiB of padding in one call's attributes: a few KB once gzipped.
    let mut call = String::from_utf8(numbered_call(0)).unwrap();
    call = call.replace(&"x".repeat(2000), &"x".repeat(4 << 20));
    let body = gzip(call.as_bytes());
    assert!(body.len() < 64 << 10, "{}", body.len());
    let (status, _) = receiver.post(
        "/v1/logs",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        &body,
    );
    assert_eq!(status, 200);
    // Over flush_bytes once inflated: in Parquet long before the ten-minute interval.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !data.join("api_requests").is_dir() {
        assert!(
            Instant::now() < deadline,
            "the inflated export was never flushed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, log) = receiver.stop();
    assert!(status.success(), "{log}");
}

/// Killed with every request answered and nothing flushed: the next start replays the log.
/// A log left behind whose number the positions table holds is in the tables already: the
/// start after deletes it unread.
#[test]
fn a_receiver_killed_after_answering_200_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = small_limits(tmp.path());
    let mut receiver = Receiver::start(&data, &config);
    send_samples(&receiver);
    // Every request was answered 200 and nothing has been flushed to Parquet yet (the flush
    // interval is 10 s): only the write-ahead log holds the data.
    signal(&receiver.child, "KILL");
    let _ = receiver.child.wait();
    drop(receiver);
    let logs = walk(&data.join("_burnrate/receiver"));
    assert!(!logs.is_empty());
    let kept: Vec<(String, Vec<u8>)> = logs
        .iter()
        .map(|log| (log.clone(), std::fs::read(log).unwrap()))
        .collect();

    let receiver = Receiver::start(&data, &config);
    let (status, log) = receiver.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("replayed 1 receiver logs"), "{log}");
    assert_sample_totals(&data, 1.0);
    assert_metric_cost(&data, 1.0);

    // A second restart finds nothing to replay and adds nothing.
    let receiver = Receiver::start(&data, &config);
    let (status, log) = receiver.stop();
    assert!(status.success() && !log.contains("replayed"), "{log}");
    assert_sample_totals(&data, 1.0);

    // The log is back, as a crash after its segment's commit but before its delete leaves it:
    // the positions table holds its number, so the next start deletes it unread, and no file of
    // the dataset is written again.
    let files = |data: &Path| -> Vec<(String, std::time::SystemTime)> {
        let mut files: Vec<_> = walk(data)
            .into_iter()
            .filter(|f| f.ends_with(".parquet") && !f.contains("_burnrate"))
            .map(|f| {
                let modified = std::fs::metadata(&f).unwrap().modified().unwrap();
                (f, modified)
            })
            .collect();
        files.sort();
        files
    };
    let before = files(&data);
    for (log, bytes) in &kept {
        std::fs::write(log, bytes).unwrap();
    }
    let receiver = Receiver::start(&data, &config);
    let (status, log) = receiver.stop();
    assert!(status.success() && !log.contains("replayed"), "{log}");
    assert!(
        log.contains("1 receiver logs an interrupted run left were in the tables already"),
        "{log}"
    );
    assert!(walk(&data.join("_burnrate/receiver")).is_empty());
    assert_eq!(
        files(&data),
        before,
        "a settled log's segment was written again"
    );
    assert_sample_totals(&data, 1.0);
    assert_metric_cost(&data, 1.0);
}

/// The log directory replaced by a file: no log can be written. The receiver stays up, answers
/// 503 with Retry-After, says why on /readyz, and takes requests again once the directory is
/// back; what it acknowledged is all there once.
#[test]
fn a_receiver_whose_log_cannot_be_written_answers_503_says_why_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, mut receiver) = flushing_often(tmp.path());
    let post = |i: usize| {
        receiver.post(
            "/v1/logs",
            &[("Content-Type", "application/json")],
            &numbered_call(i),
        )
    };
    assert_eq!(post(0).0, 200);
    // The log directory vanishes and a file takes its name: the next log cannot be created.
    let wal_dir = data.join("_burnrate/receiver");
    std::fs::remove_dir_all(&wal_dir).unwrap();
    std::fs::write(&wal_dir, b"not a directory").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stored = vec![0];
    let mut i = 1;
    loop {
        let (status, _) = post(i);
        if status == 200 {
            stored.push(i);
        } else {
            assert_eq!(status, 503, "req-{i}");
            break;
        }
        i += 1;
        assert!(Instant::now() < deadline, "every request was still stored");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (ready, reason) = receiver.get_health("/readyz");
    assert_eq!(ready, 503, "{reason}");
    assert!(
        reason.contains("cannot write to disk") && reason.contains("_burnrate/receiver"),
        "{reason}"
    );
    std::fs::remove_file(&wal_dir).unwrap();
    std::fs::create_dir_all(&wal_dir).unwrap();
    // The 503 said "not stored": the client sends it again, and it is stored now.
    let deadline = Instant::now() + Duration::from_secs(30);
    while post(i).0 != 200 {
        assert!(Instant::now() < deadline, "the receiver never resumed");
        std::thread::sleep(Duration::from_millis(100));
    }
    stored.push(i);
    receiver.wait_ready("never ready again");
    let (status, log) = receiver.stop();
    assert!(status.success(), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    let calls = one(
        &data,
        "SELECT count(*) AS n, count(DISTINCT request_id) AS distinct_requests FROM api_requests",
    );
    assert_eq!(num(&calls, "n"), stored.len() as f64, "{calls:?}");
    assert_eq!(num(&calls, "distinct_requests"), stored.len() as f64);
}

#[test]
fn two_receivers_mirroring_to_one_bucket_keep_apart() {
    let s3 = crate::support::s3::S3Server::start();
    s3.create_bucket("lake");
    let env = s3.env();
    let env = pairs(&env);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("burnrate.toml");
    std::fs::write(&config, "[object_store]\nurl = \"s3://lake/data\"\n").unwrap();
    // Each its own disk and log, both starting at the same sequence number.
    let receivers: Vec<Receiver> = ["east", "west"]
        .iter()
        .map(|name| {
            Receiver::start_in(
                &dir.path().join(name),
                &config,
                &["--replica", name],
                &[],
                &env,
            )
        })
        .collect();
    for receiver in &receivers {
        send_samples(receiver);
    }
    for receiver in receivers {
        let (status, stderr) = receiver.stop();
        assert!(status.success(), "{stderr}");
    }
    let keys = s3.keys("lake", "data/api_requests/date=");
    assert!(
        keys.iter().any(|k| k.contains("/receiver-east-")),
        "{keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.contains("/receiver-west-")),
        "{keys:?}"
    );
    // Both receivers' rows, each once, read through the bucket's logs.
    let totals = one_with_env("s3://lake/data", TOTALS_SQL, &env);
    assert_eq!(num(&totals, "requests"), 32.0, "{totals:?}");
    assert_eq!(num(&totals, "errors"), 2.0, "{totals:?}");
    assert!(close(num(&totals, "cost"), 2.0 * TOTAL_COST), "{totals:?}");
    assert_eq!(num(&totals, "input"), 2.0 * TOTAL_INPUT, "{totals:?}");
}

/// Two Claude Code sessions through one receiver, one from a client whose clock runs two hours
/// behind the other's: between its exports it keeps its cumulative series (nothing let go,
/// nothing read back from `metric_points`, where a state going by event time alone would let
/// its nine series go once written and look each up at its next export), and both sessions
/// add up to what they reported.
#[test]
fn a_client_whose_clock_runs_behind_keeps_its_series_between_exports() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, receiver) = flushing_often(tmp.path());
    let exports = sample_exports();
    let clocks = TwoClocks::of(&exports);
    let send = |signal: &str, body: &[u8]| {
        let headers = [("Content-Type", "application/x-protobuf")];
        let (status, response) = receiver.post(&format!("/v1/{signal}"), &headers, body);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&response));
    };
    let flushed = |flushes: f64| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while crate::receiver_gate::metric(&receiver, "burnrate_sink_flush_seconds_count") < flushes
        {
            assert!(Instant::now() < deadline, "flush {flushes} never came");
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    send("metrics", &clocks.behind[0].bytes);
    send("metrics", &clocks.right(0));
    flushed(1.0);
    // Two flushes more: the first exports' points are written, then a flush lets go what is
    // stale and written.
    for flushes in [2.0, 3.0] {
        send("logs", &clocks.filler.bytes);
        flushed(flushes);
    }
    send("metrics", &clocks.behind[1].bytes);
    send("metrics", &clocks.right(1));
    flushed(4.0);
    let forgotten = crate::receiver_gate::metric(&receiver, "burnrate_delta_forgotten_total");
    let read_back = crate::receiver_gate::metric(&receiver, "burnrate_delta_read_back_total");
    let (status, log) = receiver.stop();
    assert!(status.success(), "{log}");
    assert_eq!((forgotten, read_back), (0.0, 0.0), "{log}");
    TwoClocks::assert_totals(&data);
}
