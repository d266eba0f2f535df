//! Borrowed views of OTLP export requests: what the table mapping reads, and nothing else.
//!
//! Two ways in:
//! - the direct decoder: protobuf bytes → views ([`Request::decode`]), with no string copied and
//!   one allocation per list (attributes, records) instead of two per attribute;
//! - prost structs → views ([`Request::from_export`]): OTLP/JSON, gRPC requests already decoded
//!   by tonic, and the reference path of the differential test.
//!
//! Field names follow `opentelemetry-proto`'s, so the mapping reads the same either way. Fields
//! the mapping never reads are checked (the wire reader rejects what prost rejects) but not kept.

use opentelemetry_proto::tonic as pb;

use crate::payload::{Export, Signal};
use crate::wire::{Depth, Message, Reader, WireError, WireResult, WireType, append, decode};

#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    StringValue(&'a str),
    BoolValue(bool),
    IntValue(i64),
    DoubleValue(f64),
    ArrayValue(ArrayValue<'a>),
    KvlistValue(KeyValueList<'a>),
    BytesValue(&'a [u8]),
    StringValueStrindex(i32),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnyValue<'a> {
    pub value: Option<Value<'a>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArrayValue<'a> {
    pub values: Vec<AnyValue<'a>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyValueList<'a> {
    pub values: Vec<KeyValue<'a>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyValue<'a> {
    pub key: &'a str,
    pub value: Option<AnyValue<'a>>,
}

#[cfg(test)]
impl<'a> KeyValue<'a> {
    /// An attribute as tests write one: `value` `None` is an `AnyValue` with no value set.
    pub(crate) fn test(key: &'a str, value: Option<Value<'a>>) -> Self {
        KeyValue {
            key,
            value: Some(AnyValue { value }),
        }
    }
}

#[derive(Debug, Default)]
pub struct Resource<'a> {
    pub attributes: Vec<KeyValue<'a>>,
}

#[derive(Debug, Default)]
pub struct InstrumentationScope<'a> {
    pub name: &'a str,
}

/// One export request of any signal.
#[derive(Debug)]
pub enum Request<'a> {
    Logs(LogsRequest<'a>),
    Metrics(MetricsRequest<'a>),
    Traces(TracesRequest<'a>),
}

#[derive(Debug, Default)]
pub struct LogsRequest<'a> {
    pub resource_logs: Vec<ResourceLogs<'a>>,
}

#[derive(Debug, Default)]
pub struct ResourceLogs<'a> {
    pub resource: Option<Resource<'a>>,
    pub scope_logs: Vec<ScopeLogs<'a>>,
}

#[derive(Debug, Default)]
pub struct ScopeLogs<'a> {
    pub scope: Option<InstrumentationScope<'a>>,
    pub log_records: Vec<LogRecord<'a>>,
}

#[derive(Debug, Default)]
pub struct LogRecord<'a> {
    pub time_unix_nano: u64,
    pub observed_time_unix_nano: u64,
    pub severity_number: i32,
    pub severity_text: &'a str,
    pub body: Option<AnyValue<'a>>,
    pub attributes: Vec<KeyValue<'a>>,
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub event_name: &'a str,
}

#[derive(Debug, Default)]
pub struct MetricsRequest<'a> {
    pub resource_metrics: Vec<ResourceMetrics<'a>>,
}

#[derive(Debug, Default)]
pub struct ResourceMetrics<'a> {
    pub resource: Option<Resource<'a>>,
    pub scope_metrics: Vec<ScopeMetrics<'a>>,
}

#[derive(Debug, Default)]
pub struct ScopeMetrics<'a> {
    pub scope: Option<InstrumentationScope<'a>>,
    pub metrics: Vec<Metric<'a>>,
}

#[derive(Debug, Default)]
pub struct Metric<'a> {
    pub name: &'a str,
    pub unit: &'a str,
    pub data: Option<Data<'a>>,
}

#[derive(Debug)]
pub enum Data<'a> {
    Gauge(Gauge<'a>),
    Sum(Sum<'a>),
    Histogram(Histogram<'a>),
    ExponentialHistogram(ExponentialHistogram<'a>),
    Summary(Summary<'a>),
}

#[derive(Debug, Default)]
pub struct Gauge<'a> {
    pub data_points: Vec<NumberDataPoint<'a>>,
}

#[derive(Debug, Default)]
pub struct Sum<'a> {
    pub data_points: Vec<NumberDataPoint<'a>>,
    pub aggregation_temporality: i32,
    pub is_monotonic: bool,
}

#[derive(Debug, Default)]
pub struct Histogram<'a> {
    pub data_points: Vec<HistogramDataPoint<'a>>,
    pub aggregation_temporality: i32,
}

#[derive(Debug, Default)]
pub struct ExponentialHistogram<'a> {
    pub data_points: Vec<ExponentialHistogramDataPoint<'a>>,
    pub aggregation_temporality: i32,
}

