//! One export request → the raw and canonical tables, in one pass over its records.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::RecordBatch;
use bumpalo::Bump;
use burnrate_pricing::{Call, CostSource, PriceTable, TokenUsage, split_cache_writes};
use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

use crate::attributes::{self, AttributeIndex, RowErrors, Scope, Slots, find};
use crate::columns::{ContentFilter, RenderedAttributes, event_time, hex};
use crate::config::{Attr, CallSource, MappingConfig};
use crate::json;
use crate::payload::{
    Encoding, Export, PayloadHint, decode_export_sized, decode_json, inflate, sniff_json_signal,
    sniff_proto_signal,
};
use crate::raw::{self, Context, MetricDescription, PointValues, span_duration_ms};
use crate::room::RunRoom;
use crate::schema::Table;
use crate::usage::{
    ApiRequest, ApiRequests, ToolCall, ToolCalls, UsageMetrics, UsagePoint, Who, text,
};
use crate::view::{
    Data, KeyValue, LogRecord, LogsRequest, Metric, MetricsRequest, NumberDataPoint, NumberValue,
    Request, Resource, Span, TracesRequest, Value,
};
use crate::{DecodeError, SeriesIds};

/// What one export produced: a batch per non-empty table, and what went wrong row by row.
#[derive(Debug, Default, PartialEq)]
pub struct Decoded {
    pub batches: Vec<(Table, RecordBatch)>,
    pub stats: DecodeStats,
    /// Size of the export once inflated (a gzip body's decoded size): what it weighs in memory,
    /// which its compressed size says nothing about.
    pub plain_bytes: usize,
}

impl Decoded {
    pub fn batch(&self, table: Table) -> Option<&RecordBatch> {
        self.batches
            .iter()
            .find(|(t, _)| *t == table)
            .map(|(_, batch)| batch)
    }

    pub fn rows(&self, table: Table) -> usize {
        self.batch(table).map_or(0, RecordBatch::num_rows)
    }

