//! The pipeline's own health: liveness, readiness and its Prometheus metrics, served on
//! `/healthz`, `/readyz` and `/metrics`.
//!
//! Counters are plain atomics updated on the ingest path; the text exposition is rendered only
//! when scraped. Per-partition lag comes from librdkafka's statistics callback, not from extra
//! broker round trips.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::EngineError;

/// A sum and a count of observed durations: rendered as a Prometheus summary without quantiles.
#[derive(Debug, Default)]
struct Timing {
    micros: AtomicU64,
    count: AtomicU64,
}

impl Timing {
    fn observe(&self, elapsed: Duration) {
        self.micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
pub struct PipelineHealth {
    ready: AtomicBool,
    /// Why the pipeline is not ready, for `/readyz`.
    not_ready_reason: Mutex<String>,
    messages: AtomicU64,
    bytes: AtomicU64,
    dead_letters: AtomicU64,
    rows_with_errors: AtomicU64,
    segments: AtomicU64,
    source_errors: AtomicU64,
    commit_failures: AtomicU64,
    windows_closed: AtomicU64,
    late_events: AtomicU64,
    pushes: AtomicU64,
    push_failures: AtomicU64,
    rows: Mutex<BTreeMap<&'static str, u64>>,
    /// (topic, partition) → messages behind the partition's end.
    lag: Mutex<BTreeMap<(String, i32), i64>>,
    /// HTTP/gRPC status → requests answered by the receiver.
    requests: Mutex<BTreeMap<String, u64>>,
    /// Connection event (accepted, refused, evicted, idle_closed, tls_failed) → count.
    connections: Mutex<BTreeMap<&'static str, u64>>,
    team_overrides: AtomicU64,
    /// Bytes held against the memory budget, and its limit (0 when there is none).
    memory_in_flight: AtomicU64,
    memory_budget: AtomicU64,
    /// Whether the source stopped taking input because the memory budget is full, and how often.
    source_paused: AtomicBool,
    pauses: AtomicU64,
    /// When the pause under way began, and how long the pauses before it lasted (nanoseconds):
    /// how much of a catch-up waited for memory.
    paused_since: Mutex<Option<Instant>>,
    paused_nanos: AtomicU64,
    dropped_after_revoke: AtomicU64,
    /// Cumulative series whose last point the cumulative-to-delta state holds: those seen
    /// within `cumulative_staleness_seconds` (or not yet written), or every one read with 0.
    delta_series: AtomicU64,
    /// Series the state forgot, and series it looked up in `metric_points` as possibly
    /// forgotten.
    delta_forgotten: AtomicU64,
    delta_read_back: AtomicU64,
    flush: Timing,
    commit: Timing,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Counters stay meaningful even if a thread panicked while holding the lock.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl PipelineHealth {
    pub fn new() -> Arc<Self> {
        let health = PipelineHealth::default();
        *lock(&health.not_ready_reason) = "starting".into();
        Arc::new(health)
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    pub fn set_not_ready(&self, reason: impl Into<String>) {
        *lock(&self.not_ready_reason) = reason.into();
        self.ready.store(false, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn message(&self, bytes: usize) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Exports taken in so far.
    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    /// Their bytes, as received.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn source_error(&self) {
        self.source_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn commit_failed(&self) {
        self.commit_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// A segment made durable: what it held.
    pub fn flushed(
        &self,
        rows: &BTreeMap<&'static str, usize>,
        dead_letters: usize,
        rows_with_errors: u64,
    ) {
        self.segments.fetch_add(1, Ordering::Relaxed);
        self.dead_letters
            .fetch_add(dead_letters as u64, Ordering::Relaxed);
        self.rows_with_errors
            .fetch_add(rows_with_errors, Ordering::Relaxed);
        let mut totals = lock(&self.rows);
        for (table, n) in rows {
            *totals.entry(table).or_default() += *n as u64;
        }
    }

    /// One durable step's write took `took`: its segments' files and their log commits.
    pub fn wrote(&self, took: Duration) {
        self.flush.observe(took);
    }

    /// Windows closed and events that came after their window closed, in one micro-batch.
    pub fn windowed(&self, closed: usize, late_events: usize) {
        self.windows_closed
            .fetch_add(closed as u64, Ordering::Relaxed);
        self.late_events
            .fetch_add(late_events as u64, Ordering::Relaxed);
    }

    pub fn pushed(&self) {
        self.pushes.fetch_add(1, Ordering::Relaxed);
    }

    pub fn push_failed(&self) {
        self.push_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn push_failures(&self) -> u64 {
        self.push_failures.load(Ordering::Relaxed)
    }

    pub fn committed(&self, took: Duration) {
        self.commit.observe(took);
    }

    pub fn set_lag(&self, topic: &str, partition: i32, lag: i64) {
        lock(&self.lag).insert((topic.to_string(), partition), lag);
    }

    pub fn forget_partition(&self, topic: &str, partition: i32) {
        lock(&self.lag).remove(&(topic.to_string(), partition));
    }

    pub fn request(&self, status: &str) {
        *lock(&self.requests).entry(status.to_string()).or_default() += 1;
    }

    /// Something that happened to a receiver connection.
    pub fn connection(&self, event: &'static str) {
        *lock(&self.connections).entry(event).or_default() += 1;
    }

    /// A team-bound token replaced the `team` attribute of `rows` rows.
    pub fn team_overridden(&self, rows: u64) {
        self.team_overrides.fetch_add(rows, Ordering::Relaxed);
    }

    /// What the memory budget holds now, and its limit.
    pub fn set_memory(&self, in_flight: usize, limit: usize) {
        self.memory_in_flight
            .store(in_flight as u64, Ordering::Relaxed);
        self.memory_budget.store(limit as u64, Ordering::Relaxed);
    }

    /// How many cumulative series the cumulative-to-delta state holds now.
    pub fn set_delta_series(&self, series: usize) {
        self.delta_series.store(series as u64, Ordering::Relaxed);
    }

    /// The cumulative-to-delta state forgot `series` series.
    pub fn delta_forgotten(&self, series: usize) {
        self.delta_forgotten
            .fetch_add(series as u64, Ordering::Relaxed);
    }

    /// `series` series that may have been forgotten were looked up in `metric_points`.
    pub fn delta_read_back(&self, series: usize) {
        self.delta_read_back
            .fetch_add(series as u64, Ordering::Relaxed);
    }

    /// The source stopped (or started again) taking input to stay within the memory budget.
    pub fn source_paused(&self, paused: bool) {
        self.source_paused.store(paused, Ordering::Relaxed);
        let mut since = lock(&self.paused_since);
        if paused {
            self.pauses.fetch_add(1, Ordering::Relaxed);
            since.get_or_insert_with(Instant::now);
        } else if let Some(began) = since.take() {
            self.paused_nanos
                .fetch_add(began.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
    }

    /// Seconds the source has spent paused for memory, the pause under way included.
    pub fn paused_seconds(&self) -> f64 {
        let ongoing = lock(&self.paused_since).map_or(0, |began| began.elapsed().as_nanos() as u64);
        (self.paused_nanos.load(Ordering::Relaxed) + ongoing) as f64 / 1e9
    }

    /// A message of a partition revoked from this member arrived and was not decoded.
    pub fn dropped_after_revoke(&self) {
        self.dropped_after_revoke.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the pipeline is not ready for `reason` (a prefix of the reason it gave).
    pub fn not_ready_because(&self, reason: &str) -> bool {
        !self.is_ready() && lock(&self.not_ready_reason).starts_with(reason)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut counter =
            |name: &str, help: &str, value: u64| counter_line(&mut out, name, help, value);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            "burnrate_messages_total",
            "OTLP exports taken in (Kafka messages, receiver requests, files).",
            load(&self.messages),
        );
        counter(
            "burnrate_bytes_total",
            "Bytes of OTLP exports taken in.",
            load(&self.bytes),
        );
        counter(
            "burnrate_dead_letters_total",
            "Exports that could not be decoded and went to the dead letters.",
            load(&self.dead_letters),
        );
        counter(
            "burnrate_rows_with_errors_total",
            "Rows written with at least one unparsable value.",
            load(&self.rows_with_errors),
        );
        counter(
            "burnrate_segments_written_total",
            "Segments made durable in the Parquet dataset.",
            load(&self.segments),
        );
        counter(
            "burnrate_source_errors_total",
            "Errors from the source (broker unreachable, fetch failures); retried.",
            load(&self.source_errors),
        );
        counter(
            "burnrate_commit_failures_total",
            "Position commits (Kafka offsets, the receiver's log numbers) that failed and were retried with the next flush.",
            load(&self.commit_failures),
        );
        counter(
            "burnrate_windows_closed_total",
            "Usage windows closed and written to usage_windows.",
            load(&self.windows_closed),
        );
        counter(
            "burnrate_late_events_total",
            "Events that arrived after their window closed; counted in correction rows.",
            load(&self.late_events),
        );
        counter(
            "burnrate_pushes_total",
            "Successful pushes to the Pushgateway.",
            load(&self.pushes),
        );
        counter(
            "burnrate_push_failures_total",
            "Pushes to the Pushgateway that failed and were retried.",
            load(&self.push_failures),
        );
        let _ = writeln!(
            out,
            "# HELP burnrate_rows_total Rows written, by table.\n# TYPE burnrate_rows_total counter"
        );
        for (table, n) in lock(&self.rows).iter() {
            let _ = writeln!(out, "burnrate_rows_total{{table=\"{table}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP burnrate_consumer_lag Messages between the committed position and the end of each partition.\n# TYPE burnrate_consumer_lag gauge"
        );
        for ((topic, partition), lag) in lock(&self.lag).iter() {
            let _ = writeln!(
                out,
                "burnrate_consumer_lag{{topic=\"{}\",partition=\"{partition}\"}} {lag}",
                escape(topic)
            );
        }
        let _ = writeln!(
            out,
            "# HELP burnrate_receiver_requests_total OTLP receiver requests, by answer.\n# TYPE burnrate_receiver_requests_total counter"
        );
        for (status, n) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "burnrate_receiver_requests_total{{status=\"{}\"}} {n}",
                escape(status)
            );
        }
        let _ = writeln!(
            out,
            "# HELP burnrate_receiver_connections_total OTLP receiver connections, by what happened to them.\n# TYPE burnrate_receiver_connections_total counter"
        );
        for (event, n) in lock(&self.connections).iter() {
            let _ = writeln!(
                out,
                "burnrate_receiver_connections_total{{event=\"{event}\"}} {n}"
            );
        }
        counter_line(
            &mut out,
            "burnrate_receiver_team_overrides_total",
            "Rows whose team attribute a team-bound token replaced.",
            load(&self.team_overrides),
        );
        counter_line(
            &mut out,
            "burnrate_source_pauses_total",
            "Times the source stopped taking input for memory (the budget full, or the process near memory_limit).",
            load(&self.pauses),
        );
        let _ = writeln!(
            out,
            "# HELP burnrate_source_paused_seconds_total Seconds the source spent taking no input for memory.\n# TYPE burnrate_source_paused_seconds_total counter\nburnrate_source_paused_seconds_total {}",
            self.paused_seconds()
        );
        counter_line(
            &mut out,
            "burnrate_messages_dropped_after_revoke_total",
            "Messages of partitions revoked from this member, dropped undecoded (the new owner reads them).",
            load(&self.dropped_after_revoke),
        );
        let _ = writeln!(
            out,
            "# HELP burnrate_source_paused Whether the source takes no input for memory now.\n# TYPE burnrate_source_paused gauge\nburnrate_source_paused {}",
            u8::from(self.source_paused.load(Ordering::Relaxed))
        );
        let _ = writeln!(
            out,
            "# HELP burnrate_memory_in_flight_bytes Bytes of data in flight held against the memory budget.\n# TYPE burnrate_memory_in_flight_bytes gauge\nburnrate_memory_in_flight_bytes {}\n# HELP burnrate_memory_budget_bytes The memory budget's limit for data in flight.\n# TYPE burnrate_memory_budget_bytes gauge\nburnrate_memory_budget_bytes {}",
            load(&self.memory_in_flight),
            load(&self.memory_budget)
        );
        let _ = writeln!(
            out,
            "# HELP burnrate_delta_series Cumulative metric series the cumulative-to-delta state holds (those seen within cumulative_staleness_seconds, or every one read when it is 0).\n# TYPE burnrate_delta_series gauge\nburnrate_delta_series {}\n# HELP burnrate_delta_forgotten_total Cumulative series the cumulative-to-delta state forgot, unseen for cumulative_staleness_seconds of event time.\n# TYPE burnrate_delta_forgotten_total counter\nburnrate_delta_forgotten_total {}\n# HELP burnrate_delta_read_back_total Cumulative series looked up in metric_points as possibly forgotten.\n# TYPE burnrate_delta_read_back_total counter\nburnrate_delta_read_back_total {}",
            load(&self.delta_series),
            load(&self.delta_forgotten),
            load(&self.delta_read_back)
        );
        for (name, help, timing) in [
            (
                "burnrate_sink_flush_seconds",
                "Time to write, fsync and rename one flush's Parquet files (every segment in it) and commit them to the tables' logs.",
                &self.flush,
            ),
            (
                "burnrate_commit_seconds",
                "Time to commit offsets after a flush.",
                &self.commit,
            ),
        ] {
            let seconds = load(&timing.micros) as f64 / 1e6;
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} summary\n{name}_sum {seconds}\n{name}_count {}",
                load(&timing.count)
            );
        }
        let _ = writeln!(
            out,
            "# HELP burnrate_ready 1 when the pipeline can take data.\n# TYPE burnrate_ready gauge\nburnrate_ready {}",
            u8::from(self.is_ready())
        );
        out
    }
}

fn counter_line(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

/// A Prometheus label value in the text format.
pub(crate) fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serves `/healthz` (the process answers), `/readyz` (the source is connected and the sinks
/// keep up) and `/metrics` until `stop` resolves.
pub async fn serve_health(
    listen: SocketAddr,
    health: Arc<PipelineHealth>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>, EngineError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| EngineError::Config(format!("health listener {listen}: {e}")))?;
    let ready = health.clone();
    let metrics = health;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let health = ready.clone();
                async move {
                    if health.is_ready() {
                        (StatusCode::OK, "ready\n".to_string())
                    } else {
                        let reason = lock(&health.not_ready_reason).clone();
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {reason}\n"),
                        )
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let health = metrics.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        health.render(),
                    )
                        .into_response()
                }
            }),
        );
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "health server stopped");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paused_time_adds_up_over_pauses_and_counts_the_one_under_way() {
        let health = PipelineHealth::new();
        assert_eq!(health.paused_seconds(), 0.0);
        health.source_paused(true);
        std::thread::sleep(Duration::from_millis(20));
        // Still paused: said again, it is the same pause.
        health.source_paused(true);
        health.source_paused(false);
        let first = health.paused_seconds();
        assert!(first >= 0.02, "{first}");
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            health.paused_seconds(),
            first,
            "no time counts while running"
        );
        health.source_paused(true);
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            health.paused_seconds() >= first + 0.02,
            "the pause under way counts"
        );
        assert!(
            health
                .render()
                .contains("# TYPE burnrate_source_paused_seconds_total counter\nburnrate_source_paused_seconds_total 0.0")
        );
    }

    #[test]
    fn metrics_render_as_prometheus_text() {
        let health = PipelineHealth::new();
        health.message(100);
        health.message(50);
        health.set_lag("otlp_logs", 2, 17);
        health.request("200");
        let rows = BTreeMap::from([("api_requests", 4usize)]);
        health.flushed(&rows, 1, 2);
        health.wrote(Duration::from_millis(1500));
        health.set_delta_series(42);
        health.delta_forgotten(7);
        health.delta_forgotten(2);
        health.delta_read_back(3);
        let text = health.render();
        assert!(text.contains("burnrate_messages_total 2\n"), "{text}");
        assert!(
            text.contains("# TYPE burnrate_delta_series gauge\nburnrate_delta_series 42\n")
                && text.contains("burnrate_delta_forgotten_total 9\n")
                && text.contains("burnrate_delta_read_back_total 3\n"),
            "{text}"
        );
        assert!(text.contains("burnrate_bytes_total 150\n"), "{text}");
        assert!(text.contains("burnrate_dead_letters_total 1\n"), "{text}");
        assert!(text.contains("burnrate_rows_total{table=\"api_requests\"} 4\n"));
        assert!(text.contains("burnrate_consumer_lag{topic=\"otlp_logs\",partition=\"2\"} 17\n"));
        assert!(
            text.contains("burnrate_sink_flush_seconds_sum 1.5\n"),
            "{text}"
        );
        assert!(text.contains("burnrate_ready 0\n"));
        health.set_ready();
        assert!(health.render().contains("burnrate_ready 1\n"));
    }
}
