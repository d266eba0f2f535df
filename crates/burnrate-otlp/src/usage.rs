//! The canonical tables analytics run on: `api_requests`, `tool_calls`, `usage_metrics`.
//! One row struct per table, named after what it is, and a builder that appends it.

use std::borrow::Cow;
use std::sync::Arc;

use crate::view::KeyValue;
use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, RecordBatch,
    TimestampNanosecondBuilder, UInt32Builder, UInt64Builder,
};
use arrow::error::ArrowError;
use burnrate_pricing::CostSource;

use crate::attributes::{RowErrors, Scope};
use crate::columns::{AttributeMap, ContentFilter, StringColumn};
use crate::config::Attr;
use crate::room::{Room, TableRows};
use crate::schema::{Table, WHO};

/// Who a row belongs to. Read from the record's attributes, then its resource.
#[derive(Debug, Default, Clone)]
pub struct Who<'a> {
    pub session_id: Option<Cow<'a, str>>,
    pub user_id: Option<Cow<'a, str>>,
    pub user_email: Option<Cow<'a, str>>,
    pub organization_id: Option<Cow<'a, str>>,
    pub team: Option<Cow<'a, str>>,
    pub project: Option<Cow<'a, str>>,
    pub env: Option<Cow<'a, str>>,
    pub service_name: Option<Cow<'a, str>>,
}

impl<'a> Who<'a> {
    pub fn read(scope: &Scope<'a>) -> Self {
        Who {
            session_id: text(scope, Attr::SessionId),
            user_id: text(scope, Attr::UserId),
            user_email: text(scope, Attr::UserEmail),
            organization_id: text(scope, Attr::OrganizationId),
            team: text(scope, Attr::Team),
            project: text(scope, Attr::Project),
            env: text(scope, Attr::Env),
            service_name: text(scope, Attr::ServiceName),
        }
    }
}

/// A string attribute borrowed when it is a string, rendered when it is another scalar.
pub fn text<'a>(scope: &Scope<'a>, attr: Attr) -> Option<Cow<'a, str>> {
    match scope.get(attr)? {
        (_, crate::view::Value::StringValue(s)) => Some(Cow::Borrowed(s)),
        (_, other) => Some(Cow::Owned(crate::attributes::render(other))),
    }
}

/// The [`WHO`] columns, in order.
struct WhoColumns {
    columns: [StringColumn; 8],
}

impl WhoColumns {
    fn new(room: Room<'_>) -> Self {
        WhoColumns {
            columns: WHO.map(|column| room.strings(column)),
        }
    }

    fn push(&mut self, who: &Who<'_>) {
        let values = [
            &who.session_id,
            &who.user_id,
            &who.user_email,
            &who.organization_id,
            &who.team,
            &who.project,
            &who.env,
            &who.service_name,
        ];
        for (column, value) in self.columns.iter_mut().zip(values) {
            column.append_option(value.as_deref());
        }
    }

    fn finish(&mut self, out: &mut Vec<ArrayRef>) {
        for column in &mut self.columns {
            out.push(Arc::new(column.finish()));
        }
    }
}

struct ProvenanceColumns {
    source: StringColumn,
    parse_errors: UInt32Builder,
    parse_error: StringColumn,
}

impl ProvenanceColumns {
    fn new(room: Room<'_>) -> Self {
        ProvenanceColumns {
            source: room.strings("source"),
            parse_errors: room.primitives(),
            parse_error: room.strings("parse_error"),
        }
    }

    fn push(&mut self, source: &str, errors: &RowErrors) {
        self.source.append_value(source);
        self.parse_errors.append_value(errors.count);
        self.parse_error.append_option(errors.first.as_deref());
    }

    fn finish(&mut self, out: &mut Vec<ArrayRef>) {
        out.push(Arc::new(self.source.finish()));
        out.push(Arc::new(self.parse_errors.finish()));
        out.push(Arc::new(self.parse_error.finish()));
    }
}

