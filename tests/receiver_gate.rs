//! The receiver facing a hostile network: bearer tokens (with team binding and reload) over
//! OTLP/HTTP and OTLP/gRPC, TLS and mutual TLS, idle and slowloris connections under a small
//! open-file limit, stalled uploads and a gzip bomb against the memory budget, a disk that
//! fills up, and acknowledgements that do not wait for flushes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::receiver::{Receiver, agent, gzip, numbered_call};
use crate::support::*;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use prost::Message;

const ANY_TOKEN: &str = "tok-any-0123456789abcdef";
const PAYMENTS_TOKEN: &str = "tok-payments-0123456789abcdef";

/// One model call as OTLP/JSON, booked to `team`, with `padding` bytes of attribute.
fn team_call(id: &str, team: &str, padding: usize) -> Vec<u8> {
    padded_call(id, team, &"x".repeat(padding))
}

fn padded_call(id: &str, team: &str, padding: &str) -> Vec<u8> {
    format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"claude-code"}}}},{{"key":"team","value":{{"stringValue":"{team}"}}}}]}},
        "scopeLogs":[{{"scope":{{"name":"com.anthropic.claude_code.events"}},"logRecords":[{{
          "timeUnixNano":"1795536575568000000","body":{{"stringValue":"claude_code.api_request"}},
          "attributes":[
            {{"key":"event.name","value":{{"stringValue":"api_request"}}}},
            {{"key":"session.id","value":{{"stringValue":"gate"}}}},
            {{"key":"request_id","value":{{"stringValue":"{id}"}}}},
            {{"key":"model","value":{{"stringValue":"claude-haiku-4-5"}}}},
            {{"key":"input_tokens","value":{{"intValue":"100"}}}},
            {{"key":"output_tokens","value":{{"intValue":"10"}}}},
            {{"key":"padding","value":{{"stringValue":"{padding}"}}}}
          ]}}]}}]}}]}}"#
    )
    .into_bytes()
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let config = dir.join("burnrate.toml");
    std::fs::write(&config, text).unwrap();
    config
}

pub(crate) fn metric(receiver: &Receiver, name: &str) -> f64 {
    let (_, text) = receiver.get_health("/metrics");
    metric_value(&text, name).unwrap_or(0.0)
}

fn grpc_export(port: u16, token: Option<&str>, body: Vec<u8>) -> Result<(), tonic::Status> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut client = LogsServiceClient::connect(format!("http://127.0.0.1:{port}"))
            .await
            .unwrap();
        let export = ExportLogsServiceRequest::decode(&body[..]).unwrap();
        let mut request = tonic::Request::new(export);
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        client.export(request).await.map(|_| ())
    })
}

/// The same call as OTLP protobuf, for gRPC.
fn team_call_proto(id: &str, team: &str) -> Vec<u8> {
    let json = String::from_utf8(team_call(id, team, 10)).unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let export: ExportLogsServiceRequest = serde_json::from_value(value).unwrap();
    export.encode_to_vec()
}