#[derive(Debug, Default)]
pub struct Summary<'a> {
    pub data_points: Vec<SummaryDataPoint<'a>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NumberValue {
    AsDouble(f64),
    AsInt(i64),
}

#[derive(Debug, Default)]
pub struct NumberDataPoint<'a> {
    pub attributes: Vec<KeyValue<'a>>,
    pub start_time_unix_nano: u64,
    pub time_unix_nano: u64,
    pub value: Option<NumberValue>,
}

#[derive(Debug, Default)]
pub struct HistogramDataPoint<'a> {
    pub attributes: Vec<KeyValue<'a>>,
    pub start_time_unix_nano: u64,
    pub time_unix_nano: u64,
    pub count: u64,
    pub sum: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// The same fields as [`HistogramDataPoint`] (its buckets are checked, not kept), but another
/// message on the wire.
#[derive(Debug, Default)]
pub struct ExponentialHistogramDataPoint<'a>(pub HistogramDataPoint<'a>);

#[derive(Debug, Default)]
pub struct SummaryDataPoint<'a> {
    pub attributes: Vec<KeyValue<'a>>,
    pub start_time_unix_nano: u64,
    pub time_unix_nano: u64,
    pub count: u64,
    pub sum: f64,
}

#[derive(Debug, Default)]
pub struct TracesRequest<'a> {
    pub resource_spans: Vec<ResourceSpans<'a>>,
}

#[derive(Debug, Default)]
pub struct ResourceSpans<'a> {
    pub resource: Option<Resource<'a>>,
    pub scope_spans: Vec<ScopeSpans<'a>>,
}

#[derive(Debug, Default)]
pub struct ScopeSpans<'a> {
    pub scope: Option<InstrumentationScope<'a>>,
    pub spans: Vec<Span<'a>>,
}

#[derive(Debug, Default)]
pub struct Span<'a> {
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub parent_span_id: &'a [u8],
    pub name: &'a str,
    pub kind: i32,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    pub attributes: Vec<KeyValue<'a>>,
    pub status: Option<Status<'a>>,
}

#[derive(Debug, Default)]
pub struct Status<'a> {
    pub message: &'a str,
    pub code: i32,
}

impl<'a> Request<'a> {
    /// Reads a protobuf export request of `signal` in place.
    pub fn decode(bytes: &'a [u8], signal: Signal) -> Result<Self, WireError> {
        Ok(match signal {
            Signal::Logs => Request::Logs(decode(bytes)?),
            Signal::Metrics => Request::Metrics(decode(bytes)?),
            Signal::Traces => Request::Traces(decode(bytes)?),
        })
    }

    /// Views of an export already decoded into prost structs.
    pub fn from_export(export: &'a Export) -> Self {
        match export {
            Export::Logs(r) => Request::Logs(LogsRequest {
                resource_logs: r.resource_logs.iter().map(ResourceLogs::from).collect(),
            }),
            Export::Metrics(r) => Request::Metrics(MetricsRequest {
                resource_metrics: r
                    .resource_metrics
                    .iter()
                    .map(ResourceMetrics::from)
                    .collect(),
            }),
            Export::Traces(r) => Request::Traces(TracesRequest {
                resource_spans: r.resource_spans.iter().map(ResourceSpans::from).collect(),
            }),
        }
    }
}

// ---- protobuf → views -----------------------------------------------------------------------
//
// One `Message` impl per OTLP message of `opentelemetry-proto` 0.33, with its fields' tags and
// types as prost generates them; an error names the field it happened in, as prost's do.

/// Adds `message.field` to an error's path.
fn at<T>(result: WireResult<T>, message: &'static str, field: &'static str) -> WireResult<T> {
    result.map_err(|e| e.push(message, field))
}

/// One more attribute: one with a string value in one go ([`Reader::string_pair`]), any other
/// field by field.
fn push_attribute<'a>(
    r: &mut Reader<'a>,
    wire: WireType,
    list: &mut Vec<KeyValue<'a>>,
    d: Depth,
) -> WireResult<()> {
    match r.string_pair(wire, d) {
        Some((key, value)) => {
            let value = Some(AnyValue {
                value: Some(Value::StringValue(value)),
            });
            append(list, KeyValue { key, value });
            Ok(())
        }
        None => r.push(wire, list, d),
    }
}

/// Sets a oneof to the message variant `make` builds, unless it holds that variant already
/// (then the new bytes merge into it, as prost does), and returns that variant.
macro_rules! oneof_message {
    ($slot:expr, $variant:path, $make:expr) => {{
        if !matches!($slot, Some($variant(_))) {
            $slot = Some($variant($make));
        }
        match &mut $slot {
            Some($variant(inner)) => inner,
            _ => unreachable!("the variant was just set"),
        }
    }};
}