    /// Books every row to `team`, whatever team its attributes named: the receiver does this
    /// for a client whose token is bound to a team. Returns how many rows named another team
    /// (or none).
    pub fn book_to_team(&mut self, team: &str) -> Result<u64, arrow::error::ArrowError> {
        let mut overridden = 0u64;
        for (_, batch) in &mut self.batches {
            let Ok(index) = batch.schema().index_of("team") else {
                continue;
            };
            let column = batch.column(index);
            let Some(current) = column.as_any().downcast_ref::<arrow::array::StringArray>() else {
                continue;
            };
            overridden += current.iter().filter(|t| *t != Some(team)).count() as u64;
            let mut columns = batch.columns().to_vec();
            columns[index] = Arc::new(arrow::array::StringArray::from(vec![
                team;
                batch.num_rows()
            ]));
            *batch = RecordBatch::try_new(batch.schema(), columns)?;
        }
        Ok(overridden)
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct DecodeStats {
    /// Rows written with at least one unparsable value (see each row's `parse_error`).
    pub rows_with_errors: u64,
    /// Model calls the price table could not price, by model id: their `cost_usd` is the
    /// reported cost (or NULL where there is none).
    pub unpriced_models: BTreeMap<String, u64>,
}

impl DecodeStats {
    pub fn merge(&mut self, other: &DecodeStats) {
        self.rows_with_errors += other.rows_with_errors;
        for (model, n) in &other.unpriced_models {
            *self.unpriced_models.entry(model.clone()).or_default() += n;
        }
    }
}

/// The tables' builders that exports are decoded onto, one set for as many exports as the
/// caller likes (each export's rows stay as they would be alone: tool decisions are matched
/// within their export).
#[derive(Default)]
pub struct TableBuilders {
    log_records: Option<raw::LogRecords>,
    metric_points: Option<raw::MetricPoints>,
    spans: Option<raw::Spans>,
    resources: Option<raw::Resources>,
    api_requests: Option<ApiRequests>,
    tool_calls: Option<ToolCalls>,
    usage_metrics: Option<UsageMetrics>,
    /// What each table's builders start with.
    room: RunRoom,
    stats: DecodeStats,
    plain_bytes: usize,
}

impl TableBuilders {
    /// Builders that start with `room` ([`RunRoom::for_run`]): a run's exports decoded onto
    /// them take about as much as the run the room was learnt from.
    pub fn with_room(room: RunRoom) -> Self {
        TableBuilders {
            room,
            ..TableBuilders::default()
        }
    }

    /// Whether no export was decoded onto these builders.
    pub fn is_empty(&self) -> bool {
        self.log_records.is_none() && self.metric_points.is_none() && self.spans.is_none()
    }

    /// What went wrong row by row in the exports decoded so far: read between two exports, the
    /// difference is the second one's.
    pub fn stats(&self) -> &DecodeStats {
        &self.stats
    }

    /// One batch per table: the raw table of every signal seen (even with no rows, as a
    /// single export gives), and the canonical tables that have rows.
    pub fn finish(self) -> Result<Decoded, arrow::error::ArrowError> {
        let mut batches = Vec::new();
        if let Some(b) = self.log_records {
            batches.push((Table::LogRecords, b.finish()?));
        }
        if let Some(b) = self.metric_points {
            batches.push((Table::MetricPoints, b.finish()?));
        }
        if let Some(b) = self.spans {
            batches.push((Table::Spans, b.finish()?));
        }
        if let Some(b) = self.resources.filter(|b| !b.is_empty()) {
            batches.push((Table::Resources, b.finish()?));
        }
        if let Some(b) = self.api_requests.filter(|b| !b.is_empty()) {
            batches.push((Table::ApiRequests, b.finish()?));
        }
        if let Some(b) = self.tool_calls.filter(|b| !b.is_empty()) {
            batches.push((Table::ToolCalls, b.finish()?));
        }
        if let Some(b) = self.usage_metrics.filter(|b| !b.is_empty()) {
            batches.push((Table::UsageMetrics, b.finish()?));
        }
        Ok(Decoded {
            batches,
            stats: self.stats,
            plain_bytes: self.plain_bytes,
        })
    }
}

/// Decodes OTLP exports with one mapping configuration and one price table.
#[derive(Debug, Clone)]
pub struct Decoder {
    config: Arc<MappingConfig>,
    prices: Arc<PriceTable>,
    content: ContentFilter,
    index: Arc<AttributeIndex>,
}

impl Decoder {
    pub fn new(config: MappingConfig, prices: PriceTable) -> Self {
        let content = ContentFilter::new(config.content, &config.content_attributes);
        let index = Arc::new(AttributeIndex::new(&config.attributes));
        Decoder {
            index,
            config: Arc::new(config),
            prices: Arc::new(prices),
            content,
        }
    }

    pub fn config(&self) -> &MappingConfig {
        &self.config
    }

    pub fn prices(&self) -> &PriceTable {
        &self.prices
    }

    pub fn decode(&self, bytes: &[u8], hint: PayloadHint) -> Result<Decoded, DecodeError> {
        let mut out = TableBuilders::default();
        self.decode_into(bytes, hint, &mut out)?;
        Ok(out.finish()?)
    }

    /// Decodes one export onto `out`'s builders, so many small exports make one batch per
    /// table. An export that cannot be read adds nothing: it is read whole before any row is
    /// appended, and appending cannot fail.
    ///
    /// Protobuf is read in place by the direct decoder ([`crate::view`]); OTLP/JSON too, in the
    /// shape exporters send ([`crate::json`]), and through prost structs otherwise.
    pub fn decode_into(
        &self,
        bytes: &[u8],
        hint: PayloadHint,
        out: &mut TableBuilders,
    ) -> Result<(), DecodeError> {
        let plain = inflate(bytes, hint)?;
        match hint.encoding.unwrap_or_else(|| Encoding::sniff(&plain)) {
            Encoding::Proto => {
                let signal = match hint.signal {
                    Some(signal) => signal,
                    None => sniff_proto_signal(&plain)?,
                };
                let request =
                    Request::decode(&plain, signal).map_err(|e| DecodeError::Protobuf {
                        signal,
                        message: e.to_string(),
                    })?;
                self.request_into(&request, out);
            }
            Encoding::Json => {
                let arena = Bump::new();
                match json::read(&plain, hint.signal, &arena) {
                    Some(request) => self.request_into(&request, out),
                    None => {
                        let signal = match hint.signal {
                            Some(signal) => signal,
                            None => sniff_json_signal(&plain)?,
                        };
                        let export = decode_json(&plain, Some(signal))?;
                        self.request_into(&Request::from_export(&export), out);
                    }
                }
            }
        }
        out.plain_bytes += plain.len();
        Ok(())
    }

    /// [`Decoder::decode`] through prost structs: the reference the direct decoder is held to
    /// (`tests/direct_decoder.rs`, the fuzz targets) and the decode bench's `via_prost_to_arrow`.
    pub fn decode_with_prost(
        &self,
        bytes: &[u8],
        hint: PayloadHint,
    ) -> Result<Decoded, DecodeError> {
        let (export, plain_bytes) = decode_export_sized(bytes, hint)?;
        let mut out = TableBuilders::default();
        self.request_into(&Request::from_export(&export), &mut out);
        out.plain_bytes = plain_bytes;
        Ok(out.finish()?)
    }

    pub fn decode_export(&self, export: &Export) -> Result<Decoded, DecodeError> {
        let mut out = TableBuilders::default();
        self.request_into(&Request::from_export(export), &mut out);
        Ok(out.finish()?)
    }

    fn request_into(&self, request: &Request<'_>, out: &mut TableBuilders) {
        match request {
            Request::Logs(request) => self.logs(request, out),
            Request::Metrics(request) => self.metrics(request, out),
            Request::Traces(request) => self.traces(request, out),
        }
    }

    fn logs(&self, request: &LogsRequest<'_>, out: &mut TableBuilders) {
        let cfg = &*self.config;
        let raw = out.room.rows(&mut out.log_records);
        let resources = out.room.rows(&mut out.resources);
        let stats = &mut out.stats;
        // tool_decision events by tool_use_id, so a tool_result of the same export gets its
        // decision; rejected tools have no result and become rows of their own.
        let mut decisions: HashMap<&str, ToolOutcome<'_>> = HashMap::new();
        let mut pending_rejections: Vec<ToolCall<'_>> = Vec::new();
        let mut results: Vec<ToolCall<'_>> = Vec::new();

        for resource_logs in &request.resource_logs {
            let resource = resource_attrs(resource_logs.resource.as_ref());
            let resource_slots = self.index.slots(resource);
            let rendered_resource = RenderedAttributes::new(resource, &self.content);
            for scope_logs in &resource_logs.scope_logs {
                let scope_name = scope_logs.scope.as_ref().map(|s| s.name);
                for record in &scope_logs.log_records {
                    let scope =
                        Scope::new(&self.index, &record.attributes, resource, &resource_slots);
                    let mut errors = RowErrors::default();
                    let time = self.log_time(record, &scope, &mut errors);
                    let observed = event_time(record.observed_time_unix_nano).ok().flatten();
                    let event = self.event_name(record, &scope);
                    let ctx = Context {
                        resource: &rendered_resource,
                        scope_name,
                        service_name: scope.str(Attr::ServiceName),
                        session_id: scope.str(Attr::SessionId),
                    };
                    raw.push(&ctx, record, time, observed, event, &self.content);
                    resources.note(&rendered_resource, time);

                    let Some(event) = event else { continue };
                    let is = |list: &[String]| list.iter().any(|n| n == event);
                    if cfg.call_source == CallSource::Events && is(&cfg.events.api_request) {
                        let row = self.api_request_event(&scope, record, time, errors, true);
                        self.count(&row, stats);
                        out.room.rows(&mut out.api_requests).push(&row);
                    } else if cfg.call_source == CallSource::Events && is(&cfg.events.api_error) {
                        let row = self.api_request_event(&scope, record, time, errors, false);
                        self.count(&row, stats);
                        out.room.rows(&mut out.api_requests).push(&row);
                    } else if cfg.call_source == CallSource::Events && is(&cfg.events.tool_result) {
                        results.push(self.tool_result_event(&scope, record, time, errors));
                    } else if is(&cfg.events.tool_decision) {
                        let decision = text(&scope, Attr::Decision);
                        let source = text(&scope, Attr::DecisionSource);
                        let rejected = decision.as_deref().is_some_and(is_rejection);
                        if let Some(id) = scope.str(Attr::ToolUseId) {
                            let outcome = ToolOutcome {
                                success: None,
                                decision: decision.clone(),
                                decision_source: source.clone(),
                            };
                            decisions.insert(id, outcome);
                        }
                        if rejected && cfg.call_source == CallSource::Events {
                            let mut row = self.tool_row(&scope, record, time, errors);
                            row.decision = decision;
                            row.decision_source = source;
                            pending_rejections.push(row);
                        }
                    }
                }
            }
        }
        for mut row in results {
            if let Some(outcome) = row.tool_use_id.as_deref().and_then(|id| decisions.get(id)) {
                row.decision = outcome.decision.clone();
                row.decision_source = outcome.decision_source.clone();
            }
            stats.rows_with_errors += u64::from(row.errors.count > 0);
            out.room.rows(&mut out.tool_calls).push(&row);
        }
        for row in pending_rejections {
            stats.rows_with_errors += u64::from(row.errors.count > 0);
            out.room.rows(&mut out.tool_calls).push(&row);
        }
    }

    /// Record time, else observed time, else the `event.timestamp` attribute.
    fn log_time(
        &self,
        record: &LogRecord<'_>,
        scope: &Scope<'_>,
        errors: &mut RowErrors,
    ) -> Option<i64> {
        let mut problems = Vec::new();
        for nanos in [record.time_unix_nano, record.observed_time_unix_nano] {
            match event_time(nanos) {
                Ok(Some(t)) => return Some(t),
                Ok(None) => {}
                Err(e) => problems.push(e),
            }
        }
        if let Some(iso) = scope.str(Attr::EventTimestamp) {
            match parse_rfc3339_nanos(iso).and_then(|n| event_time(n).ok().flatten()) {
                Some(t) => return Some(t),
                None => problems.push(format!("event.timestamp {iso:?} is not a valid time")),
            }
        }
        errors.push(match problems.first() {
            Some(first) => format!("time: {first}"),
            None => "time: record has no timestamp".to_string(),
        });
        None
    }

    /// `event.name` attribute, else the body, without the configured prefix.
    fn event_name<'a>(&self, record: &'a LogRecord<'a>, scope: &Scope<'a>) -> Option<&'a str> {
        let from_body = || match record.body.as_ref().and_then(|b| b.value.as_ref()) {
            Some(Value::StringValue(s)) => Some(*s),
            _ => None,
        };
        let name = scope
            .get_record(Attr::EventName)
            .and_then(|(_, v)| match v {
                Value::StringValue(s) => Some(*s),
                _ => None,
            })
            .or((!record.event_name.is_empty()).then_some(record.event_name))
            .or_else(from_body)?;
        Some(
            name.strip_prefix(self.config.events.prefix.as_str())
                .unwrap_or(name),
        )
    }