#[test]
fn only_token_holders_send_and_a_bound_token_books_its_team() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let tokens = tmp.path().join("tokens");
    std::fs::write(
        &tokens,
        format!("# who may send\n{ANY_TOKEN}\n{PAYMENTS_TOKEN} payments\n"),
    )
    .unwrap();
    let config = write_config(tmp.path(), "[receiver]\nflush_interval_ms = 200\n");
    let receiver = Receiver::start_with(
        &data,
        &config,
        &["--auth-tokens", tokens.to_str().unwrap()],
        &[],
    );
    let post = |id: &str, team: &str, auth: Option<String>| {
        let mut headers = vec![("Content-Type", "application/json".to_string())];
        if let Some(auth) = auth {
            headers.push(("Authorization", auth));
        }
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        receiver.post("/v1/logs", &headers, &team_call(id, team, 10))
    };
    let bearer = |token: &str| Some(format!("Bearer {token}"));

    // HTTP: no token, a wrong one, a malformed header: 401, nothing stored.
    let (status, body) = post("http-none", "web", None);
    assert_eq!(status, 401);
    assert!(String::from_utf8_lossy(&body).contains("missing bearer token"));
    assert_eq!(
        post("http-wrong", "web", bearer("tok-wrong-0123456789abcdef")).0,
        401
    );
    assert_eq!(post("http-basic", "web", Some("Basic YTpi".into())).0, 401);
    // The right token: stored as sent. A team-bound token: booked to its team, whatever the
    // export says.
    assert_eq!(post("http-any", "web", bearer(ANY_TOKEN)).0, 200);
    assert_eq!(post("http-bound", "web", bearer(PAYMENTS_TOKEN)).0, 200);

    // gRPC: the same matrix.
    let grpc = receiver.grpc;
    let code = |token: Option<&str>, id: &str| {
        grpc_export(grpc, token, team_call_proto(id, "web"))
            .err()
            .map(|s| s.code())
    };
    assert_eq!(code(None, "grpc-none"), Some(tonic::Code::Unauthenticated));
    assert_eq!(
        code(Some("tok-wrong-0123456789abcdef"), "grpc-wrong"),
        Some(tonic::Code::Unauthenticated)
    );
    assert_eq!(code(Some(ANY_TOKEN), "grpc-any"), None);
    assert_eq!(code(Some(PAYMENTS_TOKEN), "grpc-bound"), None);

    assert_eq!(
        metric(
            &receiver,
            "burnrate_receiver_requests_total{status=\"unauthenticated\"}"
        ),
        5.0
    );
    assert_eq!(
        metric(&receiver, "burnrate_receiver_team_overrides_total"),
        2.0
    );

    // The file changes (a rotated Secret): the old token stops working within seconds (what
    // it sent until then is stored, and left out below).
    std::fs::write(&tokens, format!("{PAYMENTS_TOKEN} payments\n")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while post("http-after-reload", "web", bearer(ANY_TOKEN)).0 != 401 {
        assert!(
            Instant::now() < deadline,
            "the token file was never reloaded"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, log) = receiver.stop();
    assert!(status.success(), "{log}");

    let rows = query(
        &data,
        "SELECT request_id, team FROM api_requests
         WHERE request_id <> 'http-after-reload' ORDER BY request_id",
    );
    let got: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["request_id"].as_str().unwrap().to_string(),
                r["team"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = [
        ("grpc-any", "web"),
        ("grpc-bound", "payments"),
        ("http-any", "web"),
        ("http-bound", "payments"),
    ];
    assert_eq!(
        got,
        want.map(|(a, b)| (a.to_string(), b.to_string())),
        "refused requests stored nothing, bound tokens booked their team"
    );
    let dead = one(&data, "SELECT count(*) AS n FROM dead_letters");
    assert_eq!(num(&dead, "n"), 0.0, "a refusal is not a dead letter");
}

#[test]
fn listening_beyond_loopback_without_authentication_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = burnrate(&[
        "run",
        "--output",
        tmp.path().join("data").to_str().unwrap(),
        "--http-listen",
        &format!("0.0.0.0:{}", free_port()),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("beyond loopback")
            && err.contains("--auth-tokens")
            && err.contains("--insecure"),
        "{err}"
    );
    assert!(!tmp.path().join("data").exists(), "nothing was opened");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made by openssl.
fn certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
    };
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=burnrate test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    for name in ["server", "client"] {
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            &format!("{name}.pem"),
        ]);
    }
    // A client certificate no trusted CA signed.
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=stranger",
        "-keyout",
        "stranger.key",
        "-out",
        "stranger.pem",
    ]);
}