/// One model call: a `claude_code.api_request` / `api_error` event, or an LLM span.
#[derive(Debug, Default)]
pub struct ApiRequest<'a> {
    pub time: Option<i64>,
    pub who: Who<'a>,
    pub model: Option<Cow<'a, str>>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cache_read_tokens: Option<i64>,
    pub cache_creation_tokens: Option<i64>,
    pub cache_creation_5m_tokens: Option<i64>,
    pub cache_creation_1h_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    pub cost_usd_reported: Option<f64>,
    pub cost_source: Option<CostSource>,
    pub cost_mismatch: Option<bool>,
    pub duration_ms: Option<f64>,
    pub ttft_ms: Option<f64>,
    pub success: bool,
    pub error: Option<Cow<'a, str>>,
    pub status_code: Option<i32>,
    pub attempt: Option<i32>,
    pub prompt_id: Option<Cow<'a, str>>,
    pub request_id: Option<Cow<'a, str>>,
    pub query_source: Option<Cow<'a, str>>,
    pub speed: Option<Cow<'a, str>>,
    pub effort: Option<Cow<'a, str>>,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub source: &'static str,
    pub errors: RowErrors,
}

pub struct ApiRequests {
    time: TimestampNanosecondBuilder,
    who: WhoColumns,
    model: StringColumn,
    input_tokens: Int64Builder,
    output_tokens: Int64Builder,
    cache_read_tokens: Int64Builder,
    cache_creation_tokens: Int64Builder,
    cache_creation_5m_tokens: Int64Builder,
    cache_creation_1h_tokens: Int64Builder,
    cost_usd: Float64Builder,
    cost_usd_reported: Float64Builder,
    cost_source: StringColumn,
    cost_mismatch: BooleanBuilder,
    duration_ms: Float64Builder,
    ttft_ms: Float64Builder,
    success: BooleanBuilder,
    error: StringColumn,
    status_code: Int32Builder,
    attempt: Int32Builder,
    prompt_id: StringColumn,
    request_id: StringColumn,
    query_source: StringColumn,
    speed: StringColumn,
    effort: StringColumn,
    trace_id: StringColumn,
    span_id: StringColumn,
    provenance: ProvenanceColumns,
    len: usize,
}

impl TableRows for ApiRequests {
    const TABLE: Table = Table::ApiRequests;

    fn with_room(room: Room<'_>) -> Self {
        ApiRequests {
            time: room.timestamps(),
            who: WhoColumns::new(room),
            model: room.strings("model"),
            input_tokens: room.primitives(),
            output_tokens: room.primitives(),
            cache_read_tokens: room.primitives(),
            cache_creation_tokens: room.primitives(),
            cache_creation_5m_tokens: room.primitives(),
            cache_creation_1h_tokens: room.primitives(),
            cost_usd: room.primitives(),
            cost_usd_reported: room.primitives(),
            cost_source: room.strings("cost_source"),
            cost_mismatch: room.booleans(),
            duration_ms: room.primitives(),
            ttft_ms: room.primitives(),
            success: room.booleans(),
            error: room.strings("error"),
            status_code: room.primitives(),
            attempt: room.primitives(),
            prompt_id: room.strings("prompt_id"),
            request_id: room.strings("request_id"),
            query_source: room.strings("query_source"),
            speed: room.strings("speed"),
            effort: room.strings("effort"),
            trace_id: room.strings("trace_id"),
            span_id: room.strings("span_id"),
            provenance: ProvenanceColumns::new(room),
            len: 0,
        }
    }
}