    fn api_request_event<'a>(
        &self,
        scope: &Scope<'a>,
        record: &'a LogRecord<'a>,
        time: Option<i64>,
        mut errors: RowErrors,
        success: bool,
    ) -> ApiRequest<'a> {
        let mut row = ApiRequest {
            time,
            who: Who::read(scope),
            model: text(scope, Attr::Model),
            duration_ms: errors.read(scope.get(Attr::DurationMs), attributes::non_negative),
            success,
            error: text(scope, Attr::Error),
            status_code: errors
                .read(scope.get(Attr::StatusCode), attributes::integer)
                .and_then(|c| i32::try_from(c).ok()),
            attempt: errors
                .read(scope.get(Attr::Attempt), attributes::integer)
                .and_then(|c| i32::try_from(c).ok()),
            prompt_id: text(scope, Attr::PromptId),
            request_id: text(scope, Attr::RequestId),
            query_source: text(scope, Attr::QuerySource),
            speed: text(scope, Attr::Speed),
            effort: text(scope, Attr::Effort),
            ttft_ms: errors.read(scope.get(Attr::TtftMs), attributes::non_negative),
            trace_id: hex(record.trace_id),
            span_id: hex(record.span_id),
            source: "claude_code.event",
            ..ApiRequest::default()
        };
        if success {
            row.cost_usd_reported = errors.read(scope.get(Attr::CostUsd), attributes::call_cost);
            self.read_tokens(scope, &mut row, &mut errors);
        } else {
            // A failed call is not billed: no tokens, so the table's price is $0 whatever the
            // model.
            for tokens in [
                &mut row.input_tokens,
                &mut row.output_tokens,
                &mut row.cache_read_tokens,
                &mut row.cache_creation_tokens,
            ] {
                *tokens = Some(0);
            }
            row.cost_usd = Some(0.0);
            row.cost_source = Some(CostSource::PriceTable);
        }
        row.errors = errors;
        row
    }

    /// Reads the token counts and prices the call (see [`PriceTable::price_call`]). An
    /// unreadable count leaves no table price: the reported cost, if any, stands in.
    fn read_tokens<'a>(&self, scope: &Scope<'a>, row: &mut ApiRequest<'a>, errors: &mut RowErrors) {
        let before = errors.count;
        row.input_tokens = errors.read(scope.get(Attr::InputTokens), attributes::tokens);
        row.output_tokens = errors.read(scope.get(Attr::OutputTokens), attributes::tokens);
        row.cache_read_tokens = errors.read(scope.get(Attr::CacheReadTokens), attributes::tokens);
        row.cache_creation_tokens =
            errors.read(scope.get(Attr::CacheCreationTokens), attributes::tokens);
        row.cache_creation_5m_tokens =
            errors.read(scope.get(Attr::CacheCreation5mTokens), attributes::tokens);
        row.cache_creation_1h_tokens =
            errors.read(scope.get(Attr::CacheCreation1hTokens), attributes::tokens);
        let tokens_ok = errors.count == before;
        let known = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok());
        let (write_5m, write_1h) = split_cache_writes(
            known(row.cache_creation_tokens),
            known(row.cache_creation_5m_tokens),
            known(row.cache_creation_1h_tokens),
        );
        let usage = TokenUsage {
            input: as_u64(row.input_tokens),
            output: as_u64(row.output_tokens),
            cache_read: as_u64(row.cache_read_tokens),
            cache_write_5m: write_5m,
            cache_write_1h: write_1h,
        };
        let cost = self.prices.price_call(&Call {
            model: row.model.as_deref().filter(|_| tokens_ok),
            usage,
            speed: row.speed.as_deref(),
            reported_usd: row.cost_usd_reported,
        });
        row.cost_usd = cost.cost_usd;
        row.cost_source = Some(cost.source);
        row.cost_mismatch = cost.mismatch;
    }

    fn count(&self, row: &ApiRequest<'_>, stats: &mut DecodeStats) {
        stats.rows_with_errors += u64::from(row.errors.count > 0);
        if row.cost_source != Some(CostSource::PriceTable) && row.errors.count == 0 {
            let model = row.model.as_deref().unwrap_or("<no model>").to_string();
            *stats.unpriced_models.entry(model).or_default() += 1;
        }
    }

    fn tool_row<'a>(
        &self,
        scope: &Scope<'a>,
        record: &'a LogRecord<'a>,
        time: Option<i64>,
        errors: RowErrors,
    ) -> ToolCall<'a> {
        ToolCall {
            time,
            who: Who::read(scope),
            prompt_id: text(scope, Attr::PromptId),
            tool_name: text(scope, Attr::ToolName),
            tool_use_id: text(scope, Attr::ToolUseId),
            trace_id: hex(record.trace_id),
            span_id: hex(record.span_id),
            source: "claude_code.event",
            errors,
            ..ToolCall::default()
        }
    }

    fn tool_result_event<'a>(
        &self,
        scope: &Scope<'a>,
        record: &'a LogRecord<'a>,
        time: Option<i64>,
        mut errors: RowErrors,
    ) -> ToolCall<'a> {
        let success = errors.read(scope.get(Attr::Success), attributes::boolean);
        let duration_ms = errors.read(scope.get(Attr::DurationMs), attributes::non_negative);
        let mut row = self.tool_row(scope, record, time, errors);
        row.success = success;
        row.duration_ms = duration_ms;
        row
    }

    fn metrics(&self, request: &MetricsRequest<'_>, out: &mut TableBuilders) {
        let raw = out.room.rows(&mut out.metric_points);
        let resources = out.room.rows(&mut out.resources);
        let stats = &mut out.stats;
        for resource_metrics in &request.resource_metrics {
            let resource = resource_attrs(resource_metrics.resource.as_ref());
            let resource_slots = self.index.slots(resource);
            let rendered_resource = RenderedAttributes::new(resource, &self.content);
            let mut series_ids = SeriesIds::new(resource);
            for scope_metrics in &resource_metrics.scope_metrics {
                let scope_name = scope_metrics.scope.as_ref().map(|s| s.name);
                for metric in &scope_metrics.metrics {
                    let is_usage = self
                        .config
                        .usage_metric_prefixes
                        .iter()
                        .any(|p| metric.name.starts_with(p.as_str()));
                    for point in flatten_points(metric) {
                        let scope =
                            Scope::new(&self.index, point.attributes, resource, &resource_slots);
                        let mut errors = RowErrors::default();
                        let time = event_time(point.time).unwrap_or_else(|e| {
                            errors.push(format!("time: {e}"));
                            None
                        });
                        if time.is_none() && errors.count == 0 {
                            errors.push("time: data point has no timestamp".into());
                        }
                        let start_time = event_time(point.start_time).ok().flatten();
                        let series = series_ids.id(metric.name, point.attributes);
                        let ctx = Context {
                            resource: &rendered_resource,
                            scope_name,
                            service_name: scope.str(Attr::ServiceName),
                            session_id: scope.str(Attr::SessionId),
                        };
                        raw.push(
                            &ctx,
                            &point.description,
                            time,
                            start_time,
                            &point.values,
                            series,
                            point.attributes,
                            &self.content,
                        );
                        resources.note(&rendered_resource, time);
                        // Only sums are usage: counters of cost, tokens, sessions, lines, ...
                        if !is_usage || point.description.kind != "sum" {
                            continue;
                        }
                        if point.values.value.is_none_or(|v| !v.is_finite()) {
                            errors.push("value: not a finite number".into());
                        }
                        let row = UsagePoint {
                            time,
                            start_time,
                            who: Who::read(&scope),
                            metric: metric.name,
                            kind: text(&scope, Attr::MetricType),
                            model: text(&scope, Attr::Model),
                            query_source: text(&scope, Attr::QuerySource),
                            effort: text(&scope, Attr::Effort),
                            unit: metric.unit,
                            value: point.values.value.filter(|v| v.is_finite()),
                            temporality: point.description.temporality.unwrap_or("unspecified"),
                            series_id: series,
                            attributes: point.attributes,
                            errors,
                        };
                        stats.rows_with_errors += u64::from(row.errors.count > 0);
                        out.room
                            .rows(&mut out.usage_metrics)
                            .push(&row, &self.content);
                    }
                }
            }
        }
    }

    fn traces(&self, request: &TracesRequest<'_>, out: &mut TableBuilders) {
        let cfg = &*self.config;
        let spans_cfg = &cfg.spans;
        let raw = out.room.rows(&mut out.spans);
        let resources = out.room.rows(&mut out.resources);
        let stats = &mut out.stats;

        // Children of Claude Code tool spans carry their success and decision.
        let mut tool_children: HashMap<&[u8], ToolOutcome<'_>> = HashMap::new();
        if cfg.call_source == CallSource::Spans {
            for span in all_spans(request) {
                let attrs = Scope::new(&self.index, &span.attributes, &[], &Slots::default());
                let entry = tool_children.entry(span.parent_span_id).or_default();
                if listed(&spans_cfg.tool_execution, span.name) {
                    entry.success = attrs
                        .get(Attr::Success)
                        .and_then(|(_, v)| attributes::boolean(v).ok());
                } else if listed(&spans_cfg.tool_blocked_on_user, span.name) {
                    entry.decision = text(&attrs, Attr::Decision);
                    entry.decision_source = text(&attrs, Attr::DecisionSource);
                }
            }
        }

        for resource_spans in &request.resource_spans {
            let resource = resource_attrs(resource_spans.resource.as_ref());
            let resource_slots = self.index.slots(resource);
            let rendered_resource = RenderedAttributes::new(resource, &self.content);
            for scope_spans in &resource_spans.scope_spans {
                let scope_name = scope_spans.scope.as_ref().map(|s| s.name);
                for span in &scope_spans.spans {
                    let scope =
                        Scope::new(&self.index, &span.attributes, resource, &resource_slots);
                    let mut errors = RowErrors::default();
                    let start = event_time(span.start_time_unix_nano).unwrap_or_else(|e| {
                        errors.push(format!("start_time: {e}"));
                        None
                    });
                    let end = event_time(span.end_time_unix_nano).unwrap_or_else(|e| {
                        errors.push(format!("end_time: {e}"));
                        None
                    });
                    if start.is_none() && errors.count == 0 {
                        errors.push("start_time: span has no start time".into());
                    }
                    let ctx = Context {
                        resource: &rendered_resource,
                        scope_name,
                        service_name: scope.str(Attr::ServiceName),
                        session_id: scope.str(Attr::SessionId),
                    };
                    raw.push(&ctx, span, start, end, &self.content);
                    resources.note(&rendered_resource, start);

                    let operation =
                        find(&span.attributes, "gen_ai.operation.name").and_then(|v| match v {
                            Value::StringValue(s) => Some(*s),
                            _ => None,
                        });
                    let is_claude_code = listed(&spans_cfg.llm_request, span.name)
                        || listed(&spans_cfg.tool, span.name);
                    let by_spans = cfg.call_source == CallSource::Spans;
                    if listed(&spans_cfg.llm_request, span.name) {
                        if by_spans {
                            let row = self.api_request_span(
                                &scope,
                                span,
                                start,
                                end,
                                errors,
                                "claude_code.span",
                            );
                            self.count(&row, stats);
                            out.room.rows(&mut out.api_requests).push(&row);
                        }
                    } else if listed(&spans_cfg.tool, span.name) {
                        if by_spans {
                            let outcome =
                                tool_children.get(span.span_id).cloned().unwrap_or_default();
                            let mut row = self.tool_span(
                                &scope,
                                span,
                                start,
                                end,
                                errors,
                                "claude_code.span",
                            );
                            row.success = outcome.success.or(row.success);
                            row.decision = outcome.decision;
                            row.decision_source = outcome.decision_source;
                            stats.rows_with_errors += u64::from(row.errors.count > 0);
                            out.room.rows(&mut out.tool_calls).push(&row);
                        }
                    } else if listed(&spans_cfg.claude_task, span.name) {
                        let row =
                            self.api_request_span(&scope, span, start, end, errors, "claude.span");
                        self.count(&row, stats);
                        out.room.rows(&mut out.api_requests).push(&row);
                    } else if !is_claude_code
                        && operation.is_some_and(|op| {
                            spans_cfg.gen_ai_tool_operations.iter().any(|o| o == op)
                        })
                    {
                        let row = self.tool_span(&scope, span, start, end, errors, "gen_ai.span");
                        stats.rows_with_errors += u64::from(row.errors.count > 0);
                        out.room.rows(&mut out.tool_calls).push(&row);
                    } else if operation
                        .is_some_and(|op| spans_cfg.gen_ai_call_operations.iter().any(|o| o == op))
                        || has_gen_ai_usage(span)
                    {
                        let row =
                            self.api_request_span(&scope, span, start, end, errors, "gen_ai.span");
                        self.count(&row, stats);
                        out.room.rows(&mut out.api_requests).push(&row);
                    }
                }
            }
        }
    }

    fn api_request_span<'a>(
        &self,
        scope: &Scope<'a>,
        span: &'a Span<'a>,
        start: Option<i64>,
        end: Option<i64>,
        mut errors: RowErrors,
        source: &'static str,
    ) -> ApiRequest<'a> {
        let status_error = span
            .status
            .as_ref()
            .is_some_and(|s| s.code == StatusCode::Error as i32);
        let success = errors
            .read(scope.get_record(Attr::Success), attributes::boolean)
            .unwrap_or(!status_error);
        let duration_ms = errors
            .read(scope.get_record(Attr::DurationMs), attributes::non_negative)
            .or_else(|| span_duration_ms(start, end));
        let mut row = ApiRequest {
            time: start,
            who: Who::read(scope),
            model: text(scope, Attr::Model),
            duration_ms,
            success,
            error: text(scope, Attr::Error).or_else(|| {
                let message = span.status.as_ref().map(|s| s.message)?;
                (status_error && !message.is_empty()).then_some(Cow::Borrowed(message))
            }),
            status_code: errors
                .read(scope.get_record(Attr::StatusCode), attributes::integer)
                .and_then(|c| i32::try_from(c).ok()),
            attempt: errors
                .read(scope.get_record(Attr::Attempt), attributes::integer)
                .and_then(|c| i32::try_from(c).ok()),
            prompt_id: text(scope, Attr::PromptId),
            request_id: text(scope, Attr::RequestId),
            query_source: text(scope, Attr::QuerySource),
            speed: text(scope, Attr::Speed),
            effort: text(scope, Attr::Effort),
            ttft_ms: errors.read(scope.get_record(Attr::TtftMs), attributes::non_negative),
            trace_id: hex(span.trace_id),
            span_id: hex(span.span_id),
            source,
            ..ApiRequest::default()
        };
        row.cost_usd_reported = errors.read(scope.get_record(Attr::CostUsd), attributes::call_cost);
        self.read_tokens(scope, &mut row, &mut errors);
        row.errors = errors;
        row
    }

    fn tool_span<'a>(
        &self,
        scope: &Scope<'a>,
        span: &'a Span<'a>,
        start: Option<i64>,
        end: Option<i64>,
        mut errors: RowErrors,
        source: &'static str,
    ) -> ToolCall<'a> {
        let status_error = span
            .status
            .as_ref()
            .is_some_and(|s| s.code == StatusCode::Error as i32);
        let success = errors
            .read(scope.get_record(Attr::Success), attributes::boolean)
            .or(Some(!status_error));
        let duration_ms = errors
            .read(scope.get_record(Attr::DurationMs), attributes::non_negative)
            .or_else(|| span_duration_ms(start, end));
        ToolCall {
            time: start,
            who: Who::read(scope),
            prompt_id: text(scope, Attr::PromptId),
            tool_name: text(scope, Attr::ToolName),
            tool_use_id: text(scope, Attr::ToolUseId),
            success,
            duration_ms,
            trace_id: hex(span.trace_id),
            span_id: hex(span.span_id),
            source,
            errors,
            ..ToolCall::default()
        }
    }
}

