//! Totals over every window a replica has closed: what the publisher reports, kept in the
//! window checkpoint so a restart carries on from them instead of resetting to zero.
//!
//! Cardinality: the `max_series` label combinations (user, team, project, model) with the most
//! spend get series of their own; the rest add to one series labelled `other`. Moving between
//! the two never makes a counter go down (a reset to Prometheus): a combination that leaves the
//! top folds its value into `other`, one that enters starts at zero.
//!
//! Latency and time to first token keep, by model, the quantiles of the latest closed window
//! with calls of the model (from the windows' DDSketches, 1% relative error) beside totals.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Float64Type, Int64Type, TimestampNanosecondType, UInt32Type};
use serde::{Deserialize, Serialize};

use crate::EngineError;
use crate::stream::sketch::LatencySketch;
use crate::stream::windows::primitive;

/// Window dimensions pushed as labels, with their label names.
pub(crate) const LABELS: [(&str, &str); 4] = [
    ("user_id", "user"),
    ("team", "team"),
    ("project", "project"),
    ("model", "model"),
];
pub(crate) const OTHER: &str = "other";
const KEY_SEPARATOR: &str = "\u{1f}";

fn other_series() -> SeriesTotals {
    SeriesTotals {
        labels: vec![OTHER.to_string(); LABELS.len()],
        ..SeriesTotals::default()
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct SeriesTotals {
    pub labels: Vec<String>,
    pub requests: i64,
    pub errors: i64,
    pub cost_usd: f64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_creation_tokens: i64,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelLatency {
    pub count: i64,
    pub sum_ms: f64,
    /// p50, p95, p99 in milliseconds over the latest window with calls of this model.
    pub quantiles: Option<[f64; 3]>,
    pub window_end_nanos: Option<i64>,
}

/// What is pushed, as totals over every window this replica has closed.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct PushTotals {
    #[serde(skip)]
    max_series: usize,
    /// Cost by label combination, pushed or not: what ranks the top spenders.
    pub spend: BTreeMap<String, f64>,
    pub series: BTreeMap<String, SeriesTotals>,
    pub latency: BTreeMap<String, ModelLatency>,
    /// Time to first token, by model (calls that reported one).
    #[serde(default)]
    pub ttft: BTreeMap<String, ModelLatency>,
    /// Distinct sessions in the latest window closed.
    pub active_sessions: i64,
    pub latest_window_end_nanos: Option<i64>,
}

impl PushTotals {
    pub fn set_max_series(&mut self, max: usize) {
        self.max_series = max;
    }

    /// Adds rows of `usage_windows` (closed windows or corrections).
    pub fn add_windows(&mut self, batch: &RecordBatch) -> Result<(), EngineError> {
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| EngineError::Schema(format!("usage_windows.{name} is not text")))
        };
        let int = |name: &str| primitive::<Int64Type>(batch, name);
        let float = |name: &str| primitive::<Float64Type>(batch, name);
        let labels = LABELS
            .iter()
            .map(|(column, _)| text(column))
            .collect::<Result<Vec<_>, _>>()?;
        let (requests, errors, cost) = (int("requests")?, int("errors")?, float("cost_usd")?);
        let tokens = [
            int("input_tokens")?,
            int("output_tokens")?,
            int("cache_read_tokens")?,
            int("cache_creation_tokens")?,
        ];
        let binary = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_binary_opt::<i32>())
                .ok_or_else(|| EngineError::Schema(format!("usage_windows.{name} is not Binary")))
        };
        let latency_sum = float("latency_sum_ms")?;
        let sketches = binary("latency_sketch")?;
        let ttft_sum = float("ttft_sum_ms")?;
        let ttft_sketches = binary("ttft_sketch")?;
        let revisions = primitive::<UInt32Type>(batch, "revision")?;
        let ends = primitive::<TimestampNanosecondType>(batch, "window_end")?;
        let session_ids = batch
            .column_by_name("session_ids")
            .and_then(|c| c.as_list_opt::<i32>())
            .ok_or_else(|| EngineError::Schema("usage_windows.session_ids is not a list".into()))?;
        let value = |a: &datafusion::arrow::array::Int64Array, row: usize| {
            if a.is_valid(row) { a.value(row) } else { 0 }
        };
        // Per model: the latest window end among these rows, and its merged sketch.
        let mut latest_latency = LatestSketches::new();
        let mut latest_ttft = LatestSketches::new();
        let latest_end = (0..batch.num_rows())
            .filter(|&r| revisions.value(r) == 0)
            .map(|r| ends.value(r))
            .max();
        let row_labels = |row: usize| -> Vec<String> {
            labels
                .iter()
                .map(|c| {
                    if c.is_valid(row) {
                        c.value(row).to_string()
                    } else {
                        String::new()
                    }
                })
                .collect()
        };
        for row in 0..batch.num_rows() {
            if value(requests, row) > 0 {
                let spent = or_zero(cost, row);
                *self
                    .spend
                    .entry(row_labels(row).join(KEY_SEPARATOR))
                    .or_default() += spent;
            }
        }
        self.rebalance();
        let mut latest_sessions = std::collections::BTreeSet::new();
        for row in 0..batch.num_rows() {
            if Some(ends.value(row)) == latest_end
                && revisions.value(row) == 0
                && session_ids.is_valid(row)
                && let Some(ids) = session_ids.value(row).as_string_opt::<i32>()
            {
                latest_sessions.extend(ids.iter().flatten().map(str::to_string));
            }
            // Tool-call rows carry no model request: nothing to count here.
            if value(requests, row) == 0 {
                continue;
            }
            let values = row_labels(row);
            let model = values[3].clone();
            let series = self.series_for(values);
            series.requests += value(requests, row);
            series.errors += value(errors, row);
            series.cost_usd += or_zero(cost, row);
            series.input_tokens += value(tokens[0], row);
            series.output_tokens += value(tokens[1], row);
            series.cache_read_tokens += value(tokens[2], row);
            series.cache_creation_tokens += value(tokens[3], row);
            let latest = revisions.value(row) == 0;
            let end = ends.value(row);
            let latency = self.latency.entry(model.clone()).or_default();
            latency.count += value(requests, row);
            latency.sum_ms += or_zero(latency_sum, row);
            if latest && let Some(sketch) = sketch_at(sketches, row)? {
                latest_latency.offer(&model, end, &sketch);
            }
            if let Some(sketch) = sketch_at(ttft_sketches, row)? {
                let ttft = self.ttft.entry(model.clone()).or_default();
                ttft.count += sketch.count() as i64;
                ttft.sum_ms += or_zero(ttft_sum, row);
                if latest {
                    latest_ttft.offer(&model, end, &sketch);
                }
            }
        }
        latest_latency.settle(&mut self.latency);
        latest_ttft.settle(&mut self.ttft);
        if let Some(end) = latest_end
            && self.latest_window_end_nanos.is_none_or(|e| end >= e)
        {
            self.latest_window_end_nanos = Some(end);
            self.active_sessions = latest_sessions.len() as i64;
        }
        Ok(())
    }

    /// The series `labels` add to: their own when they are among the top spenders, else `other`.
    fn series_for(&mut self, labels: Vec<String>) -> &mut SeriesTotals {
        let key = labels.join(KEY_SEPARATOR);
        let key = if self.series.contains_key(&key) {
            key
        } else {
            OTHER.to_string()
        };
        self.series.entry(key).or_insert_with(other_series)
    }

    /// Gives the `max_series` largest spenders series of their own. A series that drops out
    /// folds its value into `other` and disappears; one that comes in starts at zero and counts
    /// from then on. Every pushed counter only grows, and their sum stays the whole total.
    fn rebalance(&mut self) {
        let mut ranked: Vec<(&String, &f64)> = self.spend.iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let top: std::collections::BTreeSet<String> = ranked
            .into_iter()
            .take(self.max_series.max(1))
            .map(|(key, _)| key.clone())
            .collect();
        let demoted: Vec<String> = self
            .series
            .keys()
            .filter(|k| k.as_str() != OTHER && !top.contains(*k))
            .cloned()
            .collect();
        for key in demoted {
            if let Some(old) = self.series.remove(&key) {
                let other = self
                    .series
                    .entry(OTHER.to_string())
                    .or_insert_with(other_series);
                other.requests += old.requests;
                other.errors += old.errors;
                other.cost_usd += old.cost_usd;
                other.input_tokens += old.input_tokens;
                other.output_tokens += old.output_tokens;
                other.cache_read_tokens += old.cache_read_tokens;
                other.cache_creation_tokens += old.cache_creation_tokens;
            }
        }
        for key in top {
            self.series
                .entry(key.clone())
                .or_insert_with(|| SeriesTotals {
                    labels: key.split(KEY_SEPARATOR).map(str::to_string).collect(),
                    ..SeriesTotals::default()
                });
        }
    }
}