/// curl over TLS: the HTTP status it got, or None when the connection failed.
fn curl(dir: &Path, url: &str, extra: &[&str], body: &Path) -> (Option<u16>, String) {
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "--cacert",
            "ca.pem",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "-w",
            "%{http_code}",
        ])
        .args(extra)
        .args(["--data-binary", &format!("@{}", body.display()), url])
        .current_dir(dir)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = text
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .filter(|c| *c != 0);
    (code, format!("{text}{}", stderr(&out)))
}

#[test]
fn tls_and_mutual_tls_let_in_only_trusted_clients() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    certificates(dir);
    let data = dir.join("data");
    let config = write_config(dir, "[receiver]\nflush_interval_ms = 200\n");
    let receiver = Receiver::start_with(
        &data,
        &config,
        &[
            "--tls-cert",
            dir.join("server.pem").to_str().unwrap(),
            "--tls-key",
            dir.join("server.key").to_str().unwrap(),
            "--tls-client-ca",
            dir.join("ca.pem").to_str().unwrap(),
        ],
        &[],
    );
    let json = dir.join("call.json");
    std::fs::write(&json, team_call("tls-http", "web", 10)).unwrap();
    let url = format!("https://127.0.0.1:{}/v1/logs", receiver.http);
    let json_type = ["-H", "Content-Type: application/json"];
    let with_client = ["--cert", "client.pem", "--key", "client.key"];

    let (code, out) = curl(
        dir,
        &url,
        &[&json_type[..], &with_client[..]].concat(),
        &json,
    );
    assert_eq!(code, Some(200), "{out}");
    let (code, out) = curl(dir, &url, &json_type, &json);
    assert_eq!(code, None, "no client certificate: {out}");
    let stranger = ["--cert", "stranger.pem", "--key", "stranger.key"];
    let (code, out) = curl(dir, &url, &[&json_type[..], &stranger[..]].concat(), &json);
    assert_eq!(code, None, "an untrusted client certificate: {out}");
    // Plain HTTP on the TLS port gets nowhere.
    let plain = agent()
        .post(format!("http://127.0.0.1:{}/v1/logs", receiver.http))
        .header("Content-Type", "application/json")
        .send(&team_call("plain", "web", 10)[..]);
    assert!(plain.is_err() || plain.unwrap().status() != 200);

    // gRPC over TLS (HTTP/2 by ALPN): one framed Export, answered grpc-status 0.
    let message = team_call_proto("tls-grpc", "web");
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    let grpc_body = dir.join("call.grpc");
    std::fs::write(&grpc_body, framed).unwrap();
    let grpc_url = format!(
        "https://127.0.0.1:{}/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        receiver.grpc
    );
    let grpc_headers = [
        "--http2",
        "-H",
        "Content-Type: application/grpc",
        "-H",
        "TE: trailers",
    ];
    let (code, out) = curl(
        dir,
        &grpc_url,
        &[&grpc_headers[..], &with_client[..]].concat(),
        &grpc_body,
    );
    assert_eq!(code, Some(200), "{out}");
    assert!(out.to_ascii_lowercase().contains("grpc-status: 0"), "{out}");
    assert!(out.contains("HTTP/2"), "{out}");

    let (status, log) = receiver.stop();
    assert!(status.success(), "{log}");
    let rows = query(
        &data,
        "SELECT request_id FROM api_requests ORDER BY request_id",
    );
    let ids: Vec<&str> = rows
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["tls-grpc", "tls-http"]);
}

