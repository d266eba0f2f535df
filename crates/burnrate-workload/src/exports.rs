//! Calls as OTLP exports, shaped like the real CLI's: one export per user, hour and signal.
//! Logs carry `api_request` / `api_error` / `tool_result` events, traces carry
//! `claude_code.llm_request` spans (with `claude_code.tool` and `claude_code.tool.execution`
//! spans under them), metrics carry `claude_code.cost.usage` and `claude_code.token.usage`, delta
//! or cumulative per session.

use std::collections::BTreeMap;

use burnrate_otlp::proto::collector::logs::v1::ExportLogsServiceRequest;
use burnrate_otlp::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use burnrate_otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use burnrate_otlp::proto::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use burnrate_otlp::proto::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use burnrate_otlp::proto::metrics::v1::{
    AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric,
    number_data_point,
};
use burnrate_otlp::proto::resource::v1::Resource;
use burnrate_otlp::proto::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span, status};
use serde::{Deserialize, Serialize};

use crate::{CLIENT_VERSION, Call, NANOS_PER_MINUTE, User, WorkloadSpec};

/// How exports are encoded: what the Collector's kafka exporter calls `otlp_proto` and
/// `otlp_json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Proto,
    Json,
}

/// Metric temporality, as `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE` sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Temporality {
    Delta,
    Cumulative,
}

/// Which signals to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signals {
    pub logs: bool,
    pub traces: bool,
    pub metrics: Option<Temporality>,
}

impl Default for Signals {
    fn default() -> Self {
        Signals {
            logs: true,
            traces: true,
            metrics: Some(Temporality::Delta),
        }
    }
}

/// One export request of one signal.
#[derive(Debug, Clone)]
pub enum Request {
    Logs(ExportLogsServiceRequest),
    Traces(ExportTraceServiceRequest),
    Metrics(ExportMetricsServiceRequest),
}

impl Request {
    /// `logs`, `traces` or `metrics`: the OTLP/HTTP path (`/v1/<signal>`) and file suffix.
    pub fn signal(&self) -> &'static str {
        match self {
            Request::Logs(_) => "logs",
            Request::Traces(_) => "traces",
            Request::Metrics(_) => "metrics",
        }
    }
}

/// One OTLP export: a user's telemetry of one hour and one signal, as their CLI would batch it.
#[derive(Debug, Clone)]
pub struct Export {
    pub time_nanos: i64,
    /// `YYYY-MM-DD/<hour>-<user>-<signal>`: a stable file name that sorts in time order, so a
    /// files run reads them in the order a live stream would deliver them.
    pub name: String,
    pub request: Request,
}

impl Export {
    pub fn encode(&self, format: Format) -> Vec<u8> {
        match (&self.request, format) {
            (Request::Logs(r), Format::Proto) => prost::Message::encode_to_vec(r),
            (Request::Traces(r), Format::Proto) => prost::Message::encode_to_vec(r),
            (Request::Metrics(r), Format::Proto) => prost::Message::encode_to_vec(r),
            (Request::Logs(r), Format::Json) => serde_json::to_vec(r).unwrap_or_default(),
            (Request::Traces(r), Format::Json) => serde_json::to_vec(r).unwrap_or_default(),
            (Request::Metrics(r), Format::Json) => serde_json::to_vec(r).unwrap_or_default(),
        }
    }
}

/// The calls as exports, one per user, hour and signal, in time order.
pub fn exports(spec: &WorkloadSpec, calls: &[Call], signals: Signals) -> Vec<Export> {
    let users = spec.people();
    let mut groups: BTreeMap<(i64, usize), Vec<&Call>> = BTreeMap::new();
    for call in calls {
        let hour = call.time_nanos.div_euclid(60 * NANOS_PER_MINUTE);
        groups.entry((hour, call.user)).or_default().push(call);
    }
    // Cumulative sums run per session, as the CLI's do.
    let mut running: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut out = Vec::new();
    for ((hour, u), calls) in groups {
        let user = &users[u];
        let time = hour * 60 * NANOS_PER_MINUTE;
        let date = chrono::DateTime::from_timestamp_nanos(time);
        let stem = format!(
            "{}/{}-{}",
            date.format("%Y-%m-%d"),
            date.format("%H"),
            &user.id[..12]
        );
        let mut push = |request: Request| {
            out.push(Export {
                time_nanos: time,
                name: format!("{stem}-{}", request.signal()),
                request,
            })
        };
        if signals.logs {
            push(Request::Logs(log_request(user, &calls)));
        }
        if signals.traces {
            push(Request::Traces(trace_request(user, &calls)));
        }
        if let Some(temporality) = signals.metrics {
            let end = time + 60 * 60 * 1_000_000_000;
            push(Request::Metrics(metric_request(
                user,
                &calls,
                temporality,
                end,
                &mut running,
            )));
        }
    }
    out
}

