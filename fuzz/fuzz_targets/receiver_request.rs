//! One OTLP/HTTP request as the receiver handles it: `Content-Type`, `Content-Encoding` and
//! `Authorization` (the first three NUL-separated fields of the input), then the body, for the
//! endpoint the first byte picks.
#![no_main]

use burnrate_otlp::request;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&path, rest)) = data.split_first() else {
        return;
    };
    let mut fields = rest.splitn(4, |b| *b == 0);
    let (Some(content_type), Some(content_encoding), Some(authorization), Some(body)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return;
    };
    let _ = request::bearer_token(authorization);
    let Some(encoding) = request::content_type_encoding(Some(content_type)) else {
        return;
    };
    if !request::content_encoding_supported(Some(content_encoding).filter(|v| !v.is_empty())) {
        return;
    }
    let signal = burnrate_fuzz::signal(path).unwrap_or(burnrate_otlp::Signal::Logs);
    burnrate_fuzz::decode(body, Some(encoding), Some(signal));
});
