//! `burnrate forget --user ID`: one person's rows leave every table, and the files that held
//! them leave the disk (the right to erasure).

use std::path::PathBuf;
use std::process::ExitCode;

use burnrate_engine::forget;
use comfy_table::Table as TextTable;

use crate::config::Config;

#[derive(Debug, clap::Args)]
pub(crate) struct ForgetArgs {
    /// The person's id as the client reports it (Claude Code's `user.id`), or their e-mail.
    #[arg(long)]
    user: String,
    /// Dataset directory [default: ./burnrate-data, or data_dir from the config file].
    #[arg(long, env = "BURNRATE_DATA_DIR")]
    data: Option<PathBuf>,
    /// Print the outcome as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn forget_command(config: &Config, args: ForgetArgs) -> anyhow::Result<ExitCode> {
    let data = args.data.unwrap_or_else(|| config.data_dir.clone());
    super::ensure_table_logs(config, "forget")?;
    if data.is_dir() {
        super::mirror_to_store(config, &data)?;
    }
    let done = forget(&data, &args.user, &config.kafka.group_id)?;
    let exit = if done.complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&done)?);
        return Ok(exit);
    }
    let mut table = TextTable::new();
    table.load_style(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header([
        "table",
        "rows removed",
        "rows without the sessions",
        "files rewritten",
        "files dropped",
        "files deleted",
        "left",
    ]);
    for t in &done.tables {
        table.add_row([
            t.table.to_string(),
            t.rows_removed.to_string(),
            t.rows_scrubbed.to_string(),
            t.files_rewritten.to_string(),
            t.files_dropped.to_string(),
            t.files_deleted.to_string(),
            t.left.to_string(),
        ]);
    }
    println!("{table}");
    let rows: u64 = done.tables.iter().map(|t| t.rows_removed).sum();
    let deleted: usize = done.tables.iter().map(|t| t.files_deleted).sum();
    println!(
        "{rows} rows of {} ({} sessions) removed; {deleted} files that held them deleted",
        args.user, done.sessions
    );
    for t in &done.tables {
        if let Some(error) = &t.error {
            eprintln!(
                "burnrate: could not remove the rows from {}: {error}",
                t.table
            );
        }
    }
    let left: usize = done.tables.iter().map(|t| t.left).sum();
    if left > 0 {
        eprintln!(
            "burnrate: {left} files holding their rows were left: their source has not committed them yet; run forget again in a minute"
        );
    }
    Ok(exit)
}
