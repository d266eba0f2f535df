//! One session as a JSON document: every span (with its place in the trace), log event and
//! model call, ordered by time, for `burnrate export-trace` and tools like `jq`.

use std::path::Path;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::json::WriterBuilder;
use datafusion::arrow::json::writer::JsonArray;
use serde_json::{Map, Value, json};

use crate::EngineError;
use crate::query::catalog::open_dataset;

const SPANS: &str = "SELECT name, trace_id, span_id, parent_span_id, start_time, end_time, \
    duration_ms, kind, status_code, status_message, service_name, attributes \
    FROM spans WHERE session_id = {session} ORDER BY start_time, span_id";
const EVENTS: &str = "SELECT time, event_name, severity_text, body, trace_id, span_id, attributes \
    FROM log_records WHERE session_id = {session} ORDER BY time, event_name";
const CALLS: &str = "SELECT time, model, input_tokens, output_tokens, cache_read_tokens, \
    cache_creation_tokens, cost_usd, cost_usd_reported, duration_ms, success, error, status_code, \
    prompt_id, trace_id, span_id, source FROM api_requests WHERE session_id = {session} \
    ORDER BY time";

/// `{"session_id", "spans": [...], "events": [...], "api_requests": [...]}`. Every span has
/// `name`, `trace_id`, `span_id`, `parent_span_id` (null for a root), `start_time`, `end_time`,
/// `duration_ms` and `attributes`. A session with nothing recorded is an error.
pub async fn export_trace(data_dir: &Path, session: &str) -> Result<Value, EngineError> {
    let ctx = open_dataset(data_dir).await?;
    let literal = format!("'{}'", session.replace('\'', "''"));
    let mut document = Map::new();
    document.insert("session_id".into(), json!(session));
    let mut found = 0;
    for (key, sql) in [
        ("spans", SPANS),
        ("events", EVENTS),
        ("api_requests", CALLS),
    ] {
        let batches = ctx
            .sql(&sql.replace("{session}", &literal))
            .await?
            .collect()
            .await?;
        let rows = to_json(&batches)?;
        found += rows.len();
        document.insert(key.into(), Value::Array(rows));
    }
    if found == 0 {
        return Err(EngineError::NotFound(format!(
            "no spans, events or model calls for session {session:?} in {}",
            data_dir.display()
        )));
    }
    Ok(Value::Object(document))
}

/// Rows as JSON objects, nulls kept so every key is always there.
fn to_json(batches: &[RecordBatch]) -> Result<Vec<Value>, EngineError> {
    let mut writer = WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, JsonArray>(Vec::new());
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    match serde_json::from_slice(&bytes) {
        Ok(Value::Array(rows)) => Ok(rows),
        Ok(_) => Ok(Vec::new()),
        Err(e) => Err(EngineError::Schema(format!("trace rows as JSON: {e}"))),
    }
}
