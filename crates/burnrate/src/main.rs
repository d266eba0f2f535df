//! `burnrate`: the command line. Parses flags, loads the configuration, wires sources, decoder
//! and sinks together, and shows progress; everything it runs lives in the library crates.

mod config;

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use burnrate_engine::{
    FilePipeline, FileRunSummary, FlushTotals, KafkaPipeline, KafkaRunSummary, KafkaTopic,
    MemoryBudget, OtlpReceiver, PipelineHealth, Progress, Pushgateway, ReceiverSummary,
    ResultFormat, WindowStage,
};
use burnrate_otlp::{CallSource, ContentPolicy, Decoder};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::Config;

/// See the workspace Cargo.toml: the allocator is measured, not a habit.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code of a run that finished but set some inputs aside as dead letters.
const EXIT_DEAD_LETTERS: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "burnrate",
    version,
    about = "Cost analytics for AI coding agents: OTLP telemetry in, Parquet and answers out",
    after_help = "Examples:\n  burnrate run                                   # OTLP receiver on 127.0.0.1:4318 (HTTP) and :4317 (gRPC)\n  burnrate run --source files --input ./otlp-exports --drain\n  burnrate query \"SELECT model, sum(cost_usd) FROM api_requests GROUP BY model\""
)]
struct Cli {
    /// Configuration file (TOML); every key has a default, see the README.
    #[arg(long, global = true, env = "BURNRATE_CONFIG")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ingest OTLP exports and write the Parquet dataset.
    #[command(
        after_help = "Examples:\n  burnrate run                                     # receive OTLP on 127.0.0.1:4318 and :4317\n  OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 claude   # ... and point Claude Code at it\n  burnrate run --source kafka --brokers kafka:9092 --group burnrate\n  burnrate run --source kafka --brokers 127.0.0.1:9092 --group backfill --drain\n  burnrate run --source files --input ../shared/otlp-samples --output ./burnrate-data --drain\n\nSIGTERM or SIGINT stops taking data, flushes and commits, and exits 0 within the grace period.\nExit codes: 0 done, 1 error, 2 bad arguments, 3 done but some inputs became dead letters\n(see the dead_letters table)."
    )]
    Run(Box<RunArgs>),
    /// Run SQL over the Parquet dataset.
    #[command(
        after_help = "Tables: api_requests, tool_calls, usage_metrics, log_records, metric_points, spans,\ndead_letters, usage_windows, late_events (each with a `date` partition column).\nFunctions: sketch_merge(latency_sketch), sketch_quantile(sketch, q) over usage_windows.\n\nExamples:\n  burnrate query \"SELECT model, count(*) AS calls, sum(cost_usd) AS usd FROM api_requests GROUP BY model\"\n  burnrate query \"SELECT model, sketch_quantile(sketch_merge(latency_sketch), 0.95) AS p95_ms FROM usage_windows GROUP BY model\"\n  burnrate query --format csv \"SELECT * FROM tool_calls\" > tools.csv"
    )]
    Query(QueryArgs),
    /// One session's spans, events and model calls as JSON.
    #[command(
        after_help = "The document has a top-level `spans` array (name, trace_id, span_id, parent_span_id,\nstart_time, end_time, duration_ms, attributes, ...), `events` and `api_requests`.\n\nExamples:\n  burnrate export-trace --session 5406d26d-5ae6-4aef-8c88-6ef5d51a06f6 --output trace.json\n  jq '.spans[] | {name, duration_ms}' trace.json"
    )]
    ExportTrace {
        /// The session id (Claude Code's `session.id`).
        #[arg(long)]
        session: String,
        /// Dataset directory [default: ./burnrate-data, or data_dir from the config file].
        #[arg(long, env = "BURNRATE_DATA_DIR")]
        data: Option<PathBuf>,
        /// Write to this file instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Cost reports over the Parquet dataset: a day, or a range of days.
    #[command(subcommand)]
    Report(ReportCommand),
    /// Where the time went: count, average, p95 and total duration per operation, tool or model.
    #[command(
        after_help = "Operations are span names (a tool span with its tool, e.g. `claude_code.tool (Bash)`) and
Claude Code's timed events (`api_request (event)`, `tool_result (event)`); sorted by total time.

Examples:
  burnrate profile --last-hour
  burnrate profile --since 24h --by tool
  burnrate profile --since 7d --by model --format csv
  burnrate profile --since 1h --until latest     # the last hour of data, for a dataset that is not live"
    )]
    Profile(ProfileArgs),
    /// Write synthetic Claude Code telemetry (OTLP log exports) for a simulated team.
    #[command(
        after_help = "Writes one export per user, hour and signal under OUT/<date>/, and OUT/incidents.jsonl with the\ninjected incidents (kind, start, end, whom). Deterministic: the same seed gives the same bytes.\n\nExamples:\n  burnrate generate --out ./synthetic --scenario evaluation       # 30 days, 20 people, 7 incidents\n  burnrate generate --out ./quiet --scenario quiet --days 7 --users 50 --format json\n  burnrate generate --post http://127.0.0.1:4318 --days 1 --users 5 --rate 20\n  burnrate generate --kafka 127.0.0.1:9092 --temporality cumulative\n  burnrate run --source files --input ./synthetic --drain"
    )]
    Generate(GenerateArgs),
    /// Print the price table in use (embedded, or with --prices laid over it), or check it
    /// against a dataset.
    #[command(
        after_help = "--check lists the models in the dataset's api_requests that the table cannot price (their\ncost is the one the client reported) and those whose table price disagrees with the reported\ncost by more than 1% and $0.000001. It exits 4 when it finds either, 0 when it finds neither.\n\nExamples:\n  burnrate prices --prices my-prices.toml\n  burnrate prices --prices model_prices_and_context_window.json   # LiteLLM's file\n  burnrate prices --check --data ./burnrate-data"
    )]
    Prices {
        /// Price file (TOML, JSON of the same shape, or LiteLLM's JSON) that overrides or
        /// extends the embedded table.
        #[arg(long, env = "BURNRATE_PRICES")]
        prices: Option<PathBuf>,
        /// Price only from --prices: the embedded table is left out.
        #[arg(long, requires = "prices")]
        no_embedded_prices: bool,
        /// Check the table against the calls of a dataset instead of printing it.
        #[arg(long)]
        check: bool,
        /// Dataset directory for --check [default: ./burnrate-data, or data_dir from the config file].
        #[arg(long, env = "BURNRATE_DATA_DIR", requires = "check")]
        data: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Source {
    /// The embedded OTLP receiver: OTLP/HTTP and OTLP/gRPC, what Claude Code exports to.
    Receiver,
    /// OTLP export files (*.pb, *.json, optionally .gz) under --input.
    Files,
    /// Kafka topics written by the OpenTelemetry Collector's kafka exporter.
    Kafka,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Where exports come from.
    #[arg(long, value_enum, default_value = "receiver")]
    source: Source,
    /// Directory of OTLP export files (files source).
    #[arg(long, env = "BURNRATE_INPUT", required_if_eq("source", "files"))]
    input: Option<PathBuf>,
    /// Dataset directory [default: ./burnrate-data, or data_dir from the config file].
    #[arg(long, env = "BURNRATE_DATA_DIR")]
    output: Option<PathBuf>,
    /// Process what is there now (files; Kafka partitions up to their end at start), flush,
    /// commit and exit instead of waiting for more.
    #[arg(long)]
    drain: bool,
    /// Kafka bootstrap servers, HOST:PORT[,HOST:PORT...].
    #[arg(long, env = "BURNRATE_KAFKA_BROKERS")]
    brokers: Option<String>,
    /// Kafka consumer group.
    #[arg(long, env = "BURNRATE_KAFKA_GROUP")]
    group: Option<String>,
    /// Kafka topics, comma-separated [default: otlp_logs,otlp_metrics,otlp_spans].
    #[arg(long, env = "BURNRATE_KAFKA_TOPICS", value_delimiter = ',')]
    topics: Vec<String>,
    /// OTLP/HTTP listen address of the receiver [default: 127.0.0.1:4318].
    #[arg(long, env = "BURNRATE_OTLP_HTTP_LISTEN")]
    http_listen: Option<SocketAddr>,
    /// OTLP/gRPC listen address of the receiver [default: 127.0.0.1:4317].
    #[arg(long, env = "BURNRATE_OTLP_GRPC_LISTEN")]
    grpc_listen: Option<SocketAddr>,
    /// Bearer tokens the receiver requires, one per line, each optionally followed by the team
    /// it is bound to (reloaded when the file changes).
    #[arg(long, env = "BURNRATE_AUTH_TOKENS")]
    auth_tokens: Option<PathBuf>,
    /// PEM certificate chain: the receiver serves TLS (with --tls-key).
    #[arg(long, env = "BURNRATE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "BURNRATE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM CA client certificates must chain to (mutual TLS; needs --tls-cert).
    #[arg(long, env = "BURNRATE_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Let the receiver listen beyond loopback with no authentication.
    #[arg(long)]
    insecure: bool,
    /// Memory the process stays under, e.g. 512MiB [default: 512MiB, or memory_limit from the
    /// config file].
    #[arg(long, env = "BURNRATE_MEMORY_LIMIT", value_parser = config::parse_byte_size)]
    memory_limit: Option<u64>,
    /// Address of /healthz, /readyz and /metrics [default: 127.0.0.1:9464].
    #[arg(long, env = "BURNRATE_HEALTH_LISTEN")]
    health_listen: Option<SocketAddr>,
    /// How long shutdown may take to flush and commit [default: 25s].
    #[arg(long, env = "BURNRATE_SHUTDOWN_GRACE", value_parser = parse_duration)]
    shutdown_grace: Option<Duration>,
    /// Push window totals to this Prometheus Pushgateway, e.g. http://127.0.0.1:9091.
    #[arg(long, env = "BURNRATE_PUSHGATEWAY")]
    pushgateway: Option<String>,
    /// This replica's name: its window state, file names and Pushgateway group [default: local].
    #[arg(long, env = "BURNRATE_REPLICA")]
    replica: Option<String>,
    /// How often a watching run looks for new files.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    poll_interval: Duration,
    /// Price file (TOML, JSON of the same shape, or LiteLLM's JSON) that overrides or extends
    /// the embedded table.
    #[arg(long, env = "BURNRATE_PRICES")]
    prices: Option<PathBuf>,
    /// Price only from --prices: the embedded table is left out.
    #[arg(long, requires = "prices")]
    no_embedded_prices: bool,
    /// Which record counts a Claude Code model or tool call: its log event or its span.
    #[arg(long, value_enum, env = "BURNRATE_CALL_SOURCE")]
    call_source: Option<CallSourceArg>,
    /// What happens to prompt and response text in attributes.
    #[arg(long, value_enum, env = "BURNRATE_CONTENT")]
    content: Option<ContentArg>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CallSourceArg {
    Events,
    Spans,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ContentArg {
    Redact,
    Hash,
    Keep,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Subcommand)]
enum ReportCommand {
    /// One day's report (in report.time_zone, UTC by default): spend and its change, volume, errors, latency, cache, top
    /// spenders, anomalies.
    #[command(
        after_help = "Examples:\n  burnrate report daily                              # yesterday, to the terminal\n  burnrate report daily --date 2026-10-14 --format markdown\n  burnrate report daily --format json --out report.json\n  burnrate report daily --format html --out report.html   # charts, opens offline\n  burnrate report daily --format html,markdown,json --out-dir ./reports --webhook https://hooks.example/T0/B0/x"
    )]
    Daily {
        /// The day [default: yesterday in the report's time zone].
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
        #[command(flatten)]
        output: ReportOutput,
    },
    /// The report of the days FROM..=TO (a week, a month).
    #[command(
        after_help = "Example:\n  burnrate report range --from 2026-10-01 --to 2026-10-31 --format csv --out october.csv"
    )]
    Range {
        #[arg(long)]
        from: chrono::NaiveDate,
        #[arg(long)]
        to: chrono::NaiveDate,
        #[command(flatten)]
        output: ReportOutput,
    },
}

