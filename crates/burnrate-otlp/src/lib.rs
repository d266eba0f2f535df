//! OTLP exports → Arrow record batches.
//!
//! Owns: reading OTLP export requests (protobuf or OTLP/JSON, optionally gzipped) of all three
//! signals, protobuf in place by the direct decoder (`wire`, `view`) and everything else through
//! prost structs, both into the same borrowed views the mapping reads; the Arrow schemas of every burnrate table; mapping Claude Code events, metrics and
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
pub mod payload;
mod raw;
pub mod request;
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

/// The bits of a series id: 63, so that every reader sees the same non-negative number in a
/// signed 64-bit column (Delta has no unsigned types). Ids stored before had the top bit too;
/// masking one gives the id the same series has now.
pub const SERIES_ID_MASK: u64 = u64::MAX >> 1;

/// Identity of a metric series: its name and the sorted attributes of the point and resource.
/// Stable across processes and releases (xxh3-64 of a fixed byte layout, top bit cleared),
/// because the cumulative-to-delta state is rebuilt from stored `series_id`s.
pub fn series_id(metric: &str, point: &[KeyValue<'_>], resource: &[KeyValue<'_>]) -> u64 {
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
