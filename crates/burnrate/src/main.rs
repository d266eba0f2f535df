//! `burnrate`: the command line. This file parses flags, loads the configuration and hands each
//! command to its file in `commands/`, which wires sources, decoder and sinks together and shows
//! progress; everything they run lives in the library crates.

mod allocator;
mod commands;
mod config;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands::*;
use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "burnrate",
    version,
    about = "Cost analytics for AI coding agents: OTLP telemetry in, Parquet and answers out",
    after_help = "Examples:\n  burnrate run                                   # OTLP receiver on 127.0.0.1:4318 (HTTP) and :4317 (gRPC)\n  burnrate run --source files --input ./otlp-exports --drain\n  burnrate query \"SELECT model, sum(cost_usd) FROM api_requests GROUP BY model\""
)]
struct Cli {
    /// Configuration file (TOML); every key has a default, see docs/configuration.md.
    #[arg(long, global = true, env = "BURNRATE_CONFIG")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ingest OTLP exports and write the Parquet dataset.
    #[command(
        after_help = "Examples:\n  burnrate run                                     # receive OTLP on 127.0.0.1:4318 and :4317\n  OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 claude   # ... and point Claude Code at it\n  burnrate run --source kafka --brokers kafka:9092 --group burnrate\n  burnrate run --source kafka --brokers 127.0.0.1:9092 --group backfill --drain\n  burnrate run --source files --input ../shared/otlp-samples --output ./burnrate-data --drain\n\nSIGTERM or SIGINT stops taking data, flushes and commits, and exits 0 within the grace period.\nExit codes: 0 done, 1 error, 2 bad arguments, 3 done but some inputs became dead letters\n(see the dead_letters table), 75 an error that can pass by itself (a full disk, a broker or\nobject store away): run it again."
    )]
    Run(Box<run::RunArgs>),
    /// Run SQL over the Parquet dataset.
    #[command(
        after_help = "Tables: api_requests, tool_calls, usage_metrics, log_records, metric_points, spans,\ndead_letters, usage_windows, late_events (each with a `date` partition column).\nFunctions: sketch_merge(latency_sketch), sketch_quantile(sketch, q) over usage_windows.\n\nExamples:\n  burnrate query \"SELECT model, count(*) AS calls, sum(cost_usd) AS usd FROM api_requests GROUP BY model\"\n  burnrate query \"SELECT model, sketch_quantile(sketch_merge(latency_sketch), 0.95) AS p95_ms FROM usage_windows GROUP BY model\"\n  burnrate query --format csv \"SELECT * FROM tool_calls\" > tools.csv"
    )]
    Query(query::QueryArgs),
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
    Report(report::ReportCommand),
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
    Profile(profile::ProfileArgs),
    /// Give every table of a dataset written before the Delta logs a log of the files it holds.
    #[command(
        after_help = "Tables written by this version have a Delta log (<table>/_delta_log) that lists their\nfiles; readers go by it. A dataset written before had none: this creates each missing log,\nlisting the Parquet files already there, without rewriting or moving any. Running it again\nchanges nothing. `burnrate run` does the same for a table the first time it writes to it.\n\nExamples:\n  burnrate migrate --data ./burnrate-data"
    )]
    Migrate(migrate::MigrateArgs),
    /// Merge each table's closed days into a few large files sorted by time, and delete the
    /// files no table lists any more.
    #[command(
        after_help = "A day (UTC) at least compaction.min_age_days old that holds more than --max-files-per-day files\nhas its small files merged: sorted by time and cut at --target-file-size, swapped in one Delta\ncommit per table, so a reader sees the old files or the new ones, never both. Files a source has\nnot committed yet are left alone (a restart writes them again). A merged-away file is deleted\nonce --vacuum-after has passed, with any file no log ever listed (a crashed flush's). Safe while\n`burnrate run` writes the same dataset; run it from cron, or the overlays' CronJob.\n\nExamples:\n  burnrate compact --data ./burnrate-data\n  burnrate compact --data ./burnrate-data --target-file-size 64MiB --vacuum-after 1d"
    )]
    Compact(compact::CompactArgs),
    /// Remove one person's rows from every table, and delete the files that held them.
    #[command(
        after_help = "Removes the rows whose user_id or user_email is --user, or whose attributes carry it\n(user.id, user.email, user.account_uuid); then every row of the sessions found that way\n(the raw tables name only the session), the anomalies about them and the dead letters whose\nbytes hold the id or one of the sessions. A window row that counts several people keeps its\ncounts and loses the person's sessions. Each file is rewritten without the rows in one Delta\ncommit per table, then deleted at once, with older copies the log no longer lists. Files a\nsource has not committed yet are left and counted: run it again a minute later. It exits 1\nwhen anything was left. Kafka topics and the receiver's write-ahead logs keep raw records\nuntil their own retention.\n\nExamples:\n  burnrate forget --user 4f1c...e9 --data ./burnrate-data\n  burnrate forget --user ada@example.com --json"
    )]
    Forget(forget::ForgetArgs),
    /// Write synthetic Claude Code telemetry (OTLP log exports) for a simulated team.
    #[command(
        after_help = "Writes one export per user, hour and signal under OUT/<date>/, and OUT/incidents.jsonl with the\ninjected incidents (kind, start, end, whom). Deterministic: the same seed gives the same bytes.\n\nExamples:\n  burnrate generate --out ./synthetic --scenario evaluation       # 30 days, 20 people, 7 incidents\n  burnrate generate --out ./quiet --scenario quiet --days 7 --users 50 --format json\n  burnrate generate --post http://127.0.0.1:4318 --days 1 --users 5 --rate 20\n  burnrate generate --kafka 127.0.0.1:9092 --temporality cumulative\n  burnrate run --source files --input ./synthetic --drain"
    )]
    Generate(generate::GenerateArgs),
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

