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
use std::time::Duration;

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum FormatArg {
    Table,
    Csv,
    Json,
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