/// 500 connections that hold a socket and send nothing, or trickle their headers, under an
/// open-file limit of 256: a real client is still answered at once, flushes still get their
/// files, and idle connections are closed after the idle timeout.
#[test]
fn idle_and_slowloris_connections_cannot_lock_out_a_client() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = write_config(
        tmp.path(),
        "[receiver]\nflush_interval_ms = 200\nidle_timeout_ms = 3000\nheader_timeout_ms = 10000\n",
    );
    let receiver = Receiver::start_with(&data, &config, &[], &["ulimit -n 256"]);
    let http = receiver.http;
    let mut held = Vec::new();
    for i in 0..500 {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", http)) else {
            continue;
        };
        if i % 2 == 0 {
            // Slowloris: headers started, never finished.
            let _ = stream.write_all(b"POST /v1/logs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
        }
        held.push(stream);
    }
    // A real client, twenty times, while they hang on.
    let mut took = Vec::new();
    for i in 0..20 {
        let started = Instant::now();
        let (status, _) = receiver.post(
            "/v1/logs",
            &[("Content-Type", "application/json")],
            &numbered_call(i),
        );
        took.push(started.elapsed());
        assert_eq!(status, 200, "request {i}");
        // Keep the slow ones trickling.
        for stream in held.iter_mut().step_by(2) {
            let _ = stream.write_all(b"x");
        }
    }
    took.sort();
    let median = took[took.len() / 2];
    eprintln!(
        "a client among 500 idle/slowloris connections: median {median:?}, max {:?}",
        took.last().unwrap()
    );
    assert!(median < Duration::from_millis(100), "{took:?}");
    // Flushes happened meanwhile (every 200 ms), so the sockets left them file descriptors.
    std::thread::sleep(Duration::from_millis(500));
    assert!(receiver.get_health("/readyz").0 == 200);
    assert!(metric(&receiver, "burnrate_segments_written_total") >= 1.0);
    assert!(
        metric(
            &receiver,
            "burnrate_receiver_connections_total{event=\"evicted\"}"
        ) > 0.0
    );
    // Past the idle timeout, every held connection has been closed by the receiver.
    std::thread::sleep(Duration::from_secs(5));
    let mut closed = 0;
    for stream in &mut held {
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 512];
        match stream.read(&mut buf) {
            Ok(0) => closed += 1,
            Ok(_) => closed += 1, // an answer (408) then close
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
            Err(_) => {}
        }
    }
    assert_eq!(closed, held.len(), "idle and slow connections are reaped");
    let (status, log) = receiver.stop();
    assert!(status.success(), "{log}");
    let calls = one(
        &data,
        "SELECT count(DISTINCT request_id) AS n FROM api_requests",
    );
    assert_eq!(num(&calls, "n"), 20.0);
}

/// Peak RSS of a running process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

/// 100 uploads of 30 MiB that stall before their end, and a gzip bomb, against a 512 MiB
/// memory limit: the bodies past the budget are refused with 503, RSS stays under the limit, and
/// a real client still gets through once they are gone.
#[test]
fn stalled_uploads_and_a_gzip_bomb_stay_under_the_memory_budget() {
    let limit: u64 = 512 << 20;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = write_config(
        tmp.path(),
        "memory_limit = \"512MiB\"\n[receiver]\nflush_interval_ms = 200\nbody_timeout_ms = 15000\n",
    );
    let receiver = Receiver::start(&data, &config);
    let http = receiver.http;
    let upload = 30usize << 20;
    let refused = std::sync::atomic::AtomicUsize::new(0);
    let streams = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..100 {
            scope.spawn(|| {
                let mut stream = TcpStream::connect(("127.0.0.1", http)).unwrap();
                // Cut off by the receiver, a write blocks until this says so.
                stream.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
                let head = format!(
                    "POST /v1/logs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\nContent-Length: {upload}\r\n\r\n"
                );
                stream.write_all(head.as_bytes()).unwrap();
                let chunk = vec![b'x'; 1 << 20];
                // All but the last MiB, then stall.
                for _ in 0..29 {
                    if stream.write_all(&chunk).is_err() {
                        refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        return;
                    }
                }
                streams.lock().unwrap().push(stream);
            });
        }
        // A gzip bomb: 256 MiB of zeros in a few hundred KB.
        scope.spawn(|| {
            let bomb = gzip(&vec![0u8; 1 << 28]);
            let status = match agent()
                .post(format!("http://127.0.0.1:{http}/v1/logs"))
                .header("Content-Type", "application/x-protobuf")
                .header("Content-Encoding", "gzip")
                .send(&bomb[..])
            {
                Ok(response) => response.status().as_u16(),
                Err(_) => 0,
            };
            assert!(matches!(status, 413 | 503 | 0), "{status}");
        });
    });
    let peak = peak_rss(receiver.child.id());
    eprintln!(
        "100 stalled 30 MiB uploads + a gzip bomb: peak RSS {} MiB (limit {} MiB), {} uploads cut off",
        peak >> 20,
        limit >> 20,
        refused.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(
        peak < limit + limit / 10,
        "peak RSS {peak} over the memory limit"
    );
    assert!(
        metric(
            &receiver,
            "burnrate_receiver_requests_total{status=\"over_budget\"}"
        ) > 0.0
    );
    // The stalled uploads give up (or time out); a real client is answered.
    drop(streams);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = receiver.post(
            "/v1/logs",
            &[("Content-Type", "application/json")],
            &numbered_call(1),
        );
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(Instant::now() < deadline, "the budget was never given back");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, log) = receiver.stop();
    assert!(status.success(), "{log}");
}

