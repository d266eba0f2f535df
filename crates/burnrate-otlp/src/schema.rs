//! The Arrow schemas of every table burnrate writes; they are also the Parquet layout.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    LogRecords,
    MetricPoints,
    Spans,
    Resources,
    ApiRequests,
    ToolCalls,
    UsageMetrics,
    DeadLetters,
    UsageWindows,
    LateEvents,
    Anomalies,
}

impl Table {
    pub const ALL: [Table; 11] = [
        Table::LogRecords,
        Table::MetricPoints,
        Table::Spans,
        Table::Resources,
        Table::ApiRequests,
        Table::ToolCalls,
        Table::UsageMetrics,
        Table::DeadLetters,
        Table::UsageWindows,
        Table::LateEvents,
        Table::Anomalies,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::LogRecords => "log_records",
            Table::MetricPoints => "metric_points",
            Table::Spans => "spans",
            Table::Resources => "resources",
            Table::ApiRequests => "api_requests",
            Table::ToolCalls => "tool_calls",
            Table::UsageMetrics => "usage_metrics",
            Table::DeadLetters => "dead_letters",
            Table::UsageWindows => "usage_windows",
            Table::LateEvents => "late_events",
            Table::Anomalies => "anomalies",
        }
    }

    /// Whether the table's rows name their resource by `resource_id` (the raw tables).
    pub fn names_resources(self) -> bool {
        matches!(self, Table::LogRecords | Table::MetricPoints | Table::Spans)
    }

    /// The column whose UTC date names the Hive partition (`date=YYYY-MM-DD`).
    pub fn time_column(self) -> &'static str {
        match self {
            Table::Spans => "start_time",
            Table::DeadLetters => "received_at",
            Table::UsageWindows => "window_start",
            _ => "time",
        }
    }

    pub fn schema(self) -> SchemaRef {
        match self {
            Table::LogRecords => LOG_RECORDS.clone(),
            Table::MetricPoints => METRIC_POINTS.clone(),
            Table::Spans => SPANS.clone(),
            Table::Resources => RESOURCES.clone(),
            Table::ApiRequests => API_REQUESTS.clone(),
            Table::ToolCalls => TOOL_CALLS.clone(),
            Table::UsageMetrics => USAGE_METRICS.clone(),
            Table::DeadLetters => DEAD_LETTERS.clone(),
            Table::UsageWindows => USAGE_WINDOWS.clone(),
            Table::LateEvents => LATE_EVENTS.clone(),
            Table::Anomalies => ANOMALIES.clone(),
        }
    }
}

pub fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// `Map<Utf8, Utf8>` as arrow's `MapBuilder` makes it.
pub fn string_map() -> DataType {
    DataType::Map(Arc::new(string_map_entries()), false)
}

/// The entries of [`string_map`]: a struct of a non-null `keys` and a nullable `values`.
pub fn string_map_entries() -> Field {
    Field::new("entries", DataType::Struct(string_map_fields()), false)
}

/// The fields of [`string_map_entries`]' struct.
pub fn string_map_fields() -> Fields {
    Fields::from(vec![
        Field::new("keys", DataType::Utf8, false),
        Field::new("values", DataType::Utf8, true),
    ])
}

fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

fn ts(name: &str) -> Field {
    Field::new(name, timestamp(), true)
}

fn map(name: &str) -> Field {
    Field::new(name, string_map(), true)
}

fn i64(name: &str) -> Field {
    Field::new(name, DataType::Int64, true)
}

fn f64(name: &str) -> Field {
    Field::new(name, DataType::Float64, true)
}

fn schema(fields: Vec<Field>) -> SchemaRef {
    Arc::new(Schema::new(fields))
}

static LOG_RECORDS: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(vec![
        ts("time"),
        ts("observed_time"),
        utf8("event_name"),
        utf8("session_id"),
        utf8("service_name"),
        Field::new("severity_number", DataType::Int32, true),
        utf8("severity_text"),
        utf8("body"),
        utf8("trace_id"),
        utf8("span_id"),
        utf8("scope_name"),
        map("attributes"),
        map("resource"),
        resource_id(),
    ])
});