impl ApiRequests {
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, row: &ApiRequest<'_>) {
        self.len += 1;
        self.time.append_option(row.time);
        self.who.push(&row.who);
        self.model.append_option(row.model.as_deref());
        self.input_tokens.append_option(row.input_tokens);
        self.output_tokens.append_option(row.output_tokens);
        self.cache_read_tokens.append_option(row.cache_read_tokens);
        self.cache_creation_tokens
            .append_option(row.cache_creation_tokens);
        self.cache_creation_5m_tokens
            .append_option(row.cache_creation_5m_tokens);
        self.cache_creation_1h_tokens
            .append_option(row.cache_creation_1h_tokens);
        self.cost_usd.append_option(row.cost_usd);
        self.cost_usd_reported.append_option(row.cost_usd_reported);
        self.cost_source
            .append_option(row.cost_source.map(CostSource::as_str));
        self.cost_mismatch.append_option(row.cost_mismatch);
        self.duration_ms.append_option(row.duration_ms);
        self.ttft_ms.append_option(row.ttft_ms);
        self.success.append_value(row.success);
        self.error.append_option(row.error.as_deref());
        self.status_code.append_option(row.status_code);
        self.attempt.append_option(row.attempt);
        self.prompt_id.append_option(row.prompt_id.as_deref());
        self.request_id.append_option(row.request_id.as_deref());
        self.query_source.append_option(row.query_source.as_deref());
        self.speed.append_option(row.speed.as_deref());
        self.effort.append_option(row.effort.as_deref());
        self.trace_id.append_option(row.trace_id.as_deref());
        self.span_id.append_option(row.span_id.as_deref());
        self.provenance.push(row.source, &row.errors);
    }

    pub fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let mut columns: Vec<ArrayRef> = vec![Arc::new(self.time.finish())];
        self.who.finish(&mut columns);
        let rest: [ArrayRef; 24] = [
            Arc::new(self.model.finish()),
            Arc::new(self.input_tokens.finish()),
            Arc::new(self.output_tokens.finish()),
            Arc::new(self.cache_read_tokens.finish()),
            Arc::new(self.cache_creation_tokens.finish()),
            Arc::new(self.cache_creation_5m_tokens.finish()),
            Arc::new(self.cache_creation_1h_tokens.finish()),
            Arc::new(self.cost_usd.finish()),
            Arc::new(self.cost_usd_reported.finish()),
            Arc::new(self.cost_source.finish()),
            Arc::new(self.cost_mismatch.finish()),
            Arc::new(self.duration_ms.finish()),
            Arc::new(self.ttft_ms.finish()),
            Arc::new(self.success.finish()),
            Arc::new(self.error.finish()),
            Arc::new(self.status_code.finish()),
            Arc::new(self.attempt.finish()),
            Arc::new(self.prompt_id.finish()),
            Arc::new(self.request_id.finish()),
            Arc::new(self.query_source.finish()),
            Arc::new(self.speed.finish()),
            Arc::new(self.effort.finish()),
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
        ];
        columns.extend(rest);
        self.provenance.finish(&mut columns);
        RecordBatch::try_new(Table::ApiRequests.schema(), columns)
    }
}

/// One tool use: a `tool_result` event (with the `tool_decision` of the same export when
/// present), a rejected `tool_decision`, or a tool span.
#[derive(Debug, Default)]
pub struct ToolCall<'a> {
    pub time: Option<i64>,
    pub who: Who<'a>,
    pub prompt_id: Option<Cow<'a, str>>,
    pub tool_name: Option<Cow<'a, str>>,
    pub tool_use_id: Option<Cow<'a, str>>,
    pub success: Option<bool>,
    pub duration_ms: Option<f64>,
    pub decision: Option<Cow<'a, str>>,
    pub decision_source: Option<Cow<'a, str>>,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub source: &'static str,
    pub errors: RowErrors,
}

pub struct ToolCalls {
    time: TimestampNanosecondBuilder,
    who: WhoColumns,
    prompt_id: StringColumn,
    tool_name: StringColumn,
    tool_use_id: StringColumn,
    success: BooleanBuilder,
    duration_ms: Float64Builder,
    decision: StringColumn,
    decision_source: StringColumn,
    trace_id: StringColumn,
    span_id: StringColumn,
    provenance: ProvenanceColumns,
    len: usize,
}

impl TableRows for ToolCalls {
    const TABLE: Table = Table::ToolCalls;

    fn with_room(room: Room<'_>) -> Self {
        ToolCalls {
            time: room.timestamps(),
            who: WhoColumns::new(room),
            prompt_id: room.strings("prompt_id"),
            tool_name: room.strings("tool_name"),
            tool_use_id: room.strings("tool_use_id"),
            success: room.booleans(),
            duration_ms: room.primitives(),
            decision: room.strings("decision"),
            decision_source: room.strings("decision_source"),
            trace_id: room.strings("trace_id"),
            span_id: room.strings("span_id"),
            provenance: ProvenanceColumns::new(room),
            len: 0,
        }
    }
}

