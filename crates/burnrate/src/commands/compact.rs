//! `burnrate compact`: removes the days past each table's retention, merges each table's closed
//! days into a few large files sorted by time, in one Delta commit per table, then vacuums what
//! no log lists any more.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use burnrate_engine::compact;
use comfy_table::Table as TextTable;

use crate::commands::parse_duration;
use crate::config::{Config, parse_byte_size};

#[derive(Debug, clap::Args)]
pub(crate) struct CompactArgs {
    /// Dataset directory [default: ./burnrate-data, or data_dir from the config file].
    #[arg(long, env = "BURNRATE_DATA_DIR")]
    data: Option<PathBuf>,
    /// Size a merged file is cut at (compressed, on disk), with a unit (128MiB)
    /// [default: compaction.target_file_bytes, 128 MiB].
    #[arg(long, value_parser = parse_byte_size)]
    target_file_size: Option<u64>,
    /// Merge a closed day once it holds more files than this [default:
    /// compaction.max_files_per_day, 4].
    #[arg(long)]
    max_files_per_day: Option<usize>,
    /// How long a merged-away file stays for readers that opened the table before (7d, 1h)
    /// [default: compaction.vacuum_after_hours, 7 days].
    #[arg(long, value_parser = parse_vacuum_after)]
    vacuum_after: Option<Duration>,
    /// Print the outcome as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// A duration that may be zero: vacuum everything no log lists now.
fn parse_vacuum_after(text: &str) -> Result<Duration, String> {
    if text
        .trim()
        .trim_end_matches(|c: char| c.is_ascii_alphabetic())
        == "0"
    {
        return Ok(Duration::ZERO);
    }
    parse_duration(text)
}

pub(crate) fn compact_command(config: &Config, args: CompactArgs) -> anyhow::Result<ExitCode> {
    let data = args.data.unwrap_or_else(|| config.data_dir.clone());
    let mut settings = config.compaction.clone();
    if let Some(bytes) = args.target_file_size {
        settings.target_file_bytes = bytes;
    }
    if let Some(files) = args.max_files_per_day {
        settings.max_files_per_day = files;
    }
    if let Some(keep) = args.vacuum_after {
        settings.vacuum_after_hours = keep.as_secs_f64() / 3600.0;
    }
    super::ensure_table_logs(config, "compact")?;
    if data.is_dir() {
        super::mirror_to_store(config, &data)?;
    }
    let done = compact(&data, &settings, &config.kafka.group_id)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&done)?);
        let failed = done.iter().any(|t| t.error.is_some());
        return Ok(if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }
    let mut table = TextTable::new();
    table.load_style(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header([
        "table",
        "files before",
        "files after",
        "days merged",
        "files merged",
        "files written",
        "not committed yet",
        "days expired",
        "vacuumed",
        "vacuumed in the store",
    ]);
    for t in &done {
        table.add_row([
            t.table.to_string(),
            t.files_before.to_string(),
            t.files_after.to_string(),
            t.days.to_string(),
            t.merged.to_string(),
            t.written.to_string(),
            t.uncommitted.to_string(),
            t.expired_days.to_string(),
            t.vacuumed.to_string(),
            t.store_vacuumed.to_string(),
        ]);
    }
    println!("{table}");
    let conflicts: Vec<&str> = done
        .iter()
        .filter(|t| t.conflict.is_some())
        .map(|t| t.table)
        .collect();
    let failed: Vec<String> = done
        .iter()
        .filter_map(|t| t.error.as_ref().map(|e| format!("{}: {e}", t.table)))
        .collect();
    for failure in &failed {
        eprintln!("burnrate: could not compact {failure}");
    }
    let merged: usize = done.iter().map(|t| t.merged).sum();
    let written: usize = done.iter().map(|t| t.written).sum();
    println!("{merged} files merged into {written}");
    if !conflicts.is_empty() {
        println!(
            "left for the next run (another change to the same files won): {}",
            conflicts.join(", ")
        );
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
