//! `burnrate generate`: synthetic Claude Code telemetry, to files, the receiver or Kafka.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;

use super::*;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Scenario {
    /// A team with two runaway loops, a model switch, an error storm, a slow provider, a
    /// budget overrun and a team surge (30 days and 20 people unless --days / --users say
    /// otherwise).
    Evaluation,
    /// The same rhythm with no incident.
    Quiet,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExportFormat {
    /// OTLP protobuf (`.pb`), the kafka exporter's otlp_proto.
    Proto,
    /// OTLP/JSON (`.json`), the kafka exporter's otlp_json.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SignalArg {
    Logs,
    Traces,
    Metrics,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TemporalityArg {
    Delta,
    Cumulative,
}

#[derive(Debug, clap::Args)]
pub(crate) struct GenerateArgs {
    /// Write the exports as files under this directory (created if missing).
    #[arg(long, required_unless_present_any = ["post", "kafka"])]
    out: Option<PathBuf>,
    /// POST the exports to an OTLP/HTTP endpoint instead, e.g. http://127.0.0.1:4318.
    #[arg(long, conflicts_with_all = ["out", "kafka"])]
    post: Option<String>,
    /// Produce the exports to Kafka instead (topics otlp_logs, otlp_spans, otlp_metrics), HOST:PORT.
    #[arg(long, conflicts_with_all = ["out", "post"])]
    kafka: Option<String>,
    #[arg(long, value_enum, default_value = "evaluation")]
    scenario: Scenario,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// First simulated day, UTC [default: 2026-10-05, a Monday].
    #[arg(long)]
    start: Option<chrono::NaiveDate>,
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=366))]
    days: Option<u32>,
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    users: Option<u64>,
    /// About how much each person spends a working day, USD: more and larger calls for a
    /// heavier organisation, fewer and smaller for a lighter one [default: 24, the team as it
    /// is].
    #[arg(long, value_parser = parse_spend)]
    spend_per_person_day: Option<f64>,
    #[arg(long, value_enum, default_value = "proto")]
    format: ExportFormat,
    /// Signals to export, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "logs,traces,metrics"
    )]
    signals: Vec<SignalArg>,
    /// Metric temporality (Claude Code's default is delta).
    #[arg(long, value_enum, default_value = "delta")]
    temporality: TemporalityArg,
    /// Exports per second at most (0: as fast as the destination takes them).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
}

fn parse_spend(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(usd) if (0.01..=10_000.0).contains(&usd) => Ok(usd),
        _ => Err(format!(
            "{text:?} is not a daily spend between 0.01 and 10000 USD"
        )),
    }
}