/// A nullable number of a window row, NULL read as zero.
fn or_zero(values: &datafusion::arrow::array::Float64Array, row: usize) -> f64 {
    if values.is_valid(row) {
        values.value(row)
    } else {
        0.0
    }
}

fn sketch_at(
    sketches: &datafusion::arrow::array::BinaryArray,
    row: usize,
) -> Result<Option<LatencySketch>, EngineError> {
    if !sketches.is_valid(row) {
        return Ok(None);
    }
    LatencySketch::from_bytes(sketches.value(row))
        .map(Some)
        .map_err(|e| EngineError::Schema(e.to_string()))
}

/// Per model, the sketch of the latest window end seen (merged over that window's rows).
struct LatestSketches(BTreeMap<String, (i64, LatencySketch)>);

impl LatestSketches {
    fn new() -> Self {
        LatestSketches(BTreeMap::new())
    }

    fn offer(&mut self, model: &str, end: i64, sketch: &LatencySketch) {
        let latest = self
            .0
            .entry(model.to_string())
            .or_insert_with(|| (end, LatencySketch::default()));
        if end > latest.0 {
            *latest = (end, LatencySketch::default());
        }
        if end == latest.0 {
            latest.1.merge(sketch);
        }
    }

    /// Sets each model's quantiles from its latest sketch, unless a later window already did.
    fn settle(self, into: &mut BTreeMap<String, ModelLatency>) {
        for (model, (end, sketch)) in self.0 {
            let timing = into.entry(model).or_default();
            if timing.window_end_nanos.is_some_and(|e| e > end) {
                continue;
            }
            if let (Some(p50), Some(p95), Some(p99)) = (
                sketch.quantile(0.5),
                sketch.quantile(0.95),
                sketch.quantile(0.99),
            ) {
                timing.quantiles = Some([p50, p95, p99]);
                timing.window_end_nanos = Some(end);
            }
        }
    }
}
