//! The OTLP/HTTP receiver under load: 64 concurrent clients, each on a keep-alive connection
//! with a bearer token, posting the real Claude Code exports (logs, metrics and traces;
//! protobuf and JSON; each to its `/v1/...` path) to the release binary with its defaults
//! (`memory_limit` 512 MiB). Reported: requests/s, p50 and p99 latency, the server's peak RSS
//! (`VmHWM`), and the CPU the server and the clients used over the load (they share the
//! machine's cores). Every answer must be 200, and the receiver must count every request.
//!
//! The baseline, in the same run and with the same clients: this bench's own binary serving
//! HTTP/1.1 with axum (as the receiver does) on the same two cores, answering 200 to every post
//! after reading its body, and storing nothing. What the ratio measures is therefore what
//! burnrate adds to a bare HTTP server: the token check, decoding, the write-ahead log and the
//! Parquet flushes. A third server is burnrate again writing plain Parquet, committed to no
//! Delta log (`--no-table-logs`): the logged receiver's ratio to it is what the logs cost.
//!
//! `cargo bench -p burnrate --bench receiver_load` posts 64 × 3,000 requests to each server;
//! under `cargo test` it runs once with 64 × 20 as a smoke test. With
//! `BURNRATE_BENCH_RATE=<requests/s>` the clients post at that rate together instead of as fast
//! as they are answered, so two builds' latencies compare at the same load; each latency is then
//! counted from when its request was due, not sent (a stalled server is not hidden by clients
//! that waited for it).

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{
    cpu_seconds, free_port, sample_exports, spawn_burnrate, wait_for_port, wait_with_peak_rss,
};

const CLIENTS: usize = 64;
const TOKEN: &str = "bench-token-0123456789abcdef";
/// The argument that turns this binary into the baseline server.
const SERVE_BASELINE: &str = "--serve-baseline";

struct Load {
    requests: usize,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Answers other than 200, by status (or transport error).
    failures: Vec<String>,
}

/// One export ready to post: its path, content type and body.
struct Post {
    path: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
}

/// Posts every export in turn from `CLIENTS` threads, `per_client` requests each: as fast as
/// they are answered, or `rate` requests/s together.
fn load(port: u16, posts: &Arc<Vec<Post>>, per_client: usize, rate: Option<f64>) -> Load {
    let started = Instant::now();
    // A client's requests are due every `CLIENTS / rate` seconds, the clients staggered.
    let every = rate.map(|rate| Duration::from_secs_f64(CLIENTS as f64 / rate));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let posts = posts.clone();
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(30)))
                    .build()
                    .into();
                let mut latencies = Vec::with_capacity(per_client);
                let mut failures = Vec::new();
                for i in 0..per_client {
                    let post = &posts[(client * 7 + i) % posts.len()];
                    let sent = match every {
                        Some(every) => {
                            let due =
                                started + every.mul_f64(i as f64 + client as f64 / CLIENTS as f64);
                            std::thread::sleep(due.saturating_duration_since(Instant::now()));
                            due
                        }
                        None => Instant::now(),
                    };
                    let answer = agent
                        .post(&format!("http://127.0.0.1:{port}{}", post.path))
                        .header("Content-Type", post.content_type)
                        .header("Authorization", &format!("Bearer {TOKEN}"))
                        .send(&post.body[..]);
                    latencies.push(sent.elapsed());
                    match answer {
                        Ok(mut response) if response.status() == 200 => {
                            let _ = response.body_mut().read_to_vec();
                        }
                        Ok(mut response) => {
                            let status = response.status();
                            let body = response.body_mut().read_to_string().unwrap_or_default();
                            failures.push(format!("HTTP {status}: {body}"));
                        }
                        Err(error) => failures.push(error.to_string()),
                    }
                }
                (latencies, failures)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    for thread in threads {
        let (l, f) = thread.join().unwrap();
        latencies.extend(l);
        failures.extend(f);
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Load {
        requests: latencies.len(),
        seconds,
        p50_ms: at(0.50).as_secs_f64() * 1e3,
        p99_ms: at(0.99).as_secs_f64() * 1e3,
        failures,
    }
}

/// The baseline server: HTTP/1.1 on two worker threads, 200 and an empty body for every post
/// once its body is read, until SIGTERM.
fn serve_baseline(port: u16) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let app = axum::Router::new().fallback(|body: axum::body::Bytes| async move {
            std::hint::black_box(body.len());
            axum::http::StatusCode::OK
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                term.recv().await;
            })
            .await
            .unwrap();
    });
}

struct Measured {
    load: Load,
    peak_rss: u64,
    /// CPU the server used over the load, in cores (2.0 is both of this machine's).
    server_cpu: f64,
    /// CPU this process's clients used meanwhile, in cores.
    client_cpu: f64,
}

