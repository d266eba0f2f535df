//! The raw tables: every log record, metric point and span, lossless enough to replay.

use std::collections::HashSet;
use std::sync::Arc;

use crate::view::KeyValue;
use crate::view::{LogRecord, Span};
use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, RecordBatch,
    TimestampNanosecondBuilder, UInt64Builder,
};
use arrow::error::ArrowError;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

use crate::attributes::render_any;
use crate::columns::{AttributeMap, ContentFilter, RenderedAttributes, StringColumn};
use crate::room::{Room, TableRows};
use crate::schema::Table;

/// Where a record sits: its resource and scope, shared by all its rows.
pub struct Context<'a> {
    pub resource: &'a RenderedAttributes,
    pub scope_name: Option<&'a str>,
    pub service_name: Option<&'a str>,
    pub session_id: Option<&'a str>,
}

/// The columns every raw table ends with, in this order: where its row sits (the scope), the
/// row's own attributes, and its resource (a NULL map, the attributes being in `resources`
/// under `resource_id`).
struct ContextColumns {
    scope_name: StringColumn,
    attributes: AttributeMap,
    resource: AttributeMap,
    resource_id: UInt64Builder,
}

impl ContextColumns {
    fn new(room: Room<'_>) -> Self {
        ContextColumns {
            scope_name: room.strings("scope_name"),
            attributes: room.map("attributes"),
            resource: room.map("resource"),
            resource_id: room.primitives(),
        }
    }

    fn push(&mut self, ctx: &Context<'_>, attributes: &[KeyValue<'_>], content: &ContentFilter) {
        self.scope_name.append_option(ctx.scope_name);
        self.attributes.append(attributes, content);
        self.resource.append_null();
        self.resource_id.append_value(ctx.resource.id());
    }

    fn finish(mut self) -> [ArrayRef; 4] {
        [
            Arc::new(self.scope_name.finish()),
            self.attributes.finish(),
            self.resource.finish(),
            Arc::new(self.resource_id.finish()),
        ]
    }
}

pub struct LogRecords {
    time: TimestampNanosecondBuilder,
    observed_time: TimestampNanosecondBuilder,
    event_name: StringColumn,
    session_id: StringColumn,
    service_name: StringColumn,
    severity_number: Int32Builder,
    severity_text: StringColumn,
    body: StringColumn,
    trace_id: StringColumn,
    span_id: StringColumn,
    context: ContextColumns,
}

impl TableRows for LogRecords {
    const TABLE: Table = Table::LogRecords;

    fn with_room(room: Room<'_>) -> Self {
        LogRecords {
            time: room.timestamps(),
            observed_time: room.timestamps(),
            event_name: room.strings("event_name"),
            session_id: room.strings("session_id"),
            service_name: room.strings("service_name"),
            severity_number: room.primitives(),
            severity_text: room.strings("severity_text"),
            body: room.strings("body"),
            trace_id: room.strings("trace_id"),
            span_id: room.strings("span_id"),
            context: ContextColumns::new(room),
        }
    }
}

impl LogRecords {
    pub fn push(
        &mut self,
        ctx: &Context<'_>,
        record: &LogRecord<'_>,
        time: Option<i64>,
        observed_time: Option<i64>,
        event_name: Option<&str>,
        content: &ContentFilter,
    ) {
        self.time.append_option(time);
        self.observed_time.append_option(observed_time);
        self.event_name.append_option(event_name);
        self.session_id.append_option(ctx.session_id);
        self.service_name.append_option(ctx.service_name);
        self.severity_number
            .append_option((record.severity_number != 0).then_some(record.severity_number));
        self.severity_text
            .append_option((!record.severity_text.is_empty()).then_some(record.severity_text));
        self.body.append_option(render_any(record.body.as_ref()));
        self.trace_id.append_hex(record.trace_id);
        self.span_id.append_hex(record.span_id);
        self.context.push(ctx, &record.attributes, content);
    }

    pub fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish()),
            Arc::new(self.observed_time.finish()),
            Arc::new(self.event_name.finish()),
            Arc::new(self.session_id.finish()),
            Arc::new(self.service_name.finish()),
            Arc::new(self.severity_number.finish()),
            Arc::new(self.severity_text.finish()),
            Arc::new(self.body.finish()),
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
        ];
        columns.extend(self.context.finish());
        RecordBatch::try_new(Table::LogRecords.schema(), columns)
    }
}