impl<'a> Message<'a> for AnyValue<'a> {
    const NAME: &'static str = "AnyValue";
    fn field(&mut self, r: &mut Reader<'a>, tag: u32, wire: WireType, d: Depth) -> WireResult<()> {
        let value = match tag {
            1 => r.string(wire).map(Value::StringValue),
            2 => r.bool(wire).map(Value::BoolValue),
            3 => r.int64(wire).map(Value::IntValue),
            4 => r.double(wire).map(Value::DoubleValue),
            5 => {
                let array = oneof_message!(self.value, Value::ArrayValue, ArrayValue::default());
                return at(r.message(wire, array, d), Self::NAME, "value");
            }
            6 => {
                let list = oneof_message!(self.value, Value::KvlistValue, KeyValueList::default());
                return at(r.message(wire, list, d), Self::NAME, "value");
            }
            7 => r.bytes(wire).map(Value::BytesValue),
            8 => r.int32(wire).map(Value::StringValueStrindex),
            _ => return r.skip(wire, tag, d),
        };
        self.value = Some(at(value, Self::NAME, "value")?);
        Ok(())
    }
}

impl<'a> Message<'a> for KeyValue<'a> {
    const NAME: &'static str = "KeyValue";
    fn field(&mut self, r: &mut Reader<'a>, tag: u32, wire: WireType, d: Depth) -> WireResult<()> {
        match tag {
            1 => self.key = at(r.string(wire), Self::NAME, "key")?,
            2 => {
                let value = self.value.get_or_insert_with(AnyValue::default);
                at(r.message(wire, value, d), Self::NAME, "value")?;
            }
            3 => {
                at(r.int32(wire), Self::NAME, "key_strindex")?;
            }
            _ => r.skip(wire, tag, d)?,
        }
        Ok(())
    }
}

impl<'a> Message<'a> for Resource<'a> {
    const NAME: &'static str = "Resource";
    fn field(&mut self, r: &mut Reader<'a>, tag: u32, wire: WireType, d: Depth) -> WireResult<()> {
        match tag {
            1 => at(
                push_attribute(r, wire, &mut self.attributes, d),
                Self::NAME,
                "attributes",
            ),
            2 => at(
                r.uint32(wire).map(drop),
                Self::NAME,
                "dropped_attributes_count",
            ),
            3 => at(r.check::<EntityRef>(wire, d), Self::NAME, "entity_refs"),
            _ => r.skip(wire, tag, d),
        }
    }
}

/// Checked, not kept.
#[derive(Default)]
struct EntityRef;

impl<'a> Message<'a> for EntityRef {
    const NAME: &'static str = "EntityRef";
    fn field(&mut self, r: &mut Reader<'a>, tag: u32, wire: WireType, d: Depth) -> WireResult<()> {
        let field = match tag {
            1 => "schema_url",
            2 => "r#type",
            3 => "id_keys",
            4 => "description_keys",
            _ => return r.skip(wire, tag, d),
        };
        at(r.string(wire).map(drop), Self::NAME, field)
    }
}

impl<'a> Message<'a> for InstrumentationScope<'a> {
    const NAME: &'static str = "InstrumentationScope";
    fn field(&mut self, r: &mut Reader<'a>, tag: u32, wire: WireType, d: Depth) -> WireResult<()> {
        match tag {
            1 => self.name = at(r.string(wire), Self::NAME, "name")?,
            2 => at(r.string(wire).map(drop), Self::NAME, "version")?,
            3 => at(r.check::<KeyValue>(wire, d), Self::NAME, "attributes")?,
            4 => at(
                r.uint32(wire).map(drop),
                Self::NAME,
                "dropped_attributes_count",
            )?,
            _ => r.skip(wire, tag, d)?,
        }
        Ok(())
    }
}

/// A message whose only field is a list in field 1: export requests, the gauge and summary
/// points, arrays and key-value lists.
macro_rules! list_message {
    ($ty:ident, $name:literal, $list:ident) => {
        impl<'a> Message<'a> for $ty<'a> {
            const NAME: &'static str = $name;
            fn field(
                &mut self,
                r: &mut Reader<'a>,
                tag: u32,
                wire: WireType,
                d: Depth,
            ) -> WireResult<()> {
                match tag {
                    1 => at(
                        r.push(wire, &mut self.$list, d),
                        Self::NAME,
                        stringify!($list),
                    ),
                    _ => r.skip(wire, tag, d),
                }
            }
        }
    };
}

/// A message in field 1 (the resource, or the scope), a list in 2 (the scopes, or the records)
/// and `schema_url` in 3: the shape every `Resource*` and `Scope*` message shares.
macro_rules! scoped_list_message {
    ($ty:ident, $name:literal, $head:ident: $head_ty:ident, $list:ident) => {
        impl<'a> Message<'a> for $ty<'a> {
            const NAME: &'static str = $name;
            fn field(
                &mut self,
                r: &mut Reader<'a>,
                tag: u32,
                wire: WireType,
                d: Depth,
            ) -> WireResult<()> {
                match tag {
                    1 => {
                        let head = self.$head.get_or_insert_with($head_ty::default);
                        at(r.message(wire, head, d), Self::NAME, stringify!($head))
                    }
                    2 => at(
                        r.push(wire, &mut self.$list, d),
                        Self::NAME,
                        stringify!($list),
                    ),
                    3 => at(r.string(wire).map(drop), Self::NAME, "schema_url"),
                    _ => r.skip(wire, tag, d),
                }
            }
        }
    };
}

