//! What the fuzz targets share: one decoder, built once, and the signal an input's first byte
//! picks (the endpoint or gRPC service the export was sent to, or none: sniffed).

use std::sync::OnceLock;

use burnrate_otlp::{Decoder, Encoding, MappingConfig, PayloadHint, Signal};
use burnrate_pricing::PriceTable;

/// The largest export a target decodes, as the receiver's limit would cut it.
pub const MAX_BYTES: usize = 4 << 20;

pub fn decoder() -> &'static Decoder {
    static DECODER: OnceLock<Decoder> = OnceLock::new();
    DECODER.get_or_init(|| Decoder::new(MappingConfig::default(), PriceTable::embedded()))
}

pub fn signal(byte: u8) -> Option<Signal> {
    match byte % 4 {
        0 => Some(Signal::Logs),
        1 => Some(Signal::Metrics),
        2 => Some(Signal::Traces),
        _ => None,
    }
}

/// Decodes `bytes` as the receiver would, with the direct decoder and with the prost reference
/// path; errors are answers, a panic or a disagreement between the two is a finding.
pub fn decode(bytes: &[u8], encoding: Option<Encoding>, signal: Option<Signal>) {
    let hint = PayloadHint {
        encoding,
        signal,
        max_bytes: MAX_BYTES,
    };
    let direct = decoder().decode(bytes, hint).map_err(|e| e.to_string());
    let reference = decoder()
        .decode_with_prost(bytes, hint)
        .map_err(|e| e.to_string());
    assert_eq!(direct, reference, "the direct decoder disagrees with prost");
}
