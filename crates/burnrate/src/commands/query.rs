//! `burnrate query`: SQL over the dataset.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use burnrate_engine::ResultFormat;

use crate::config::Config;

use super::*;

#[derive(Debug, clap::Args)]
pub(crate) struct QueryArgs {
    /// The SQL statement.
    sql: String,
    /// Dataset directory [default: ./burnrate-data, or data_dir from the config file].
    #[arg(long, env = "BURNRATE_DATA_DIR")]
    data: Option<PathBuf>,
    /// Output: a terminal table, CSV with a header, or JSON lines.
    #[arg(long, value_enum, default_value = "table")]
    format: FormatArg,
}

pub(crate) async fn query(config: &Config, args: QueryArgs) -> anyhow::Result<ExitCode> {
    let data = args.data.unwrap_or_else(|| config.data_dir.clone());
    let ctx = burnrate_engine::open_dataset(&data).await?;
    let batches = burnrate_engine::query::catalog::run_sql(&ctx, &args.sql).await?;
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