impl ToolCalls {
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, row: &ToolCall<'_>) {
        self.len += 1;
        self.time.append_option(row.time);
        self.who.push(&row.who);
        self.prompt_id.append_option(row.prompt_id.as_deref());
        self.tool_name.append_option(row.tool_name.as_deref());
        self.tool_use_id.append_option(row.tool_use_id.as_deref());
        self.success.append_option(row.success);
        self.duration_ms.append_option(row.duration_ms);
        self.decision.append_option(row.decision.as_deref());
        self.decision_source
            .append_option(row.decision_source.as_deref());
        self.trace_id.append_option(row.trace_id.as_deref());
        self.span_id.append_option(row.span_id.as_deref());
        self.provenance.push(row.source, &row.errors);
    }

    pub fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let mut columns: Vec<ArrayRef> = vec![Arc::new(self.time.finish())];
        self.who.finish(&mut columns);
        columns.push(Arc::new(self.prompt_id.finish()));
        columns.push(Arc::new(self.tool_name.finish()));
        columns.push(Arc::new(self.tool_use_id.finish()));
        columns.push(Arc::new(self.success.finish()));
        columns.push(Arc::new(self.duration_ms.finish()));
        columns.push(Arc::new(self.decision.finish()));
        columns.push(Arc::new(self.decision_source.finish()));
        columns.push(Arc::new(self.trace_id.finish()));
        columns.push(Arc::new(self.span_id.finish()));
        self.provenance.finish(&mut columns);
        RecordBatch::try_new(Table::ToolCalls.schema(), columns)
    }
}

/// One data point of a usage metric (`claude_code.*`). `value` is as sent; for cumulative
/// series the engine's `DeltaTracker` turns it into the increase since the previous point.
#[derive(Debug, Default)]
pub struct UsagePoint<'a> {
    pub time: Option<i64>,
    pub start_time: Option<i64>,
    pub who: Who<'a>,
    pub metric: &'a str,
    pub kind: Option<Cow<'a, str>>,
    pub model: Option<Cow<'a, str>>,
    pub query_source: Option<Cow<'a, str>>,
    pub effort: Option<Cow<'a, str>>,
    pub unit: &'a str,
    pub value: Option<f64>,
    pub temporality: &'static str,
    pub series_id: u64,
    pub attributes: &'a [KeyValue<'a>],
    pub errors: RowErrors,
}

pub struct UsageMetrics {
    time: TimestampNanosecondBuilder,
    start_time: TimestampNanosecondBuilder,
    who: WhoColumns,
    metric: StringColumn,
    kind: StringColumn,
    model: StringColumn,
    query_source: StringColumn,
    effort: StringColumn,
    unit: StringColumn,
    value: Float64Builder,
    temporality: StringColumn,
    series_id: UInt64Builder,
    attributes: AttributeMap,
    provenance: ProvenanceColumns,
    len: usize,
}

impl TableRows for UsageMetrics {
    const TABLE: Table = Table::UsageMetrics;

    fn with_room(room: Room<'_>) -> Self {
        UsageMetrics {
            time: room.timestamps(),
            start_time: room.timestamps(),
            who: WhoColumns::new(room),
            metric: room.strings("metric"),
            kind: room.strings("type"),
            model: room.strings("model"),
            query_source: room.strings("query_source"),
            effort: room.strings("effort"),
            unit: room.strings("unit"),
            value: room.primitives(),
            temporality: room.strings("temporality"),
            series_id: room.primitives(),
            attributes: room.map("attributes"),
            provenance: ProvenanceColumns::new(room),
            len: 0,
        }
    }
}

impl UsageMetrics {
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, row: &UsagePoint<'_>, content: &ContentFilter) {
        self.len += 1;
        self.time.append_option(row.time);
        self.start_time.append_option(row.start_time);
        self.who.push(&row.who);
        self.metric.append_value(row.metric);
        self.kind.append_option(row.kind.as_deref());
        self.model.append_option(row.model.as_deref());
        self.query_source.append_option(row.query_source.as_deref());
        self.effort.append_option(row.effort.as_deref());
        self.unit.append_value(row.unit);
        self.value.append_option(row.value);
        self.temporality.append_value(row.temporality);
        self.series_id.append_value(row.series_id);
        self.attributes.append(row.attributes, content);
        self.provenance.push("claude_code.metric", &row.errors);
    }

    pub fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish()),
            Arc::new(self.start_time.finish()),
        ];
        self.who.finish(&mut columns);
        columns.push(Arc::new(self.metric.finish()));
        columns.push(Arc::new(self.kind.finish()));
        columns.push(Arc::new(self.model.finish()));
        columns.push(Arc::new(self.query_source.finish()));
        columns.push(Arc::new(self.effort.finish()));
        columns.push(Arc::new(self.unit.finish()));
        columns.push(Arc::new(self.value.finish()));
        columns.push(Arc::new(self.temporality.finish()));
        columns.push(Arc::new(self.series_id.finish()));
        columns.push(self.attributes.finish());
        self.provenance.finish(&mut columns);
        RecordBatch::try_new(Table::UsageMetrics.schema(), columns)
    }
}
