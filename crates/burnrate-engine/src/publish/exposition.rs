//! What the publisher sends: the window totals, the anomaly and budget gauges and the
//! pipeline's own metrics, in the Prometheus text format, rendered from the state the window
//! stage hands over after each durable step that closed windows.
//!
//! Latency and time to first token are summaries (quantile labels) by model; a summary cannot
//! be aggregated across replicas: for fleet-wide percentiles, merge the sketches in
//! `usage_windows` (`sql/window_merge.sql`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use crate::publish::health::{PipelineHealth, escape};
use crate::publish::pushgateway::Pushgateway;
use crate::stream::anomalies::AnomalyState;
use crate::stream::totals::{LABELS, ModelLatency, PushTotals, SeriesTotals};
use crate::stream::windows::{WindowOutput, WindowState};

/// The window stage's output pushed to a Pushgateway, with the pipeline's health beside it.
pub struct WindowPublisher {
    pushgateway: Pushgateway,
    health: Arc<PipelineHealth>,
}

impl WindowPublisher {
    pub fn new(pushgateway: Pushgateway, health: Arc<PipelineHealth>) -> Self {
        WindowPublisher {
            pushgateway,
            health,
        }
    }
}

impl WindowOutput for WindowPublisher {
    fn closed(&mut self, state: &WindowState) {
        self.pushgateway.push(exposition(state, &self.health));
    }

    fn finish(self: Box<Self>, state: &WindowState, grace: Duration) -> bool {
        self.pushgateway.push(exposition(state, &self.health));
        self.pushgateway.finish(grace)
    }
}

/// Window totals, anomaly and budget gauges, the pipeline's own metrics.
pub fn exposition(state: &WindowState, health: &PipelineHealth) -> String {
    let mut text = state.totals.render();
    render_gauges(&state.anomalies, &mut text);
    text.push_str(&health.render());
    text
}

impl PushTotals {
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

fn label_set(values: &[String]) -> String {
    LABELS
        .iter()
        .zip(values)
        .map(|((_, name), value)| format!("{name}=\"{}\"", escape(value)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The active anomalies and budget use as Prometheus gauges.
pub fn render_gauges(state: &AnomalyState, out: &mut String) {
    let _ = writeln!(
        out,
        "# HELP burnrate_anomaly Anomalies in progress: the rule's score (ratio, z-score, rate, or share of the limit).\n# TYPE burnrate_anomaly gauge"
    );
    for active in state.active.values() {
        let _ = writeln!(
            out,
            "burnrate_anomaly{{rule=\"{}\",severity=\"{}\",dimension=\"{}\",value=\"{}\"}} {}",
            active.rule,
            active.severity.as_str(),
            escape(&active.dimension),
            escape(&active.value),
            active.score
        );
    }
    let _ = writeln!(
        out,
        "# HELP burnrate_budget_used_ratio Spend over the configured budget, by period (day, month, month_forecast).\n# TYPE burnrate_budget_used_ratio gauge"
    );
    for (key, ratio) in &state.budget_use {
        let mut parts = key.split('\u{1f}');
        let (Some(dimension), Some(value), Some(period)) =
            (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let _ = writeln!(
            out,
            "burnrate_budget_used_ratio{{dimension=\"{}\",value=\"{}\",period=\"{period}\"}} {ratio}",
            escape(dimension),
            escape(value)
        );
    }
}
