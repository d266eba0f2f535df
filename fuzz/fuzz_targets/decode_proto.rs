//! OTLP protobuf exports of every signal, through the direct decoder into Arrow, checked
//! against the prost reference path.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some((&first, export)) = data.split_first() {
        let signal = burnrate_fuzz::signal(first);
        burnrate_fuzz::decode(export, Some(burnrate_otlp::Encoding::Proto), signal);
    }
});
