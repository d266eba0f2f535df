//! Real Claude Code (the npm package's binary, `BURNRATE_CLAUDE_CODE`) exporting to the receiver
//! with a bearer token, against a stand-in for the Messages API on loopback: its telemetry is
//! what production sends. A token bound to a team books the run to that team; a wrong token
//! stores nothing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::receiver::Receiver;
use crate::receiver_gate::metric;
use crate::support::*;

const TOKEN: &str = "tok-claude-code-0123456789";

fn claude_code() -> PathBuf {
    let path = std::env::var_os("BURNRATE_CLAUDE_CODE")
        .map(PathBuf::from)
        .expect("BURNRATE_CLAUDE_CODE: the claude binary (scripts/test.sh installs it from npm)");
    assert!(path.is_file(), "no Claude Code at {}", path.display());
    path
}

/// The stand-in Messages API, answering every call with a short reply.
struct MessagesApi {
    child: std::process::Child,
    port: u16,
}

impl MessagesApi {
    fn start() -> MessagesApi {
        let port = free_port();
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/support/messages_api.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        MessagesApi { child, port }
    }
}

impl Drop for MessagesApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `claude -p` run exporting OTLP/HTTP protobuf to `receiver` with `token`.
fn run_claude(api: &MessagesApi, receiver: &Receiver, home: &Path, token: &str) {
    std::fs::create_dir_all(home).unwrap();
    let out = Command::new(claude_code())
        .args(["-p", "say hi", "--allowedTools", "Read"])
        .current_dir(home)
        .env("HOME", home)
        .env(
            "ANTHROPIC_BASE_URL",
            format!("http://127.0.0.1:{}", api.port),
        )
        .env("ANTHROPIC_API_KEY", "sk-ant-stand-in")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("CLAUDE_CODE_ENABLE_TELEMETRY", "1")
        .env("OTEL_METRICS_EXPORTER", "otlp")
        .env("OTEL_LOGS_EXPORTER", "otlp")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{}", receiver.http),
        )
        .env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("Authorization=Bearer {token}"),
        )
        .env("OTEL_METRIC_EXPORT_INTERVAL", "1000")
        .env("OTEL_LOGS_EXPORT_INTERVAL", "1000")
        .env("OTEL_RESOURCE_ATTRIBUTES", "team=web")
        .output()
        .expect("claude runs");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Hello from the stand-in"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn claude_code_sends_with_its_token_and_is_booked_to_the_bound_team() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let tokens = tmp.path().join("tokens");
    std::fs::write(&tokens, format!("{TOKEN} platform\n")).unwrap();
    let config = tmp.path().join("burnrate.toml");
    std::fs::write(&config, "[receiver]\nflush_interval_ms = 500\n").unwrap();
    let receiver = Receiver::start_with(
        &data,
        &config,
        &["--auth-tokens", tokens.to_str().unwrap()],
        &[],
    );
    let api = MessagesApi::start();

    run_claude(&api, &receiver, &tmp.path().join("home-right"), TOKEN);
    run_claude(
        &api,
        &receiver,
        &tmp.path().join("home-wrong"),
        "tok-not-a-known-token-000",
    );
    assert!(
        metric(
            &receiver,
            "burnrate_receiver_requests_total{status=\"accepted\"}"
        ) >= 1.0
    );
    assert!(
        metric(
            &receiver,
            "burnrate_receiver_requests_total{status=\"unauthenticated\"}"
        ) >= 1.0,
        "the wrong token's exports were refused"
    );
    let (status, log) = receiver.stop();
    assert!(status.success(), "{log}");

    // One model call from the run with the right token, booked to the token's team over the
    // `team=web` its resource attributes said; nothing from the run with the wrong one.
    let calls = query(&data, "SELECT team, input_tokens FROM api_requests");
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["team"], "platform");
    assert_eq!(num(&calls[0], "input_tokens"), 120.0);
    let teams = query(&data, "SELECT DISTINCT team FROM usage_metrics");
    assert_eq!(teams.len(), 1, "{teams:?}");
    assert_eq!(teams[0]["team"], "platform");
}