list_message!(ArrayValue, "ArrayValue", values);
list_message!(KeyValueList, "KeyValueList", values);
list_message!(LogsRequest, "ExportLogsServiceRequest", resource_logs);
list_message!(
    MetricsRequest,
    "ExportMetricsServiceRequest",
    resource_metrics
);
list_message!(TracesRequest, "ExportTraceServiceRequest", resource_spans);
list_message!(Gauge, "Gauge", data_points);
list_message!(Summary, "Summary", data_points);
scoped_list_message!(ResourceLogs, "ResourceLogs", resource: Resource, scope_logs);
scoped_list_message!(ResourceMetrics, "ResourceMetrics", resource: Resource, scope_metrics);
scoped_list_message!(ResourceSpans, "ResourceSpans", resource: Resource, scope_spans);
scoped_list_message!(ScopeLogs, "ScopeLogs", scope: InstrumentationScope, log_records);
scoped_list_message!(ScopeMetrics, "ScopeMetrics", scope: InstrumentationScope, metrics);
scoped_list_message!(ScopeSpans, "ScopeSpans", scope: InstrumentationScope, spans);

impl<'a> Message<'a> for LogRecord<'a> {
    const NAME: &'static str = "LogRecord";
    fn field(&mut self, r: &mut Reader<'a>, tag: u32, wire: WireType, d: Depth) -> WireResult<()> {
        const N: &str = LogRecord::NAME;
        match tag {
            1 => self.time_unix_nano = at(r.fixed64(wire), N, "time_unix_nano")?,
            11 => {
                self.observed_time_unix_nano = at(r.fixed64(wire), N, "observed_time_unix_nano")?;
            }
            2 => self.severity_number = at(r.int32(wire), N, "severity_number")?,
            3 => self.severity_text = at(r.string(wire), N, "severity_text")?,
            5 => {
                let body = self.body.get_or_insert_with(AnyValue::default);
                at(r.message(wire, body, d), N, "body")?;
            }
            6 => at(
                push_attribute(r, wire, &mut self.attributes, d),
                N,
                "attributes",
            )?,
            7 => at(r.uint32(wire).map(drop), N, "dropped_attributes_count")?,
            8 => at(r.fixed32(wire).map(drop), N, "flags")?,
            9 => self.trace_id = at(r.bytes(wire), N, "trace_id")?,
            10 => self.span_id = at(r.bytes(wire), N, "span_id")?,
            12 => self.event_name = at(r.string(wire), N, "event_name")?,
            _ => r.skip(wire, tag, d)?,
        }
        Ok(())
    }
}

impl<'a> Message<'a> for Metric<'a> {
    const NAME: &'static str = "Metric";
    fn field(&mut self, r: &mut Reader<'a>, tag: u32, wire: WireType, d: Depth) -> WireResult<()> {
        const N: &str = Metric::NAME;
        match tag {
            1 => self.name = at(r.string(wire), N, "name")?,
            2 => at(r.string(wire).map(drop), N, "description")?,
            3 => self.unit = at(r.string(wire), N, "unit")?,
            12 => at(r.check::<KeyValue>(wire, d), N, "metadata")?,
            5 => {
                let gauge = oneof_message!(self.data, Data::Gauge, Gauge::default());
                at(r.message(wire, gauge, d), N, "data")?;
            }
            7 => {
                let sum = oneof_message!(self.data, Data::Sum, Sum::default());
                at(r.message(wire, sum, d), N, "data")?;
            }
            9 => {
                let histogram = oneof_message!(self.data, Data::Histogram, Histogram::default());
                at(r.message(wire, histogram, d), N, "data")?;
            }
            10 => {
                let histogram = oneof_message!(
                    self.data,
                    Data::ExponentialHistogram,
                    ExponentialHistogram::default()
                );
                at(r.message(wire, histogram, d), N, "data")?;
            }
            11 => {
                let summary = oneof_message!(self.data, Data::Summary, Summary::default());
                at(r.message(wire, summary, d), N, "data")?;
            }
            _ => r.skip(wire, tag, d)?,
        }
        Ok(())
    }
}

/// A histogram's points in field 1 and their temporality in 2.
macro_rules! histogram_message {
    ($ty:ident, $name:literal) => {
        impl<'a> Message<'a> for $ty<'a> {
            const NAME: &'static str = $name;
            fn field(
                &mut self,
                r: &mut Reader<'a>,
                tag: u32,
                wire: WireType,
                d: Depth,
            ) -> WireResult<()> {
                match tag {
                    1 => at(
                        r.push(wire, &mut self.data_points, d),
                        Self::NAME,
                        "data_points",
                    )?,
                    2 => {
                        self.aggregation_temporality =
                            at(r.int32(wire), Self::NAME, "aggregation_temporality")?;
                    }
                    _ => r.skip(wire, tag, d)?,
                }
                Ok(())
            }
        }
    };
}