/// What is known of a tool call besides its own record: the permission decision (from a
/// `tool_decision` event or a `blocked_on_user` span) and, for spans, the execution's success.
#[derive(Debug, Default, Clone)]
struct ToolOutcome<'a> {
    success: Option<bool>,
    decision: Option<Cow<'a, str>>,
    decision_source: Option<Cow<'a, str>>,
}

/// Whether `name` is one of the configured names.
fn listed(list: &[String], name: &str) -> bool {
    list.iter().any(|n| n == name)
}

fn is_rejection(decision: &str) -> bool {
    matches!(decision, "reject" | "rejected" | "deny" | "denied")
}

fn as_u64(n: Option<i64>) -> u64 {
    n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

fn has_gen_ai_usage(span: &Span<'_>) -> bool {
    span.attributes
        .iter()
        .any(|kv| kv.key.starts_with("gen_ai.usage."))
}

fn resource_attrs<'a>(resource: Option<&'a Resource<'a>>) -> &'a [KeyValue<'a>] {
    resource.map_or(&[], |r| r.attributes.as_slice())
}

fn all_spans<'a>(request: &'a TracesRequest<'a>) -> impl Iterator<Item = &'a Span<'a>> {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
}

struct FlatPoint<'a> {
    description: MetricDescription<'a>,
    attributes: &'a [KeyValue<'a>],
    time: u64,
    start_time: u64,
    values: PointValues,
}