#[derive(Debug, clap::Args)]
struct ReportOutput {
    /// Dataset directory [default: ./burnrate-data, or data_dir from the config file].
    #[arg(long, env = "BURNRATE_DATA_DIR")]
    data: Option<PathBuf>,
    /// One format, or several separated by commas together with --out-dir.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "text")]
    format: Vec<ReportFormat>,
    /// Write to this file instead of standard output.
    #[arg(long, conflicts_with = "out_dir")]
    out: Option<PathBuf>,
    /// Write one file per format into this directory (or s3://BUCKET/PREFIX):
    /// report-<day>.<ext>, or report-<from>_<to>.<ext> for a range (ext: txt, md, html, csv,
    /// json).
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// The IANA time zone of the report's days and hours [default: report.time_zone, UTC].
    #[arg(long)]
    time_zone: Option<String>,
    /// Also POST the Markdown report as JSON `{"text": ...}` to this URL (Slack-style incoming
    /// webhooks; Mattermost and Teams workflows accept it too).
    #[arg(long, env = "BURNRATE_REPORT_WEBHOOK", hide_env_values = true)]
    webhook: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ReportFormat {
    Text,
    Markdown,
    /// One self-contained page with inline SVG charts.
    Html,
    Csv,
    Json,
}

impl ReportFormat {
    fn extension(self) -> &'static str {
        match self {
            ReportFormat::Text => "txt",
            ReportFormat::Markdown => "md",
            ReportFormat::Html => "html",
            ReportFormat::Csv => "csv",
            ReportFormat::Json => "json",
        }
    }
}

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
struct GenerateArgs {
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

#[derive(Debug, clap::Args)]
struct ProfileArgs {
    /// The hour before --until (the default range).
    #[arg(long, conflicts_with = "since")]
    last_hour: bool,
    /// How far back from --until: 30m, 24h, 7d.
    #[arg(long, value_parser = parse_duration)]
    since: Option<Duration>,
    /// End of the range: `now`, `latest` (the newest span or call in the dataset) or an RFC 3339
    /// time such as 2026-11-24T18:00:00Z.
    #[arg(long, default_value = "now", value_parser = parse_until)]
    until: Until,
    #[arg(long, value_enum, default_value = "operation")]
    by: ProfileByArg,
    /// Dataset directory [default: ./burnrate-data, or data_dir from the config file].
    #[arg(long, env = "BURNRATE_DATA_DIR")]
    data: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    format: FormatArg,
}

#[derive(Debug, Clone, Copy)]
enum Until {
    Now,
    Latest,
    At(chrono::DateTime<chrono::Utc>),
}

fn parse_spend(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(usd) if (0.01..=10_000.0).contains(&usd) => Ok(usd),
        _ => Err(format!(
            "{text:?} is not a daily spend between 0.01 and 10000 USD"
        )),
    }
}

