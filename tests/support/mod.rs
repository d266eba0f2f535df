//! What the end-to-end tests share: the samples and their expected totals, running the
//! binary, querying its output, and the real services they start (a Kafka-protocol broker).

#![allow(dead_code)] // each test binary uses its own part of this module

pub mod broker;
pub mod chromium;
pub mod grpc;
pub mod pushgateway;
pub mod s3;
pub mod stream;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

pub fn samples() -> PathBuf {
    std::env::var_os("BURNRATE_SAMPLES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/otlp-samples")
        })
}

/// The Claude Code 2.1.332 captures, beside the 2.1.197 ones.
pub fn samples_2_1_332() -> PathBuf {
    std::env::var_os("BURNRATE_SAMPLES_2_1_332")
        .map(PathBuf::from)
        .unwrap_or_else(|| samples().join("../otlp-samples-2.1.332"))
}

/// Cost per model of every 2.1.197 sample run (shared/otlp-samples/README.md).
pub const COST_BY_MODEL_2_1_197: [(&str, f64); 2] = [
    ("claude-opus-4-8", 0.29192 + 0.215259),
    ("claude-sonnet-4-5", 0.15498105 + 0.13198695),
];
/// Cost per model of the 2.1.332 runs (shared/otlp-samples-2.1.332/README.md).
pub const COST_BY_MODEL_2_1_332: [(&str, f64); 2] = [
    ("claude-opus-5-5", 0.218368),
    ("claude-sonnet-4-5", 0.15498105),
];
/// The day the 2.1.197 and the 2.1.332 samples were captured on.
pub const DAY_2_1_197: &str = "2026-11-24";
pub const DAY_2_1_332: &str = "2026-11-30";

/// `sum(cost_usd)` of `api_requests` per model is each model's reported total (times `copies`)
/// and equals `sum(cost_usd_reported)`; no call lacks a cost.
pub fn assert_cost_by_model(data: &Path, expected: &[(&str, f64)], copies: f64) {
    let rows = query(
        data,
        "SELECT model, sum(cost_usd) AS cost, sum(cost_usd_reported) AS reported,          count(*) FILTER (WHERE cost_usd IS NULL) AS uncosted FROM api_requests          WHERE success GROUP BY model ORDER BY model",
    );
    assert_eq!(rows.len(), expected.len(), "{rows:?}");
    for (model, cost) in expected {
        let row = rows
            .iter()
            .find(|r| r["model"] == *model)
            .unwrap_or_else(|| panic!("no {model} in {rows:?}"));
        assert!(close(num(row, "cost"), cost * copies), "{model}: {row:?}");
        assert!(
            close(num(row, "reported"), cost * copies),
            "{model}: {row:?}"
        );
        assert_eq!(num(row, "uncosted"), 0.0, "{model}: {row:?}");
    }
}

/// `burnrate report daily` of `day` over `data`, with `extra` arguments: what it printed.
pub fn report_daily(data: &Path, day: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "report",
        "daily",
        "--date",
        day,
        "--data",
        data.to_str().unwrap(),
    ];
    args.extend(extra);
    let out = burnrate(&args);
    assert!(out.status.success(), "{extra:?}: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// The daily report of `day` as JSON, with `extra` arguments.
pub fn report_json(data: &Path, day: &str, extra: &[&str]) -> Value {
    let mut args = vec!["--format", "json"];
    args.extend(extra);
    serde_json::from_str(&report_daily(data, day, &args)).unwrap()
}

/// The daily report of `day` (JSON) has the expected spend in its headline and per model.
pub fn assert_report_cost(data: &Path, day: &str, expected: &[(&str, f64)], copies: f64) {
    let report = report_json(data, day, &[]);
    let total: f64 = expected.iter().map(|(_, c)| c * copies).sum();
    let spend = report["headline"]["spend_usd"].as_f64().unwrap();
    assert!(close(spend, total), "headline {spend} vs {total}");
    let models = report["top_models"].as_array().unwrap();
    for (model, cost) in expected {
        let row = models
            .iter()
            .find(|m| m["name"] == *model)
            .unwrap_or_else(|| panic!("no {model} in the report: {models:?}"));
        let reported = row["cost_usd"].as_f64().unwrap();
        assert!(close(reported, cost * copies), "{model}: {reported}");
    }
}

/// Cost per model of both releases' samples together, by model id.
pub fn cost_by_model_of_both_releases() -> Vec<(&'static str, f64)> {
    vec![
        ("claude-opus-4-8", COST_BY_MODEL_2_1_197[0].1),
        ("claude-opus-5-5", COST_BY_MODEL_2_1_332[0].1),
        (
            "claude-sonnet-4-5",
            COST_BY_MODEL_2_1_197[1].1 + COST_BY_MODEL_2_1_332[1].1,
        ),
    ]
}

/// The binary under test: the one cargo built beside this test, or `BURNRATE_BIN`, so the same
/// suite can run against another build of it (a release build, the image's, docs/testing.md).
pub fn burnrate_bin() -> PathBuf {
    std::env::var_os("BURNRATE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_burnrate")))
}