/// A file system of 16 MiB, mostly taken by another file: the receiver fills the rest up to its
/// reserve (kept for segments and checkpoints), answers
/// 503 and stays up saying why; once the other file is deleted it resumes by itself, and every
/// request it acknowledged is stored exactly once.
#[test]
fn a_full_disk_answers_503_stays_up_and_resumes_when_space_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let mount = tmp.path().join("small");
    std::fs::create_dir_all(&mount).unwrap();
    let mounted = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=16m",
            "tmpfs",
            mount.to_str().unwrap(),
        ])
        .status()
        .expect("mount runs");
    assert!(mounted.success(), "this test needs to mount a tmpfs (root)");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(mount.clone());
    let ballast = mount.join("ballast");
    std::fs::write(&ballast, vec![1u8; 9 << 20]).unwrap();
    let data = mount.join("data");
    let config = write_config(
        tmp.path(),
        "[receiver]\nflush_interval_ms = 300\ndisk_reserve_bytes = 2097152\n",
    );
    let mut receiver = Receiver::start(&data, &config);
    let post = |i: usize| {
        receiver
            .post(
                "/v1/logs",
                &[("Content-Type", "application/json")],
                &team_call(&format!("disk-{i}"), "web", 64 << 10),
            )
            .0
    };
    let mut answers: Vec<(usize, u16)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    // Until the disk is what refuses: a 503 can also say the flusher is behind, for a moment.
    let disk_full = || {
        let (ready, reason) = receiver.get_health("/readyz");
        ready == 503 && reason.contains("cannot write to disk")
    };
    while answers.iter().filter(|(_, s)| *s == 503).count() < 20 || !disk_full() {
        answers.push((i, post(i)));
        i += 1;
        assert!(
            Instant::now() < deadline,
            "the disk never filled: {i} requests"
        );
    }
    assert!(
        answers.iter().all(|(_, s)| *s == 200 || *s == 503),
        "{answers:?}"
    );
    let (ready, reason) = receiver.get_health("/readyz");
    assert_eq!(ready, 503, "{reason}");
    assert!(reason.contains("cannot write to disk"), "{reason}");
    assert!(receiver.child.id() > 0);
    // Space returns; the clients retry what was refused.
    std::fs::remove_file(&ballast).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    for (i, status) in &answers {
        let mut status = *status;
        while status != 200 {
            assert!(Instant::now() < deadline, "disk-{i} never stored");
            std::thread::sleep(Duration::from_millis(100));
            status = post(*i);
        }
    }
    receiver.wait_ready("never ready again");
    let (status, log) = receiver.stop();
    assert!(status.success(), "{log}");
    let calls = one(
        &data,
        "SELECT count(*) AS n, count(DISTINCT request_id) AS d FROM api_requests",
    );
    assert_eq!(num(&calls, "d"), answers.len() as f64, "{calls:?}");
    assert_eq!(
        num(&calls, "n"),
        answers.len() as f64,
        "stored twice: {calls:?}"
    );
}

