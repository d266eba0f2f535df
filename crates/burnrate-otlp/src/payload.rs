//! Raw OTLP export bytes → prost structs: gzip, encoding and signal detection, size limits.

use std::borrow::Cow;
use std::io::Read;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use crate::DecodeError;

/// The two encodings the Collector's kafka exporter writes (`otlp_proto`, `otlp_json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    #[serde(rename = "otlp_proto")]
    Proto,
    #[serde(rename = "otlp_json")]
    Json,
}

impl Encoding {
    /// JSON exports start with `{` (after white space); protobuf exports never do, because
    /// `{` (0x7b) is field 15 with wire type 3, which no OTLP export request has at the top.
    pub fn sniff(bytes: &[u8]) -> Encoding {
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Encoding::Json,
            _ => Encoding::Proto,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    Logs,
    Metrics,
    Traces,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
            Signal::Traces => "traces",
        }
    }
}

/// One decoded export request.
#[derive(Debug, Clone, PartialEq)]
pub enum Export {
    Logs(ExportLogsServiceRequest),
    Metrics(ExportMetricsServiceRequest),
    Traces(ExportTraceServiceRequest),
}

impl Export {
    pub fn signal(&self) -> Signal {
        match self {
            Export::Logs(_) => Signal::Logs,
            Export::Metrics(_) => Signal::Metrics,
            Export::Traces(_) => Signal::Traces,
        }
    }

    /// Whether it carries no resource at all.
    pub fn is_empty(&self) -> bool {
        match self {
            Export::Logs(r) => r.resource_logs.is_empty(),
            Export::Metrics(r) => r.resource_metrics.is_empty(),
            Export::Traces(r) => r.resource_spans.is_empty(),
        }
    }
}

/// How to read a payload; `None` fields are detected from the bytes.
#[derive(Debug, Clone, Copy)]
pub struct PayloadHint {
    pub encoding: Option<Encoding>,
    pub signal: Option<Signal>,
    /// Upper bound on the (decompressed) export size.
    pub max_bytes: usize,
}

/// 64 MiB: above the Collector's default 10 MiB Kafka message limit with a wide margin,
/// below anything that would hurt a 2-core, few-GiB pod.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 64 << 20;

impl Default for PayloadHint {
    fn default() -> Self {
        PayloadHint {
            encoding: None,
            signal: None,
            max_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
        }
    }
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Decodes one export request, gunzipping it first when it carries the gzip magic.
pub fn decode_export(bytes: &[u8], hint: PayloadHint) -> Result<Export, DecodeError> {
    decode_export_sized(bytes, hint).map(|(export, _)| export)
}

/// [`decode_export`], and the size of the export once inflated.
pub fn decode_export_sized(
    bytes: &[u8],
    hint: PayloadHint,
) -> Result<(Export, usize), DecodeError> {
    let plain = inflate(bytes, hint)?;
    Ok((decode_plain(&plain, hint)?, plain.len()))
}

/// The export's bytes as sent, or inflated when they carry the gzip magic; either way within
/// the size limit.
pub(crate) fn inflate(bytes: &[u8], hint: PayloadHint) -> Result<Cow<'_, [u8]>, DecodeError> {
    if bytes.len() > hint.max_bytes {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            limit: hint.max_bytes,
        });
    }
    if bytes.starts_with(&GZIP_MAGIC) {
        return Ok(Cow::Owned(gunzip(bytes, hint.max_bytes)?));
    }
    Ok(Cow::Borrowed(bytes))
}

fn gunzip(bytes: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4).min(limit));
    // Reading one byte past the limit tells a too-large body from one exactly at it.
    let mut reader = flate2::read::MultiGzDecoder::new(bytes).take(limit as u64 + 1);
    reader
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Gzip(e.to_string()))?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge {
            size: out.len(),
            limit,
        });
    }
    Ok(out)
}

fn decode_plain(bytes: &[u8], hint: PayloadHint) -> Result<Export, DecodeError> {
    let encoding = hint.encoding.unwrap_or_else(|| Encoding::sniff(bytes));
    match encoding {
        Encoding::Proto => {
            let signal = match hint.signal {
                Some(signal) => signal,
                None => sniff_proto_signal(bytes)?,
            };
            decode_proto(bytes, signal)
        }
        Encoding::Json => decode_json(bytes, hint.signal),
    }
}

fn decode_proto(bytes: &[u8], signal: Signal) -> Result<Export, DecodeError> {
    let wrap = |e: prost::DecodeError| DecodeError::Protobuf {
        signal,
        message: e.to_string(),
    };
    Ok(match signal {
        Signal::Logs => Export::Logs(ExportLogsServiceRequest::decode(bytes).map_err(wrap)?),
        Signal::Metrics => {
            Export::Metrics(ExportMetricsServiceRequest::decode(bytes).map_err(wrap)?)
        }
        Signal::Traces => Export::Traces(ExportTraceServiceRequest::decode(bytes).map_err(wrap)?),
    })
}

