//! OTLP exports → Arrow record batches.
//!
//! Owns: reading OTLP export requests (protobuf or OTLP/JSON, optionally gzipped) of all three
//! signals, protobuf in place by the direct decoder (`wire`, `view`), OTLP/JSON in place in the
//! shape exporters send (`json`), and everything else through prost structs, all into the same
//! borrowed views the mapping reads; the Arrow schemas of every burnrate table; mapping Claude Code events, metrics and
//! spans, GenAI-convention spans and `claude.*` spans onto the canonical tables (`api_requests`,
//! `tool_calls`, `usage_metrics`) with costs from `burnrate-pricing`; the cumulative-to-delta
//! state machine.
//!
//! Must not know: where bytes come from (files, Kafka, HTTP), where batches go (Parquet,
//! Pushgateway), time windows, or DataFusion. It does no I/O and keeps no state across calls
//! except what a caller holds in a [`DeltaTracker`].

mod attributes;
mod columns;
pub mod config;
mod decoder;
pub mod delta;
pub mod json;
pub mod payload;
mod raw;
pub mod request;
pub mod room;
pub mod schema;
mod usage;
pub mod view;
pub mod wire;

use crate::view::KeyValue;

pub use config::{CallSource, ContentPolicy, MappingConfig};
pub use decoder::{DecodeStats, Decoded, Decoder, TableBuilders};
pub use delta::{DeltaStats, DeltaTracker};
pub use payload::{
    DEFAULT_MAX_PAYLOAD_BYTES, Encoding, Export, PayloadHint, Signal, decode_export,
};
pub use raw::{resource_key, utc_day};
pub use room::RunRoom;
pub use schema::{Table, WINDOW_DIMENSIONS};

