//! What the headers of an OTLP/HTTP request say: the body's encoding (`Content-Type`), its
//! compression (`Content-Encoding`), and the bearer token (`Authorization`). Kept apart from
//! the receiver's server so that they are fuzzed with the decoders (`fuzz/`).

use crate::payload::Encoding;

/// The encoding a `Content-Type` names: OTLP/HTTP's protobuf or JSON, nothing else.
pub fn content_type_encoding(value: Option<&[u8]>) -> Option<Encoding> {
    let value = std::str::from_utf8(value?).ok()?;
    let media = value.split(';').next()?.trim().to_ascii_lowercase();
    match media.as_str() {
        "application/x-protobuf" | "application/protobuf" => Some(Encoding::Proto),
        "application/json" => Some(Encoding::Json),
        _ => None,
    }
}

/// Whether a `Content-Encoding` is one the decoder reads: none, identity or gzip (which the
/// decoder recognises by its magic bytes).
pub fn content_encoding_supported(value: Option<&[u8]>) -> bool {
    match value {
        None => true,
        Some(value) => {
            let value = value.trim_ascii();
            value.eq_ignore_ascii_case(b"gzip") || value.eq_ignore_ascii_case(b"identity")
        }
    }
}

/// The token of an `Authorization: Bearer <token>` value (the scheme is case-insensitive and
/// separated from the token by spaces or tabs).
pub fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer")
        || !rest.first().is_some_and(|b| *b == b' ' || *b == b'\t')
    {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_read_as_otlp_http_says() {
        assert_eq!(
            content_type_encoding(Some(b"application/x-protobuf")),
            Some(Encoding::Proto)
        );
        assert_eq!(
            content_type_encoding(Some(b"Application/JSON; charset=utf-8")),
            Some(Encoding::Json)
        );
        assert_eq!(content_type_encoding(Some(b"text/plain")), None);
        assert_eq!(content_type_encoding(Some(&[0xff, 0xfe])), None);
        assert_eq!(content_type_encoding(None), None);
        assert!(content_encoding_supported(None));
        assert!(content_encoding_supported(Some(b" GZIP ")));
        assert!(!content_encoding_supported(Some(b"br")));
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer\t abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Bearerabc"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bear"), None);
    }
}
