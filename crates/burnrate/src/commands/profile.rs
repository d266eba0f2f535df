//! `burnrate profile`: where the time went, per operation, tool or model.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;

use crate::config::Config;

use super::*;

#[derive(Debug, clap::Args)]
pub(crate) struct ProfileArgs {
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

pub(crate) async fn profile(config: &Config, args: ProfileArgs) -> anyhow::Result<ExitCode> {
    use burnrate_engine::ProfileBy;
    let data = args.data.unwrap_or_else(|| config.data_dir.clone());
    let to = match args.until {
        Until::Now => chrono::Utc::now(),
        Until::At(t) => t,
        Until::Latest => match burnrate_engine::query::profile::latest_time(&data).await? {
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
    let lines = burnrate_engine::query::profile::profile(&data, by, from, to).await?;
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
                format!(
                    "{range}\n{}",
                    burnrate_engine::query::profile::to_table(&lines)
                )
            }
        }
        FormatArg::Csv => burnrate_engine::query::profile::to_csv(&lines),
        FormatArg::Json => lines
            .iter()
            .map(|l| serde_json::to_string(l).map(|s| s + "\n"))
            .collect::<Result<String, _>>()?,
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