/// Flushes run on their own thread: requests keep being acknowledged while a flush cannot
/// finish. The bucket the dataset mirrors to stops answering (its server stopped with SIGSTOP)
/// while a segment is being put there; every request sent meanwhile must be answered, with the
/// flush still unfinished at the last answer. Before the flusher thread, every request waited
/// for the flush in progress. (Until 2026-12-04 this test timed answers against local flushes
/// of 250 ms, and a busy CI machine delayed two answers by as much: a race, not a proof.)
#[test]
fn acknowledgements_do_not_wait_for_flushes() {
    let s3 = crate::support::s3::S3Server::start();
    s3.create_bucket("lake");
    let env = s3.env();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = write_config(
        tmp.path(),
        "[object_store]\nurl = \"s3://lake/data\"\n\n[receiver]\nflush_interval_ms = 300\n",
    );
    let receiver = Receiver::start_in(&data, &config, &[], &[], &pairs(&env));
    let json = [("Content-Type", "application/json")];
    assert_eq!(receiver.post("/v1/logs", &json, &numbered_call(0)).0, 200);
    s3.pause();
    // The first segment's files are written on the local disk, each put to the bucket as it
    // is, where the first puts hang (which of its tables' files come first is the encoders').
    let deadline = Instant::now() + Duration::from_secs(30);
    let segment_file = |f: &String| f.ends_with(".parquet") && !f.contains("_delta_log");
    while !(data.is_dir() && walk(&data).iter().any(segment_file)) {
        assert!(
            Instant::now() < deadline,
            "the first segment was never written"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    const SENT_DURING_FLUSH: usize = 40;
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let mut slowest = Duration::ZERO;
    let resumed_by_watchdog = std::thread::scope(|scope| {
        // A receiver that waits for flushes would hang the requests below for good; the
        // bucket comes back after a minute so that it fails the assertions instead.
        let s3 = &s3;
        let watchdog = scope.spawn(move || {
            let late = finished.recv_timeout(Duration::from_secs(60)).is_err();
            if late {
                s3.resume();
            }
            late
        });
        for i in 1..=SENT_DURING_FLUSH {
            let started = Instant::now();
            let (status, body) = receiver.post("/v1/logs", &json, &numbered_call(i));
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            slowest = slowest.max(started.elapsed());
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = done.send(());
        watchdog.join().unwrap()
    });
    let flushes_meanwhile = metric(&receiver, "burnrate_sink_flush_seconds_count");
    eprintln!(
        "{SENT_DURING_FLUSH} requests answered (slowest {slowest:?}), {flushes_meanwhile} flushes finished, the watchdog resumed the bucket: {resumed_by_watchdog}"
    );
    assert!(
        !resumed_by_watchdog,
        "the requests were answered only after the bucket came back (slowest {slowest:?})"
    );
    assert_eq!(
        flushes_meanwhile, 0.0,
        "the first flush finished with the bucket stopped"
    );
    s3.resume();
    let (status, log) = receiver.stop();
    assert!(status.success(), "{log}");
    // Everything acknowledged is in the bucket once, the hung segment included.
    let calls = one_with_env(
        "s3://lake/data",
        "SELECT count(*) AS n, count(DISTINCT request_id) AS d FROM api_requests",
        &pairs(&env),
    );
    assert_eq!(
        num(&calls, "n"),
        (SENT_DURING_FLUSH + 1) as f64,
        "{calls:?}"
    );
    assert_eq!(
        num(&calls, "d"),
        (SENT_DURING_FLUSH + 1) as f64,
        "{calls:?}"
    );
}