histogram_message!(Histogram, "Histogram");
histogram_message!(ExponentialHistogram, "ExponentialHistogram");

impl<'a> Message<'a> for Sum<'a> {
    const NAME: &'static str = "Sum";
    fn field(&mut self, r: &mut Reader<'a>, tag: u32, wire: WireType, d: Depth) -> WireResult<()> {
        const N: &str = Sum::NAME;
        match tag {
            1 => at(r.push(wire, &mut self.data_points, d), N, "data_points")?,
            2 => self.aggregation_temporality = at(r.int32(wire), N, "aggregation_temporality")?,
            3 => self.is_monotonic = at(r.bool(wire), N, "is_monotonic")?,
            _ => r.skip(wire, tag, d)?,
        }
        Ok(())
    }
}

impl<'a> Message<'a> for NumberDataPoint<'a> {
    const NAME: &'static str = "NumberDataPoint";
    fn field(&mut self, r: &mut Reader<'a>, tag: u32, wire: WireType, d: Depth) -> WireResult<()> {
        const N: &str = NumberDataPoint::NAME;
        match tag {
            7 => at(
                push_attribute(r, wire, &mut self.attributes, d),
                N,
                "attributes",
            )?,
            2 => self.start_time_unix_nano = at(r.fixed64(wire), N, "start_time_unix_nano")?,
            3 => self.time_unix_nano = at(r.fixed64(wire), N, "time_unix_nano")?,
            5 => at(r.check::<Exemplar>(wire, d), N, "exemplars")?,
            8 => at(r.uint32(wire).map(drop), N, "flags")?,
            4 => self.value = Some(NumberValue::AsDouble(at(r.double(wire), N, "value")?)),
            6 => self.value = Some(NumberValue::AsInt(at(r.sfixed64(wire), N, "value")?)),
            _ => r.skip(wire, tag, d)?,
        }
        Ok(())
    }
}

impl<'a> Message<'a> for HistogramDataPoint<'a> {
    const NAME: &'static str = "HistogramDataPoint";
    fn field(&mut self, r: &mut Reader<'a>, tag: u32, wire: WireType, d: Depth) -> WireResult<()> {
        const N: &str = HistogramDataPoint::NAME;
        match tag {
            9 => at(
                push_attribute(r, wire, &mut self.attributes, d),
                N,
                "attributes",
            )?,
            2 => self.start_time_unix_nano = at(r.fixed64(wire), N, "start_time_unix_nano")?,
            3 => self.time_unix_nano = at(r.fixed64(wire), N, "time_unix_nano")?,
            4 => self.count = at(r.fixed64(wire), N, "count")?,
            5 => self.sum = Some(at(r.double(wire), N, "sum")?),
            6 => at(r.repeated_fixed64(wire), N, "bucket_counts")?,
            7 => at(r.repeated_fixed64(wire), N, "explicit_bounds")?,
            8 => at(r.check::<Exemplar>(wire, d), N, "exemplars")?,
            10 => at(r.uint32(wire).map(drop), N, "flags")?,
            11 => self.min = Some(at(r.double(wire), N, "min")?),
            12 => self.max = Some(at(r.double(wire), N, "max")?),
            _ => r.skip(wire, tag, d)?,
        }
        Ok(())
    }
}

impl<'a> Message<'a> for ExponentialHistogramDataPoint<'a> {
    const NAME: &'static str = "ExponentialHistogramDataPoint";
    fn field(&mut self, r: &mut Reader<'a>, tag: u32, wire: WireType, d: Depth) -> WireResult<()> {
        const N: &str = ExponentialHistogramDataPoint::NAME;
        let point = &mut self.0;
        match tag {
            1 => at(
                push_attribute(r, wire, &mut point.attributes, d),
                N,
                "attributes",
            )?,
            2 => point.start_time_unix_nano = at(r.fixed64(wire), N, "start_time_unix_nano")?,
            3 => point.time_unix_nano = at(r.fixed64(wire), N, "time_unix_nano")?,
            4 => point.count = at(r.fixed64(wire), N, "count")?,
            5 => point.sum = Some(at(r.double(wire), N, "sum")?),
            6 => at(r.sint32(wire).map(drop), N, "scale")?,
            7 => at(r.fixed64(wire).map(drop), N, "zero_count")?,
            8 => at(r.message(wire, &mut Buckets, d), N, "positive")?,
            9 => at(r.message(wire, &mut Buckets, d), N, "negative")?,
            10 => at(r.uint32(wire).map(drop), N, "flags")?,
            11 => at(r.check::<Exemplar>(wire, d), N, "exemplars")?,
            12 => point.min = Some(at(r.double(wire), N, "min")?),
            13 => point.max = Some(at(r.double(wire), N, "max")?),
            14 => at(r.double(wire).map(drop), N, "zero_threshold")?,
            _ => r.skip(wire, tag, d)?,
        }
        Ok(())
    }
}

