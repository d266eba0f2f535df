//! `burnrate prices --check`: the models a dataset holds that the price table in use cannot
//! price, and those whose table price disagrees with the cost the client reported. Every
//! successful call is priced again with today's table, so a price file can be checked against
//! history before it is deployed.

use std::collections::BTreeMap;
use std::path::Path;

use burnrate_pricing::{Call, CostSource, PriceTable, TokenUsage, split_cache_writes};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use futures::StreamExt;
use serde::Serialize;

use crate::EngineError;
use crate::query::catalog::open_dataset;

const CALLS_SQL: &str = "SELECT model, input_tokens, output_tokens, cache_read_tokens, \
    cache_creation_tokens, cache_creation_5m_tokens, cache_creation_1h_tokens, speed, \
    cost_usd_reported FROM api_requests WHERE success";

/// What the price table makes of one model's calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ModelCheck {
    pub model: String,
    pub calls: u64,
    /// Calls the table has no price for (the model, or its speed).
    pub unpriced_calls: u64,
    pub unpriced_reported_usd: f64,
    /// Calls where the table's price and the reported cost differ by more than 1% and $0.000001.
    pub mismatched_calls: u64,
    pub mismatch_table_usd: f64,
    pub mismatch_reported_usd: f64,
}

impl ModelCheck {
    pub fn is_finding(&self) -> bool {
        self.unpriced_calls > 0 || self.mismatched_calls > 0
    }
}

/// Every model in the dataset's `api_requests`, checked against `prices`, by model id.
pub async fn check_prices(
    data_dir: &Path,
    prices: &PriceTable,
) -> Result<Vec<ModelCheck>, EngineError> {
    let ctx = open_dataset(data_dir).await?;
    let mut stream = ctx.sql(CALLS_SQL).await?.execute_stream().await?;
    let mut by_model: BTreeMap<String, ModelCheck> = BTreeMap::new();
    while let Some(batch) = stream.next().await {
        add_calls(&batch?, prices, &mut by_model)?;
    }
    Ok(by_model.into_values().collect())
}

fn add_calls(
    batch: &RecordBatch,
    prices: &PriceTable,
    by_model: &mut BTreeMap<String, ModelCheck>,
) -> Result<(), EngineError> {
    let column = |name: &str, to: &DataType| -> Result<_, EngineError> {
        let column = batch
            .column_by_name(name)
            .ok_or_else(|| EngineError::Schema(format!("api_requests has no column {name}")))?;
        Ok(cast(column, to)?)
    };
    let models = column("model", &DataType::Utf8)?;
    let speeds = column("speed", &DataType::Utf8)?;
    let (models, speeds) = (models.as_string::<i32>(), speeds.as_string::<i32>());
    let token_columns = [
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_creation_tokens",
        "cache_creation_5m_tokens",
        "cache_creation_1h_tokens",
    ]
    .map(|name| column(name, &DataType::Int64));
    let [input, output, read, written, written_5m, written_1h] = token_columns;
    let (input, output, read, written, written_5m, written_1h) =
        (input?, output?, read?, written?, written_5m?, written_1h?);
    let count = |a: &dyn Array, row: usize| {
        let a = a.as_primitive::<Int64Type>();
        a.is_valid(row).then(|| a.value(row))
    };
    let reported = column("cost_usd_reported", &DataType::Float64)?;
    let reported = reported.as_primitive::<Float64Type>();
    for row in 0..batch.num_rows() {
        let model = models.is_valid(row).then(|| models.value(row));
        let positive = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
        let tokens = |a: &dyn Array| count(a, row).map(|n| positive(Some(n)));
        let (write_5m, write_1h) =
            split_cache_writes(tokens(&written), tokens(&written_5m), tokens(&written_1h));
        let reported_usd = reported.is_valid(row).then(|| reported.value(row));
        let call = Call {
            model,
            usage: TokenUsage {
                input: positive(count(&input, row)),
                output: positive(count(&output, row)),
                cache_read: positive(count(&read, row)),
                cache_write_5m: write_5m,
                cache_write_1h: write_1h,
            },
            speed: speeds.is_valid(row).then(|| speeds.value(row)),
            reported_usd,
        };
        let cost = prices.price_call(&call);
        let name = model.unwrap_or("(unknown)");
        let check = by_model
            .entry(name.to_string())
            .or_insert_with(|| ModelCheck {
                model: name.to_string(),
                ..ModelCheck::default()
            });
        check.calls += 1;
        if cost.source != CostSource::PriceTable {
            check.unpriced_calls += 1;
            check.unpriced_reported_usd += reported_usd.unwrap_or(0.0);
        }
        if cost.mismatch == Some(true) {
            check.mismatched_calls += 1;
            check.mismatch_table_usd += cost.cost_usd.unwrap_or(0.0);
            check.mismatch_reported_usd += reported_usd.unwrap_or(0.0);
        }
    }
    Ok(())
}