/// One metric data point, flattened: sums and gauges carry `value`, histograms and summaries
/// `count` and `sum` (and min/max where sent).
#[derive(Debug, Default, Clone)]
pub struct PointValues {
    pub value: Option<f64>,
    pub count: Option<u64>,
    pub sum: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

pub struct MetricDescription<'a> {
    pub name: &'a str,
    pub unit: &'a str,
    pub kind: &'static str,
    pub temporality: Option<&'static str>,
    pub is_monotonic: Option<bool>,
}

pub struct MetricPoints {
    time: TimestampNanosecondBuilder,
    start_time: TimestampNanosecondBuilder,
    metric: StringColumn,
    unit: StringColumn,
    kind: StringColumn,
    temporality: StringColumn,
    is_monotonic: BooleanBuilder,
    value: Float64Builder,
    count: UInt64Builder,
    sum: Float64Builder,
    min: Float64Builder,
    max: Float64Builder,
    series_id: UInt64Builder,
    session_id: StringColumn,
    service_name: StringColumn,
    context: ContextColumns,
}

impl TableRows for MetricPoints {
    const TABLE: Table = Table::MetricPoints;

    fn with_room(room: Room<'_>) -> Self {
        MetricPoints {
            time: room.timestamps(),
            start_time: room.timestamps(),
            metric: room.strings("metric"),
            unit: room.strings("unit"),
            kind: room.strings("kind"),
            temporality: room.strings("temporality"),
            is_monotonic: room.booleans(),
            value: room.primitives(),
            count: room.primitives(),
            sum: room.primitives(),
            min: room.primitives(),
            max: room.primitives(),
            series_id: room.primitives(),
            session_id: room.strings("session_id"),
            service_name: room.strings("service_name"),
            context: ContextColumns::new(room),
        }
    }
}

impl MetricPoints {
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        ctx: &Context<'_>,
        metric: &MetricDescription<'_>,
        time: Option<i64>,
        start_time: Option<i64>,
        values: &PointValues,
        series_id: u64,
        attributes: &[KeyValue<'_>],
        content: &ContentFilter,
    ) {
        self.time.append_option(time);
        self.start_time.append_option(start_time);
        self.metric.append_value(metric.name);
        self.unit.append_value(metric.unit);
        self.kind.append_value(metric.kind);
        self.temporality.append_option(metric.temporality);
        self.is_monotonic.append_option(metric.is_monotonic);
        self.value.append_option(values.value);
        self.count.append_option(values.count);
        self.sum.append_option(values.sum);
        self.min.append_option(values.min);
        self.max.append_option(values.max);
        self.series_id.append_value(series_id);
        self.session_id.append_option(ctx.session_id);
        self.service_name.append_option(ctx.service_name);
        self.context.push(ctx, attributes, content);
    }

    pub fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish()),
            Arc::new(self.start_time.finish()),
            Arc::new(self.metric.finish()),
            Arc::new(self.unit.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.temporality.finish()),
            Arc::new(self.is_monotonic.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.count.finish()),
            Arc::new(self.sum.finish()),
            Arc::new(self.min.finish()),
            Arc::new(self.max.finish()),
            Arc::new(self.series_id.finish()),
            Arc::new(self.session_id.finish()),
            Arc::new(self.service_name.finish()),
        ];
        columns.extend(self.context.finish());
        RecordBatch::try_new(Table::MetricPoints.schema(), columns)
    }
}

pub struct Spans {
    start_time: TimestampNanosecondBuilder,
    end_time: TimestampNanosecondBuilder,
    duration_ms: Float64Builder,
    name: StringColumn,
    trace_id: StringColumn,
    span_id: StringColumn,
    parent_span_id: StringColumn,
    kind: StringColumn,
    status_code: StringColumn,
    status_message: StringColumn,
    session_id: StringColumn,
    service_name: StringColumn,
    context: ContextColumns,
}

impl TableRows for Spans {
    const TABLE: Table = Table::Spans;

    fn with_room(room: Room<'_>) -> Self {
        Spans {
            start_time: room.timestamps(),
            end_time: room.timestamps(),
            duration_ms: room.primitives(),
            name: room.strings("name"),
            trace_id: room.strings("trace_id"),
            span_id: room.strings("span_id"),
            parent_span_id: room.strings("parent_span_id"),
            kind: room.strings("kind"),
            status_code: room.strings("status_code"),
            status_message: room.strings("status_message"),
            session_id: room.strings("session_id"),
            service_name: room.strings("service_name"),
            context: ContextColumns::new(room),
        }
    }
}