pub(crate) fn decode_json(bytes: &[u8], signal: Option<Signal>) -> Result<Export, DecodeError> {
    let signal = match signal {
        Some(signal) => signal,
        None => sniff_json_signal(bytes)?,
    };
    let wrap = |e: serde_json::Error| DecodeError::Json {
        signal,
        message: e.to_string(),
    };
    let export = match signal {
        Signal::Logs => Export::Logs(serde_json::from_slice(bytes).map_err(wrap)?),
        Signal::Metrics => Export::Metrics(serde_json::from_slice(bytes).map_err(wrap)?),
        Signal::Traces => Export::Traces(serde_json::from_slice(bytes).map_err(wrap)?),
    };
    // JSON ignores keys it does not know, so metrics sent as logs would read as an empty logs
    // export and be dropped in silence. Protobuf of the wrong signal fails; so does this.
    if export.is_empty()
        && let Ok(other) = sniff_json_signal(bytes)
        && other != signal
    {
        return Err(DecodeError::Json {
            signal,
            message: format!(
                "the body is an OTLP/JSON {} export, not {}",
                other.as_str(),
                signal.as_str()
            ),
        });
    }
    Ok(export)
}

/// The first top-level key names the signal. Only the keys are looked at, values are skipped.
pub(crate) fn sniff_json_signal(bytes: &[u8]) -> Result<Signal, DecodeError> {
    #[derive(serde::Deserialize)]
    struct Keys {
        #[serde(rename = "resourceLogs", alias = "resource_logs", default)]
        logs: Option<serde::de::IgnoredAny>,
        #[serde(rename = "resourceMetrics", alias = "resource_metrics", default)]
        metrics: Option<serde::de::IgnoredAny>,
        #[serde(rename = "resourceSpans", alias = "resource_spans", default)]
        spans: Option<serde::de::IgnoredAny>,
    }
    let keys: Keys = serde_json::from_slice(bytes).map_err(|e| DecodeError::Json {
        signal: Signal::Logs,
        message: e.to_string(),
    })?;
    match (
        keys.logs.is_some(),
        keys.metrics.is_some(),
        keys.spans.is_some(),
    ) {
        (true, false, false) => Ok(Signal::Logs),
        (false, true, false) => Ok(Signal::Metrics),
        (false, false, true) => Ok(Signal::Traces),
        (false, false, false) => Err(DecodeError::UnknownSignal(
            "JSON object has none of resourceLogs, resourceMetrics, resourceSpans".into(),
        )),
        _ => Err(DecodeError::UnknownSignal(
            "JSON object has more than one of resourceLogs, resourceMetrics, resourceSpans".into(),
        )),
    }
}

/// Tells logs, metrics and traces apart without decoding: all three requests nest
/// `field 1 → field 2 → field 2` down to their first record, and the records differ in how they
/// start. A LogRecord's fields 1 and 11 are fixed64 timestamps and 2 a varint; a Span's fields
/// 1 and 2 are 16- and 8-byte ids and 7/8 fixed64; a Metric's field 1 is its name and its data
/// sits in fields 5 to 11 as messages. An export with no records at all decodes as logs: it
/// yields no rows whatever its signal.
pub fn sniff_proto_signal(bytes: &[u8]) -> Result<Signal, DecodeError> {
    let unknown = |why: &str| DecodeError::UnknownSignal(format!("protobuf payload: {why}"));
    for resource in fields(bytes).filter_map(len_field(1)) {
        let resource = resource.map_err(|e| unknown(&e))?;
        for scope in fields(resource).filter_map(len_field(2)) {
            let scope = scope.map_err(|e| unknown(&e))?;
            if let Some(record) = fields(scope).filter_map(len_field(2)).next() {
                let record = record.map_err(|e| unknown(&e))?;
                return classify_record(record)
                    .ok_or_else(|| unknown("its first record is not a valid protobuf message"));
            }
        }
    }
    // Walk once more, strictly, so that garbage is not mistaken for an empty export.
    for field in fields(bytes) {
        field.map_err(|e| unknown(&e))?;
    }
    Ok(Signal::Logs)
}

