//! The Prometheus Pushgateway sink: totals over closed windows, kept in the window checkpoint so
//! a restart carries on from them instead of resetting to zero, rendered in the text format and
//! pushed with `PUT /metrics/job/burnrate/instance/<replica>` (a replica replaces only its own
//! group).
//!
//! Pushing happens on a thread of its own holding only the newest body: a Pushgateway that is
//! slow or down costs retries there, never time on the ingest path, and the failures are counted.
//!
//! Latency and time to first token are pushed as summaries (quantile labels) by model: the
//! quantiles come from the windows' DDSketches with a 1% relative error, which fixed histogram
//! buckets would lose. Their quantiles are those of the latest closed window with calls of the model; `_sum` and
//! `_count` are totals. A summary cannot be aggregated across replicas: for fleet-wide
//! percentiles, merge the sketches in `usage_windows` (`sql/window_merge.sql`).
//!
//! Cardinality: the `max_series` label combinations (user, team, project, model) with the most
//! spend get series of their own; the rest add to one series labelled `other`. Moving between
//! the two never makes a counter go down (a reset to Prometheus): a combination that leaves the
//! top folds its value into `other`, one that enters starts at zero.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Float64Type, Int64Type, TimestampNanosecondType, UInt32Type};
use serde::{Deserialize, Serialize};

use crate::EngineError;
use crate::publish::health::{PipelineHealth, escape};
use crate::stream::sketch::LatencySketch;
use crate::stream::windows::primitive;

/// Window dimensions pushed as labels, with their label names.
const LABELS: [(&str, &str); 4] = [
    ("user_id", "user"),
    ("team", "team"),
    ("project", "project"),
    ("model", "model"),
];
const OTHER: &str = "other";
const KEY_SEPARATOR: &str = "\u{1f}";

