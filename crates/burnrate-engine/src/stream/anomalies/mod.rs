//! Anomaly detection on closed usage windows, per dimension value (each user, team, project,
//! model on its own), evaluated at every minute of event time the windows close.
//!
//! Every cost rule is measured against the series' own usual spend ([`baseline`]: its typical
//! active hour and its busy 10-minute stretch, learned from its last week), so the same defaults
//! fit a $2-a-day team and a $200-a-day one. Small absolute floors keep cents from alerting. A
//! series in its first days is measured against its organisation (the median series of its
//! dimension), not left silent.
//!
//! Rules:
//! - `cost_spike`: cost of the last hour over the same hour a day earlier (or a week earlier,
//!   whichever is larger, so a Monday is not compared with a Sunday) at or above
//!   `cost_spike_ratio`, and more than that baseline by `cost_spike_min_typical_hours` of the
//!   series' typical hours (and `cost_spike_min_usd`). No baseline, no ratio: a first hour is
//!   the other rules' business.
//! - `cost_rate`: robust z-score of the cost of the last `robust_window_minutes` against the
//!   same stretch at nearby times of day over the 7 days before (median and MAD of up to 49
//!   values), after `warmup_days` of history, with at least `robust_min_busy` busy stretches
//!   (and `robust_min_usd`) spent.
//! - `cost_runaway`: a CUSUM of per-minute spend in units of the series' busy rate
//!   ([`runaway`]): a loop at ten busy rates fires in about two minutes, at any scale.
//! - `error_rate`: errors over requests in the last `error_window_minutes` above `error_rate`,
//!   with at least `error_min_requests` requests.
//! - `slow_p95`: p95 latency over the last `slow_window_minutes` (merged sketches) above
//!   `slow_p95_ms`, with at least `slow_min_requests` requests.
//! - `budget_daily` / `budget_monthly`: spend of the day or month against `[[anomalies.budgets]]`,
//!   warning at 80% (or, monthly, when the month-end forecast at the month's burn rate reaches
//!   100%), critical at 100%.
//!
//! Why Rust and not SQL: each rule compares sliding windows against history at every minute,
//! which SQL would rescan; here each series keeps a ring of its minute costs for 8 days.
//!
//! The history is rebuilt from `usage_windows` when the window stage opens; the anomalies in
//! progress and how far evaluation went live in the window checkpoint. An anomaly is written to
//! the `anomalies` table when it starts (status `firing`), again if its severity rises, and when
//! it ends (status `resolved`, with `resolved_at`).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, RecordBatch, StringArray, TimestampNanosecondArray,
};
use datafusion::arrow::datatypes::{Float64Type, Int64Type, TimestampNanosecondType};
use serde::{Deserialize, Serialize};

use crate::EngineError;
use crate::stream::sketch::LatencySketch;
use crate::stream::windows::primitive;
use burnrate_otlp::{Table, WINDOW_DIMENSIONS};

pub mod baseline;
pub mod runaway;

use baseline::Baseline;

const NANOS_PER_MINUTE: i64 = 60_000_000_000;
const MINUTES_PER_DAY: i64 = 1_440;
/// Eight days of minutes: a week of history plus the day the rules look back.
const RING_MINUTES: i64 = 8 * MINUTES_PER_DAY + 60;
/// How long a rule must stay quiet before its anomaly is resolved, so one incident hovering
/// around a threshold is one alert, not a dozen.
const RESOLVE_AFTER_MINUTES: i64 = 15;
/// How unlikely an error count must be under the threshold rate to raise `error_rate`.
const ERROR_SIGNIFICANCE: f64 = 0.001;
/// How long a series with no spend stays evaluated: long enough to resolve what it raised.
const QUIET_MINUTES: i64 = 60;
/// The stretch a busy rate is measured over, minutes.
const STRETCH_MINUTES: i64 = 10;

/// The `[anomalies]` section. Every cost threshold is a multiple of the series' own usual
/// spend; the `*_min_usd` keys are only floors that keep cents from alerting.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AnomalyConfig {
    /// Window dimensions each evaluated on its own. Default: user_id, team, project, model.
    pub dimensions: Vec<String>,
    /// `cost_spike`: the last hour over the same hour a day or a week before. Default: 2.0.
    pub cost_spike_ratio: f64,
    /// `cost_spike`: and over it by this many of the series' typical active hours. Default: 2.0.
    pub cost_spike_min_typical_hours: f64,
    /// `cost_spike`: and by at least this many dollars. Default: 0.5 USD.
    pub cost_spike_min_usd: f64,
    /// `cost_rate`: robust z-score of the last window against the same time of the week before.
    /// Default: 8.0.
    pub robust_z: f64,
    /// `cost_rate`: its window, minutes (1 to 60). Default: 10.
    pub robust_window_minutes: i64,
    /// `cost_rate`: the window must spend this many of the series' busy stretches (scaled to
    /// the window). Default: 1.5.
    pub robust_min_busy: f64,
    /// `cost_rate`: and at least this many dollars. Default: 0.25 USD.
    pub robust_min_usd: f64,
    /// Days of history before a series' own baseline (and `cost_rate`) count; before that it is
    /// measured against its organisation. Default: 3.0 days.
    pub warmup_days: f64,
    /// `cost_runaway`: busy rates a minute may spend without adding to the CUSUM. Default: 1.5.
    pub runaway_tolerance: f64,
    /// `cost_runaway`: the CUSUM, in busy-rate minutes, at which it fires. Default: 15.0.
    pub runaway_threshold: f64,
    /// `cost_runaway`: the run must have spent this many of the series' typical hours. Default:
    /// 0.5.
    pub runaway_min_typical_hours: f64,
    /// `cost_runaway`: and at least this many dollars. Default: 0.25 USD.
    pub runaway_min_usd: f64,
    /// `error_rate`: errors over requests above this share. Default: 0.05.
    pub error_rate: f64,
    /// `error_rate`: its window, minutes (1 to 60). Default: 5.
    pub error_window_minutes: i64,
    /// `error_rate`: requests the window needs. Default: 20.
    pub error_min_requests: i64,
    /// `slow_p95`: p95 latency above this, milliseconds. Default: 30000.
    pub slow_p95_ms: f64,
    /// `slow_p95`: its window, minutes (1 to 60). Default: 10.
    pub slow_window_minutes: i64,
    /// `slow_p95`: requests the window needs. Default: 40.
    pub slow_min_requests: i64,
    /// Spend limits per dimension value. Default: none.
    pub budgets: Vec<Budget>,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            dimensions: ["user_id", "team", "project", "model"]
                .map(String::from)
                .to_vec(),
            cost_spike_ratio: 2.0,
            cost_spike_min_typical_hours: 2.0,
            cost_spike_min_usd: 0.5,
            robust_z: 8.0,
            robust_window_minutes: 10,
            robust_min_busy: 1.5,
            robust_min_usd: 0.25,
            warmup_days: 3.0,
            runaway_tolerance: 1.5,
            runaway_threshold: 15.0,
            runaway_min_typical_hours: 0.5,
            runaway_min_usd: 0.25,
            error_rate: 0.05,
            error_window_minutes: 5,
            error_min_requests: 20,
            slow_p95_ms: 30_000.0,
            slow_window_minutes: 10,
            slow_min_requests: 40,
            budgets: Vec::new(),
        }
    }
}