/// Checked, not kept.
#[derive(Default)]
struct Buckets;

impl<'a> Message<'a> for Buckets {
    const NAME: &'static str = "Buckets";
    fn field(&mut self, r: &mut Reader<'a>, tag: u32, wire: WireType, d: Depth) -> WireResult<()> {
        match tag {
            1 => at(r.sint32(wire).map(drop), Self::NAME, "offset"),
            2 => at(r.repeated_varint(wire), Self::NAME, "bucket_counts"),
            _ => r.skip(wire, tag, d),
        }
    }
}

impl<'a> Message<'a> for SummaryDataPoint<'a> {
    const NAME: &'static str = "SummaryDataPoint";
    fn field(&mut self, r: &mut Reader<'a>, tag: u32, wire: WireType, d: Depth) -> WireResult<()> {
        const N: &str = SummaryDataPoint::NAME;
        match tag {
            7 => at(
                push_attribute(r, wire, &mut self.attributes, d),
                N,
                "attributes",
            )?,
            2 => self.start_time_unix_nano = at(r.fixed64(wire), N, "start_time_unix_nano")?,
            3 => self.time_unix_nano = at(r.fixed64(wire), N, "time_unix_nano")?,
            4 => self.count = at(r.fixed64(wire), N, "count")?,
            5 => self.sum = at(r.double(wire), N, "sum")?,
            6 => at(r.check::<ValueAtQuantile>(wire, d), N, "quantile_values")?,
            8 => at(r.uint32(wire).map(drop), N, "flags")?,
            _ => r.skip(wire, tag, d)?,
        }
        Ok(())
    }
}

/// Checked, not kept.
#[derive(Default)]
struct ValueAtQuantile;

impl<'a> Message<'a> for ValueAtQuantile {
    const NAME: &'static str = "ValueAtQuantile";
    fn field(&mut self, r: &mut Reader<'a>, tag: u32, wire: WireType, d: Depth) -> WireResult<()> {
        match tag {
            1 => at(r.double(wire).map(drop), Self::NAME, "quantile"),
            2 => at(r.double(wire).map(drop), Self::NAME, "value"),
            _ => r.skip(wire, tag, d),
        }
    }
}

/// Checked, not kept.
#[derive(Default)]
struct Exemplar;

impl<'a> Message<'a> for Exemplar {
    const NAME: &'static str = "Exemplar";
    fn field(&mut self, r: &mut Reader<'a>, tag: u32, wire: WireType, d: Depth) -> WireResult<()> {
        const N: &str = Exemplar::NAME;
        match tag {
            7 => at(r.check::<KeyValue>(wire, d), N, "filtered_attributes"),
            2 => at(r.fixed64(wire).map(drop), N, "time_unix_nano"),
            4 => at(r.bytes(wire).map(drop), N, "span_id"),
            5 => at(r.bytes(wire).map(drop), N, "trace_id"),
            3 => at(r.double(wire).map(drop), N, "value"),
            6 => at(r.sfixed64(wire).map(drop), N, "value"),
            _ => r.skip(wire, tag, d),
        }
    }
}

impl<'a> Message<'a> for Span<'a> {
    const NAME: &'static str = "Span";
    fn field(&mut self, r: &mut Reader<'a>, tag: u32, wire: WireType, d: Depth) -> WireResult<()> {
        const N: &str = Span::NAME;
        match tag {
            1 => self.trace_id = at(r.bytes(wire), N, "trace_id")?,
            2 => self.span_id = at(r.bytes(wire), N, "span_id")?,
            3 => at(r.string(wire).map(drop), N, "trace_state")?,
            4 => self.parent_span_id = at(r.bytes(wire), N, "parent_span_id")?,
            16 => at(r.fixed32(wire).map(drop), N, "flags")?,
            5 => self.name = at(r.string(wire), N, "name")?,
            6 => self.kind = at(r.int32(wire), N, "kind")?,
            7 => self.start_time_unix_nano = at(r.fixed64(wire), N, "start_time_unix_nano")?,
            8 => self.end_time_unix_nano = at(r.fixed64(wire), N, "end_time_unix_nano")?,
            9 => at(
                push_attribute(r, wire, &mut self.attributes, d),
                N,
                "attributes",
            )?,
            10 => at(r.uint32(wire).map(drop), N, "dropped_attributes_count")?,
            11 => at(r.check::<Event>(wire, d), N, "events")?,
            12 => at(r.uint32(wire).map(drop), N, "dropped_events_count")?,
            13 => at(r.check::<Link>(wire, d), N, "links")?,
            14 => at(r.uint32(wire).map(drop), N, "dropped_links_count")?,
            15 => {
                let status = self.status.get_or_insert_with(Status::default);
                at(r.message(wire, status, d), N, "status")?;
            }
            _ => r.skip(wire, tag, d)?,
        }
        Ok(())
    }
}