fn parse_until(text: &str) -> Result<Until, String> {
    match text {
        "now" => Ok(Until::Now),
        "latest" => Ok(Until::Latest),
        _ => chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| Until::At(t.with_timezone(&chrono::Utc)))
            .map_err(|_| format!("{text:?} is not now, latest or an RFC 3339 time")),
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProfileByArg {
    /// Span names and timed events.
    Operation,
    /// Tool names (each tool use once).
    Tool,
    /// Models (each model call once), with their spend.
    Model,
    /// Where calls came from: main, subagent, auxiliary, sdk; with their spend.
    QuerySource,
    /// Normal or fast mode, with their spend.
    Speed,
    /// Reasoning effort, with its spend.
    Effort,
}

async fn profile(config: &Config, args: ProfileArgs) -> anyhow::Result<ExitCode> {
    use burnrate_engine::ProfileBy;
    let data = args.data.unwrap_or_else(|| config.data_dir.clone());
    let to = match args.until {
        Until::Now => chrono::Utc::now(),
        Until::At(t) => t,
        Until::Latest => match burnrate_engine::profile::latest_time(&data).await? {
            // The range is half-open: one nanosecond past the newest keeps it in.
            Some(t) => t + chrono::Duration::nanoseconds(1),
            None => anyhow::bail!("no spans or calls in {}", data.display()),
        },
    };
    let back = args.since.unwrap_or(Duration::from_secs(3600));
    let from = to - chrono::Duration::from_std(back).context("--since is too long")?;
    let by = match args.by {
        ProfileByArg::Operation => ProfileBy::Operation,
        ProfileByArg::Tool => ProfileBy::Tool,
        ProfileByArg::Model => ProfileBy::Model,
        ProfileByArg::QuerySource => ProfileBy::QuerySource,
        ProfileByArg::Speed => ProfileBy::Speed,
        ProfileByArg::Effort => ProfileBy::Effort,
    };
    let lines = burnrate_engine::profile::profile(&data, by, from, to).await?;
    let text = match args.format {
        FormatArg::Table => {
            let range = format!(
                "{} to {}",
                from.format("%Y-%m-%d %H:%M:%S"),
                to.format("%Y-%m-%d %H:%M:%S UTC")
            );
            if lines.is_empty() {
                format!("Nothing recorded from {range}.\n")
            } else {
                format!("{range}\n{}", burnrate_engine::profile::to_table(&lines))
            }
        }
        FormatArg::Csv => burnrate_engine::profile::to_csv(&lines),
        FormatArg::Json => lines
            .iter()
            .map(|l| serde_json::to_string(l).map(|s| s + "\n"))
            .collect::<Result<String, _>>()?,
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
struct QueryArgs {
    /// The SQL statement.
    sql: String,
    /// Dataset directory [default: ./burnrate-data, or data_dir from the config file].
    #[arg(long, env = "BURNRATE_DATA_DIR")]
    data: Option<PathBuf>,
    /// Output: a terminal table, CSV with a header, or JSON lines.
    #[arg(long, value_enum, default_value = "table")]
    format: FormatArg,
}

async fn report_command(config: &Config, command: ReportCommand) -> anyhow::Result<ExitCode> {
    let output = match &command {
        ReportCommand::Daily { output, .. } | ReportCommand::Range { output, .. } => output,
    };
    let mut report_config = config.report.clone();
    if let Some(zone) = &output.time_zone {
        report_config.time_zone = zone.clone();
    }
    let zone = report_config.zone()?;
    let (from, to) = match &command {
        ReportCommand::Daily { date, .. } => {
            let today = chrono::Utc::now().with_timezone(&zone).date_naive();
            let day = date.unwrap_or(today - chrono::Days::new(1));
            (day, day)
        }
        ReportCommand::Range { from, to, .. } => (*from, *to),
    };
    let data = output
        .data
        .clone()
        .unwrap_or_else(|| config.data_dir.clone());
    let report = burnrate_engine::CostReport::build(
        &data,
        from,
        to,
        &config.price_table()?,
        &config.anomalies.budgets,
        zone,
    )
    .await?;
    let render = |format: ReportFormat| -> anyhow::Result<String> {
        Ok(match format {
            ReportFormat::Text => report.to_text(),
            ReportFormat::Markdown => report.to_markdown(),
            ReportFormat::Html => report.to_html(),
            ReportFormat::Csv => report.to_csv(),
            ReportFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
        })
    };
    match (&output.out_dir, output.format.as_slice()) {
        (Some(dir), formats) => {
            let stem = if from == to {
                format!("report-{from}")
            } else {
                format!("report-{from}_{to}")
            };
            let destination = dir.to_string_lossy();
            if burnrate_engine::mirror::is_object_url(&destination) {
                let store = burnrate_engine::ObjectStoreConfig {
                    url: Some(destination.trim_end_matches('/').to_string()),
                    ..config.object_store.clone()
                };
                let store = burnrate_engine::ObjectMirror::open(&store)?
                    .context("no object store for --out-dir")?;
                for format in formats {
                    let name = format!("{stem}.{}", format.extension());
                    store
                        .put_bytes(&name, render(*format)?.into_bytes())
                        .with_context(|| format!("cannot write {destination}/{name}"))?;
                }
            } else {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                for format in formats {
                    let path = dir.join(format!("{stem}.{}", format.extension()));
                    // Written whole under a temporary name, then renamed: a reader (or an
                    // upload job) never sees half a report.
                    let tmp = path.with_extension("tmp");
                    std::fs::write(&tmp, render(*format)?)
                        .and_then(|()| std::fs::rename(&tmp, &path))
                        .with_context(|| format!("cannot write {}", path.display()))?;
                }
            }
        }
        (None, [format]) => {
            let text = render(*format)?;
            match &output.out {
                Some(path) => std::fs::write(path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => std::io::stdout().write_all(text.as_bytes())?,
            }
        }
        (None, _) => anyhow::bail!("several --format values need --out-dir"),
    }
    if let Some(url) = &output.webhook {
        let body = serde_json::json!({ "text": report.to_markdown() });
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(15)))
            .build()
            .new_agent();
        agent
            .post(url)
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .map_err(|e| anyhow::anyhow!("posting the report to the webhook failed: {e}"))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn generate(args: GenerateArgs) -> anyhow::Result<ExitCode> {
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

/// A progress bar on a terminal, nothing otherwise.
fn progress_bar(length: u64, template: &str) -> ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((text, "s"), |i| text.split_at(i));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 5s, 2m, 1h, 7d"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        _ => return Err(format!("{text:?}: unit must be ms, s, m, h or d")),
    };
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(format!("{text:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.render().to_string();
            let mut lines = text.lines();
            let first = lines.next().unwrap_or_default();
            let mut first = first.strip_prefix("error: ").unwrap_or(first).to_string();
            // "the following required arguments were not provided:" names them below.
            if first.ends_with(':') {
                let named: Vec<&str> = lines
                    .take_while(|l| !l.trim().is_empty())
                    .map(str::trim)
                    .collect();
                first = format!("{first} {}", named.join(", "));
            }
            eprintln!("burnrate: error: {first} (see burnrate --help)");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BURNRATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("burnrate: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("burnrate: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Run(args) => run(&mut config, *args).await,
        Command::Query(args) => query(&config, args).await,
        Command::Generate(args) => generate(args),
        Command::Report(command) => report_command(&config, command).await,
        Command::Profile(args) => profile(&config, args).await,
        Command::ExportTrace {
            session,
            data,
            output,
        } => {
            let data = data.unwrap_or_else(|| config.data_dir.clone());
            let document = burnrate_engine::export_trace(&data, &session).await?;
            let text = serde_json::to_string_pretty(&document)? + "\n";
            match output {
                Some(path) => std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => std::io::stdout().write_all(text.as_bytes())?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Prices {
            prices,
            no_embedded_prices,
            check,
            data,
        } => {
            if prices.is_some() {
                config.prices = prices;
            }
            if no_embedded_prices {
                config.prices_embedded = false;
            }
            if check {
                let data = data.unwrap_or_else(|| config.data_dir.clone());
                return check_prices(&config, &data).await;
            }
            print_prices(&config)
        }
    }
}

async fn run(config: &mut Config, args: RunArgs) -> anyhow::Result<ExitCode> {
    apply_run_flags(config, &args);
    let decoder = Decoder::new(config.mapping.clone(), config.price_table()?);
    // Before any source opens its sink: every file it writes then goes to the store too.
    if let Some(mirror) = burnrate_engine::ObjectMirror::open(&config.object_store)? {
        tracing::info!(
            url = mirror.url(),
            "mirroring the dataset to object storage"
        );
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
        burnrate_engine::mirror::mirror_dataset(&config.data_dir, mirror);
    }
    match args.source {
        Source::Files => run_files(config, args, decoder).await,
        Source::Kafka => run_kafka(config, args, decoder).await,
        Source::Receiver => {
            anyhow::ensure!(
                !args.drain,
                "--drain applies to --source files and --source kafka; the receiver runs until stopped"
            );
            run_receiver(config, decoder).await
        }
    }
}

/// Flags override the configuration file and environment.
fn apply_run_flags(config: &mut Config, args: &RunArgs) {
    if let Some(output) = &args.output {
        config.data_dir = output.clone();
    }
    if args.no_embedded_prices {
        config.prices_embedded = false;
    }
    if let Some(prices) = &args.prices {
        config.prices = Some(prices.clone());
    }
    if let Some(source) = args.call_source {
        config.mapping.call_source = match source {
            CallSourceArg::Events => CallSource::Events,
            CallSourceArg::Spans => CallSource::Spans,
        };
    }
    if let Some(content) = args.content {
        config.mapping.content = match content {
            ContentArg::Redact => ContentPolicy::Redact,
            ContentArg::Hash => ContentPolicy::Hash,
            ContentArg::Keep => ContentPolicy::Keep,
        };
    }
    if let Some(brokers) = &args.brokers {
        config.kafka.brokers = brokers.clone();
    }
    if let Some(group) = &args.group {
        config.kafka.group_id = group.clone();
    }
    if !args.topics.is_empty() {
        // A topic the configuration describes keeps its signal and encoding.
        let configured = std::mem::take(&mut config.kafka.topics);
        config.kafka.topics = args
            .topics
            .iter()
            .map(|name| {
                configured
                    .iter()
                    .find(|t| &t.name == name)
                    .cloned()
                    .unwrap_or_else(|| KafkaTopic::named(name))
            })
            .collect();
    }
    if let Some(listen) = args.http_listen {
        config.receiver.http_listen = listen;
    }
    if let Some(listen) = args.grpc_listen {
        config.receiver.grpc_listen = listen;
    }
    if let Some(listen) = args.health_listen {
        config.health_listen = listen;
    }
    if let Some(tokens) = &args.auth_tokens {
        config.receiver.auth_tokens_file = Some(tokens.clone());
    }
    if let Some(cert) = &args.tls_cert {
        config.receiver.tls_cert_file = Some(cert.clone());
    }
    if let Some(key) = &args.tls_key {
        config.receiver.tls_key_file = Some(key.clone());
    }
    if let Some(ca) = &args.tls_client_ca {
        config.receiver.tls_client_ca_file = Some(ca.clone());
    }
    if args.insecure {
        config.receiver.insecure = true;
    }
    if let Some(limit) = args.memory_limit {
        config.memory_limit = limit;
    }
    if let Some(grace) = args.shutdown_grace {
        config.shutdown_grace_seconds = grace.as_secs_f64();
    }
    if let Some(url) = &args.pushgateway {
        config.pushgateway.url = Some(url.clone());
    }
    if let Some(replica) = &args.replica {
        config.replica = replica.clone();
    }
}

/// The window stage over the dataset, pushing to the Pushgateway when one is configured.
fn open_windows(config: &Config, health: &Arc<PipelineHealth>) -> anyhow::Result<WindowStage> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    let mut windows = WindowStage::open_with(
        &config.data_dir,
        &config.windows,
        &config.anomalies,
        &config.replica,
        config.pushgateway.max_series,
    )?;
    if let Some(pushgateway) =
        Pushgateway::start(&config.pushgateway, &config.replica, health.clone())
    {
        windows.publish_to(pushgateway, health.clone());
    }
    Ok(windows)
}

/// How long a finished run waits for its last Pushgateway push.
const PUSH_GRACE: Duration = Duration::from_secs(5);

async fn run_files(config: &Config, args: RunArgs, decoder: Decoder) -> anyhow::Result<ExitCode> {
    let input = args
        .input
        .context("--input DIR is required with --source files")?;
    let health = PipelineHealth::new();
    let windows = open_windows(config, &health)?;
    let mut pipeline = FilePipeline::open(
        decoder,
        &input,
        &config.data_dir,
        config.files.clone(),
        health,
        windows,
    )
    .await?;
    let mut total = FileRunSummary::default();
    loop {
        let summary = ingest_with_progress(&mut pipeline)?;
        report(&summary, &config.data_dir);
        accumulate(&mut total, &summary);
        if args.drain {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(args.poll_interval) => {}
            _ = shutdown_signal() => break,
        }
    }
    warn_unpushed(pipeline.windows().finish(PUSH_GRACE));
    Ok(exit_code(total.written.dead_letters))
}

fn warn_unpushed(delivered: bool) {
    if !delivered {
        eprintln!(
            "burnrate: warning: the Pushgateway did not take the last push; the totals are kept and pushed on the next run"
        );
    }
}

fn exit_code(dead_letters: u64) -> ExitCode {
    if dead_letters > 0 {
        ExitCode::from(EXIT_DEAD_LETTERS)
    } else {
        ExitCode::SUCCESS
    }
}

/// Resolves on SIGTERM or SIGINT, after arming a watchdog: if flushing and committing take
/// longer than the grace period, the process exits anyway (what is not committed is replayed
/// on the next start, so nothing is lost).
async fn stop_within_grace(grace_seconds: f64) {
    shutdown_signal().await;
    let grace = Duration::from_secs_f64(grace_seconds.max(0.0));
    tracing::info!("stopping: flushing and committing within {grace:?}");
    std::thread::spawn(move || {
        std::thread::sleep(grace);
        eprintln!(
            "burnrate: error: shutdown did not finish within {grace:?}; exiting, uncommitted data is replayed on restart"
        );
        std::process::exit(1);
    });
}

/// Serves the health endpoints until the returned sender is dropped or fired.
async fn start_health(
    config: &Config,
    health: &Arc<PipelineHealth>,
) -> anyhow::Result<tokio::sync::oneshot::Sender<()>> {
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    burnrate_engine::serve_health(config.health_listen, health.clone(), async move {
        let _ = finished.await;
    })
    .await?;
    Ok(done)
}

async fn run_kafka(config: &Config, args: RunArgs, decoder: Decoder) -> anyhow::Result<ExitCode> {
    let health = PipelineHealth::new();
    let health_server = start_health(config, &health).await?;
    let windows = open_windows(config, &health)?;
    let mut pipeline = KafkaPipeline::open(
        decoder,
        &config.data_dir,
        config.kafka.clone(),
        health.clone(),
        windows,
        MemoryBudget::for_memory_limit(config.memory_limit),
    )?;
    let summary = pipeline
        .run(args.drain, stop_within_grace(config.shutdown_grace_seconds))
        .await?;
    warn_unpushed(pipeline.finish_windows(PUSH_GRACE));
    drop(health_server);
    report_kafka(&summary, &config.data_dir);
    Ok(exit_code(summary.written.dead_letters))
}

fn report_kafka(summary: &KafkaRunSummary, data_dir: &std::path::Path) {
    eprintln!(
        "burnrate: {} messages, {} bytes → {} in {} segments [{}]",
        summary.messages,
        summary.bytes,
        data_dir.display(),
        summary.written.segments_written,
        rows_line(&summary.written.rows)
    );
    if summary.orphans_removed > 0 {
        eprintln!(
            "burnrate: removed {} uncommitted files of an interrupted run; their messages were consumed again",
            summary.orphans_removed
        );
    }
    report_quality(&summary.written, "messages");
}

async fn run_receiver(config: &Config, decoder: Decoder) -> anyhow::Result<ExitCode> {
    // Before anything is opened or bound.
    config.receiver.check()?;
    let health = PipelineHealth::new();
    let health_server = start_health(config, &health).await?;
    let windows = open_windows(config, &health)?;
    let receiver = OtlpReceiver::open(
        decoder,
        &config.data_dir,
        config.receiver.clone(),
        health.clone(),
        windows,
        MemoryBudget::for_memory_limit(config.memory_limit),
    )
    .await?;
    eprintln!(
        "burnrate: receiving OTLP on http://{} and grpc://{}, writing {}; stop with Ctrl-C",
        config.receiver.http_listen,
        config.receiver.grpc_listen,
        config.data_dir.display()
    );
    let summary = receiver
        .run(stop_within_grace(config.shutdown_grace_seconds))
        .await?;
    drop(health_server);
    report_receiver(&summary, &config.data_dir);
    Ok(ExitCode::SUCCESS)
}

fn report_receiver(summary: &ReceiverSummary, data_dir: &std::path::Path) {
    eprintln!(
        "burnrate: {} requests ({} rejected), {} bytes → {} in {} segments [{}]",
        summary.requests,
        summary.rejected,
        summary.bytes,
        data_dir.display(),
        summary.written.segments_written,
        rows_line(&summary.written.rows)
    );
    if summary.logs_replayed > 0 {
        eprintln!(
            "burnrate: replayed {} receiver logs an interrupted run left",
            summary.logs_replayed
        );
    }
    report_quality(&summary.written, "requests");
}

fn rows_line(rows: &std::collections::BTreeMap<&'static str, usize>) -> String {
    let rows: Vec<String> = rows
        .iter()
        .map(|(table, n)| format!("{table} {n}"))
        .collect();
    rows.join(", ")
}

fn ingest_with_progress(pipeline: &mut FilePipeline) -> anyhow::Result<FileRunSummary> {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {bytes}/{total_bytes} [{bar:30}] {bytes_per_sec} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let summary = pipeline.ingest(&mut |event| match event {
        Progress::Started { files, bytes } => {
            bar.set_length(bytes);
            bar.set_message(format!("{files} files"));
        }
        Progress::File { bytes, .. } => bar.inc(bytes),
        Progress::DeadLetter { path, error } => {
            bar.suspend(|| eprintln!("burnrate: dead letter: {}: {error}", path.display()));
        }
    })?;
    bar.finish_and_clear();
    Ok(summary)
}

fn report(summary: &FileRunSummary, data_dir: &std::path::Path) {
    if summary.files_found == 0 {
        return;
    }
    eprintln!(
        "burnrate: {} files ({} already ingested), {} bytes → {} [{}]",
        summary.files_found,
        summary.files_skipped,
        summary.bytes_read,
        data_dir.display(),
        rows_line(&summary.written.rows)
    );
    if summary.orphans_removed > 0 {
        eprintln!(
            "burnrate: removed {} uncommitted files of an interrupted run",
            summary.orphans_removed
        );
    }
    report_quality(&summary.written, "inputs");
}

/// What a user should hear about the data itself, whatever the source.
fn report_quality(written: &FlushTotals, inputs: &str) {
    let (rows_with_errors, dead_letters) = (written.rows_with_errors, written.dead_letters);
    if rows_with_errors > 0 {
        eprintln!(
            "burnrate: {rows_with_errors} rows have unparsable values (see their parse_error column)"
        );
    }
    for (model, calls) in &written.unpriced_models {
        eprintln!(
            "burnrate: no price for model {model:?}: {calls} calls are booked at the cost the client reported, where it reported one (see cost_source); add the model with --prices"
        );
    }
    if dead_letters > 0 {
        eprintln!(
            "burnrate: {dead_letters} {inputs} could not be decoded and are in the dead_letters table"
        );
    }
}

fn accumulate(total: &mut FileRunSummary, pass: &FileRunSummary) {
    total.files_found += pass.files_found;
    total.written.dead_letters += pass.written.dead_letters;
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn query(config: &Config, args: QueryArgs) -> anyhow::Result<ExitCode> {
    let data = args.data.unwrap_or_else(|| config.data_dir.clone());
    let ctx = burnrate_engine::open_dataset(&data).await?;
    let batches = burnrate_engine::catalog::run_sql(&ctx, &args.sql).await?;
    let format = match args.format {
        FormatArg::Table => ResultFormat::Table,
        FormatArg::Csv => ResultFormat::Csv,
        FormatArg::Json => ResultFormat::Json,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    burnrate_engine::write_results(&batches, format, &mut out)?;
    out.flush().ok();
    Ok(ExitCode::SUCCESS)
}

/// Exit status of `prices --check` when it finds unpriced or disagreeing models.
const PRICE_FINDINGS: u8 = 4;

async fn check_prices(config: &Config, data: &Path) -> anyhow::Result<ExitCode> {
    let table = config.price_table()?;
    let checks = burnrate_engine::price_check::check_prices(data, &table).await?;
    let unpriced: Vec<_> = checks.iter().filter(|c| c.unpriced_calls > 0).collect();
    let mismatched: Vec<_> = checks.iter().filter(|c| c.mismatched_calls > 0).collect();
    let calls: u64 = checks.iter().map(|c| c.calls).sum();
    println!(
        "{} models, {calls} successful calls in {}",
        checks.len(),
        data.display()
    );
    if !unpriced.is_empty() {
        let mut grid = comfy_table::Table::new();
        grid.load_style(comfy_table::presets::UTF8_FULL_CONDENSED);
        grid.set_header(["model without a price", "calls", "reported cost"]);
        for c in &unpriced {
            grid.add_row([
                c.model.clone(),
                c.unpriced_calls.to_string(),
                format!("${:.6}", c.unpriced_reported_usd),
            ]);
        }
        println!("{grid}");
    }
    if !mismatched.is_empty() {
        let mut grid = comfy_table::Table::new();
        grid.load_style(comfy_table::presets::UTF8_FULL_CONDENSED);
        grid.set_header([
            "model",
            "calls that differ",
            "table",
            "reported",
            "difference",
        ]);
        for c in &mismatched {
            grid.add_row([
                c.model.clone(),
                format!("{} of {}", c.mismatched_calls, c.calls),
                format!("${:.6}", c.mismatch_table_usd),
                format!("${:.6}", c.mismatch_reported_usd),
                format!("{:+.6}", c.mismatch_table_usd - c.mismatch_reported_usd),
            ]);
        }
        println!("{grid}");
    }
    if unpriced.is_empty() && mismatched.is_empty() {
        println!("every model has a price, and every price agrees with the reported cost");
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(PRICE_FINDINGS))
    }
}

fn print_prices(config: &Config) -> anyhow::Result<ExitCode> {
    let table = config.price_table()?;
    let mut grid = comfy_table::Table::new();
    grid.load_style(comfy_table::presets::UTF8_FULL_CONDENSED);
    grid.set_header([
        "model",
        "input $/Mtok",
        "output",
        "cache write 5m",
        "cache write 1h",
        "cache read",
        "long context (> tokens: input/output)",
        "fast",
    ]);
    let usd = |pico: u64| format!("{}", pico as f64 / 1e6);
    for (name, price) in table.models() {
        let r = &price.base;
        let long = price.long_context.map_or(String::new(), |lc| {
            format!(
                "> {}: {}/{}",
                lc.threshold_tokens,
                usd(lc.rates.input),
                usd(lc.rates.output)
            )
        });
        grid.add_row([
            name.to_string(),
            usd(r.input),
            usd(r.output),
            usd(r.cache_write_5m),
            usd(r.cache_write_1h),
            usd(r.cache_read),
            long,
            price
                .fast_permille
                .map_or(String::new(), |m| format!("{}x", m as f64 / 1000.0)),
        ]);
    }
    println!("{grid}");
    Ok(ExitCode::SUCCESS)
}