/// A spend limit for one dimension value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    pub dimension: String,
    pub value: String,
    pub daily_usd: Option<f64>,
    pub monthly_usd: Option<f64>,
}

impl AnomalyConfig {
    pub fn validate(&self) -> Result<(), EngineError> {
        let known = |d: &str| WINDOW_DIMENSIONS.contains(&d);
        for d in &self.dimensions {
            if !known(d) {
                return Err(EngineError::Config(format!(
                    "anomalies.dimensions: unknown dimension {d:?}"
                )));
            }
        }
        for b in &self.budgets {
            if !self.dimensions.contains(&b.dimension) {
                return Err(EngineError::Config(format!(
                    "anomalies.budgets: dimension {:?} is not in anomalies.dimensions",
                    b.dimension
                )));
            }
            let positive = |v: Option<f64>| v.is_none_or(|v| v > 0.0 && v.is_finite());
            if !positive(b.daily_usd) || !positive(b.monthly_usd) {
                return Err(EngineError::Config(format!(
                    "anomalies.budgets: {}={} needs positive daily_usd / monthly_usd",
                    b.dimension, b.value
                )));
            }
        }
        let positive = [
            ("cost_spike_ratio", self.cost_spike_ratio),
            ("robust_z", self.robust_z),
            ("runaway_tolerance", self.runaway_tolerance),
            ("runaway_threshold", self.runaway_threshold),
        ];
        for (key, value) in positive {
            if !(value > 0.0 && value.is_finite()) {
                return Err(EngineError::Config(format!(
                    "anomalies.{key} = {value}: must be a positive number"
                )));
            }
        }
        let non_negative = [
            (
                "cost_spike_min_typical_hours",
                self.cost_spike_min_typical_hours,
            ),
            ("cost_spike_min_usd", self.cost_spike_min_usd),
            ("robust_min_busy", self.robust_min_busy),
            ("robust_min_usd", self.robust_min_usd),
            ("warmup_days", self.warmup_days),
            ("runaway_min_typical_hours", self.runaway_min_typical_hours),
            ("runaway_min_usd", self.runaway_min_usd),
        ];
        for (key, value) in non_negative {
            if !(value >= 0.0 && value.is_finite()) {
                return Err(EngineError::Config(format!(
                    "anomalies.{key} = {value}: must be zero or more"
                )));
            }
        }
        let windows = [
            ("robust_window_minutes", self.robust_window_minutes),
            ("error_window_minutes", self.error_window_minutes),
            ("slow_window_minutes", self.slow_window_minutes),
        ];
        for (key, minutes) in windows {
            if !(1..=60).contains(&minutes) {
                return Err(EngineError::Config(format!(
                    "anomalies.{key} = {minutes}: between 1 and 60"
                )));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    fn critical_if(critical: bool) -> Self {
        if critical {
            Severity::Critical
        } else {
            Severity::Warning
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One rule's verdict for one series at one minute.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub severity: Severity,
    pub observed: f64,
    pub baseline: f64,
    pub score: f64,
    /// The stretch of event time the rule looked at.
    pub window_minutes: i64,
}

/// An anomaly in progress, as the checkpoint keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Active {
    pub rule: String,
    pub severity: Severity,
    pub dimension: String,
    pub value: String,
    pub first_seen_nanos: i64,
    pub observed: f64,
    pub baseline: f64,
    pub score: f64,
    /// The first minute of the quiet stretch that will resolve it, if the rule is quiet now.
    #[serde(default)]
    pub quiet_since: Option<i64>,
}

/// What the checkpoint keeps of the detector.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct AnomalyState {
    /// The last minute (index since the epoch) evaluated.
    pub evaluated_through: Option<i64>,
    pub active: BTreeMap<String, Active>,
    /// Budget use by `dimension=value` and period (`day`, `month`, `month_forecast`).
    pub budget_use: BTreeMap<String, f64>,
}

/// Minute costs of one series, for eight days.
#[derive(Debug)]
struct Series {
    first_minute: i64,
    last_active: i64,
    ring: Vec<(i64, f64)>,
    /// Requests, errors and latency of the last hour, by minute.
    recent: BTreeMap<i64, Recent>,
    /// Spend by day index, for budgets.
    days: BTreeMap<i64, f64>,
    /// Spend by 10-minute stretch and by hour (index since the epoch), for the baseline.
    stretches: BTreeMap<i64, f64>,
    hours: BTreeMap<i64, f64>,
}

#[derive(Debug, Default)]
struct Recent {
    requests: i64,
    errors: i64,
    sketch: LatencySketch,
}

impl Series {
    fn new(minute: i64) -> Self {
        Series {
            first_minute: minute,
            last_active: minute,
            ring: vec![(i64::MIN, 0.0); RING_MINUTES as usize],
            recent: BTreeMap::new(),
            days: BTreeMap::new(),
            stretches: BTreeMap::new(),
            hours: BTreeMap::new(),
        }
    }

    /// What this series usually spends, from the week before `minute`.
    fn baseline(&self, minute: i64) -> Option<Baseline> {
        let stretch = minute.div_euclid(STRETCH_MINUTES);
        let hour = minute.div_euclid(60);
        Baseline::learn(
            self.stretches
                .range(stretch - 7 * MINUTES_PER_DAY / STRETCH_MINUTES..stretch)
                .map(|(_, c)| *c),
            self.hours.range(hour - 7 * 24..hour).map(|(_, c)| *c),
        )
    }

    fn cost_at(&self, minute: i64) -> f64 {
        let slot = self.ring[minute.rem_euclid(RING_MINUTES) as usize];
        if slot.0 == minute { slot.1 } else { 0.0 }
    }

    /// Cost of the `minutes` minutes ending with minute `last`.
    fn cost(&self, last: i64, minutes: i64) -> f64 {
        (last - minutes + 1..=last).map(|m| self.cost_at(m)).sum()
    }

    fn add(
        &mut self,
        minute: i64,
        cost: f64,
        requests: i64,
        errors: i64,
        sketch: Option<LatencySketch>,
    ) {
        let slot = &mut self.ring[minute.rem_euclid(RING_MINUTES) as usize];
        // A slot holding a later minute means this one is older than the ring keeps.
        if slot.0 <= minute {
            if slot.0 != minute {
                *slot = (minute, 0.0);
            }
            slot.1 += cost;
        }
        *self
            .days
            .entry(minute.div_euclid(MINUTES_PER_DAY))
            .or_default() += cost;
        *self
            .stretches
            .entry(minute.div_euclid(STRETCH_MINUTES))
            .or_default() += cost;
        *self.hours.entry(minute.div_euclid(60)).or_default() += cost;
        self.first_minute = self.first_minute.min(minute);
        self.last_active = self.last_active.max(minute);
        let recent = self.recent.entry(minute).or_default();
        recent.requests += requests;
        recent.errors += errors;
        if let Some(sketch) = sketch {
            recent.sketch.merge(&sketch);
        }
    }

    fn recent(&self, last: i64, minutes: i64) -> impl Iterator<Item = &Recent> {
        self.recent.range(last - minutes + 1..=last).map(|(_, r)| r)
    }

    fn prune(&mut self, through: i64) {
        self.recent = self.recent.split_off(&(through - 60));
        self.days = self
            .days
            .split_off(&(through.div_euclid(MINUTES_PER_DAY) - 62));
        let week = 7 * MINUTES_PER_DAY + 60;
        self.stretches = self
            .stretches
            .split_off(&(through - week).div_euclid(STRETCH_MINUTES));
        self.hours = self.hours.split_off(&(through - week).div_euclid(60));
    }
}

/// The rules over per-series history; see the module documentation.
#[derive(Debug)]
pub struct AnomalyDetector {
    config: AnomalyConfig,
    /// (dimension, value) → history.
    series: BTreeMap<(String, String), Series>,
    /// What each series is measured against, learned again at every hour evaluated.
    baselines: Baselines,
}

/// The baselines of one hour: each series' own (and whether it is warm) and each dimension's
/// organisation-wide one.
#[derive(Debug, Default)]
struct Baselines {
    hour: Option<i64>,
    own: BTreeMap<(String, String), (Baseline, bool)>,
    organisation: BTreeMap<String, Baseline>,
}

impl Baselines {
    fn of(&self, key: &(String, String)) -> Option<Baseline> {
        baseline::effective(
            self.own.get(key).copied(),
            self.organisation.get(&key.0).copied(),
        )
    }
}

/// A row of the `anomalies` table before it becomes Arrow.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyEvent {
    pub time_nanos: i64,
    pub status: &'static str,
    pub active: Active,
    pub window_minutes: i64,
    pub resolved_at_nanos: Option<i64>,
}

impl AnomalyDetector {
    pub fn new(config: &AnomalyConfig) -> Result<Self, EngineError> {
        config.validate()?;
        Ok(AnomalyDetector {
            config: config.clone(),
            series: BTreeMap::new(),
            baselines: Baselines::default(),
        })
    }

    /// Adds rows of `usage_windows` (closed windows or corrections) to the history.
    pub fn observe(&mut self, batch: &RecordBatch) -> Result<(), EngineError> {
        let starts = primitive::<TimestampNanosecondType>(batch, "window_start")?;
        let cost = primitive::<Float64Type>(batch, "cost_usd")?;
        let requests = primitive::<Int64Type>(batch, "requests")?;
        let errors = primitive::<Int64Type>(batch, "errors")?;
        let sketches = batch
            .column_by_name("latency_sketch")
            .and_then(|c| c.as_binary_opt::<i32>())
            .ok_or_else(|| EngineError::Schema("usage_windows.latency_sketch".into()))?;
        let dimensions = self
            .config
            .dimensions
            .iter()
            .map(|d| {
                batch
                    .column_by_name(d)
                    .and_then(|c| c.as_string_opt::<i32>())
                    .map(|c| (d.clone(), c))
                    .ok_or_else(|| EngineError::Schema(format!("usage_windows.{d}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let value = |a: &datafusion::arrow::array::Int64Array, row| {
            if a.is_valid(row) { a.value(row) } else { 0 }
        };
        for row in 0..batch.num_rows() {
            let n = value(requests, row);
            if n == 0 || starts.is_null(row) {
                continue;
            }
            let minute = starts.value(row).div_euclid(NANOS_PER_MINUTE);
            let spent = if cost.is_valid(row) {
                cost.value(row)
            } else {
                0.0
            };
            let sketch = if sketches.is_valid(row) {
                Some(
                    LatencySketch::from_bytes(sketches.value(row))
                        .map_err(|e| EngineError::Schema(e.to_string()))?,
                )
            } else {
                None
            };
            for (dimension, values) in &dimensions {
                if values.is_null(row) || values.value(row).is_empty() {
                    continue;
                }
                self.series
                    .entry((dimension.clone(), values.value(row).to_string()))
                    .or_insert_with(|| Series::new(minute))
                    .add(minute, spent, n, value(errors, row), sketch.clone());
            }
        }
        Ok(())
    }

    /// Adds closed windows and evaluates as it goes: every minute is evaluated with exactly
    /// the windows before it, however many days one micro-batch closes (a backfill closes
    /// weeks at once; the rules must not see the future, nor lose the past from their rings).
    pub fn observe_and_evaluate(
        &mut self,
        batches: &[RecordBatch],
        state: &mut AnomalyState,
        through_nanos: i64,
    ) -> Result<Vec<AnomalyEvent>, EngineError> {
        let mut events = Vec::new();
        if let Some(first) = batches.first() {
            let all = datafusion::arrow::compute::concat_batches(&first.schema(), batches)?;
            let starts = primitive::<TimestampNanosecondType>(&all, "window_start")?;
            let order = datafusion::arrow::compute::sort_to_indices(starts, None, None)?;
            let sorted = datafusion::arrow::compute::take_record_batch(&all, &order)?;
            let starts = primitive::<TimestampNanosecondType>(&sorted, "window_start")?;
            let mut run = 0;
            for row in 1..=sorted.num_rows() {
                if row == sorted.num_rows() || starts.value(row) != starts.value(run) {
                    events.extend(self.evaluate(state, starts.value(run)));
                    self.observe(&sorted.slice(run, row - run))?;
                    run = row;
                }
            }
        }
        events.extend(self.evaluate(state, through_nanos));
        Ok(events)
    }

    /// Evaluates every minute after the last one evaluated up to the one ending at
    /// `through_nanos`, and returns what started, rose or ended.
    pub fn evaluate(&mut self, state: &mut AnomalyState, through_nanos: i64) -> Vec<AnomalyEvent> {
        let last = through_nanos.div_euclid(NANOS_PER_MINUTE) - 1;
        let first = match state.evaluated_through {
            Some(done) => done + 1,
            // A first run starts with its data, not at the epoch.
            None => self
                .series
                .values()
                .map(|s| s.first_minute)
                .min()
                .unwrap_or(last + 1),
        };
        let mut events = Vec::new();
        for minute in first..=last {
            self.learn_baselines(minute);
            self.evaluate_minute(state, minute, &mut events);
        }
        if last >= first {
            state.evaluated_through = Some(last);
            for series in self.series.values_mut() {
                series.prune(last);
            }
        }
        events
    }

    /// Learns every series' baseline again when `minute` starts an hour not learned yet.
    fn learn_baselines(&mut self, minute: i64) {
        let hour = minute.div_euclid(60);
        if self.baselines.hour == Some(hour) {
            return;
        }
        let warmup = (self.config.warmup_days * MINUTES_PER_DAY as f64) as i64;
        let mut own = BTreeMap::new();
        // Series with a day of history and two busy hours speak for their organisation.
        let mut seasoned: BTreeMap<&str, Vec<Baseline>> = BTreeMap::new();
        for (key, series) in &self.series {
            if let Some(b) = series.baseline(minute) {
                let age = minute - series.first_minute;
                let enough = b.samples >= baseline::WARM_SAMPLES;
                own.insert(key.clone(), (b, enough && age >= warmup));
                if enough && age >= baseline::SEASONED_MINUTES {
                    seasoned.entry(key.0.as_str()).or_default().push(b);
                }
            }
        }
        let organisation = seasoned
            .into_iter()
            .filter_map(|(dimension, baselines)| {
                Baseline::median_of(&baselines).map(|median| (dimension.to_string(), median))
            })
            .collect();
        self.baselines = Baselines {
            hour: Some(hour),
            own,
            organisation,
        };
    }

    fn evaluate_minute(
        &self,
        state: &mut AnomalyState,
        minute: i64,
        events: &mut Vec<AnomalyEvent>,
    ) {
        let time_nanos = (minute + 1) * NANOS_PER_MINUTE;
        for ((dimension, value), series) in &self.series {
            let quiet = minute - series.last_active > QUIET_MINUTES;
            let budget = self
                .config
                .budgets
                .iter()
                .find(|b| &b.dimension == dimension && &b.value == value);
            let prefix = format!("{dimension}\u{1f}{value}\u{1f}");
            let has_active = state.active.keys().any(|k| k.starts_with(&prefix));
            if quiet && budget.is_none() && !has_active {
                continue;
            }
            let usual = self.baselines.of(&(dimension.clone(), value.clone()));
            let mut findings: Vec<(&'static str, Option<Finding>)> = vec![
                ("cost_spike", self.cost_spike(series, minute, usual)),
                ("cost_rate", self.cost_rate(series, minute, usual)),
                ("cost_runaway", self.cost_runaway(series, minute, usual)),
                ("error_rate", self.error_rate(series, minute)),
                ("slow_p95", self.slow_p95(series, minute)),
            ];
            if let Some(budget) = budget {
                let (daily, monthly) = self.budgets(series, budget, minute, &mut state.budget_use);
                findings.push(("budget_daily", daily));
                findings.push(("budget_monthly", monthly));
            }
            for (rule, finding) in findings {
                let key = format!("{prefix}{rule}");
                match (finding, state.active.get(&key)) {
                    (Some(f), None) => {
                        let active = Active {
                            rule: rule.to_string(),
                            severity: f.severity,
                            dimension: dimension.clone(),
                            value: value.clone(),
                            first_seen_nanos: time_nanos,
                            observed: f.observed,
                            baseline: f.baseline,
                            score: f.score,
                            quiet_since: None,
                        };
                        events.push(AnomalyEvent {
                            time_nanos,
                            status: "firing",
                            active: active.clone(),
                            window_minutes: f.window_minutes,
                            resolved_at_nanos: None,
                        });
                        state.active.insert(key, active);
                    }
                    (Some(f), Some(current)) => {
                        let rose = f.severity > current.severity;
                        let active = Active {
                            severity: current.severity.max(f.severity),
                            observed: f.observed,
                            baseline: f.baseline,
                            score: f.score,
                            quiet_since: None,
                            ..current.clone()
                        };
                        if rose {
                            events.push(AnomalyEvent {
                                time_nanos,
                                status: "firing",
                                active: active.clone(),
                                window_minutes: f.window_minutes,
                                resolved_at_nanos: None,
                            });
                        }
                        state.active.insert(key, active);
                    }
                    (None, Some(current)) => {
                        let quiet_since = current.quiet_since.unwrap_or(minute);
                        if minute - quiet_since + 1 < RESOLVE_AFTER_MINUTES {
                            if let Some(active) = state.active.get_mut(&key) {
                                active.quiet_since = Some(quiet_since);
                            }
                        } else if let Some(active) = state.active.remove(&key) {
                            events.push(AnomalyEvent {
                                time_nanos,
                                status: "resolved",
                                active,
                                window_minutes: 0,
                                resolved_at_nanos: Some(time_nanos),
                            });
                        }
                    }
                    (None, None) => {}
                }
            }
        }
    }

    fn cost_spike(&self, series: &Series, minute: i64, usual: Option<Baseline>) -> Option<Finding> {
        let observed = series.cost(minute, 60);
        let floor = self.config.cost_spike_min_usd.max(usual.map_or(0.0, |b| {
            self.config.cost_spike_min_typical_hours * b.typical_hour_usd
        }));
        if observed < floor {
            return None;
        }
        // The busiest hour around the same time a day and a week earlier: a working day that
        // starts half an hour earlier than yesterday's is no spike.
        let baseline = [MINUTES_PER_DAY, 7 * MINUTES_PER_DAY]
            .iter()
            .flat_map(|back| [-60, -30, 0, 30, 60].map(|shift| minute - back + shift))
            .map(|end| series.cost(end, 60))
            .fold(0.0, f64::max);
        // Never less than a typical hour: bursty use has quiet hours, and twice a quiet hour is
        // no spike.
        let baseline = if baseline > 0.0 {
            baseline.max(usual.map_or(0.0, |b| b.typical_hour_usd))
        } else {
            0.0
        };
        if baseline <= 0.0 || observed - baseline < floor {
            return None;
        }
        let ratio = observed / baseline;
        (ratio >= self.config.cost_spike_ratio).then_some(Finding {
            severity: Severity::critical_if(ratio >= 2.5 * self.config.cost_spike_ratio),
            observed,
            baseline,
            score: ratio,
            window_minutes: 60,
        })
    }

    fn cost_rate(&self, series: &Series, minute: i64, usual: Option<Baseline>) -> Option<Finding> {
        let width = self.config.robust_window_minutes;
        let observed = series.cost(minute, width);
        let warmup = (self.config.warmup_days * MINUTES_PER_DAY as f64) as i64;
        let floor = self.config.robust_min_usd.max(usual.map_or(0.0, |b| {
            self.config.robust_min_busy * b.busy_10min_usd * width as f64 / STRETCH_MINUTES as f64
        }));
        if observed < floor || minute - series.first_minute < warmup {
            return None;
        }
        let mut history: Vec<f64> = Vec::with_capacity(49);
        for days_back in 1..=7 {
            for offset in [-30, -20, -10, 0, 10, 20, 30] {
                let end = minute - days_back * MINUTES_PER_DAY + offset;
                if end - width >= series.first_minute {
                    history.push(series.cost(end, width));
                }
            }
        }
        let (median, scale) = robust_scale(&mut history, floor)?;
        let z = (observed - median) / scale;
        (z >= self.config.robust_z).then_some(Finding {
            severity: Severity::critical_if(z >= 2.0 * self.config.robust_z),
            observed,
            baseline: median,
            score: z,
            window_minutes: width,
        })
    }

    fn cost_runaway(
        &self,
        series: &Series,
        minute: i64,
        usual: Option<Baseline>,
    ) -> Option<Finding> {
        let usual = usual?;
        let busy_per_minute = usual.busy_10min_usd / STRETCH_MINUTES as f64;
        let state = runaway::cusum(
            (minute - runaway::LOOKBACK_MINUTES + 1..=minute).map(|m| series.cost_at(m)),
            busy_per_minute,
            self.config.runaway_tolerance,
        )?;
        let floor = self
            .config
            .runaway_min_usd
            .max(self.config.runaway_min_typical_hours * usual.typical_hour_usd);
        (state.score >= self.config.runaway_threshold && state.run_usd >= floor).then(|| Finding {
            severity: Severity::critical_if(state.score >= 4.0 * self.config.runaway_threshold),
            observed: state.run_usd,
            baseline: busy_per_minute * state.run_minutes as f64,
            score: state.score,
            window_minutes: state.run_minutes,
        })
    }

    fn error_rate(&self, series: &Series, minute: i64) -> Option<Finding> {
        let width = self.config.error_window_minutes;
        let (requests, errors) = series
            .recent(minute, width)
            .fold((0, 0), |(r, e), m| (r + m.requests, e + m.errors));
        if requests < self.config.error_min_requests.max(1) {
            return None;
        }
        let rate = errors as f64 / requests as f64;
        // Above the threshold by more than chance: with 40 requests at a 1% error rate, 3
        // errors (7.5%) happen every few hours somewhere.
        let chance = binomial_tail(requests as u64, errors as u64, self.config.error_rate);
        (rate > self.config.error_rate && chance < ERROR_SIGNIFICANCE).then_some(Finding {
            severity: Severity::critical_if(rate > 5.0 * self.config.error_rate),
            observed: rate,
            baseline: self.config.error_rate,
            score: rate,
            window_minutes: width,
        })
    }

    fn slow_p95(&self, series: &Series, minute: i64) -> Option<Finding> {
        let width = self.config.slow_window_minutes;
        let mut sketch = LatencySketch::default();
        series
            .recent(minute, width)
            .for_each(|m| sketch.merge(&m.sketch));
        if (sketch.count() as i64) < self.config.slow_min_requests.max(1) {
            return None;
        }
        let p95 = sketch.quantile(0.95)?;
        (p95 > self.config.slow_p95_ms).then_some(Finding {
            severity: Severity::critical_if(p95 > 2.0 * self.config.slow_p95_ms),
            observed: p95,
            baseline: self.config.slow_p95_ms,
            score: p95 / self.config.slow_p95_ms,
            window_minutes: width,
        })
    }

    /// (daily, monthly) budget findings, recording the use ratios for the Pushgateway.
    fn budgets(
        &self,
        series: &Series,
        budget: &Budget,
        minute: i64,
        use_by_key: &mut BTreeMap<String, f64>,
    ) -> (Option<Finding>, Option<Finding>) {
        let key =
            |period: &str| format!("{}\u{1f}{}\u{1f}{period}", budget.dimension, budget.value);
        let day = minute.div_euclid(MINUTES_PER_DAY);
        let level = |ratio: f64| {
            if ratio >= 1.0 {
                Some(Severity::Critical)
            } else if ratio >= 0.8 {
                Some(Severity::Warning)
            } else {
                None
            }
        };
        let daily = budget.daily_usd.and_then(|limit| {
            let spent = series.days.get(&day).copied().unwrap_or(0.0);
            use_by_key.insert(key("day"), spent / limit);
            level(spent / limit).map(|severity| Finding {
                severity,
                observed: spent,
                baseline: limit,
                score: spent / limit,
                window_minutes: minute - day * MINUTES_PER_DAY + 1,
            })
        });
        let monthly = budget.monthly_usd.and_then(|limit| {
            let (month_start, month_days) = month_of(day);
            let spent: f64 = series.days.range(month_start..=day).map(|(_, c)| c).sum();
            let elapsed = (minute + 1 - month_start * MINUTES_PER_DAY) as f64
                / (month_days * MINUTES_PER_DAY) as f64;
            let forecast = spent / elapsed.max(1e-9);
            use_by_key.insert(key("month"), spent / limit);
            use_by_key.insert(key("month_forecast"), forecast / limit);
            let severity = level(spent / limit).or_else(|| {
                // Far enough in the month for a burn rate to mean something.
                (elapsed >= 0.1 && forecast >= limit).then_some(Severity::Warning)
            })?;
            Some(Finding {
                severity,
                observed: spent,
                baseline: limit,
                score: forecast / limit,
                window_minutes: minute + 1 - month_start * MINUTES_PER_DAY,
            })
        });
        (daily, monthly)
    }
}

/// P(X >= k) for X ~ Binomial(n, p), summed in log space.
pub fn binomial_tail(n: u64, k: u64, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n || p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let ln_choose = |i: u64| -> f64 {
        // ln C(n, i) = sum over j < i of ln((n - j) / (j + 1))
        (0..i).map(|j| ((n - j) as f64 / (j + 1) as f64).ln()).sum()
    };
    let mut term = ln_choose(k) + k as f64 * p.ln() + (n - k) as f64 * (1.0 - p).ln();
    let mut total = 0.0;
    for i in k..=n {
        total += term.exp();
        // term(i + 1) / term(i) = (n - i) / (i + 1) * p / (1 - p)
        term += ((n - i) as f64 / (i + 1) as f64).ln() + (p / (1.0 - p)).ln();
        if term < -50.0 && i > k {
            break;
        }
    }
    total.min(1.0)
}

/// Median and a robust scale (1.4826 × MAD) of `values`, the scale floored so that a history
/// of identical values (all zero at night) does not make every cent an outlier. `None` for an
/// empty history.
pub fn robust_scale(values: &mut [f64], min_usd: f64) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let median = median_of(values);
    let mut deviations: Vec<f64> = values.iter().map(|v| (v - median).abs()).collect();
    let mad = median_of(&mut deviations);
    let scale = (1.4826 * mad).max(0.25 * median).max(min_usd / 2.0);
    Some((median, scale))
}

fn median_of(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// (first day index, length in days) of the UTC month holding `day`.
fn month_of(day: i64) -> (i64, i64) {
    use chrono::{Datelike, NaiveDate};
    let date = chrono::DateTime::from_timestamp(day * 86_400, 0)
        .map(|t| t.date_naive())
        .unwrap_or_default();
    let first = NaiveDate::from_ymd_opt(date.year(), date.month(), 1).unwrap_or(date);
    let next = if date.month() == 12 {
        NaiveDate::from_ymd_opt(date.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(date.year(), date.month() + 1, 1)
    }
    .unwrap_or(date);
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    let start = (first - epoch).num_days();
    (start, (next - first).num_days().max(1))
}

/// The `anomalies` rows of `events`.
pub fn anomaly_batch(events: &[AnomalyEvent], replica: &str) -> Result<RecordBatch, EngineError> {
    let text = |f: &dyn Fn(&AnomalyEvent) -> String| -> ArrayRef {
        Arc::new(StringArray::from(events.iter().map(f).collect::<Vec<_>>()))
    };
    let float = |f: &dyn Fn(&AnomalyEvent) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from(events.iter().map(f).collect::<Vec<_>>()))
    };
    let time = |f: &dyn Fn(&AnomalyEvent) -> Option<i64>| -> ArrayRef {
        Arc::new(
            TimestampNanosecondArray::from(events.iter().map(f).collect::<Vec<_>>())
                .with_timezone("UTC"),
        )
    };
    let columns = vec![
        time(&|e| Some(e.time_nanos)),
        text(&|e| e.active.rule.clone()),
        text(&|e| e.active.severity.as_str().to_string()),
        text(&|e| e.status.to_string()),
        text(&|e| e.active.dimension.clone()),
        text(&|e| e.active.value.clone()),
        time(&|e| Some(e.time_nanos - e.window_minutes * NANOS_PER_MINUTE)),
        time(&|e| Some(e.time_nanos)),
        float(&|e| e.active.observed),
        float(&|e| e.active.baseline),
        float(&|e| e.active.score),
        time(&|e| Some(e.active.first_seen_nanos)),
        time(&|e| e.resolved_at_nanos),
        text(&|_| replica.to_string()),
    ];
    Ok(RecordBatch::try_new(Table::Anomalies.schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = MINUTES_PER_DAY;
    /// A minute well into a month (2026-11-20T12:00Z).
    const NOW: i64 = 29_919_600;

    fn detector(config: AnomalyConfig) -> AnomalyDetector {
        AnomalyDetector::new(&config).unwrap()
    }

    /// A series spending `cost(minute)` per minute over the `days` days before `NOW`.
    fn series(days: i64, cost: impl Fn(i64) -> f64) -> Series {
        let mut s = Series::new(NOW - days * DAY);
        for minute in NOW - days * DAY..=NOW {
            s.add(minute, cost(minute), 1, 0, None);
        }
        s
    }

    /// A series whose typical active hour costs `typical_hour` and busy 10 minutes `busy`.
    fn usual(typical_hour: f64, busy: f64) -> Option<Baseline> {
        Some(Baseline {
            typical_hour_usd: typical_hour,
            busy_10min_usd: busy,
            samples: 500,
        })
    }

    fn spike_with(
        last_hour_per_minute: f64,
        yesterday_per_minute: f64,
        typical_hour: f64,
    ) -> Option<Finding> {
        let s = series(2, |m| {
            if m > NOW - 60 {
                last_hour_per_minute
            } else if m > NOW - DAY - 60 && m <= NOW - DAY {
                yesterday_per_minute
            } else {
                0.0
            }
        });
        let busy = typical_hour / 6.0;
        detector(AnomalyConfig::default()).cost_spike(&s, NOW, usual(typical_hour, busy))
    }

    #[test]
    fn cost_spike_at_its_ratio_and_its_floor_in_typical_hours() {
        // Yesterday's hour $12, a typical one $5. Just under 2x, at 2x, just over.
        assert_eq!(spike_with(0.3999, 0.2, 5.0), None);
        let at = spike_with(0.4, 0.2, 5.0).unwrap();
        assert!((at.score - 2.0).abs() < 1e-9 && at.severity == Severity::Warning);
        assert!(spike_with(0.4001, 0.2, 5.0).is_some());
        assert_eq!(
            spike_with(2.0, 0.2, 5.0).unwrap().severity,
            Severity::Critical
        );
        // Tripling is not enough for a series whose typical hour is more than the jump.
        assert_eq!(spike_with(0.6, 0.2, 30.0), None);
        // A zero baseline is no ratio at all, and 0 -> 0 is nothing.
        assert_eq!(spike_with(1.0, 0.0, 12.0), None);
        assert_eq!(spike_with(0.0, 0.0, 12.0), None);
    }

    #[test]
    fn cost_spike_fits_any_scale_and_cents_never_alert() {
        // The same tripling at a hundredth, at the scale, at a hundred times: the floor moves
        // with the series, so each fires.
        for scale in [0.03, 1.0, 100.0] {
            let f = spike_with(0.6 * scale, 0.2 * scale, 10.0 * scale);
            assert!(f.is_some(), "{scale}");
        }
        // $0.01 -> $0.03 an hour triples, but is under the absolute floor.
        assert_eq!(spike_with(0.03 / 60.0, 0.01 / 60.0, 0.01), None);
        // Without a baseline, only the absolute floor counts.
        let s = series(2, |m| {
            if m > NOW - 60 {
                0.1
            } else if m > NOW - DAY - 60 && m <= NOW - DAY {
                0.02
            } else {
                0.0
            }
        });
        assert!(
            detector(AnomalyConfig::default())
                .cost_spike(&s, NOW, None)
                .is_some()
        );
    }

    #[test]
    fn cost_spike_compares_a_monday_with_the_monday_before() {
        // Weekdays spend $30/h, weekends nothing; NOW is a weekday after a weekend.
        let s = series(8, |m| {
            let day = (NOW - m).div_euclid(DAY);
            if day == 1 || day == 2 { 0.0 } else { 0.5 }
        });
        let usual = s.baseline(NOW);
        assert_eq!(
            detector(AnomalyConfig::default()).cost_spike(&s, NOW, usual),
            None
        );
    }

    /// A user with a steady `scale` × $0.1/min and `extra` × `scale` per minute over the last ten
    /// minutes, measured against its own baseline.
    fn rate_with(days: i64, extra: f64, scale: f64) -> Option<Finding> {
        let s = series(days, |m| {
            scale * (0.1 + if m > NOW - 10 { extra } else { 0.0 })
        });
        let usual = s.baseline(NOW);
        detector(AnomalyConfig::default()).cost_rate(&s, NOW, usual)
    }

    #[test]
    fn robust_rule_needs_warm_up_and_its_threshold_at_any_scale() {
        // Steady history: median and busy stretch $1 per 10 min, so the floor is $1.5 and the
        // scale max(0.25 x 1, 1.5 / 2) = 0.75: z >= 8 needs $7 in the ten minutes, $0.6 a
        // minute more. The same at a hundredth (the $0.25 floor still under it) and at 100x.
        for scale in [0.2, 1.0, 100.0] {
            assert_eq!(rate_with(8, 0.5999, scale), None, "{scale}");
            assert!(rate_with(8, 0.6001, scale).is_some(), "{scale}");
        }
        // Cents are not an incident whatever their z-score.
        assert_eq!(rate_with(8, 5.0, 0.001), None);
        // The same spend on a user's first days is no alert of this rule.
        assert_eq!(rate_with(2, 5.0, 1.0), None);
        assert_eq!(rate_with(0, 5.0, 1.0), None);
    }

    /// Eight working days of a steady `per_minute` from 9:00 to 17:00, then `jump` times that
    /// over the last `minutes` minutes (NOW is noon).
    fn working_days(per_minute: f64, jump: f64, minutes: i64) -> Series {
        series(8, |m| {
            let of_day = m.rem_euclid(DAY);
            if m > NOW - minutes {
                per_minute * jump
            } else if (9 * 60..17 * 60).contains(&of_day) {
                per_minute
            } else {
                0.0
            }
        })
    }

    fn runaway(s: &Series) -> Option<Finding> {
        detector(AnomalyConfig::default()).cost_runaway(s, NOW, s.baseline(NOW))
    }

    #[test]
    fn runaway_fires_within_minutes_whatever_the_scale() {
        // $0.30 an hour of work ($2.40 a day): ten times that spends the $0.25 floor in five
        // minutes, and fires then.
        assert!(runaway(&working_days(0.005, 10.0, 5)).is_some());
        assert_eq!(runaway(&working_days(0.005, 10.0, 4)), None);
        for per_minute in [0.05, 0.1, 5.0] {
            // Ten times the usual pace: once it has spent half a typical hour, three minutes.
            assert!(
                runaway(&working_days(per_minute, 10.0, 3)).is_some(),
                "{per_minute}"
            );
            assert_eq!(
                runaway(&working_days(per_minute, 10.0, 2)),
                None,
                "{per_minute}"
            );
            // Forty times: the first minute.
            let loop_ = runaway(&working_days(per_minute, 40.0, 1)).unwrap();
            assert!(loop_.score >= 15.0, "{loop_:?}");
            // The usual pace, or a busy stretch at 1.4 times it, never.
            assert_eq!(runaway(&working_days(per_minute, 1.0, 60)), None);
            assert_eq!(runaway(&working_days(per_minute, 1.4, 60)), None);
        }
    }

    #[test]
    fn runaway_needs_its_floor_and_a_baseline() {
        // $0.0001 a minute at 40 times: $0.008 in two minutes, cents.
        assert_eq!(runaway(&working_days(0.0001, 40.0, 2)), None);
        // Nothing ever spent: no baseline, nothing to measure against.
        let zeros = series(8, |_| 0.0);
        assert_eq!(zeros.baseline(NOW), None);
        assert_eq!(runaway(&zeros), None);
    }

    /// Three weeks of one person's bursty sessions like real Claude Code use (a few calls within
    /// two minutes, then idle for 35 minutes on average) on working days 9:00 to 17:00, and a
    /// loop of $0.2 a minute from `loop_from` on.
    fn bursty(seed: u64, loop_from: Option<i64>) -> Series {
        let start = NOW - 21 * DAY - 9 * 60;
        let mut s = Series::new(start);
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut uniform = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut minute = start;
        while minute < NOW + 60 {
            let of_day = minute.rem_euclid(DAY);
            let weekday = (minute.div_euclid(DAY) + 3).rem_euclid(7) < 5;
            let working = weekday && (9 * 60..17 * 60).contains(&of_day);
            if working {
                let calls = 2 + (uniform() * 5.0) as i64;
                for c in 0..calls {
                    s.add(
                        minute + c / 3,
                        0.01 + 0.06 * uniform() * uniform() * 4.0,
                        1,
                        0,
                        None,
                    );
                }
                let gap = -((1.0 - uniform()).ln()) * 35.0;
                minute += 2 + gap as i64;
            } else {
                minute += 10;
            }
        }
        if let Some(from) = loop_from {
            for m in from..NOW + 60 {
                s.add(m, 0.2, 10, 0, None);
            }
        }
        s
    }

    #[test]
    fn every_rule_is_quiet_on_a_series_of_zeros() {
        let zeros = series(8, |_| 0.0);
        let d = detector(AnomalyConfig::default());
        let own = zeros.baseline(NOW);
        assert_eq!(own, None);
        // With no baseline of its own and an organisation's one, still nothing.
        for baseline in [own, usual(0.3, 0.05)] {
            assert_eq!(d.cost_spike(&zeros, NOW, baseline), None);
            assert_eq!(d.cost_rate(&zeros, NOW, baseline), None);
            assert_eq!(d.cost_runaway(&zeros, NOW, baseline), None);
        }
        assert_eq!(d.error_rate(&zeros, NOW), None);
        assert_eq!(d.slow_p95(&zeros, NOW), None);
    }

    #[test]
    fn a_loop_among_bursty_sessions_is_caught_within_ten_minutes() {
        // Real Claude Code use comes in sessions: a few calls in two minutes, then half an
        // hour of reading. Three such people, three weeks of them, then one starts a loop.
        for seed in 1..=3u64 {
            let mut team = bursty(seed * 100, Some(NOW - 3 * 60));
            for other in 1..3 {
                let person = bursty(seed * 100 + other, None);
                for (minute, cost) in person.ring.iter().filter(|(m, _)| *m > i64::MIN) {
                    team.add(*minute, *cost, 1, 0, None);
                }
            }
            let mut d = detector(AnomalyConfig::default());
            d.series.insert(("team".into(), "t".into()), team);
            let mut state = AnomalyState {
                evaluated_through: Some(NOW - 3 * 60 - 1),
                ..AnomalyState::default()
            };
            let events = d.evaluate(&mut state, (NOW + 60) * NANOS_PER_MINUTE);
            let first = events
                .iter()
                .find(|e| e.status == "firing" && e.active.rule == "cost_runaway")
                .map(|e| e.time_nanos / NANOS_PER_MINUTE - (NOW - 3 * 60))
                .unwrap_or(i64::MAX);
            assert!(first <= 10, "seed {seed}: fired after {first} minutes");
        }
    }

    #[test]
    fn a_new_user_in_a_loop_is_measured_against_the_organisation() {
        let mut d = detector(AnomalyConfig::default());
        for user in ["a", "b", "c"] {
            d.series
                .insert(("user_id".into(), user.into()), working_days(0.1, 1.0, 0));
        }
        // Five minutes of history, all of it a loop at forty times the others' pace.
        let mut newcomer = Series::new(NOW - 5);
        for minute in NOW - 5..=NOW {
            newcomer.add(minute, 4.0, 10, 0, None);
        }
        d.series.insert(("user_id".into(), "new".into()), newcomer);
        let mut state = AnomalyState {
            evaluated_through: Some(NOW - 6),
            ..AnomalyState::default()
        };
        let events = d.evaluate(&mut state, (NOW + 1) * NANOS_PER_MINUTE);
        let fired: Vec<_> = events
            .iter()
            .map(|e| (e.active.rule.as_str(), e.active.value.as_str()))
            .collect();
        assert!(fired.contains(&("cost_runaway", "new")), "{fired:?}");
        assert!(!fired.iter().any(|(_, user)| *user != "new"), "{fired:?}");
    }

    #[test]
    fn robust_scale_never_divides_by_zero() {
        let mut zeros = vec![0.0; 49];
        let (median, scale) = robust_scale(&mut zeros, 3.0).unwrap();
        assert_eq!(median, 0.0);
        assert!(scale > 0.0);
        assert_eq!(robust_scale(&mut [], 3.0), None);
    }

    fn errors_with(requests: i64, errors: i64) -> Option<Finding> {
        let mut s = Series::new(NOW - 10);
        // Spread over the five minutes the rule looks at.
        for i in 0..requests {
            s.add(NOW - (i % 5), 0.0, 1, i64::from(i < errors), None);
        }
        detector(AnomalyConfig::default()).error_rate(&s, NOW)
    }

    #[test]
    fn error_rate_above_five_percent_beyond_chance_with_enough_requests() {
        assert_eq!(errors_with(2000, 100), None); // at 5%: not above
        assert_eq!(errors_with(2000, 101), None); // above, but well within chance
        assert!(errors_with(2000, 140).is_some()); // 7%: one in millions by chance
        assert_eq!(errors_with(100, 6), None); // 6% of 100 is chance
        assert!(errors_with(100, 15).is_some());
        assert_eq!(errors_with(19, 19), None); // too few requests to say
        assert_eq!(errors_with(40, 40).unwrap().severity, Severity::Critical);
        assert_eq!(errors_with(0, 0), None);
    }

    #[test]
    fn binomial_tails() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-4;
        assert!(close(binomial_tail(10, 5, 0.5), 0.623_05));
        assert!(close(binomial_tail(20, 3, 0.05), 0.075_48));
        assert_eq!(binomial_tail(10, 0, 0.3), 1.0);
        assert_eq!(binomial_tail(10, 11, 0.3), 0.0);
        assert!(binomial_tail(2000, 140, 0.05) < 1e-4);
    }

    fn slow_with(slow_ms: f64) -> Option<Finding> {
        let mut s = Series::new(NOW - 20);
        for i in 0..100 {
            let mut sketch = LatencySketch::default();
            sketch.add(if i < 94 { 1_000.0 } else { slow_ms });
            s.add(NOW - (i % 10), 0.0, 1, 0, Some(sketch));
        }
        detector(AnomalyConfig::default()).slow_p95(&s, NOW)
    }

    #[test]
    fn slow_p95_over_thirty_seconds() {
        // The 95th of 100 calls is one of the six slow ones; the sketch holds it within 1%.
        assert_eq!(slow_with(29_500.0), None);
        assert!(slow_with(30_500.0).is_some());
        assert_eq!(slow_with(70_000.0).unwrap().severity, Severity::Critical);
    }

    #[test]
    fn budgets_warn_at_eighty_percent_and_go_critical_at_the_limit() {
        let budget = Budget {
            dimension: "team".into(),
            value: "platform".into(),
            daily_usd: Some(100.0),
            monthly_usd: Some(10_000.0),
        };
        let config = AnomalyConfig {
            budgets: vec![budget.clone()],
            ..AnomalyConfig::default()
        };
        let d = detector(config);
        let today = |spent: f64| {
            let mut s = Series::new(NOW - 5);
            s.add(NOW, spent, 1, 0, None);
            let mut uses = BTreeMap::new();
            d.budgets(&s, &budget, NOW, &mut uses).0
        };
        assert_eq!(today(79.99), None);
        assert_eq!(today(80.0).unwrap().severity, Severity::Warning);
        assert_eq!(today(100.0).unwrap().severity, Severity::Critical);
        // $D a day for the 19.5 days of November so far: spent 19.5 D, forecast 30 D.
        let month = |per_day: f64| {
            let s = series(25, |m| {
                if m > NOW - (19 * DAY + 720) {
                    per_day / DAY as f64
                } else {
                    0.0
                }
            });
            let mut uses = BTreeMap::new();
            (d.budgets(&s, &budget, NOW, &mut uses).1, uses)
        };
        let (ok, uses) = month(300.0); // $5,850 spent, $9,000 forecast
        assert_eq!(ok, None);
        assert!(uses.values().all(|v| v.is_finite()));
        let (forecast, _) = month(400.0); // $7,800 spent (78%), $12,000 forecast
        let forecast = forecast.unwrap();
        assert_eq!(forecast.severity, Severity::Warning);
        assert!((forecast.score - 1.2).abs() < 0.01, "{forecast:?}");
        let (over, _) = month(520.0); // $10,140 spent
        assert_eq!(over.unwrap().severity, Severity::Critical);
        assert!(uses.values().all(|v| v.is_finite()));
    }

    #[test]
    fn an_anomaly_fires_once_and_resolves_when_the_data_stops() {
        let mut d = detector(AnomalyConfig::default());
        let mut s = Series::new(NOW - 30);
        for i in 0..40 {
            s.add(NOW - 30 + (i % 5), 0.0, 1, 1, None);
        }
        d.series.insert(("team".into(), "platform".into()), s);
        let mut state = AnomalyState {
            evaluated_through: Some(NOW - 31),
            ..AnomalyState::default()
        };
        let events = d.evaluate(&mut state, (NOW + 120) * NANOS_PER_MINUTE);
        let statuses: Vec<_> = events
            .iter()
            .map(|e| (e.active.rule.as_str(), e.status))
            .collect();
        assert_eq!(
            statuses,
            [("error_rate", "firing"), ("error_rate", "resolved")]
        );
        assert!(state.active.is_empty());
        let batch = anomaly_batch(&events, "r0").unwrap();
        assert_eq!(batch.num_rows(), 2);
    }

    #[test]
    fn months_have_their_lengths() {
        let day = |y, m, d| {
            (chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap()
                - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
            .num_days()
        };
        assert_eq!(month_of(day(2026, 2, 14)), (day(2026, 2, 1), 28));
        assert_eq!(month_of(day(2026, 12, 31)), (day(2026, 12, 1), 31));
        assert_eq!(month_of(day(2028, 2, 29)).1, 29);
    }
}