pub(crate) fn generate(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    use burnrate_workload::{Format, Signals, Temporality, WorkloadSpec, exports};
    anyhow::ensure!(
        args.rate >= 0.0 && args.rate.is_finite(),
        "--rate must be a number of exports per second, 0 for no limit"
    );
    let mut spec = match args.scenario {
        Scenario::Evaluation => WorkloadSpec::evaluation(args.seed),
        Scenario::Quiet => {
            let start = chrono::NaiveDate::from_ymd_opt(2026, 10, 5).unwrap_or_default();
            WorkloadSpec::team(args.seed, start, 30, 20)
        }
    };
    if let Some(start) = args.start {
        spec.start = start;
    }
    if let Some(days) = args.days {
        spec.days = days;
    }
    if let Some(usd) = args.spend_per_person_day {
        spec = spec.at_spend(usd);
    }
    if let Some(users) = args.users {
        spec.users = users as usize;
        spec.teams = spec.teams.min(spec.users);
        spec.projects = spec.projects.min(spec.users);
    }
    // Incidents outside the simulated days or people are dropped, not invented.
    let people: Vec<String> = spec.people().into_iter().map(|p| p.id).collect();
    let (begin, end) = (spec.day_nanos(0), spec.day_nanos(i64::from(spec.days)));
    spec.incidents.retain(|i| {
        i.start_nanos >= begin
            && i.end_nanos <= end
            && i.user.as_ref().is_none_or(|u| people.contains(u))
    });
    let signals = Signals {
        logs: args.signals.contains(&SignalArg::Logs),
        traces: args.signals.contains(&SignalArg::Traces),
        metrics: args
            .signals
            .contains(&SignalArg::Metrics)
            .then_some(match args.temporality {
                TemporalityArg::Delta => Temporality::Delta,
                TemporalityArg::Cumulative => Temporality::Cumulative,
            }),
    };
    let format = match args.format {
        ExportFormat::Proto => Format::Proto,
        ExportFormat::Json => Format::Json,
    };
    let calls = spec.calls();
    let exports = exports(&spec, &calls, signals);
    let mut destination = ExportDestination::open(&args, format)?;
    let bar = progress_bar(
        exports.len() as u64,
        "{spinner} {pos}/{len} exports [{bar:30}] {per_sec}",
    );
    let started = std::time::Instant::now();
    let mut bytes = 0;
    for (i, export) in exports.iter().enumerate() {
        if args.rate > 0.0 {
            let due = started + Duration::from_secs_f64(i as f64 / args.rate);
            std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
        }
        let body = export.encode(format);
        bytes += body.len();
        destination.send(export, body)?;
        bar.inc(1);
    }
    destination.finish()?;
    bar.finish_and_clear();
    let labels = destination.labels_path();
    if let Some(labels) = &labels {
        // JSON lines, not `.json`: the files source would take a `.json` file for an export.
        let mut lines = String::new();
        for incident in &spec.incidents {
            lines.push_str(&serde_json::to_string(incident)?);
            lines.push('\n');
        }
        std::fs::write(labels, lines)
            .with_context(|| format!("cannot write {}", labels.display()))?;
    }
    eprintln!(
        "burnrate: {} calls of {} people over {} days → {} exports ({bytes} bytes) to {}; {} incidents{}",
        calls.len(),
        spec.users,
        spec.days,
        exports.len(),
        destination.describe(),
        spec.incidents.len(),
        labels
            .map(|l| format!(" in {}", l.display()))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

/// Where `burnrate generate` sends its exports.
enum ExportDestination {
    Files(PathBuf, &'static str),
    Http(String, ureq::Agent, &'static str),
    Kafka(String, rdkafka::producer::BaseProducer),
}

impl ExportDestination {
    fn open(args: &GenerateArgs, format: burnrate_workload::Format) -> anyhow::Result<Self> {
        let json = format == burnrate_workload::Format::Json;
        if let Some(url) = &args.post {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(30)))
                .http_status_as_error(false)
                .build()
                .into();
            let content_type = if json {
                "application/json"
            } else {
                "application/x-protobuf"
            };
            return Ok(ExportDestination::Http(
                url.trim_end_matches('/').to_string(),
                agent,
                content_type,
            ));
        }
        if let Some(brokers) = &args.kafka {
            let producer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", brokers)
                .set("compression.type", "zstd")
                .set("linger.ms", "20")
                .create()
                .with_context(|| format!("cannot create a Kafka producer for {brokers}"))?;
            return Ok(ExportDestination::Kafka(brokers.clone(), producer));
        }
        let dir = args
            .out
            .clone()
            .context("--out, --post or --kafka is required")?;
        Ok(ExportDestination::Files(
            dir,
            if json { "json" } else { "pb" },
        ))
    }

    fn send(&mut self, export: &burnrate_workload::Export, body: Vec<u8>) -> anyhow::Result<()> {
        match self {
            ExportDestination::Files(dir, extension) => {
                let path = dir.join(format!("{}.{extension}", export.name));
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("cannot create {}", parent.display()))?;
                }
                std::fs::write(&path, body)
                    .with_context(|| format!("cannot write {}", path.display()))
            }
            ExportDestination::Http(base, agent, content_type) => {
                let url = format!("{base}/v1/{}", export.request.signal());
                // The receiver answers 503 when its queue is full: wait and send again.
                for attempt in 0.. {
                    let response = agent
                        .post(&url)
                        .header("Content-Type", *content_type)
                        .send(&body[..])
                        .with_context(|| format!("cannot POST to {url}"))?;
                    let status = response.status().as_u16();
                    if status == 200 {
                        return Ok(());
                    }
                    anyhow::ensure!(
                        status == 503 && attempt < 100,
                        "{url} answered HTTP {status}"
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok(())
            }
            ExportDestination::Kafka(_, producer) => {
                let topic = match export.request.signal() {
                    "logs" => "otlp_logs",
                    "traces" => "otlp_spans",
                    _ => "otlp_metrics",
                };
                let mut record =
                    rdkafka::producer::BaseRecord::<(), [u8]>::to(topic).payload(&body[..]);
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((
                            rdkafka::error::KafkaError::MessageProduction(
                                rdkafka::types::RDKafkaErrorCode::QueueFull,
                            ),
                            back,
                        )) => {
                            record = back;
                            producer.poll(Duration::from_millis(100));
                        }
                        Err((e, _)) => return Err(anyhow::anyhow!("producing to {topic}: {e}")),
                    }
                }
                producer.poll(Duration::ZERO);
                Ok(())
            }
        }
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        use rdkafka::producer::Producer;
        if let ExportDestination::Kafka(brokers, producer) = self {
            producer
                .flush(Duration::from_secs(60))
                .with_context(|| format!("not every export reached {brokers}"))?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        match self {
            ExportDestination::Files(dir, _) => dir.display().to_string(),
            ExportDestination::Http(url, _, _) => url.clone(),
            ExportDestination::Kafka(brokers, _) => format!("kafka {brokers}"),
        }
    }

    /// Where the incident labels go: beside the files; a network destination has no place.
    fn labels_path(&self) -> Option<PathBuf> {
        match self {
            ExportDestination::Files(dir, _) => Some(dir.join("incidents.jsonl")),
            _ => None,
        }
    }
}
