//! `burnrate prices`: the price table in use, or its check against a dataset.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::Config;

/// Prints the price table (`--prices` laid over the embedded one), or checks it against a
/// dataset with `--check`.
pub(crate) async fn prices(
    config: &mut Config,
    prices: Option<PathBuf>,
    no_embedded_prices: bool,
    check: bool,
    data: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    if prices.is_some() {
        config.prices = prices;
    }
    if no_embedded_prices {
        config.prices_embedded = false;
    }
    if check {
        let data = data.unwrap_or_else(|| config.data_dir.clone());
        return check_prices(config, &data).await;
    }
    print_prices(config)
}

/// Exit status of `prices --check` when it finds unpriced or disagreeing models.
const PRICE_FINDINGS: u8 = 4;

async fn check_prices(config: &Config, data: &Path) -> anyhow::Result<ExitCode> {
    let table = config.price_table()?;
    let checks = burnrate_engine::query::price_check::check_prices(data, &table).await?;
    let unpriced: Vec<_> = checks.iter().filter(|c| c.unpriced_calls > 0).collect();
    let mismatched: Vec<_> = checks.iter().filter(|c| c.mismatched_calls > 0).collect();
    let calls: u64 = checks.iter().map(|c| c.calls).sum();
    println!(
        "{} models, {calls} successful calls in {}",
        checks.len(),
        data.display()
    );
    if !unpriced.is_empty() {
        let mut grid = comfy_table::Table::new();
        grid.load_style(comfy_table::presets::UTF8_FULL_CONDENSED);
        grid.set_header(["model without a price", "calls", "reported cost"]);
        for c in &unpriced {
            grid.add_row([
                c.model.clone(),
                c.unpriced_calls.to_string(),
                format!("${:.6}", c.unpriced_reported_usd),
            ]);
        }
        println!("{grid}");
    }
    if !mismatched.is_empty() {
        let mut grid = comfy_table::Table::new();
        grid.load_style(comfy_table::presets::UTF8_FULL_CONDENSED);
        grid.set_header([
            "model",
            "calls that differ",
            "table",
            "reported",
            "difference",
        ]);
        for c in &mismatched {
            grid.add_row([
                c.model.clone(),
                format!("{} of {}", c.mismatched_calls, c.calls),
                format!("${:.6}", c.mismatch_table_usd),
                format!("${:.6}", c.mismatch_reported_usd),
                format!("{:+.6}", c.mismatch_table_usd - c.mismatch_reported_usd),
            ]);
        }
        println!("{grid}");
    }
    if unpriced.is_empty() && mismatched.is_empty() {
        println!("every model has a price, and every price agrees with the reported cost");
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(PRICE_FINDINGS))
    }
}

fn print_prices(config: &Config) -> anyhow::Result<ExitCode> {
    let table = config.price_table()?;
    let mut grid = comfy_table::Table::new();
    grid.load_style(comfy_table::presets::UTF8_FULL_CONDENSED);
    grid.set_header([
        "model",
        "input $/Mtok",
        "output",
        "cache write 5m",
        "cache write 1h",
        "cache read",
        "long context (> tokens: input/output)",
        "fast",
    ]);
    let usd = |pico: u64| format!("{}", pico as f64 / 1e6);
    for (name, price) in table.models() {
        let r = &price.base;
        let long = price.long_context.map_or(String::new(), |lc| {
            format!(
                "> {}: {}/{}",
                lc.threshold_tokens,
                usd(lc.rates.input),
                usd(lc.rates.output)
            )
        });
        grid.add_row([
            name.to_string(),
            usd(r.input),
            usd(r.output),
            usd(r.cache_write_5m),
            usd(r.cache_write_1h),
            usd(r.cache_read),
            long,
            price
                .fast_permille
                .map_or(String::new(), |m| format!("{}x", m as f64 / 1000.0)),
        ]);
    }
    println!("{grid}");
    Ok(ExitCode::SUCCESS)
}
