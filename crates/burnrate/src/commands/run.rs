//! `burnrate run`: a source (receiver, Kafka or files) through decoding to the dataset, the
//! windows and the Pushgateway, until it drains or is stopped.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use burnrate_engine::{
    FilePipeline, FileRunSummary, FlushTotals, InProcessCompaction, KafkaPipeline, KafkaRunSummary,
    KafkaTopic, MemoryBudget, OtlpReceiver, PipelineHealth, Progress, Pushgateway, ReceiverSummary,
    WindowPublisher, WindowStage,
};
use burnrate_otlp::{CallSource, ContentPolicy, Decoder};
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::Config;

use super::*;

/// Exit code of a run that finished but set some inputs aside as dead letters.
const EXIT_DEAD_LETTERS: u8 = 3;

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
pub(crate) struct RunArgs {
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
    #[arg(long, env = "BURNRATE_MEMORY_LIMIT", value_parser = crate::config::parse_byte_size)]
    memory_limit: Option<u64>,
    /// Address of /healthz, /readyz and /metrics [default: 127.0.0.1:9464].
    #[arg(long, env = "BURNRATE_HEALTH_LISTEN")]
    health_listen: Option<SocketAddr>,
    /// How long (event time) a cumulative metric series may go unseen before its last point
    /// leaves memory, e.g. 1h; 0s keeps every series [default: 1h, or
    /// cumulative_staleness_seconds from the source's config section].
    #[arg(long, env = "BURNRATE_CUMULATIVE_STALENESS", value_parser = parse_duration_or_zero)]
    cumulative_staleness: Option<Duration>,
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
    /// Write plain Hive-partitioned Parquet, committed to no Delta log (`table_logs = false`).
    #[arg(long)]
    no_table_logs: bool,
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

pub(crate) async fn run(config: &mut Config, args: RunArgs) -> anyhow::Result<ExitCode> {
    apply_run_flags(config, &args);
    let decoder = Decoder::new(config.mapping.clone(), config.price_table()?);
    if !config.table_logs {
        anyhow::ensure!(
            config.object_store.url.is_none(),
            "table_logs = false: the object store's copy is committed through the logs; set one or the other"
        );
        burnrate_engine::sink::table_log::write_without_logs(&config.data_dir)?;
    }
    // Before any source opens its sink: every file it writes then goes to the store too.
    mirror_to_store(config, &config.data_dir)?;
    let code = match args.source {
        Source::Files => run_files(config, args, decoder).await?,
        Source::Kafka => run_kafka(config, args, decoder).await?,
        Source::Receiver => {
            anyhow::ensure!(
                !args.drain,
                "--drain applies to --source files and --source kafka; the receiver runs until stopped"
            );
            run_receiver(config, decoder).await?
        }
    };
    // A commit whose copy to the store's log failed was only logged: the run ends with the
    // store's logs complete, or with an error saying they are not.
    burnrate_engine::sink::mirror::publish_all(&config.data_dir)?;
    Ok(code)
}

/// Flags override the configuration file and environment.
fn apply_run_flags(config: &mut Config, args: &RunArgs) {
    if let Some(output) = &args.output {
        config.data_dir = output.clone();
    }
    if args.no_table_logs {
        config.table_logs = false;
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
    if let Some(staleness) = args.cumulative_staleness {
        // Under a second is a second: zero is the setting that keeps every series.
        let seconds = if staleness.is_zero() {
            0
        } else {
            staleness.as_secs().max(1)
        };
        config.files.cumulative_staleness_seconds = seconds;
        config.kafka.cumulative_staleness_seconds = seconds;
        config.receiver.cumulative_staleness_seconds = seconds;
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
        windows.output_to(Box::new(WindowPublisher::new(pushgateway, health.clone())));
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
    let budget = MemoryBudget::for_memory_limit(config.memory_limit);
    // A drain is a batch: `burnrate compact` follows it if wanted.
    let _compaction = if args.drain {
        None
    } else {
        start_compaction(config, &budget)?
    };
    let mut pipeline = FilePipeline::open(
        decoder,
        &input,
        &config.data_dir,
        config.files.clone(),
        health,
        windows,
        budget,
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

/// Compaction inside the run, every `compaction.interval_hours` (none when it is 0).
fn start_compaction(
    config: &Config,
    budget: &std::sync::Arc<MemoryBudget>,
) -> anyhow::Result<Option<InProcessCompaction>> {
    // Compaction swaps files through the logs.
    if !config.table_logs {
        return Ok(None);
    }
    Ok(InProcessCompaction::start(
        &config.data_dir,
        &config.compaction,
        &config.kafka.group_id,
        budget,
    )?)
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
    let budget = MemoryBudget::for_memory_limit(config.memory_limit);
    let _compaction = if args.drain {
        None
    } else {
        start_compaction(config, &budget)?
    };
    let mut pipeline = KafkaPipeline::open(
        decoder,
        &config.data_dir,
        config.kafka.clone(),
        health.clone(),
        windows,
        budget,
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
    let budget = MemoryBudget::for_memory_limit(config.memory_limit);
    let _compaction = start_compaction(config, &budget)?;
    let receiver = OtlpReceiver::open(
        decoder,
        &config.data_dir,
        config.receiver.clone(),
        health.clone(),
        windows,
        budget,
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
    if summary.logs_settled > 0 {
        eprintln!(
            "burnrate: {} receiver logs an interrupted run left were in the tables already (positions table): deleted unread",
            summary.logs_settled
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