fn temporality_name(code: i32) -> Option<&'static str> {
    match AggregationTemporality::try_from(code) {
        Ok(AggregationTemporality::Delta) => Some("delta"),
        Ok(AggregationTemporality::Cumulative) => Some("cumulative"),
        _ => None,
    }
}

fn number_value(point: &NumberDataPoint<'_>) -> Option<f64> {
    match point.value? {
        NumberValue::AsDouble(d) => Some(d),
        NumberValue::AsInt(i) => Some(i as f64),
    }
}

/// Every data point of a metric, whatever its kind, with what the raw table keeps of it.
fn flatten_points<'a>(metric: &'a Metric<'a>) -> Vec<FlatPoint<'a>> {
    let describe = |kind, temporality, is_monotonic| MetricDescription {
        name: metric.name,
        unit: metric.unit,
        kind,
        temporality,
        is_monotonic,
    };
    match &metric.data {
        None => Vec::new(),
        Some(Data::Gauge(g)) => number_points(metric, "gauge", None, None, &g.data_points),
        Some(Data::Sum(s)) => number_points(
            metric,
            "sum",
            temporality_name(s.aggregation_temporality),
            Some(s.is_monotonic),
            &s.data_points,
        ),
        Some(Data::Histogram(h)) => h
            .data_points
            .iter()
            .map(|p| FlatPoint {
                description: describe(
                    "histogram",
                    temporality_name(h.aggregation_temporality),
                    None,
                ),
                attributes: &p.attributes,
                time: p.time_unix_nano,
                start_time: p.start_time_unix_nano,
                values: PointValues {
                    value: None,
                    count: Some(p.count),
                    sum: p.sum,
                    min: p.min,
                    max: p.max,
                },
            })
            .collect(),
        Some(Data::ExponentialHistogram(h)) => h
            .data_points
            .iter()
            .map(|p| &p.0)
            .map(|p| FlatPoint {
                description: describe(
                    "exponential_histogram",
                    temporality_name(h.aggregation_temporality),
                    None,
                ),
                attributes: &p.attributes,
                time: p.time_unix_nano,
                start_time: p.start_time_unix_nano,
                values: PointValues {
                    value: None,
                    count: Some(p.count),
                    sum: p.sum,
                    min: p.min,
                    max: p.max,
                },
            })
            .collect(),
        Some(Data::Summary(s)) => s
            .data_points
            .iter()
            .map(|p| FlatPoint {
                description: describe("summary", None, None),
                attributes: &p.attributes,
                time: p.time_unix_nano,
                start_time: p.start_time_unix_nano,
                values: PointValues {
                    value: None,
                    count: Some(p.count),
                    sum: Some(p.sum),
                    min: None,
                    max: None,
                },
            })
            .collect(),
    }
}