fn classify_record(record: &[u8]) -> Option<Signal> {
    let mut id_sized = (false, false);
    let mut named = false;
    for field in fields(record) {
        match field.ok()? {
            (1 | 11, Wire::Fixed64) | (2, Wire::Varint) | (8, Wire::Fixed32) => {
                return Some(Signal::Logs);
            }
            (7 | 8, Wire::Fixed64) | (6, Wire::Varint) | (16, Wire::Fixed32) => {
                return Some(Signal::Traces);
            }
            (7, Wire::Len(_)) => return Some(Signal::Metrics),
            (1, Wire::Len(value)) => {
                named = true;
                id_sized.0 = value.len() == 16;
            }
            (2, Wire::Len(value)) => id_sized.1 = value.len() == 8,
            _ => {}
        }
    }
    // No timestamps, severities or sums: a span still has its two ids, a metric its name, and a
    // log record has no field 1 that is length-delimited.
    Some(match (id_sized, named) {
        ((true, true), _) => Signal::Traces,
        (_, true) => Signal::Metrics,
        (_, false) => Signal::Logs,
    })
}

#[derive(Debug, Clone, Copy)]
enum Wire<'a> {
    Varint,
    Fixed64,
    Fixed32,
    Len(&'a [u8]),
}

/// One top-level field of a message, or why the bytes are not one.
type FieldResult<'a> = Result<(u64, Wire<'a>), String>;

/// Length-delimited field `number` of a field stream, as a filter.
fn len_field(number: u64) -> impl Fn(FieldResult<'_>) -> Option<Result<&[u8], String>> {
    move |field| match field {
        Ok((n, Wire::Len(bytes))) if n == number => Some(Ok(bytes)),
        Ok(_) => None,
        Err(e) => Some(Err(e)),
    }
}

/// Iterates the top-level fields of a protobuf message; stops after the first error.
fn fields(bytes: &[u8]) -> impl Iterator<Item = FieldResult<'_>> {
    let mut rest = bytes;
    let mut failed = false;
    std::iter::from_fn(move || {
        if rest.is_empty() || failed {
            return None;
        }
        let next = read_field(rest);
        match next {
            Ok((number, wire, tail)) => {
                rest = tail;
                Some(Ok((number, wire)))
            }
            Err(e) => {
                failed = true;
                Some(Err(e))
            }
        }
    })
}

fn read_field(bytes: &[u8]) -> Result<(u64, Wire<'_>, &[u8]), String> {
    let (key, rest) = read_varint(bytes)?;
    let number = key >> 3;
    if number == 0 {
        return Err("field number 0".into());
    }
    match key & 7 {
        0 => {
            let (_, rest) = read_varint(rest)?;
            Ok((number, Wire::Varint, rest))
        }
        1 => {
            let rest = rest.get(8..).ok_or("truncated fixed64")?;
            Ok((number, Wire::Fixed64, rest))
        }
        2 => {
            let (len, rest) = read_varint(rest)?;
            let len = usize::try_from(len).map_err(|_| "length overflows")?;
            if len > rest.len() {
                return Err(format!(
                    "field {number} claims {len} bytes, {} remain",
                    rest.len()
                ));
            }
            let (value, rest) = rest.split_at(len);
            Ok((number, Wire::Len(value), rest))
        }
        5 => {
            let rest = rest.get(4..).ok_or("truncated fixed32")?;
            Ok((number, Wire::Fixed32, rest))
        }
        other => Err(format!("wire type {other} on field {number}")),
    }
}

fn read_varint(bytes: &[u8]) -> Result<(u64, &[u8]), String> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, &bytes[i + 1..]));
        }
    }
    Err("truncated or overlong varint".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed32_is_a_wire_type() {
        // field 3, wire 5, then four bytes
        let bytes = [0x1d, 1, 2, 3, 4];
        let parsed: Vec<_> = fields(&bytes).collect();
        assert!(matches!(parsed[0], Ok((3, Wire::Fixed32))));
    }

    #[test]
    fn json_of_another_signal_is_an_error_and_an_empty_export_is_not() {
        let metrics = br#"{"resourceMetrics":[{"scopeMetrics":[]}]}"#;
        for signal in [Signal::Logs, Signal::Traces] {
            let hint = PayloadHint {
                signal: Some(signal),
                ..PayloadHint::default()
            };
            let error = decode_export(metrics, hint).unwrap_err().to_string();
            assert!(error.contains("OTLP/JSON metrics export"), "{error}");
        }
        let hint = PayloadHint {
            signal: Some(Signal::Metrics),
            ..PayloadHint::default()
        };
        assert!(decode_export(metrics, hint).is_ok());
        // An empty export of the right (or no) signal is fine, as OTLP allows.
        let hint = PayloadHint {
            signal: Some(Signal::Logs),
            ..PayloadHint::default()
        };
        assert!(decode_export(br#"{"resourceLogs":[]}"#, hint).is_ok());
        assert!(decode_export(b"{}", hint).is_ok());
    }

    #[test]
    fn garbage_is_not_an_empty_export() {
        assert!(sniff_proto_signal(&[0xff, 0xff, 0xff]).is_err());
        assert_eq!(sniff_proto_signal(&[]).unwrap(), Signal::Logs);
    }
}
