//! `burnrate migrate`: gives every table of a dataset written before the Delta logs (plain
//! Hive-partitioned Parquet) a log listing the files it holds. No file is rewritten or moved.

use std::path::PathBuf;
use std::process::ExitCode;

use burnrate_engine::sink::table_log::{Opened, open_dataset_logs};
use comfy_table::Table as TextTable;

use crate::config::Config;

#[derive(Debug, clap::Args)]
pub(crate) struct MigrateArgs {
    /// Dataset directory [default: ./burnrate-data, or data_dir from the config file].
    #[arg(long, env = "BURNRATE_DATA_DIR")]
    data: Option<PathBuf>,
}

pub(crate) fn migrate(config: &Config, args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let data = args.data.unwrap_or_else(|| config.data_dir.clone());
    if !data.is_dir() {
        anyhow::bail!(burnrate_engine::EngineError::NoDataset(
            data.display().to_string()
        ));
    }
    super::ensure_table_logs(config, "migrate")?;
    super::mirror_to_store(config, &data)?;
    let opened = open_dataset_logs(&data)?;
    let mut table = TextTable::new();
    table.load_style(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header(["table", "log", "files"]);
    let (mut created, mut adopted) = (0, 0);
    for (name, found, files) in &opened {
        let log = match found {
            Opened::Adopted { files } => {
                created += 1;
                adopted += files;
                "created".to_string()
            }
            Opened::Existing { version } => format!("already there (version {version})"),
        };
        table.add_row([name.name().to_string(), log, files.to_string()]);
    }
    println!("{table}");
    println!(
        "{created} of {} tables given a Delta log, {adopted} files adopted in place",
        opened.len()
    );
    Ok(ExitCode::SUCCESS)
}