/// Runs `load` against a server child started by `start`, then stops it and reads its peak RSS.
fn measure(
    start: impl FnOnce(u16) -> Child,
    posts: &Arc<Vec<Post>>,
    per_client: usize,
    rate: Option<f64>,
) -> (Measured, String) {
    let port = free_port();
    let child = start(port);
    wait_for_port(port, "server");
    let pid = child.id();
    let waiter = std::thread::spawn(move || wait_with_peak_rss(child));
    let (server_before, client_before) = (cpu_seconds(&pid.to_string()), cpu_seconds("self"));
    let load = load(port, posts, per_client, rate);
    let server_cpu = (cpu_seconds(&pid.to_string()) - server_before) / load.seconds;
    let client_cpu = (cpu_seconds("self") - client_before) / load.seconds;
    // Stopped the way Kubernetes stops a pod: SIGTERM, then a graceful drain.
    let stopped = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(stopped.success(), "kill -TERM {pid}");
    let finished = waiter.join().unwrap();
    assert!(finished.success, "server failed: {}", finished.stderr);
    (
        Measured {
            load,
            peak_rss: finished.peak_rss,
            server_cpu,
            client_cpu,
        },
        finished.stderr,
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(port) = args
        .iter()
        .position(|a| a == SERVE_BASELINE)
        .and_then(|i| args.get(i + 1))
    {
        serve_baseline(port.parse().unwrap());
        return;
    }
    let full = args.iter().any(|a| a == "--bench");
    let per_client = if full { 3_000 } else { 20 };
    let rate: Option<f64> = std::env::var("BURNRATE_BENCH_RATE").ok().map(|rate| {
        rate.parse()
            .expect("BURNRATE_BENCH_RATE: requests a second")
    });

    let posts: Arc<Vec<Post>> = Arc::new(
        sample_exports()
            .into_iter()
            .map(|export| Post {
                path: match export.signal {
                    "logs" => "/v1/logs",
                    "metrics" => "/v1/metrics",
                    _ => "/v1/traces",
                },
                content_type: if export.name.ends_with(".json") {
                    "application/json"
                } else {
                    "application/x-protobuf"
                },
                body: export.bytes,
            })
            .collect(),
    );
    let bytes_per_request =
        posts.iter().map(|p| p.body.len()).sum::<usize>() as f64 / posts.len() as f64;

    let exe = std::env::current_exe().unwrap();
    let (bare, _) = measure(
        |port| {
            Command::new(&exe)
                .args([SERVE_BASELINE, &port.to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        },
        &posts,
        per_client,
        rate,
    );

    let data = tempfile::tempdir().unwrap();
    let tokens = data.path().join("tokens");
    writeln!(std::fs::File::create(&tokens).unwrap(), "{TOKEN} bench").unwrap();
    let receiver = |output: &str, more: &'static [&'static str]| {
        let tokens = tokens.to_str().unwrap().to_string();
        let output = data.path().join(output);
        move |port: u16| {
            let mut args = vec![
                "run".to_string(),
                "--http-listen".into(),
                format!("127.0.0.1:{port}"),
                "--grpc-listen".into(),
                format!("127.0.0.1:{}", free_port()),
                "--health-listen".into(),
                format!("127.0.0.1:{}", free_port()),
                "--auth-tokens".into(),
                tokens,
                "--output".into(),
                output.to_str().unwrap().into(),
            ];
            args.extend(more.iter().map(|a| a.to_string()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            spawn_burnrate(&args, &[])
        }
    };
    // The same receiver writing plain Parquet, committed to no Delta log: what the logs cost.
    // Second, or first with `BURNRATE_BENCH_PLAIN_FIRST=1`: two runs see both orders.
    let plain_first = std::env::var_os("BURNRATE_BENCH_PLAIN_FIRST").is_some_and(|v| v == "1");
    let logged = || measure(receiver("data", &[]), &posts, per_client, rate);
    let plain = || {
        measure(
            receiver("plain", &["--no-table-logs"]),
            &posts,
            per_client,
            rate,
        )
    };
    let ((ours, log), (plain, plain_log)) = if plain_first {
        let plain = plain();
        (logged(), plain)
    } else {
        let ours = logged();
        (ours, plain())
    };
    // Every request was answered 200 and is in the receiver's own count.
    assert!(
        bare.load.failures.is_empty(),
        "baseline: {:?}",
        &bare.load.failures[..bare.load.failures.len().min(5)]
    );
    assert!(
        ours.load.failures.is_empty(),
        "burnrate: {} of {} requests failed: {:?}\nits log ends:\n{}",
        ours.load.failures.len(),
        ours.load.requests,
        &ours.load.failures[..ours.load.failures.len().min(5)],
        tail(&log, 40)
    );
    assert!(
        log.contains(&format!("{} requests (0 rejected)", ours.load.requests)),
        "{log}"
    );
    assert!(
        plain.load.failures.is_empty()
            && plain_log.contains(&format!("{} requests (0 rejected)", plain.load.requests)),
        "without the logs: {:?}\n{}",
        &plain.load.failures[..plain.load.failures.len().min(5)],
        tail(&plain_log, 40)
    );
    assert!(
        !data.path().join("plain/api_requests/_delta_log").exists(),
        "--no-table-logs wrote a log"
    );

    let pace = rate.map_or("as fast as answered".to_string(), |rate| {
        format!("{rate:.0} requests/s together, latency from when each was due")
    });
    println!(
        "receiver_load: {CLIENTS} clients × {per_client} posts of the real exports ({bytes_per_request:.0} bytes on average), bearer token, keep-alive, {pace}"
    );
    for (name, m) in [
        ("bare axum server", &bare),
        ("burnrate receiver", &ours),
        ("... plain Parquet", &plain),
    ] {
        println!(
            "  {name:>18}: {:>8.0} requests/s  p50 {:>6.2} ms  p99 {:>6.2} ms  peak RSS {:>5.0} MiB  CPU {:>4.0}% (clients {:>3.0}%)",
            m.load.requests as f64 / m.load.seconds,
            m.load.p50_ms,
            m.load.p99_ms,
            m.peak_rss as f64 / (1 << 20) as f64,
            m.server_cpu * 100.0,
            m.client_cpu * 100.0
        );
    }
    let rate = |m: &Measured| m.load.requests as f64 / m.load.seconds;
    println!(
        "  ratio: {:.2}x the bare server's requests/s; with the Delta logs {:.3}x the receiver writing plain Parquet",
        rate(&ours) / rate(&bare),
        rate(&ours) / rate(&plain)
    );
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