static METRIC_POINTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(vec![
        ts("time"),
        ts("start_time"),
        utf8("metric"),
        utf8("unit"),
        utf8("kind"),
        utf8("temporality"),
        Field::new("is_monotonic", DataType::Boolean, true),
        f64("value"),
        Field::new("count", DataType::UInt64, true),
        f64("sum"),
        f64("min"),
        f64("max"),
        Field::new("series_id", DataType::UInt64, false),
        utf8("session_id"),
        utf8("service_name"),
        utf8("scope_name"),
        map("attributes"),
        map("resource"),
        resource_id(),
    ])
});

static SPANS: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(vec![
        ts("start_time"),
        ts("end_time"),
        f64("duration_ms"),
        utf8("name"),
        utf8("trace_id"),
        utf8("span_id"),
        utf8("parent_span_id"),
        utf8("kind"),
        utf8("status_code"),
        utf8("status_message"),
        utf8("session_id"),
        utf8("service_name"),
        utf8("scope_name"),
        map("attributes"),
        map("resource"),
        resource_id(),
    ])
});

/// A raw row's resource, by the id of its attributes in `resources`. Rows written before the
/// `resources` table carry the attributes in `resource` and no id; newer rows the id and a
/// NULL `resource` (readers see both through the query catalog's views).
fn resource_id() -> Field {
    Field::new("resource_id", DataType::UInt64, true)
}

/// Every resource the raw rows of a day name, once in each of the day's files (a decoded run
/// notes it once, and a flush's buffer keeps it once over all its runs): the id
/// (a hash of the rendered attributes), the attributes, and the time of the first row that
/// named it, whose day partitions it beside those rows (so retention and compaction keep the
/// two together).
static RESOURCES: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(vec![
        ts("time"),
        Field::new("resource_id", DataType::UInt64, false),
        map("resource"),
    ])
});

/// Dimensions every canonical table carries, in this order, after its time column.
pub(crate) const WHO: [&str; 8] = [
    "session_id",
    "user_id",
    "user_email",
    "organization_id",
    "team",
    "project",
    "env",
    "service_name",
];

fn who() -> Vec<Field> {
    WHO.iter().map(|name| utf8(name)).collect()
}

/// Provenance and quality columns every canonical table ends with.
fn provenance() -> Vec<Field> {
    vec![
        utf8("source"),
        Field::new("parse_errors", DataType::UInt32, false),
        utf8("parse_error"),
    ]
}

static API_REQUESTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![ts("time")];
    fields.extend(who());
    fields.extend([
        utf8("model"),
        i64("input_tokens"),
        i64("output_tokens"),
        i64("cache_read_tokens"),
        i64("cache_creation_tokens"),
        // The split of cache_creation_tokens by cache lifetime, when the client reports it.
        i64("cache_creation_5m_tokens"),
        i64("cache_creation_1h_tokens"),
        // What the call is booked at: the price table's cost, else the reported one.
        f64("cost_usd"),
        f64("cost_usd_reported"),
        // `price_table`, `reported` or `none` (see burnrate_pricing::CostSource).
        utf8("cost_source"),
        // Table price and reported cost differ by more than 1% and $0.000001.
        Field::new("cost_mismatch", DataType::Boolean, true),
        f64("duration_ms"),
        // Time to first token.
        f64("ttft_ms"),
        Field::new("success", DataType::Boolean, false),
        utf8("error"),
        Field::new("status_code", DataType::Int32, true),
        Field::new("attempt", DataType::Int32, true),
        utf8("prompt_id"),
        utf8("request_id"),
        utf8("query_source"),
        utf8("speed"),
        utf8("effort"),
        utf8("trace_id"),
        utf8("span_id"),
    ]);
    fields.extend(provenance());
    schema(fields)
});

static TOOL_CALLS: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![ts("time")];
    fields.extend(who());
    fields.extend([
        utf8("prompt_id"),
        utf8("tool_name"),
        utf8("tool_use_id"),
        Field::new("success", DataType::Boolean, true),
        f64("duration_ms"),
        utf8("decision"),
        utf8("decision_source"),
        utf8("trace_id"),
        utf8("span_id"),
    ]);
    fields.extend(provenance());
    schema(fields)
});