impl<'a> Message<'a> for Status<'a> {
    const NAME: &'static str = "Status";
    fn field(&mut self, r: &mut Reader<'a>, tag: u32, wire: WireType, d: Depth) -> WireResult<()> {
        match tag {
            2 => self.message = at(r.string(wire), Self::NAME, "message")?,
            3 => self.code = at(r.int32(wire), Self::NAME, "code")?,
            _ => r.skip(wire, tag, d)?,
        }
        Ok(())
    }
}

/// Checked, not kept.
#[derive(Default)]
struct Event;

impl<'a> Message<'a> for Event {
    const NAME: &'static str = "Event";
    fn field(&mut self, r: &mut Reader<'a>, tag: u32, wire: WireType, d: Depth) -> WireResult<()> {
        const N: &str = Event::NAME;
        match tag {
            1 => at(r.fixed64(wire).map(drop), N, "time_unix_nano"),
            2 => at(r.string(wire).map(drop), N, "name"),
            3 => at(r.check::<KeyValue>(wire, d), N, "attributes"),
            4 => at(r.uint32(wire).map(drop), N, "dropped_attributes_count"),
            _ => r.skip(wire, tag, d),
        }
    }
}

/// Checked, not kept.
#[derive(Default)]
struct Link;

impl<'a> Message<'a> for Link {
    const NAME: &'static str = "Link";
    fn field(&mut self, r: &mut Reader<'a>, tag: u32, wire: WireType, d: Depth) -> WireResult<()> {
        const N: &str = Link::NAME;
        match tag {
            1 => at(r.bytes(wire).map(drop), N, "trace_id"),
            2 => at(r.bytes(wire).map(drop), N, "span_id"),
            3 => at(r.string(wire).map(drop), N, "trace_state"),
            4 => at(r.check::<KeyValue>(wire, d), N, "attributes"),
            5 => at(r.uint32(wire).map(drop), N, "dropped_attributes_count"),
            6 => at(r.fixed32(wire).map(drop), N, "flags"),
            _ => r.skip(wire, tag, d),
        }
    }
}

// ---- prost structs → views ------------------------------------------------------------------

impl<'a> From<&'a pb::common::v1::any_value::Value> for Value<'a> {
    fn from(value: &'a pb::common::v1::any_value::Value) -> Self {
        use pb::common::v1::any_value::Value as P;
        match value {
            P::StringValue(s) => Value::StringValue(s),
            P::BoolValue(b) => Value::BoolValue(*b),
            P::IntValue(n) => Value::IntValue(*n),
            P::DoubleValue(x) => Value::DoubleValue(*x),
            P::ArrayValue(a) => Value::ArrayValue(ArrayValue {
                values: a.values.iter().map(AnyValue::from).collect(),
            }),
            P::KvlistValue(l) => Value::KvlistValue(KeyValueList {
                values: keys_and_values(&l.values),
            }),
            P::BytesValue(b) => Value::BytesValue(b),
            P::StringValueStrindex(i) => Value::StringValueStrindex(*i),
        }
    }
}

impl<'a> From<&'a pb::common::v1::AnyValue> for AnyValue<'a> {
    fn from(value: &'a pb::common::v1::AnyValue) -> Self {
        AnyValue {
            value: value.value.as_ref().map(Value::from),
        }
    }
}

pub fn keys_and_values(list: &[pb::common::v1::KeyValue]) -> Vec<KeyValue<'_>> {
    list.iter()
        .map(|kv| KeyValue {
            key: &kv.key,
            value: kv.value.as_ref().map(AnyValue::from),
        })
        .collect()
}

fn resource(resource: Option<&pb::resource::v1::Resource>) -> Option<Resource<'_>> {
    resource.map(|r| Resource {
        attributes: keys_and_values(&r.attributes),
    })
}

fn scope(scope: Option<&pb::common::v1::InstrumentationScope>) -> Option<InstrumentationScope<'_>> {
    scope.map(|s| InstrumentationScope { name: &s.name })
}

impl<'a> From<&'a pb::logs::v1::ResourceLogs> for ResourceLogs<'a> {
    fn from(r: &'a pb::logs::v1::ResourceLogs) -> Self {
        ResourceLogs {
            resource: resource(r.resource.as_ref()),
            scope_logs: r
                .scope_logs
                .iter()
                .map(|s| ScopeLogs {
                    scope: scope(s.scope.as_ref()),
                    log_records: s.log_records.iter().map(LogRecord::from).collect(),
                })
                .collect(),
        }
    }
}

impl<'a> From<&'a pb::logs::v1::LogRecord> for LogRecord<'a> {
    fn from(r: &'a pb::logs::v1::LogRecord) -> Self {
        LogRecord {
            time_unix_nano: r.time_unix_nano,
            observed_time_unix_nano: r.observed_time_unix_nano,
            severity_number: r.severity_number,
            severity_text: &r.severity_text,
            body: r.body.as_ref().map(AnyValue::from),
            attributes: keys_and_values(&r.attributes),
            trace_id: &r.trace_id,
            span_id: &r.span_id,
            event_name: &r.event_name,
        }
    }
}

