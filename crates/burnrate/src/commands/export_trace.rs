//! `burnrate export-trace`: one session's spans, events and model calls as one JSON document.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::Config;

pub(crate) async fn export_trace(
    config: &Config,
    session: &str,
    data: Option<PathBuf>,
    output: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let data = data.unwrap_or_else(|| config.data_dir.clone());
    let document = burnrate_engine::export_trace(&data, session).await?;
    let text = serde_json::to_string_pretty(&document)? + "\n";
    match output {
        Some(path) => std::fs::write(&path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}