/// `burnrate args`, with no configuration or data directory from the environment.
pub fn burnrate_command(args: &[&str]) -> Command {
    let mut command = Command::new(burnrate_bin());
    command
        .args(args)
        .env_remove("BURNRATE_CONFIG")
        .env_remove("BURNRATE_DATA_DIR");
    command
}

pub fn burnrate(args: &[&str]) -> Output {
    burnrate_command(args).output().expect("burnrate runs")
}

pub fn run_files(input: &Path, data: &Path) -> Output {
    run_files_with(input, data, &[])
}

/// `run --source files --drain` with `extra` arguments (a `--config FILE`, say).
pub fn run_files_with(input: &Path, data: &Path, extra: &[&str]) -> Output {
    run_files_command(input, data, extra)
        .output()
        .expect("burnrate runs")
}

/// The command [`run_files_with`] runs, for a test to add to (its environment, say).
pub fn run_files_command(input: &Path, data: &Path, extra: &[&str]) -> Command {
    let mut args = vec![
        "run",
        "--source",
        "files",
        "--input",
        input.to_str().unwrap(),
        "--output",
        data.to_str().unwrap(),
        "--drain",
    ];
    args.extend(extra);
    burnrate_command(&args)
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The message count of a `run` summary line ("burnrate: N messages, ..."), read whole: a
/// substring test for "0 messages" also passes on 10.
pub fn summary_messages(log: &str) -> u64 {
    log.lines()
        .find_map(|l| {
            l.strip_prefix("burnrate: ")?
                .split_once(" messages")?
                .0
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no summary line in\n{log}"))
}

/// Rows of a query as JSON objects.
pub fn query(data: &Path, sql: &str) -> Vec<serde_json::Map<String, Value>> {
    query_with_env(data.to_str().unwrap(), sql, &[])
}

/// `burnrate query` over `data` (a directory or an `s3://` dataset) with more environment: its
/// rows.
pub fn query_with_env(
    data: &str,
    sql: &str,
    env: &[(&str, &str)],
) -> Vec<serde_json::Map<String, Value>> {
    let out = burnrate_command(&["query", "--data", data, "--format", "json", sql])
        .envs(env.iter().copied())
        .output()
        .expect("burnrate runs");
    assert!(
        out.status.success(),
        "query {sql:?} failed: {}",
        stderr(&out)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .unwrap()
                .as_object()
                .unwrap()
                .clone()
        })
        .collect()
}

pub fn one(data: &Path, sql: &str) -> serde_json::Map<String, Value> {
    one_with_env(data.to_str().unwrap(), sql, &[])
}

/// [`query_with_env`]'s one row.
pub fn one_with_env(data: &str, sql: &str, env: &[(&str, &str)]) -> serde_json::Map<String, Value> {
    let rows = query_with_env(data, sql, env);
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows.into_iter().next().unwrap()
}

/// Environment pairs as `Command::envs` and [`spawn_burnrate`] take them.
pub fn pairs<'a>(env: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

pub fn num(row: &serde_json::Map<String, Value>, key: &str) -> f64 {
    row.get(key)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{key} in {row:?}"))
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

/// Totals of every sample run, from shared/otlp-samples/README.md.
pub const TOTAL_COST: f64 = 0.29192 + 0.15498105 + 0.215259 + 0.13198695;
pub const TOTAL_INPUT: f64 = (27570 + 21820 + 13658 + 17035) as f64;
pub const TOTAL_OUTPUT: f64 = (4336 + 2544 + 2917 + 2378) as f64;
pub const TOTAL_CACHE_READ: f64 = (75840 + 9791 + 13538 + 18719) as f64;
pub const TOTAL_CACHE_CREATION: f64 = (1240 + 12913 + 10764 + 10559) as f64;

pub const TOTALS_SQL: &str = "SELECT count(*) FILTER (WHERE success) AS requests,
        count(*) FILTER (WHERE NOT success) AS errors,
        sum(cost_usd) AS cost, sum(cost_usd_reported) AS reported,
        sum(input_tokens) AS input, sum(output_tokens) AS output,
        sum(cache_read_tokens) AS cache_read, sum(cache_creation_tokens) AS cache_creation,
        count(DISTINCT session_id) AS sessions
    FROM api_requests";

pub fn assert_sample_totals(data: &Path, copies: f64) {
    let t = one(data, TOTALS_SQL);
    assert_eq!(num(&t, "requests"), 16.0 * copies, "{t:?}");
    assert_eq!(num(&t, "errors"), copies, "{t:?}");
    assert!(close(num(&t, "cost"), TOTAL_COST * copies), "{t:?}");
    assert!(close(num(&t, "reported"), TOTAL_COST * copies), "{t:?}");
    assert_eq!(num(&t, "input"), TOTAL_INPUT * copies);
    assert_eq!(num(&t, "output"), TOTAL_OUTPUT * copies);
    assert_eq!(num(&t, "cache_read"), TOTAL_CACHE_READ * copies);
    assert_eq!(num(&t, "cache_creation"), TOTAL_CACHE_CREATION * copies);
    assert_eq!(num(&t, "sessions"), 5.0);
}

/// Cost reported by the `claude_code.cost.usage` metric of the runs with delta temporality
/// (r01, r03; r31 has none) and of those with cumulative temporality (r04, r12).
pub const DELTA_RUNS_COST: f64 = 0.29192 + 0.15498105;
pub const CUMULATIVE_RUNS_COST: f64 = 0.215259 + 0.13198695;

/// One sample export: its run folder, file name, signal (from the name, as the samples'
/// README allows for tests) and bytes.
#[derive(Debug, Clone)]
pub struct SampleExport {
    pub run: String,
    pub name: String,
    pub signal: &'static str,
    pub bytes: Vec<u8>,
}

impl SampleExport {
    /// The topic the Collector's kafka exporter writes this signal to.
    pub fn topic(&self) -> &'static str {
        match self.signal {
            "logs" => "otlp_logs",
            "metrics" => "otlp_metrics",
            _ => "otlp_spans",
        }
    }

    pub fn is_json(&self) -> bool {
        self.name.ends_with(".json")
    }
}

/// Every sample export, run by run, in the order Claude Code sent them.
pub fn sample_exports() -> Vec<SampleExport> {
    exports_of(&samples(), &["r01", "r03", "r04", "r12", "r31"])
}

/// Every 2.1.332 sample export, run by run.
pub fn sample_exports_2_1_332() -> Vec<SampleExport> {
    exports_of(&samples_2_1_332(), &["r01", "r03"])
}

fn exports_of(dir: &Path, runs: &[&str]) -> Vec<SampleExport> {
    let mut exports = Vec::new();
    for run in runs {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(run))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for path in files {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let signal = ["logs", "metrics", "traces"]
                .into_iter()
                .find(|s| name.contains(s))
                .unwrap_or_else(|| panic!("no signal in {name}"));
            exports.push(SampleExport {
                run: run.to_string(),
                name,
                signal,
                bytes: std::fs::read(&path).unwrap(),
            });
        }
    }
    exports
}

/// `usage_metrics` agrees with the events: every copy of a delta run adds its cost, while
/// copies of a cumulative series repeat the same points and add nothing more.
pub fn assert_metric_cost(data: &Path, copies: f64) {
    let m = one(
        data,
        "SELECT sum(value) AS cost, min(value) AS min_delta FROM usage_metrics
         WHERE metric = 'claude_code.cost.usage'",
    );
    let expected = DELTA_RUNS_COST * copies + CUMULATIVE_RUNS_COST;
    assert!(close(num(&m, "cost"), expected), "{m:?} vs {expected}");
    assert!(num(&m, "min_delta") >= 0.0, "{m:?}");
}

/// Two clients of one origin for the clock tests: the one behind sends r04's metric exports as
/// they were, the other a session of its own two hours later; an r01 log export makes a flush
/// with no cumulative points in it.
pub struct TwoClocks<'a> {
    pub behind: [&'a SampleExport; 2],
    pub filler: &'a SampleExport,
}

impl<'a> TwoClocks<'a> {
    pub fn of(exports: &'a [SampleExport]) -> Self {
        let r04: Vec<&SampleExport> = exports
            .iter()
            .filter(|e| e.run == "r04" && e.signal == "metrics")
            .collect();
        TwoClocks {
            behind: [r04[0], r04[1]],
            filler: exports
                .iter()
                .find(|e| e.run == "r01" && e.signal == "logs")
                .unwrap(),
        }
    }

    /// The `n`th export of the client whose clock is right.
    pub fn right(&self, n: usize) -> Vec<u8> {
        stream::LaterCopies::new(self.behind[n]).copy(1, Duration::from_secs(7200))
    }

    /// Both sessions add up to what r04 reported: $0.215259 and 13,538 cache-read tokens each.
    pub fn assert_totals(data: &Path) {
        let sessions = sessions_by_start(data);
        assert_eq!(sessions.len(), 2, "{sessions:?}");
        for session in &sessions {
            assert!(close(num(session, "cost"), 0.215259), "{sessions:?}");
            assert_eq!(num(session, "cache_read"), 13538.0);
        }
    }
}

/// The value of the metric `name` (no labels) in a `/metrics` page.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on `port`.
pub fn wait_for_port(port: u16, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not listen on 127.0.0.1:{port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The binary as a child process, for tests that signal or kill it.
pub fn spawn_burnrate(args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    let mut command = Command::new(burnrate_bin());
    command
        .args(args)
        .env_remove("BURNRATE_CONFIG")
        .env_remove("BURNRATE_DATA_DIR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().expect("burnrate starts")
}

/// A child that ended: whether it exited 0, what it wrote to stderr, and its peak resident
/// set in bytes.
pub struct Finished {
    pub success: bool,
    pub stderr: String,
    pub peak_rss: u64,
    /// User and system CPU time the child used, as last read before it was reaped.
    pub cpu_seconds: f64,
}

/// User and system CPU time of a process so far (`"self"` or a pid), from `/proc/<pid>/stat`;
/// 0 once it is gone.
pub fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat_cpu_seconds(&stat)
}

/// CPU time the whole machine has been busy so far, every core's together, in seconds: all of
/// `/proc/stat`'s first line but idle and iowait, in clock ticks (100 a second).
pub fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    // user nice system idle iowait irq softirq steal; guest time is inside user already.
    let busy: f64 = ticks.iter().take(8).sum::<f64>()
        - ticks.get(3).copied().unwrap_or(0.0)
        - ticks.get(4).copied().unwrap_or(0.0);
    busy / 100.0
}

/// User plus system time from a `stat` line of `/proc`: after the command name (which is in
/// parentheses), utime and stime are the 12th and 13th fields, in clock ticks (100 a second).
pub fn stat_cpu_seconds(stat: &str) -> f64 {
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<f64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    (fields.get(11).copied().unwrap_or(0.0) + fields.get(12).copied().unwrap_or(0.0)) / 100.0
}

/// The kernel's high-water mark of a process's resident memory (`VmHWM`), in KiB, from its
/// `/proc/<pid>/status`.
pub fn status_peak_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Waits for a child of [`spawn_burnrate`], draining its output, and reads its peak RSS: the
/// kernel's high-water mark of the process's own memory (`VmHWM`), read every 5 ms while it
/// runs. Not `ru_maxrss`: a child spawned from this process starts in this process's memory,
/// and the kernel carries that memory's high-water mark over into the child's `ru_maxrss` when
/// it execs, so a test holding a large broker would be charged to the child.
pub fn wait_with_peak_rss(child: std::process::Child) -> Finished {
    wait_with_peak_rss_within(child, Duration::MAX)
}

/// [`wait_with_peak_rss`], killing the child once `deadline` has passed: a test of a hang
/// fails instead of holding the suite up. Its stderr then ends with a line saying so.
pub fn wait_with_peak_rss_within(mut child: std::process::Child, deadline: Duration) -> Finished {
    let started = std::time::Instant::now();
    let mut killed = false;
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let status_file = format!("/proc/{}/status", child.id());
    let pid = child.id().to_string();
    let mut peak_kib = 0u64;
    let mut cpu = 0.0f64;
    let status = loop {
        // Readable until the child is reaped, its exit included.
        cpu = cpu.max(cpu_seconds(&pid));
        if let Ok(status) = std::fs::read_to_string(&status_file) {
            peak_kib = peak_kib.max(status_peak_kib(&status).unwrap_or(0));
        }
        if let Some(status) = child.try_wait().expect("the child can be waited for") {
            break status;
        }
        if !killed && started.elapsed() >= deadline {
            let _ = child.kill();
            killed = true;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let _ = stdout.join();
    let mut stderr = stderr.join().unwrap_or_default();
    if killed {
        stderr.push_str(&format!("\n(killed: still running after {deadline:?})\n"));
    }
    Finished {
        success: status.success() && !killed,
        stderr,
        peak_rss: peak_kib * 1024,
        cpu_seconds: cpu,
    }
}

/// Sends `signal` (`TERM`, `KILL`, ...) to a child.
pub fn signal(child: &std::process::Child, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Every file below `dir`, as strings.
pub fn walk(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else {
                files.push(entry.path().to_string_lossy().into_owned());
            }
        }
    }
    files
}

/// A quiet generated team (`burnrate generate --scenario quiet` with `spec`, such as
/// `["--days", "2", "--users", "3"]`) run through `run --source files --drain` into
/// `dir/data`, which is returned.
pub fn generated_dataset(dir: &Path, spec: &[&str]) -> PathBuf {
    generated_dataset_with(dir, spec, &[])
}

/// [`generated_dataset`], the run given `run_extra` arguments (a `--config FILE`, say).
pub fn generated_dataset_with(dir: &Path, spec: &[&str], run_extra: &[&str]) -> PathBuf {
    let (input, data) = (dir.join("in"), dir.join("data"));
    let mut args = vec![
        "generate",
        "--out",
        input.to_str().unwrap(),
        "--scenario",
        "quiet",
    ];
    args.extend(spec);
    let out = burnrate(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = run_files_with(&input, &data, run_extra);
    assert!(run.status.success(), "{}", stderr(&run));
    data
}

/// r04's first metric export, another session's copy of it two hours later, then r04's second
/// metric export: a cumulative session quiet for longer than a short staleness, then back.
pub fn session_away_and_back() -> Vec<Vec<u8>> {
    let metrics: Vec<SampleExport> = sample_exports()
        .into_iter()
        .filter(|e| e.run == "r04" && e.signal == "metrics")
        .collect();
    assert_eq!(metrics.len(), 2, "r04 has two metric exports");
    let later = stream::LaterCopies::new(&metrics[0]).copy(1, Duration::from_secs(7200));
    vec![metrics[0].bytes.clone(), later, metrics[1].bytes.clone()]
}

/// What the log says when r04's session comes back forgotten: the nine series of its second
/// export that were in its first are looked up and found (the tenth is new, in no filter).
pub const SESSION_READ_BACK: &str = "forgotten cumulative series read back wanted=9 found=9";

/// The same after a restart in between, which left no filters: the tenth is looked up too.
pub const SESSION_READ_BACK_AFTER_RESTART: &str =
    "forgotten cumulative series read back wanted=10 found=9";

/// Each session's cost and cache-read tokens by its metrics, in the order the sessions started.
fn sessions_by_start(data: &Path) -> Vec<serde_json::Map<String, Value>> {
    query(
        data,
        "SELECT session_id,
                sum(value) FILTER (WHERE metric = 'claude_code.cost.usage') AS cost,
                sum(value) FILTER (WHERE metric = 'claude_code.token.usage' AND type = 'cacheRead') AS cache_read
         FROM usage_metrics GROUP BY session_id ORDER BY min(time)",
    )
}

/// r04's session adds up to what it reported (as in `cumulative_metric_state_survives_a_restart`),
/// the later one to less: its first export's totals.
pub fn assert_session_away_and_back_totals(data: &Path) {
    let sessions = sessions_by_start(data);
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert!(close(num(&sessions[0], "cost"), 0.215259), "{sessions:?}");
    assert_eq!(num(&sessions[0], "cache_read"), 13538.0);
    assert!(num(&sessions[1], "cost") < num(&sessions[0], "cost"));
}