fn number_points<'a>(
    metric: &'a Metric<'a>,
    kind: &'static str,
    temporality: Option<&'static str>,
    is_monotonic: Option<bool>,
    points: &'a [NumberDataPoint<'a>],
) -> Vec<FlatPoint<'a>> {
    points
        .iter()
        .map(|p| FlatPoint {
            description: MetricDescription {
                name: metric.name,
                unit: metric.unit,
                kind,
                temporality,
                is_monotonic,
            },
            attributes: &p.attributes,
            time: p.time_unix_nano,
            start_time: p.start_time_unix_nano,
            values: PointValues {
                value: number_value(p),
                ..PointValues::default()
            },
        })
        .collect()
}

/// `2026-11-24T16:09:35.568Z` (or with an offset) → nanoseconds since the epoch.
fn parse_rfc3339_nanos(text: &str) -> Option<u64> {
    let (date, rest) = text.split_once('T')?;
    let mut date_parts = date.split('-');
    let year: i64 = date_parts.next()?.parse().ok()?;
    let month: u32 = date_parts.next()?.parse().ok()?;
    let day: u32 = date_parts.next()?.parse().ok()?;
    let (clock, offset_secs) = if let Some(clock) = rest.strip_suffix('Z') {
        (clock, 0i64)
    } else {
        let pos = rest.rfind(['+', '-'])?;
        let (clock, offset) = rest.split_at(pos);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let (h, m) = offset[1..].split_once(':')?;
        (
            clock,
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60),
        )
    };
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut hms_parts = hms.split(':');
    let hour: i64 = hms_parts.next()?.parse().ok()?;
    let minute: i64 = hms_parts.next()?.parse().ok()?;
    let second: i64 = hms_parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut nanos_frac: i64 = 0;
    for (i, c) in fraction.chars().take(9).enumerate() {
        nanos_frac += i64::from(c.to_digit(10)?) * 10i64.pow(8 - i as u32);
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    u64::try_from(secs.checked_mul(1_000_000_000)?.checked_add(nanos_frac)?).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_claude_codes_event_timestamps() {
        assert_eq!(
            parse_rfc3339_nanos("2026-11-24T16:09:35.568Z"),
            Some(1_795_536_575_568_000_000)
        );
        assert_eq!(
            parse_rfc3339_nanos("2026-11-24T17:09:35.568+01:00"),
            Some(1_795_536_575_568_000_000)
        );
        assert_eq!(parse_rfc3339_nanos("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_nanos("yesterday"), None);
        assert_eq!(parse_rfc3339_nanos("2026-13-01T00:00:00Z"), None);
    }
}