static USAGE_METRICS: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![ts("time"), ts("start_time")];
    fields.extend(who());
    fields.extend([
        utf8("metric"),
        utf8("type"),
        utf8("model"),
        utf8("query_source"),
        utf8("effort"),
        utf8("unit"),
        f64("value"),
        utf8("temporality"),
        Field::new("series_id", DataType::UInt64, false),
        map("attributes"),
    ]);
    fields.extend(provenance());
    schema(fields)
});

static DEAD_LETTERS: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(vec![
        ts("received_at"),
        utf8("origin"),
        utf8("topic"),
        Field::new("partition", DataType::Int32, true),
        Field::new("offset", DataType::Int64, true),
        utf8("error"),
        Field::new("size", DataType::UInt64, false),
        Field::new("payload", DataType::Binary, false),
    ])
});

/// Columns a window can be grouped by: every one is in `usage_windows`, NULL where the
/// configured grouping leaves it out.
pub const WINDOW_DIMENSIONS: [&str; 12] = [
    "user_id",
    "user_email",
    "organization_id",
    "team",
    "project",
    "env",
    "service_name",
    "model",
    "query_source",
    "speed",
    "effort",
    "session_id",
];

/// One row per (window, dimensions, revision): revision 0 is the window as it closed, each
/// later revision adds the events that arrived after it closed, so sums over all revisions are
/// exact. `latency_sketch` and `ttft_sketch` (time to first token) merge into hour and day
/// percentiles; `session_ids` into distinct session counts.
static USAGE_WINDOWS: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        Field::new("window_start", timestamp(), false),
        Field::new("window_end", timestamp(), false),
    ];
    fields.extend(WINDOW_DIMENSIONS.iter().map(|d| utf8(d)));
    fields.extend([
        Field::new("revision", DataType::UInt32, false),
        utf8("replica"),
        i64("requests"),
        i64("errors"),
        f64("error_rate"),
        i64("input_tokens"),
        i64("output_tokens"),
        i64("cache_read_tokens"),
        i64("cache_creation_tokens"),
        f64("cost_usd"),
        f64("cost_usd_reported"),
        f64("latency_p50_ms"),
        f64("latency_p95_ms"),
        f64("latency_p99_ms"),
        f64("latency_sum_ms"),
        Field::new("latency_sketch", DataType::Binary, true),
        f64("ttft_p50_ms"),
        f64("ttft_p95_ms"),
        f64("ttft_sum_ms"),
        Field::new("ttft_sketch", DataType::Binary, true),
        i64("tool_calls"),
        i64("tool_successes"),
        f64("tool_success_rate"),
        i64("sessions"),
        Field::new(
            "session_ids",
            DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            true,
        ),
    ]);
    schema(fields)
});

/// Events that arrived after their window had closed: counted here and in a correction row of
/// `usage_windows`, never dropped.
static LATE_EVENTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(vec![
        ts("time"),
        Field::new("window_start", timestamp(), false),
        utf8("table_name"),
        utf8("session_id"),
        utf8("user_id"),
        utf8("model"),
        f64("cost_usd"),
        Field::new("closed_through", timestamp(), false),
        utf8("replica"),
    ])
});

/// What the anomaly rules found: a row when an anomaly starts (`firing`), when its severity
/// rises, and when it ends (`resolved`, with `resolved_at`). `window_start`/`window_end` is the
/// stretch of event time the rule looked at; `time` is when it was evaluated (event time).
static ANOMALIES: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(vec![
        Field::new("time", timestamp(), false),
        Field::new("rule", DataType::Utf8, false),
        Field::new("severity", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("dimension", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
        Field::new("window_start", timestamp(), false),
        Field::new("window_end", timestamp(), false),
        f64("observed"),
        f64("baseline"),
        f64("score"),
        Field::new("first_seen", timestamp(), false),
        ts("resolved_at"),
        utf8("replica"),
    ])
});
