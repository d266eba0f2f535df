//! Payloads of unknown encoding and signal (a Kafka message, a file): gzip, JSON or protobuf
//! and the signal are sniffed, then decoded.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = burnrate_otlp::payload::sniff_proto_signal(data);
    burnrate_fuzz::decode(data, None, None);
});