fn resource(user: &User) -> Resource {
    Resource {
        attributes: vec![
            text("team", &user.team),
            text("project", &user.project),
            text("env", "production"),
            text("host.arch", "amd64"),
            text("os.type", "linux"),
            text("service.name", "claude-code"),
            text("service.version", CLIENT_VERSION),
        ],
        ..Resource::default()
    }
}

/// Attributes Claude Code puts on every event, span and data point.
fn common_attributes(user: &User, session: &str) -> Vec<KeyValue> {
    vec![
        text("team", &user.team),
        text("project", &user.project),
        text("env", "production"),
        text("user.id", &user.id),
        text("session.id", session),
        text("terminal.type", "xterm"),
    ]
}

fn scope(name: &str) -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: name.into(),
        version: CLIENT_VERSION.into(),
        ..InstrumentationScope::default()
    })
}

fn log_request(user: &User, calls: &[&Call]) -> ExportLogsServiceRequest {
    let resource = resource(user);
    let mut records = Vec::with_capacity(calls.len() * 2);
    for (sequence, call) in calls.iter().enumerate() {
        let common = common_attributes(user, &call.session);
        let timestamp = chrono::DateTime::from_timestamp_nanos(call.time_nanos)
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        let event = |name: &str, mut attributes: Vec<KeyValue>, sequence: i64, time: i64| {
            let mut all = common.clone();
            all.push(text("event.name", name));
            all.push(text("event.timestamp", &timestamp));
            all.push(int("event.sequence", sequence));
            all.push(text("prompt.id", &call.prompt));
            all.append(&mut attributes);
            LogRecord {
                time_unix_nano: time as u64,
                observed_time_unix_nano: time as u64,
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(format!("claude_code.{name}"))),
                }),
                attributes: all,
                flags: 1,
                ..LogRecord::default()
            }
        };
        let sequence = sequence as i64 * 2;
        records.push(match call.failed {
            None => event(
                "api_request",
                vec![
                    text("model", call.model),
                    int("input_tokens", call.tokens.input as i64),
                    int("output_tokens", call.tokens.output as i64),
                    int("cache_read_tokens", call.tokens.cache_read as i64),
                    int("cache_creation_tokens", call.tokens.cache_write_5m as i64),
                    double("cost_usd", call.cost_usd),
                    int("cost_usd_micros", (call.cost_usd * 1e6).round() as i64),
                    int("duration_ms", call.duration_ms as i64),
                    int("ttft_ms", (call.duration_ms / 3) as i64),
                    text("request_id", &format!("req_{:x}", call.time_nanos)),
                    text("speed", "normal"),
                    text("effort", "medium"),
                    text("query_source", "main"),
                ],
                sequence,
                call.time_nanos,
            ),
            Some(status) => event(
                "api_error",
                vec![
                    text("model", call.model),
                    text("error", "overloaded_error"),
                    int("status_code", status),
                    int("attempt", 1),
                    int("duration_ms", call.duration_ms as i64),
                    text("request_id", &format!("req_{:x}", call.time_nanos)),
                    text("speed", "normal"),
                    text("effort", "medium"),
                    text("query_source", "main"),
                ],
                sequence,
                call.time_nanos,
            ),
        });
        if let Some((tool, success, duration)) = call.tool {
            let done = call.time_nanos + (call.duration_ms as i64 + duration as i64) * 1_000_000;
            // Claude Code sends these as strings.
            records.push(event(
                "tool_result",
                vec![
                    text("tool_name", tool),
                    text("success", if success { "true" } else { "false" }),
                    text("duration_ms", &duration.to_string()),
                    text("tool_use_id", &format!("toolu_{:x}", call.time_nanos)),
                    text("tool_input_size_bytes", "512"),
                    text("tool_result_size_bytes", "2048"),
                ],
                sequence + 1,
                done,
            ));
        }
    }
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource),
            scope_logs: vec![ScopeLogs {
                scope: scope("com.anthropic.claude_code.events"),
                log_records: records,
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}

/// A deterministic id of `len` bytes from `parts`.
fn id(len: usize, parts: &[&str]) -> Vec<u8> {
    let mut seed = 0xcbf2_9ce4_8422_2325u64;
    for part in parts {
        for byte in part.bytes() {
            seed = (seed ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    let mut rng = crate::Rng::new(seed);
    (0..len.div_ceil(8))
        .flat_map(|_| rng.next_u64().to_be_bytes())
        .take(len)
        .collect()
}

fn trace_request(user: &User, calls: &[&Call]) -> ExportTraceServiceRequest {
    let mut spans = Vec::with_capacity(calls.len() * 3);
    for call in calls {
        let trace_id = id(16, &[&call.prompt]);
        let call_id = id(8, &[&call.prompt, &call.time_nanos.to_string()]);
        let end = call.time_nanos + call.duration_ms as i64 * 1_000_000;
        let mut attributes = common_attributes(user, &call.session);
        attributes.extend([
            text("span.type", "llm_request"),
            text("model", call.model),
            text("gen_ai.system", "anthropic"),
            text("gen_ai.request.model", call.model),
            int("input_tokens", call.tokens.input as i64),
            int("output_tokens", call.tokens.output as i64),
            int("cache_read_tokens", call.tokens.cache_read as i64),
            int("cache_creation_tokens", call.tokens.cache_write_5m as i64),
            int("duration_ms", call.duration_ms as i64),
            int("ttft_ms", (call.duration_ms / 3) as i64),
            int("attempt", 1),
            text("request_id", &format!("req_{:x}", call.time_nanos)),
            text("speed", "normal"),
            boolean("success", call.failed.is_none()),
        ]);
        if let Some(code) = call.failed {
            attributes.push(int("status_code", code));
            attributes.push(text("error", "overloaded_error"));
        }
        spans.push(Span {
            trace_id: trace_id.clone(),
            span_id: call_id.clone(),
            name: "claude_code.llm_request".into(),
            kind: span::SpanKind::Client as i32,
            start_time_unix_nano: call.time_nanos as u64,
            end_time_unix_nano: end as u64,
            attributes,
            status: Some(Status {
                code: if call.failed.is_some() {
                    status::StatusCode::Error as i32
                } else {
                    status::StatusCode::Ok as i32
                },
                ..Status::default()
            }),
            ..Span::default()
        });
        if let Some((tool, success, duration)) = call.tool {
            let tool_id = id(8, &[&call.prompt, &call.time_nanos.to_string(), tool]);
            let tool_end = end + duration as i64 * 1_000_000;
            let use_id = format!("toolu_{:x}", call.time_nanos);
            let mut tool_attributes = common_attributes(user, &call.session);
            tool_attributes.extend([
                text("span.type", "tool"),
                text("tool_name", tool),
                text("tool_use_id", &use_id),
                text("gen_ai.tool.call.id", &use_id),
                int("duration_ms", duration as i64),
            ]);
            spans.push(Span {
                trace_id: trace_id.clone(),
                span_id: tool_id.clone(),
                parent_span_id: call_id.clone(),
                name: "claude_code.tool".into(),
                kind: span::SpanKind::Internal as i32,
                start_time_unix_nano: end as u64,
                end_time_unix_nano: tool_end as u64,
                attributes: tool_attributes,
                ..Span::default()
            });
            let mut execution = common_attributes(user, &call.session);
            execution.extend([
                text("span.type", "tool.execution"),
                text("tool_use_id", &use_id),
                text("gen_ai.tool.call.id", &use_id),
                int("duration_ms", duration as i64),
                boolean("success", success),
            ]);
            spans.push(Span {
                trace_id,
                span_id: id(8, &[&use_id, "execution"]),
                parent_span_id: tool_id,
                name: "claude_code.tool.execution".into(),
                kind: span::SpanKind::Internal as i32,
                start_time_unix_nano: end as u64,
                end_time_unix_nano: tool_end as u64,
                attributes: execution,
                ..Span::default()
            });
        }
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(user)),
            scope_spans: vec![ScopeSpans {
                scope: scope("com.anthropic.claude_code.tracing"),
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

/// `claude_code.cost.usage` by model and `claude_code.token.usage` by model and type, at `end`:
/// the hour's sums (delta) or each session's running totals (cumulative).
fn metric_request(
    user: &User,
    calls: &[&Call],
    temporality: Temporality,
    end: i64,
    running: &mut BTreeMap<(String, String), f64>,
) -> ExportMetricsServiceRequest {
    let hour_start = end - 60 * 60 * 1_000_000_000;
    // (session, model, token type or "" for cost) -> (value, first call time)
    let mut sums: BTreeMap<(String, &str, &str), (f64, i64)> = BTreeMap::new();
    for call in calls.iter().filter(|c| c.failed.is_none()) {
        let parts = [
            ("", call.cost_usd),
            ("input", call.tokens.input as f64),
            ("output", call.tokens.output as f64),
            ("cacheRead", call.tokens.cache_read as f64),
            ("cacheCreation", call.tokens.cache_write_5m as f64),
        ];
        for (kind, value) in parts {
            let entry = sums
                .entry((call.session.clone(), call.model, kind))
                .or_insert((0.0, call.time_nanos));
            entry.0 += value;
        }
    }
    let mut cost = Vec::new();
    let mut tokens = Vec::new();
    for ((session, model, kind), (value, first)) in sums {
        let key = (session.clone(), format!("{model}/{kind}"));
        let (value, start) = match temporality {
            Temporality::Delta => (value, hour_start),
            Temporality::Cumulative => {
                let total = running.entry(key).or_default();
                *total += value;
                // A session's series starts with its day: the day's first call.
                (*total, first - first.rem_euclid(24 * 60 * NANOS_PER_MINUTE))
            }
        };
        let mut attributes = common_attributes(user, &session);
        attributes.push(text("model", model));
        attributes.push(text("query_source", "main"));
        if !kind.is_empty() {
            attributes.push(text("type", kind));
        }
        let point = NumberDataPoint {
            attributes,
            start_time_unix_nano: start as u64,
            time_unix_nano: end as u64,
            value: Some(number_data_point::Value::AsDouble(value)),
            ..NumberDataPoint::default()
        };
        if kind.is_empty() {
            cost.push(point)
        } else {
            tokens.push(point)
        }
    }
    let temporality = match temporality {
        Temporality::Delta => AggregationTemporality::Delta,
        Temporality::Cumulative => AggregationTemporality::Cumulative,
    } as i32;
    let sum = |name: &str, unit: &str, description: &str, points| Metric {
        name: name.into(),
        unit: unit.into(),
        description: description.into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: temporality,
            is_monotonic: true,
        })),
        ..Metric::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource(user)),
            scope_metrics: vec![ScopeMetrics {
                scope: scope("com.anthropic.claude_code"),
                metrics: vec![
                    sum(
                        "claude_code.cost.usage",
                        "USD",
                        "Cost of the Claude Code session",
                        cost,
                    ),
                    sum(
                        "claude_code.token.usage",
                        "tokens",
                        "Number of tokens used",
                        tokens,
                    ),
                ],
                ..ScopeMetrics::default()
            }],
            ..ResourceMetrics::default()
        }],
    }
}

fn attribute(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn text(key: &str, value: &str) -> KeyValue {
    attribute(key, any_value::Value::StringValue(value.into()))
}

fn int(key: &str, value: i64) -> KeyValue {
    attribute(key, any_value::Value::IntValue(value))
}

fn double(key: &str, value: f64) -> KeyValue {
    attribute(key, any_value::Value::DoubleValue(value))
}

fn boolean(key: &str, value: bool) -> KeyValue {
    attribute(key, any_value::Value::BoolValue(value))
}
