//! What `deploy/` ships, checked with the real tools: every kustomize overlay rendered by
//! `kubectl kustomize` and validated against the Kubernetes schemas; the compose stack's
//! Prometheus config through `promtool check config`; every PromQL metric of the Grafana
//! dashboard pushed by a drained run to a real Pushgateway; and the binary started exactly as
//! the StatefulSet starts it, against a real broker: ready, then SIGTERM, exit 0 within the
//! pod's grace period, every offset committed.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::broker::Broker;
use crate::support::pushgateway::Pushgateway;
use crate::support::s3::S3Server;
use crate::support::*;

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn checked(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{command:?} failed:\n{text}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kubectl kustomize` of one overlay, as YAML and as the list of its objects.
fn render(overlay: &str) -> (String, Vec<Value>) {
    let dir = deploy_dir().join("k8s/overlays").join(overlay);
    let yaml = checked(Command::new("kubectl").arg("kustomize").arg(&dir));
    let mut to_json = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps(list(yaml.safe_load_all(sys.stdin))))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with PyYAML (kubernetes-validate brings it)");
    use std::io::Write;
    to_json
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = to_json.wait_with_output().unwrap();
    assert!(out.status.success());
    let objects: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    (yaml, objects)
}

fn object<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn every_overlay_renders_and_validates_against_the_kubernetes_schemas() {
    for overlay in ["small", "large"] {
        let (yaml, objects) = render(overlay);
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &yaml).unwrap();
        checked(
            Command::new("python3")
                .args(["-m", "kubernetes_validate", "--strict", "--quiet"])
                .arg(file.path()),
        );
        let kinds: BTreeSet<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
        for kind in [
            "StatefulSet",
            "Service",
            "ConfigMap",
            "PodDisruptionBudget",
            "CronJob",
            "ServiceAccount",
        ] {
            assert!(kinds.contains(kind), "{overlay} has no {kind}: {kinds:?}");
        }
        let pod = &object(&objects, "StatefulSet")["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert!(container["resources"]["limits"]["memory"].is_string());
        // The binary's own grace (the ConfigMap's) ends before Kubernetes' SIGKILL.
        let pod_grace = pod["terminationGracePeriodSeconds"].as_f64().unwrap();
        let config = object(&objects, "ConfigMap")["data"]["burnrate.toml"]
            .as_str()
            .unwrap()
            .to_string();
        let grace: f64 = config
            .lines()
            .find_map(|l| l.strip_prefix("shutdown_grace_seconds = "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            grace + 3.0 <= pod_grace,
            "{grace} s vs the pod's {pod_grace} s"
        );
        // One compactor per volume: the CronJob for the small overlay's one volume, each
        // replica itself for the large overlay's.
        let compact_job = objects
            .iter()
            .find(|o| o["kind"] == "CronJob" && o["metadata"]["name"] == "burnrate-compact");
        let env = &pod["containers"][0]["env"];
        let in_process = env.as_array().is_some_and(|vars| {
            vars.iter()
                .any(|v| v["name"] == "BURNRATE__COMPACTION__INTERVAL_HOURS" && v["value"] != "0")
        });
        assert!(config.contains("interval_hours = 0"), "{config}");
        match overlay {
            "small" => {
                let job = &compact_job.expect("a compact CronJob")["spec"]["jobTemplate"]["spec"]["template"]
                    ["spec"]["containers"][0];
                assert_eq!(job["args"][0], "compact");
                assert!(!in_process);
            }
            _ => assert!(compact_job.is_none() && in_process, "{overlay}"),
        }
        // burnrate itself accepts the configuration the ConfigMap mounts.
        let mounted = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(mounted.path(), &config).unwrap();
        let out = burnrate(&["--config", mounted.path().to_str().unwrap(), "prices"]);
        assert!(out.status.success(), "{overlay}: {}", stderr(&out));
    }
}

#[test]
fn the_compose_stack_prometheus_config_and_rules_pass_promtool() {
    let dir = deploy_dir().join("prometheus");
    let text = checked(
        Command::new("promtool")
            .args(["check", "config", "prometheus.yml"])
            .current_dir(&dir),
    );
    assert!(text.contains("SUCCESS"), "{text}");
}

/// Metric names in the dashboard's PromQL: every `burnrate_...` word of every target.
fn dashboard_metrics() -> BTreeSet<String> {
    let text = std::fs::read_to_string(deploy_dir().join("grafana/burnrate.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is valid JSON");
    let mut metrics = BTreeSet::new();
    let mut panels = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        let Some(targets) = panel["targets"].as_array() else {
            continue;
        };
        panels += 1;
        assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().expect("a PromQL expr");
            metrics.extend(
                expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .filter(|w| w.starts_with("burnrate_"))
                    .map(str::to_string),
            );
        }
    }
    assert!(panels >= 10, "{panels} panels");
    metrics
}

#[test]
fn the_grafana_dashboard_queries_only_metrics_a_drained_run_pushes() {
    let pushgateway = Pushgateway::start();
    let tmp = tempfile::tempdir().unwrap();
    // A budget the samples overrun, so an anomaly is in progress when the run ends.
    let config = tmp.path().join("burnrate.toml");
    std::fs::write(
        &config,
        "[[anomalies.budgets]]\ndimension = \"team\"\nvalue = \"backend\"\ndaily_usd = 0.01\n",
    )
    .unwrap();
    // Claude Code 2.1.332 reports time to first token, which the dashboard charts too.
    for input in [samples(), samples_2_1_332()] {
        let out = run_files_with(
            &input,
            &tmp.path().join("data"),
            &[
                "--pushgateway",
                &pushgateway.url,
                "--config",
                config.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let text = pushgateway.metrics();
    // Names with samples, and families pushed with none yet (no anomaly in progress, no lag
    // on a files run): Prometheus knows both once scraped.
    let pushed: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| match l.strip_prefix("# TYPE ") {
            Some(family) => family.split(' ').next(),
            None if l.starts_with('#') => None,
            None => l.split(['{', ' ']).next(),
        })
        .filter(|name| name.starts_with("burnrate_"))
        .collect();
    let used = dashboard_metrics();
    // Consumer lag exists only on a Kafka run; a files run pushes no series of it.
    let kafka_only = burnrate_engine::PipelineHealth::new().render();
    assert!(kafka_only.contains("# TYPE burnrate_consumer_lag gauge"));
    for metric in used.iter().filter(|m| *m != "burnrate_consumer_lag") {
        assert!(
            pushed.contains(metric.as_str()),
            "the dashboard queries {metric}, which the Pushgateway does not have; it has {pushed:?}"
        );
    }
    for needed in [
        "burnrate_cost_usd_total",
        "burnrate_tokens_total",
        "burnrate_request_duration_seconds",
        "burnrate_active_sessions",
        "burnrate_dead_letters_total",
    ] {
        assert!(used.contains(needed), "the dashboard has no {needed} panel");
    }
}

/// The StatefulSet's container as a command: its args, its plain environment with the pod
/// name for the replica, and its ConfigMap as a file.
struct PodSpec {
    args: Vec<String>,
    env: Vec<(String, String)>,
    config: String,
}

fn pod_spec(overlay: &str) -> PodSpec {
    let (_, objects) = render(overlay);
    let container = &object(&objects, "StatefulSet")["spec"]["template"]["spec"]["containers"][0];
    let args = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let mut env = Vec::new();
    for var in container["env"].as_array().unwrap() {
        let name = var["name"].as_str().unwrap().to_string();
        if let Some(value) = var["value"].as_str() {
            env.push((name, value.to_string()));
        } else if var["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name" {
            env.push((name, "burnrate-0".to_string()));
        } else {
            // Secrets are optional: the test cluster has none, as a cluster without SASL.
            assert_eq!(var["valueFrom"]["secretKeyRef"]["optional"], true, "{name}");
        }
    }
    let config = object(&objects, "ConfigMap")["data"]["burnrate.toml"]
        .as_str()
        .unwrap()
        .to_string();
    PodSpec { args, env, config }
}

fn get(port: u16, path: &str) -> Option<u16> {
    ureq::get(&format!("http://127.0.0.1:{port}{path}"))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .ok()
        .map(|r| r.status().as_u16())
}

#[test]
fn the_binary_started_as_the_statefulset_starts_it_is_ready_and_stops_within_the_grace() {
    let broker = Broker::start();
    broker.create_topics(&["otlp_logs", "otlp_metrics", "otlp_spans"], 2);
    let produced = broker.produce_samples(&sample_exports(), 5) as u64;
    let spec = pod_spec("small");
    let tmp = tempfile::tempdir().unwrap();
    // Mounted as the ConfigMap mounts it; only what a test machine must change is overridden,
    // through the environment as a pod would: the broker, the data volume, a loopback port.
    let config = tmp.path().join("burnrate.toml");
    std::fs::write(&config, &spec.config).unwrap();
    let data = tmp.path().join("data");
    let health = free_port();
    let mut env: Vec<(String, String)> = spec
        .env
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "BURNRATE_CONFIG" => (k, config.display().to_string()),
            _ => (k, v),
        })
        .collect();
    env.push(("BURNRATE_KAFKA_BROKERS".into(), broker.address.clone()));
    env.push(("BURNRATE_DATA_DIR".into(), data.display().to_string()));
    env.push((
        "BURNRATE_HEALTH_LISTEN".into(),
        format!("127.0.0.1:{health}"),
    ));
    let pushgateway = Pushgateway::start();
    env.push(("BURNRATE_PUSHGATEWAY".into(), pushgateway.url.clone()));
    assert!(spec.config.contains("shutdown_grace_seconds = 25.0"));

    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let args: Vec<&str> = spec.args.iter().map(String::as_str).collect();
    assert_eq!(args, ["run", "--source", "kafka"]);
    let mut child = spawn_burnrate(&args, &env_refs);
    // Read its log as it goes (the manifest asks for info logs): a full pipe would stall it.
    let mut log_pipe = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut log_pipe, &mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(health, "/readyz") != Some(200) {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(get(health, "/healthz"), Some(200));
    let consumed = || {
        ureq::get(&format!("http://127.0.0.1:{health}/metrics"))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("burnrate_messages_total "))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while consumed() < produced {
        assert!(
            Instant::now() < deadline,
            "consumed {} of {produced}",
            consumed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let stopping = Instant::now();
    signal(&child, "TERM");
    let status = child.wait().unwrap();
    let took = stopping.elapsed();
    let log = log.join().unwrap();
    assert!(status.success(), "{log}");
    assert!(took < Duration::from_secs(30), "SIGTERM took {took:?}");
    assert_sample_totals(&data, 5.0);

    // Every offset was committed: the same group, drained, finds nothing left. Its windows
    // go to the test's Pushgateway too: the ConfigMap names the cluster's, which this run
    // spent 23 s failing to resolve (2026-12-02).
    let again = burnrate_with_env(
        &[
            "--config",
            config.to_str().unwrap(),
            "run",
            "--source",
            "kafka",
            "--brokers",
            &broker.address,
            "--output",
            data.to_str().unwrap(),
            "--health-listen",
            &format!("127.0.0.1:{}", free_port()),
            "--drain",
        ],
        &[("BURNRATE_PUSHGATEWAY", pushgateway.url.clone())],
    );
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(summary_messages(&stderr(&again)), 0, "{}", stderr(&again));
    assert!(
        !stderr(&again).contains("push failed"),
        "{}",
        stderr(&again)
    );
    assert_sample_totals(&data, 5.0);
}

/// `burnrate` with extra environment (the store's endpoint and credentials).
fn burnrate_with_env(args: &[&str], env: &[(&'static str, String)]) -> std::process::Output {
    let mut command = burnrate_command(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("burnrate runs")
}

#[test]
fn the_dataset_mirrors_to_s3_reads_back_from_it_and_the_cronjob_writes_its_reports_there() {
    let s3 = S3Server::start();
    s3.create_bucket("burnrate-dataset");
    let env = s3.env();
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("burnrate.toml");
    std::fs::write(
        &config,
        "[object_store]\nurl = \"s3://burnrate-dataset/data\"\n",
    )
    .unwrap();
    let data = tmp.path().join("data");
    let run = |data: &std::path::Path| {
        burnrate_with_env(
            &[
                "--config",
                config.to_str().unwrap(),
                "run",
                "--source",
                "files",
                "--input",
                samples().to_str().unwrap(),
                "--output",
                data.to_str().unwrap(),
                "--drain",
            ],
            &env,
        )
    };
    let out = run(&data);
    assert!(out.status.success(), "{}", stderr(&out));
    let (logs, keys): (Vec<String>, Vec<String>) = s3
        .keys("burnrate-dataset", "data/")
        .into_iter()
        .partition(|k| k.contains("/_delta_log/"));
    let local: Vec<String> = walk(&data)
        .into_iter()
        .filter(|p| {
            p.ends_with(".parquet") && !p.contains("_burnrate") && !p.contains("_delta_log")
        })
        .collect();
    assert_eq!(keys.len(), local.len(), "{keys:?}");
    // Each table in the bucket has a Delta log of its own (docs/tables.md).
    assert!(
        logs.iter()
            .any(|k| k.starts_with("data/api_requests/_delta_log/")),
        "{logs:?}"
    );
    assert!(keys.iter().all(|k| k.starts_with("data/")));
    assert!(
        keys.iter()
            .any(|k| k.starts_with("data/api_requests/date="))
    );

    // Read back from the store alone, with the totals of the samples.
    let env_pairs = pairs(&env);
    let read = |sql: &str| one_with_env("s3://burnrate-dataset/data", sql, &env_pairs);
    let totals = read(TOTALS_SQL);
    assert!(close(num(&totals, "cost"), TOTAL_COST), "{totals:?}");
    assert_eq!(num(&totals, "input"), TOTAL_INPUT);
    assert_eq!(num(&totals, "requests"), 16.0);
    let windows = read("SELECT sum(requests) AS requests FROM usage_windows");
    assert_eq!(num(&windows, "requests"), 17.0);

    // A second replica's worth of the same inputs on another disk writes the same object
    // names: a replay overwrites, never adds.
    let out = run(&tmp.path().join("other-disk"));
    assert!(out.status.success(), "{}", stderr(&out));
    let totals = read(TOTALS_SQL);
    assert!(close(num(&totals, "cost"), TOTAL_COST), "{totals:?}");

    // The large overlay's daily report CronJob, its command exactly, for the samples' day.
    let (_, objects) = render("large");
    let job = &object(&objects, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let mut args: Vec<&str> = job["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        job["volumes"].as_array().unwrap().len() == 1,
        "the config only"
    );
    args.extend(["--date", "2026-11-24"]);
    let out = burnrate_with_env(&args, &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut reports = s3.keys("burnrate-dataset", "reports/");
    reports.sort();
    assert_eq!(
        reports,
        [
            "reports/report-2026-11-24.html",
            "reports/report-2026-11-24.json",
            "reports/report-2026-11-24.md"
        ]
    );
    let json: Value =
        serde_json::from_str(&s3.get("burnrate-dataset", "reports/report-2026-11-24.json"))
            .unwrap();
    assert!(close(
        json["headline"]["spend_usd"].as_f64().unwrap(),
        TOTAL_COST
    ));
    assert!(
        s3.get("burnrate-dataset", "reports/report-2026-11-24.html")
            .contains("<svg")
    );

    // A bucket that is not there is a one-line error at startup, not at the first flush.
    std::fs::write(
        &config,
        "[object_store]\nurl = \"s3://no-such-bucket/data\"\n",
    )
    .unwrap();
    let out = run(&tmp.path().join("third"));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("object_store.url"),
        "{}",
        stderr(&out)
    );
}