impl<'a> From<&'a pb::metrics::v1::ResourceMetrics> for ResourceMetrics<'a> {
    fn from(r: &'a pb::metrics::v1::ResourceMetrics) -> Self {
        ResourceMetrics {
            resource: resource(r.resource.as_ref()),
            scope_metrics: r
                .scope_metrics
                .iter()
                .map(|s| ScopeMetrics {
                    scope: scope(s.scope.as_ref()),
                    metrics: s.metrics.iter().map(Metric::from).collect(),
                })
                .collect(),
        }
    }
}

impl<'a> From<&'a pb::metrics::v1::Metric> for Metric<'a> {
    fn from(m: &'a pb::metrics::v1::Metric) -> Self {
        use pb::metrics::v1::metric::Data as P;
        let data = m.data.as_ref().map(|data| match data {
            P::Gauge(g) => Data::Gauge(Gauge {
                data_points: g.data_points.iter().map(NumberDataPoint::from).collect(),
            }),
            P::Sum(s) => Data::Sum(Sum {
                data_points: s.data_points.iter().map(NumberDataPoint::from).collect(),
                aggregation_temporality: s.aggregation_temporality,
                is_monotonic: s.is_monotonic,
            }),
            P::Histogram(h) => Data::Histogram(Histogram {
                data_points: h
                    .data_points
                    .iter()
                    .map(|p| HistogramDataPoint {
                        attributes: keys_and_values(&p.attributes),
                        start_time_unix_nano: p.start_time_unix_nano,
                        time_unix_nano: p.time_unix_nano,
                        count: p.count,
                        sum: p.sum,
                        min: p.min,
                        max: p.max,
                    })
                    .collect(),
                aggregation_temporality: h.aggregation_temporality,
            }),
            P::ExponentialHistogram(h) => Data::ExponentialHistogram(ExponentialHistogram {
                data_points: h
                    .data_points
                    .iter()
                    .map(|p| {
                        ExponentialHistogramDataPoint(HistogramDataPoint {
                            attributes: keys_and_values(&p.attributes),
                            start_time_unix_nano: p.start_time_unix_nano,
                            time_unix_nano: p.time_unix_nano,
                            count: p.count,
                            sum: p.sum,
                            min: p.min,
                            max: p.max,
                        })
                    })
                    .collect(),
                aggregation_temporality: h.aggregation_temporality,
            }),
            P::Summary(s) => Data::Summary(Summary {
                data_points: s
                    .data_points
                    .iter()
                    .map(|p| SummaryDataPoint {
                        attributes: keys_and_values(&p.attributes),
                        start_time_unix_nano: p.start_time_unix_nano,
                        time_unix_nano: p.time_unix_nano,
                        count: p.count,
                        sum: p.sum,
                    })
                    .collect(),
            }),
        });
        Metric {
            name: &m.name,
            unit: &m.unit,
            data,
        }
    }
}

impl<'a> From<&'a pb::metrics::v1::NumberDataPoint> for NumberDataPoint<'a> {
    fn from(p: &'a pb::metrics::v1::NumberDataPoint) -> Self {
        use pb::metrics::v1::number_data_point::Value as P;
        NumberDataPoint {
            attributes: keys_and_values(&p.attributes),
            start_time_unix_nano: p.start_time_unix_nano,
            time_unix_nano: p.time_unix_nano,
            value: p.value.map(|v| match v {
                P::AsDouble(x) => NumberValue::AsDouble(x),
                P::AsInt(n) => NumberValue::AsInt(n),
            }),
        }
    }
}

impl<'a> From<&'a pb::trace::v1::ResourceSpans> for ResourceSpans<'a> {
    fn from(r: &'a pb::trace::v1::ResourceSpans) -> Self {
        ResourceSpans {
            resource: resource(r.resource.as_ref()),
            scope_spans: r
                .scope_spans
                .iter()
                .map(|s| ScopeSpans {
                    scope: scope(s.scope.as_ref()),
                    spans: s.spans.iter().map(Span::from).collect(),
                })
                .collect(),
        }
    }
}

impl<'a> From<&'a pb::trace::v1::Span> for Span<'a> {
    fn from(s: &'a pb::trace::v1::Span) -> Self {
        Span {
            trace_id: &s.trace_id,
            span_id: &s.span_id,
            parent_span_id: &s.parent_span_id,
            name: &s.name,
            kind: s.kind,
            start_time_unix_nano: s.start_time_unix_nano,
            end_time_unix_nano: s.end_time_unix_nano,
            attributes: keys_and_values(&s.attributes),
            status: s.status.as_ref().map(|st| Status {
                message: &st.message,
                code: st.code,
            }),
        }
    }
}