fn main() -> ExitCode {
    allocator::return_freed_memory_promptly();
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
        .with_env_filter(tracing_subscriber::EnvFilter::new(log_filter(
            std::env::var("BURNRATE_LOG").ok(),
        )))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // DataFusion evaluates an expression tree recursively on the runtime's workers: their
    // stacks are the main thread's 8 MiB, not tokio's 2, so a query at the deepest nesting
    // `query` allows (burnrate_engine's MAX_EXPRESSION_DEPTH) runs in the debug build too.
    // Address space only: a stack's pages are touched as it grows.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(8 << 20)
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("burnrate: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("burnrate: error: {}", one_line(&e));
            if is_retryable(&e) {
                eprintln!(
                    "burnrate: this can pass by itself; the same command run again resumes from what was committed"
                );
                return ExitCode::from(EXIT_RETRYABLE);
            }
            ExitCode::FAILURE
        }
    }
}

/// `BURNRATE_LOG`'s filter (`warn` without it), with delta-rs held to warnings unless the
/// filter names it: it logs every commit at `info`, and burnrate commits every flush.
fn log_filter(setting: Option<String>) -> String {
    let filter = setting.unwrap_or_else(|| "warn".to_string());
    if filter.contains("deltalake") {
        filter
    } else {
        format!("{filter},deltalake_core=warn")
    }
}

/// The error and its causes on one line, each cause once: many errors already print their
/// source in their own message, and anyhow's `{:#}` would repeat it.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

/// `EX_TEMPFAIL` of sysexits.h: a supervisor or a script can tell "run it again" from "fix it".
const EXIT_RETRYABLE: u8 = 75;

/// Whether the error's cause says a retry can succeed (see each crate's `is_retryable`).
fn is_retryable(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        if let Some(e) = cause.downcast_ref::<burnrate_engine::EngineError>() {
            e.is_retryable()
        } else if let Some(e) = cause.downcast_ref::<burnrate_otlp::DecodeError>() {
            e.is_retryable()
        } else if let Some(e) = cause.downcast_ref::<burnrate_pricing::PriceError>() {
            e.is_retryable()
        } else if let Some(e) = cause.downcast_ref::<std::io::Error>() {
            burnrate_engine::is_transient_io(e)
        } else {
            false
        }
    })
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Run(args) => run::run(&mut config, *args).await,
        Command::Query(args) => query::query(&config, args).await,
        Command::Generate(args) => generate::generate(args),
        Command::Migrate(args) => migrate::migrate(&config, args),
        Command::Compact(args) => compact::compact_command(&config, args),
        Command::Forget(args) => forget::forget_command(&config, args),
        Command::Report(command) => report::report_command(&config, command).await,
        Command::Profile(args) => profile::profile(&config, args).await,
        Command::ExportTrace {
            session,
            data,
            output,
        } => export_trace::export_trace(&config, &session, data, output).await,
        Command::Prices {
            prices,
            no_embedded_prices,
            check,
            data,
        } => prices::prices(&mut config, prices, no_embedded_prices, check, data).await,
    }
}