/// Re-exported so callers build and inspect exports with the same prost types.
pub use opentelemetry_proto::tonic as proto;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("payload of {size} bytes is over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("gzip body cannot be inflated: {0}")]
    Gzip(String),
    #[error("not an OTLP {} protobuf export: {message}", signal.as_str())]
    Protobuf { signal: Signal, message: String },
    #[error("not an OTLP/JSON {} export: {message}", signal.as_str())]
    Json { signal: Signal, message: String },
    #[error("cannot tell the signal of the payload: {0}")]
    UnknownSignal(String),
    #[error("building Arrow batch: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

impl DecodeError {
    /// Never: decoding is a pure function of the bytes, so the same payload fails the same way
    /// every time. A client should fix what it sends; a pipeline keeps it as a dead letter.
    pub fn is_retryable(&self) -> bool {
        match self {
            DecodeError::TooLarge { .. }
            | DecodeError::Gzip(_)
            | DecodeError::Protobuf { .. }
            | DecodeError::Json { .. }
            | DecodeError::UnknownSignal(_)
            | DecodeError::Arrow(_) => false,
        }
    }
}

/// The bits of a hashed id, a series' or a resource's: 63, so that every reader sees the same
/// non-negative number in a signed 64-bit column (Delta has no unsigned types). Series ids
/// stored before had the top bit too; masking one gives the id the same series has now.
pub const SERIES_ID_MASK: u64 = u64::MAX >> 1;

/// Identity of a metric series: its name and the sorted attributes of the point and resource.
/// Stable across processes and releases (xxh3-64 of a fixed byte layout, top bit cleared),
/// because the cumulative-to-delta state is rebuilt from stored `series_id`s.
pub fn series_id(metric: &str, point: &[KeyValue<'_>], resource: &[KeyValue<'_>]) -> u64 {
    SeriesIds::new(resource).id(metric, point)
}

/// [`series_id`] for the points of one resource. The byte layout is the metric's name, then
/// `0xff` and each attribute of the point, then `0xff` and each of the resource's, sorted by
/// key, as `key 0 value 0`. The resource's part is laid out once, each point's in a buffer kept
/// from point to point, and the whole hashed in one call: a streaming hasher per point, fed
/// key by key, with each value rendered into a `String` of its own, was 7% of decoding Claude
/// Code's exports (`benches/decode.rs`, callgrind, 2026-12-03).
pub struct SeriesIds {
    resource: Vec<u8>,
    bytes: Vec<u8>,
    scratch: Layout,
}

impl SeriesIds {
    pub fn new(resource: &[KeyValue<'_>]) -> Self {
        let mut ids = SeriesIds {
            resource: Vec::new(),
            bytes: Vec::new(),
            scratch: Layout::default(),
        };
        ids.scratch.lay_out(resource, &mut ids.resource);
        ids
    }

    pub fn id(&mut self, metric: &str, point: &[KeyValue<'_>]) -> u64 {
        self.bytes.clear();
        self.bytes.extend_from_slice(metric.as_bytes());
        self.scratch.lay_out(point, &mut self.bytes);
        self.bytes.extend_from_slice(&self.resource);
        xxhash_rust::xxh3::xxh3_64(&self.bytes) & SERIES_ID_MASK
    }
}

/// What laying out a list needs besides the list, kept from list to list: a value spelled out,
/// the attributes' order, and each key's first eight bytes.
#[derive(Default)]
struct Layout {
    value: String,
    order: Vec<usize>,
    heads: Vec<u64>,
}

impl Layout {
    /// One list of attributes in the series layout, appended to `out`. Sorted by key through
    /// each key's first eight bytes as a number, the keys compared whole only where those are
    /// equal: the same answer as comparing the keys for every pair, so the same order, keys
    /// repeated with other values included (the sort's moves depend only on its comparisons'
    /// answers and on its elements' size, 8 bytes for an index as for a reference), without a
    /// call to `memcmp` a comparison. With the order kept from list to list and the copies
    /// short: a real export's layouts 13% fewer instructions, its decode 0.6% (callgrind,
    /// `benches/decode.rs`, 2026-12-07).
    fn lay_out(&mut self, attributes: &[KeyValue<'_>], out: &mut Vec<u8>) {
        out.push(0xff);
        let Layout {
            value,
            order,
            heads,
        } = self;
        heads.clear();
        heads.extend(attributes.iter().map(|kv| key_head(kv.key)));
        order.clear();
        order.extend(0..attributes.len());
        order.sort_unstable_by(|&a, &b| {
            heads[a]
                .cmp(&heads[b])
                .then_with(|| attributes[a].key.cmp(attributes[b].key))
        });
        for &at in order.iter() {
            let kv = &attributes[at];
            columns::copy_short(out, kv.key.as_bytes());
            out.push(0);
            match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(view::Value::StringValue(s)) => columns::copy_short(out, s.as_bytes()),
                Some(other) => {
                    value.clear();
                    attributes::render_into(other, value);
                    columns::copy_short(out, value.as_bytes());
                }
                None => {}
            }
            out.push(0);
        }
    }
}

/// A key's first eight bytes as a big-endian number, zeros past its end: two keys' heads, when
/// they differ, order them as their bytes do (a key that ends first is a prefix of the other
/// there, and sorts first).
fn key_head(key: &str) -> u64 {
    let bytes = key.as_bytes();
    if let Some(head) = bytes.first_chunk::<8>() {
        return u64::from_be_bytes(*head);
    }
    bytes.iter().enumerate().fold(0, |head, (at, byte)| {
        head | u64::from(*byte) << (56 - 8 * at)
    })
}

/// A seeded xorshift for the unit tests' generated inputs: each call `next(below)` is in
/// `0..below`, the same sequence every run.
#[cfg(test)]
pub(crate) fn seeded(mut seed: u64) -> impl FnMut(usize) -> usize {
    move |below| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % below as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::Value;

    /// The layout hashed as it was until 2026-12-03: a streaming hasher fed piece by piece.
    /// Stored ids were made this way, so the one-call hash must give the same.
    fn streamed(metric: &str, point: &[KeyValue<'_>], resource: &[KeyValue<'_>]) -> u64 {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        hasher.update(metric.as_bytes());
        for attributes in [point, resource] {
            hasher.update(&[0xff]);
            let mut sorted: Vec<&KeyValue<'_>> = attributes.iter().collect();
            sorted.sort_unstable_by(|a, b| a.key.cmp(b.key));
            for kv in sorted {
                hasher.update(kv.key.as_bytes());
                hasher.update(&[0]);
                if let Some(value) = kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    hasher.update(attributes::render(value).as_bytes());
                }
                hasher.update(&[0]);
            }
        }
        hasher.digest() & SERIES_ID_MASK
    }

    fn kv<'a>(key: &'a str, value: Option<Value<'a>>) -> KeyValue<'a> {
        KeyValue::test(key, value)
    }

    #[test]
    fn series_ids_are_the_ids_stored_before() {
        let resource = [
            kv("service.name", Some(Value::StringValue("claude-code"))),
            kv("os.type", Some(Value::StringValue("linux"))),
            kv("host.arch", Some(Value::StringValue("amd64"))),
        ];
        let points: Vec<Vec<KeyValue<'_>>> = vec![
            vec![],
            vec![
                kv("user.id", Some(Value::StringValue("ada"))),
                kv("model", Some(Value::StringValue("claude-opus-4-5"))),
                kv("type", Some(Value::StringValue("input"))),
            ],
            // Duplicate keys, values of every kind, an attribute without a value.
            vec![
                kv("b", Some(Value::IntValue(-7))),
                kv("a", Some(Value::DoubleValue(0.25))),
                kv("b", Some(Value::BoolValue(true))),
                kv("c", Some(Value::BytesValue(&[0xde, 0xad]))),
                kv("d", None),
                KeyValue {
                    key: "e",
                    value: None,
                },
                kv("a", Some(Value::StringValue("ünïcode"))),
            ],
        ];
        let mut ids = SeriesIds::new(&resource);
        for point in &points {
            for metric in ["claude_code.cost.usage", ""] {
                let expected = streamed(metric, point, &resource);
                assert_eq!(ids.id(metric, point), expected, "{metric} {point:?}");
                assert_eq!(series_id(metric, point, &resource), expected);
                assert_eq!(
                    SeriesIds::new(&[]).id(metric, point),
                    streamed(metric, point, &[])
                );
            }
        }
        // Seeded lists of up to 40 attributes (past the sort's small-slice cut-over), keys
        // that share their first eight bytes or end within them, some with a NUL or repeated
        // with other values: the order, so the id, is the one comparing keys whole gives.
        let mut next = seeded(0x9e37_79b9_7f4a_7c15_u64);
        let keys = [
            "",
            "a",
            "ab",
            "a\0",
            "a\0b",
            "user.id",
            "user.id\0",
            "user.idx",
            "user.email",
            "user.account_uuid",
            "session.id",
            "session.ids",
            "organization.id",
            "model",
            "type",
            "terminal.type",
            "zzzzzzzz",
            "zzzzzzzzz",
            "\u{7f}",
            "ü",
            "日本",
        ];
        for _ in 0..2_000 {
            let point: Vec<KeyValue<'_>> = (0..next(41))
                .map(|_| match next(3) {
                    0 => kv(
                        keys[next(keys.len())],
                        Some(Value::IntValue(next(9) as i64)),
                    ),
                    1 => kv(keys[next(keys.len())], None),
                    _ => kv(
                        keys[next(keys.len())],
                        Some(Value::StringValue(keys[next(keys.len())])),
                    ),
                })
                .collect();
            assert_eq!(
                ids.id("m", &point),
                streamed("m", &point, &resource),
                "{point:?}"
            );
        }
        // Pinned: a change of layout would start every stored series over.
        assert_eq!(
            ids.id("claude_code.cost.usage", &points[1]),
            5_846_041_925_905_511_649
        );
    }
}