impl Spans {
    pub fn push(
        &mut self,
        ctx: &Context<'_>,
        span: &Span<'_>,
        start: Option<i64>,
        end: Option<i64>,
        content: &ContentFilter,
    ) {
        self.start_time.append_option(start);
        self.end_time.append_option(end);
        self.duration_ms.append_option(span_duration_ms(start, end));
        self.name.append_value(span.name);
        self.trace_id.append_hex(span.trace_id);
        self.span_id.append_hex(span.span_id);
        self.parent_span_id.append_hex(span.parent_span_id);
        self.kind.append_value(kind_name(span.kind));
        let status = span.status.as_ref();
        self.status_code
            .append_value(status_name(status.map_or(0, |s| s.code)));
        self.status_message
            .append_option(status.map(|s| s.message).filter(|m| !m.is_empty()));
        self.session_id.append_option(ctx.session_id);
        self.service_name.append_option(ctx.service_name);
        self.context.push(ctx, &span.attributes, content);
    }

    pub fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.start_time.finish()),
            Arc::new(self.end_time.finish()),
            Arc::new(self.duration_ms.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.parent_span_id.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.status_code.finish()),
            Arc::new(self.status_message.finish()),
            Arc::new(self.session_id.finish()),
            Arc::new(self.service_name.finish()),
        ];
        columns.extend(self.context.finish());
        RecordBatch::try_new(Table::Spans.schema(), columns)
    }
}

/// The `resources` rows of a run: each resource once for every UTC day its rows fall on (rows
/// without a time count as one more day, as the sink's `unknown` partition does), so that a
/// day's files name every resource its raw rows do.
pub struct Resources {
    time: TimestampNanosecondBuilder,
    resource_id: UInt64Builder,
    resource: AttributeMap,
    seen: HashSet<(u64, Option<i64>)>,
    /// The last (resource, day) seen: a run's rows come a resource at a time.
    last: Option<(u64, Option<i64>)>,
}

impl TableRows for Resources {
    const TABLE: Table = Table::Resources;

    fn with_room(room: Room<'_>) -> Self {
        Resources {
            time: room.timestamps(),
            resource_id: room.primitives(),
            resource: room.map("resource"),
            seen: HashSet::new(),
            last: None,
        }
    }
}

impl Resources {
    /// Notes that a raw row whose partition time is `time` names `resource`.
    pub fn note(&mut self, resource: &RenderedAttributes, time: Option<i64>) {
        let key = resource_key(resource.id(), time);
        if self.last == Some(key) {
            return;
        }
        self.last = Some(key);
        if self.seen.insert(key) {
            self.time.append_option(time);
            self.resource_id.append_value(key.0);
            self.resource.append_rendered(resource);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    pub fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish()),
            Arc::new(self.resource_id.finish()),
            self.resource.finish(),
        ];
        RecordBatch::try_new(Table::Resources.schema(), columns)
    }
}

const NANOS_PER_DAY: i64 = 86_400_000_000_000;

/// The UTC day a nanosecond time falls on, in days since the epoch: the day whose `date=`
/// directory the sink writes a row with this partition time to. Inlined: the sink calls it for
/// every row it writes, from another crate.
#[inline]
pub fn utc_day(time_nanos: i64) -> i64 {
    time_nanos.div_euclid(NANOS_PER_DAY)
}

/// The `resources` row a raw row needs: its resource's id, and the [`utc_day`] of its
/// partition time (`None` without a time). Two rows of one key hold the same attributes and
/// land in the same day's files, so one of them is enough.
pub fn resource_key(resource_id: u64, time: Option<i64>) -> (u64, Option<i64>) {
    (resource_id, time.map(utc_day))
}

/// Wall time of a span in milliseconds; absent when either end is missing or they are reversed.
pub fn span_duration_ms(start: Option<i64>, end: Option<i64>) -> Option<f64> {
    match (start, end) {
        (Some(s), Some(e)) if e >= s => Some((e - s) as f64 / 1e6),
        _ => None,
    }
}

fn kind_name(kind: i32) -> &'static str {
    match SpanKind::try_from(kind) {
        Ok(SpanKind::Internal) => "internal",
        Ok(SpanKind::Server) => "server",
        Ok(SpanKind::Client) => "client",
        Ok(SpanKind::Producer) => "producer",
        Ok(SpanKind::Consumer) => "consumer",
        _ => "unspecified",
    }
}

pub fn status_name(code: i32) -> &'static str {
    match StatusCode::try_from(code) {
        Ok(StatusCode::Ok) => "ok",
        Ok(StatusCode::Error) => "error",
        _ => "unset",
    }
}
