//! One file per command: its arguments and what it does, from parsed flags to an exit code.
//! What more than one command shares is here.

pub mod compact;
pub mod export_trace;
pub mod forget;
pub mod generate;
pub mod migrate;
pub mod prices;
pub mod profile;
pub mod query;
pub mod report;
pub mod run;

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use clap::ValueEnum;

use crate::config::Config;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum FormatArg {
    Table,
    Csv,
    Json,
}

/// With `[object_store] url` set, every file written or removed under `data` from now on goes
/// to the store too, and each table's log there is brought up to the local one (commits a run
/// without the store, or a crash before its copy, left behind). Call before anything writes.
pub(crate) fn mirror_to_store(config: &Config, data: &Path) -> anyhow::Result<()> {
    let Some(mirror) = burnrate_engine::ObjectMirror::open(&config.object_store)? else {
        return Ok(());
    };
    tracing::info!(
        url = mirror.url(),
        "mirroring the dataset to object storage"
    );
    std::fs::create_dir_all(data).with_context(|| format!("cannot create {}", data.display()))?;
    burnrate_engine::sink::mirror::mirror_dataset(data, mirror);
    let replayed = burnrate_engine::sink::mirror::publish_all(data)?;
    if replayed > 0 {
        tracing::info!(
            commits = replayed,
            "brought the store's table logs up to this directory's"
        );
    }
    Ok(())
}

/// `compact`, `forget` and `migrate` work through the tables' logs, which `table_logs = false`
/// does without.
pub(crate) fn ensure_table_logs(config: &Config, command: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.table_logs,
        "burnrate {command} works through the tables' Delta logs, and table_logs = false writes none"
    );
    Ok(())
}

/// A progress bar on a terminal, nothing otherwise.
pub(crate) fn progress_bar(length: u64, template: &str) -> ProgressBar {
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

pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
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

/// A duration as [`parse_duration`] reads it, or zero (`0`, `0s`): a setting that turns
/// something off.
pub(crate) fn parse_duration_or_zero(text: &str) -> Result<Duration, String> {
    let number = text
        .trim()
        .trim_end_matches(|c: char| c.is_ascii_alphabetic());
    match number.parse::<f64>() {
        Ok(0.0) => Ok(Duration::ZERO),
        _ => parse_duration(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit_and_zero_only_where_it_turns_something_off() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 fortnights").is_err());
        for zero in ["0", "0s", "0ms", "0.0h"] {
            assert_eq!(parse_duration_or_zero(zero), Ok(Duration::ZERO), "{zero}");
        }
        assert_eq!(parse_duration_or_zero("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration_or_zero("-1s").is_err());
        assert!(parse_duration_or_zero("soon").is_err());
    }
}
