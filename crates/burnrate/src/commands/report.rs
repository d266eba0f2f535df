//! `burnrate report`: the daily and range cost reports.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub(crate) enum ReportCommand {
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
pub(crate) struct ReportOutput {
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
pub(crate) enum ReportFormat {
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

pub(crate) async fn report_command(
    config: &Config,
    command: ReportCommand,
) -> anyhow::Result<ExitCode> {
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
            if burnrate_engine::sink::mirror::is_object_url(&destination) {
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