fn other_series() -> SeriesTotals {
    SeriesTotals {
        labels: vec![OTHER.to_string(); LABELS.len()],
        ..SeriesTotals::default()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PushgatewayConfig {
    /// Base URL, e.g. `http://127.0.0.1:9091`; no pushing when unset.
    pub url: Option<String>,
    pub job: String,
    /// Label combinations with series of their own; the rest are summed into `other`.
    pub max_series: usize,
    pub timeout_ms: u64,
}

impl Default for PushgatewayConfig {
    fn default() -> Self {
        PushgatewayConfig {
            url: None,
            job: "burnrate".into(),
            max_series: 500,
            timeout_ms: 5_000,
        }
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

    /// The Prometheus text exposition of these totals.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let series: Vec<&SeriesTotals> = self.series.values().collect();
        let counter = |out: &mut String,
                       name: &str,
                       help: &str,
                       extra: &str,
                       value: &dyn Fn(&SeriesTotals) -> f64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for s in &series {
                let _ = writeln!(
                    out,
                    "{name}{{{}{extra}}} {}",
                    label_set(&s.labels),
                    value(s)
                );
            }
        };
        counter(
            &mut out,
            "burnrate_cost_usd_total",
            "Spend over closed windows in US dollars: the price table's cost, or the reported cost where the table has no price.",
            "",
            &|s| s.cost_usd,
        );
        counter(
            &mut out,
            "burnrate_requests_total",
            "Model requests over closed windows.",
            "",
            &|s| s.requests as f64,
        );
        counter(
            &mut out,
            "burnrate_errors_total",
            "Failed model requests over closed windows.",
            "",
            &|s| s.errors as f64,
        );
        let _ = writeln!(
            out,
            "# HELP burnrate_tokens_total Tokens over closed windows, by type.\n# TYPE burnrate_tokens_total counter"
        );
        for s in &series {
            for (kind, n) in [
                ("input", s.input_tokens),
                ("output", s.output_tokens),
                ("cache_read", s.cache_read_tokens),
                ("cache_creation", s.cache_creation_tokens),
            ] {
                let _ = writeln!(
                    out,
                    "burnrate_tokens_total{{{},type=\"{kind}\"}} {n}",
                    label_set(&s.labels)
                );
            }
        }
        summary(
            &mut out,
            "burnrate_request_duration_seconds",
            "Model request latency; quantiles of the windows closed last.",
            &self.latency,
        );
        summary(
            &mut out,
            "burnrate_time_to_first_token_seconds",
            "Time to the first token of a model response; quantiles of the windows closed last.",
            &self.ttft,
        );
        let _ = writeln!(
            out,
            "# HELP burnrate_active_sessions Distinct sessions in the latest closed window.\n# TYPE burnrate_active_sessions gauge\nburnrate_active_sessions {}",
            self.active_sessions
        );
        out
    }
}

/// A summary by model: p50, p95 and p99 of the latest windows, with `_sum` and `_count` totals.
fn summary(out: &mut String, name: &str, help: &str, by_model: &BTreeMap<String, ModelLatency>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} summary");
    for (model, timing) in by_model {
        let model = escape(model);
        if let Some(quantiles) = timing.quantiles {
            for (q, v) in ["0.5", "0.95", "0.99"].iter().zip(quantiles) {
                let _ = writeln!(
                    out,
                    "{name}{{model=\"{model}\",quantile=\"{q}\"}} {}",
                    v / 1000.0
                );
            }
        }
        let _ = writeln!(
            out,
            "{name}_sum{{model=\"{model}\"}} {}",
            timing.sum_ms / 1000.0
        );
        let _ = writeln!(out, "{name}_count{{model=\"{model}\"}} {}", timing.count);
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

fn label_set(values: &[String]) -> String {
    LABELS
        .iter()
        .zip(values)
        .map(|((_, name), value)| format!("{name}=\"{}\"", escape(value)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Delivers the newest body to the Pushgateway from a thread of its own.
pub struct Pushgateway {
    shared: Arc<(Mutex<Outbox>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Outbox {
    body: Option<String>,
    closing: bool,
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Pushgateway {
    /// Starts the pusher for `config.url` with grouping key `instance=<replica>`; `None`
    /// without a URL.
    pub fn start(
        config: &PushgatewayConfig,
        replica: &str,
        health: Arc<PipelineHealth>,
    ) -> Option<Self> {
        let base = config.url.as_ref()?.trim_end_matches('/').to_string();
        let url = format!("{base}/metrics/job/{}/instance/{replica}", config.job);
        let timeout = Duration::from_millis(config.timeout_ms.max(1));
        let shared = Arc::new((Mutex::new(Outbox::default()), Condvar::new()));
        let inner = shared.clone();
        let thread = std::thread::Builder::new()
            .name("pushgateway".into())
            .spawn(move || push_loop(&url, timeout, &inner, &health))
            .ok()?;
        Some(Pushgateway {
            shared,
            thread: Some(thread),
        })
    }

    /// Queues `body`, replacing any body not yet sent. Never waits for the network.
    pub fn push(&self, body: String) {
        let (lock, ready) = &*self.shared;
        let mut outbox = lock.lock().unwrap_or_else(|p| p.into_inner());
        outbox.body = Some(body);
        ready.notify_all();
    }

    /// Waits up to `grace` for the newest body to be delivered, then stops the thread. Returns
    /// whether it was delivered.
    pub fn finish(mut self, grace: Duration) -> bool {
        let (lock, ready) = &*self.shared;
        let deadline = Instant::now() + grace;
        let mut outbox = lock.lock().unwrap_or_else(|p| p.into_inner());
        while outbox.body.is_some() && Instant::now() < deadline {
            let wait = deadline.saturating_duration_since(Instant::now());
            outbox = ready
                .wait_timeout(outbox, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let delivered = outbox.body.is_none();
        outbox.closing = true;
        ready.notify_all();
        drop(outbox);
        if delivered && let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        delivered
    }
}

fn push_loop(
    url: &str,
    timeout: Duration,
    shared: &(Mutex<Outbox>, Condvar),
    health: &PipelineHealth,
) {
    let (lock, ready) = shared;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let mut backoff = Duration::from_millis(200);
    loop {
        let body = {
            let mut outbox = lock.lock().unwrap_or_else(|p| p.into_inner());
            while outbox.body.is_none() && !outbox.closing {
                outbox = ready.wait(outbox).unwrap_or_else(|p| p.into_inner());
            }
            match (&outbox.body, outbox.closing) {
                (Some(body), _) => body.clone(),
                (None, _) => return,
            }
        };
        let result = agent
            .put(url)
            .header("Content-Type", "text/plain; version=0.0.4")
            .send(body.as_bytes());
        let error = match result {
            Ok(response) if response.status().is_success() => None,
            Ok(response) => Some(format!("HTTP {}", response.status())),
            Err(e) => Some(e.to_string()),
        };
        let mut outbox = lock.lock().unwrap_or_else(|p| p.into_inner());
        match error {
            None => {
                health.pushed();
                backoff = Duration::from_millis(200);
                // A newer body may have arrived while this one was in flight.
                if outbox.body.as_deref() == Some(body.as_str()) {
                    outbox.body = None;
                    ready.notify_all();
                }
            }
            Some(error) => {
                health.push_failed();
                tracing::warn!(%error, url, "pushgateway push failed; retrying in {backoff:?}");
                if outbox.closing {
                    return;
                }
                let _ = ready.wait_timeout(outbox, backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
