//! OTLP/HTTP: `POST /v1/logs`, `/v1/metrics`, `/v1/traces` with `application/x-protobuf` or
//! `application/json` bodies, optionally `Content-Encoding: gzip`.
//!
//! Answers per the OTLP specification: 200 with an export response (a partial-success warning
//! when rows kept unparsable values), 400 with a `google.rpc.Status` for bodies that are not
//! exports, 413 for bodies over the limit, 415 for other content types or encodings, 503 (with
//! `Retry-After`) when the writer is saturated, the memory budget is full or the disk is, 408
//! for a body that did not arrive in time. Connections, TLS and tokens are the gate's
//! (`connections.rs`); this is the service behind it.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use burnrate_otlp::request;
use burnrate_otlp::{Encoding, Signal};
use futures::StreamExt;
use prost::Message;

use super::auth::Grant;
use super::connections::{BodyCut, InFlight};
use super::{
    Intake, Outcome, logs_response, metrics_response, partial_success_warning, traces_response,
};

/// `google.rpc.Status`, the body OTLP/HTTP failures carry.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// gRPC codes used in failure bodies.
const INVALID_ARGUMENT: i32 = 3;
const RESOURCE_EXHAUSTED: i32 = 8;
const UNAVAILABLE: i32 = 14;
pub(super) const UNAUTHENTICATED: i32 = 16;
const DEADLINE_EXCEEDED: i32 = 4;

/// The OTLP/HTTP routes over the receiver's intake.
pub(super) fn router(intake: Arc<Intake>) -> Router {
    Router::new()
        .route(
            "/v1/logs",
            post(|s, g, f, h, b| export(s, g, f, h, b, Signal::Logs)),
        )
        .route(
            "/v1/metrics",
            post(|s, g, f, h, b| export(s, g, f, h, b, Signal::Metrics)),
        )
        .route(
            "/v1/traces",
            post(|s, g, f, h, b| export(s, g, f, h, b, Signal::Traces)),
        )
        // Bodies are read by `read_body`, which answers 413 itself without dropping the connection.
        .layer(DefaultBodyLimit::disable())
        .with_state(intake)
}

fn content_encoding_ok(headers: &HeaderMap) -> bool {
    request::content_encoding_supported(
        headers
            .get(header::CONTENT_ENCODING)
            .map(HeaderValue::as_bytes),
    )
}

fn request_encoding(headers: &HeaderMap) -> Option<Encoding> {
    request::content_type_encoding(headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes))
}

/// A body over the limit is still read, up to this many times the limit, and thrown away: a
/// client that is cut off mid-upload sees a broken connection and retries, where a 413 tells it
/// that this export will never fit.
const DISCARD_FACTOR: usize = 4;

enum BodyError {
    TooLarge(usize),
    Broken(String),
}

/// Reads a body of at most `limit` bytes into one buffer of exactly its size: a growing
/// buffer would hold up to twice what the memory budget counted.
async fn read_body(body: Body, limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut stream = body.into_data_stream();
    let mut chunks = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BodyError::Broken(e.to_string()))?;
        seen += chunk.len();
        if seen > limit.saturating_mul(DISCARD_FACTOR) {
            return Err(BodyError::TooLarge(seen));
        }
        if seen <= limit {
            chunks.push(chunk);
        } else {
            chunks.clear();
        }
    }
    if seen > limit {
        return Err(BodyError::TooLarge(seen));
    }
    let mut bytes = Vec::with_capacity(seen);
    for chunk in chunks {
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

async fn export(
    State(intake): State<Arc<Intake>>,
    Extension(grant): Extension<Grant>,
    Extension(in_flight): Extension<Arc<InFlight>>,
    headers: HeaderMap,
    body: Body,
    signal: Signal,
) -> Response {
    let Some(encoding) = request_encoding(&headers) else {
        intake.health.request("unsupported_media_type");
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "use Content-Type application/x-protobuf or application/json\n",
        )
            .into_response();
    };
    if !content_encoding_ok(&headers) {
        intake.health.request("unsupported_media_type");
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Encoding must be gzip or identity\n",
        )
            .into_response();
    }
    let body = match read_body(body, intake.max_body_bytes).await {
        Ok(body) => body,
        Err(BodyError::TooLarge(size)) => {
            intake.health.request("too_large");
            let message = format!(
                "request body of at least {size} bytes is over the {}-byte limit",
                intake.max_body_bytes
            );
            return failure(
                StatusCode::PAYLOAD_TOO_LARGE,
                RESOURCE_EXHAUSTED,
                message,
                encoding,
            );
        }
        Err(BodyError::Broken(message)) => match in_flight.cut_off() {
            Some(BodyCut::OverBudget) => {
                intake.health.request("over_budget");
                return unavailable(message, encoding);
            }
            Some(BodyCut::TimedOut) => {
                intake.health.request("body_timeout");
                let mut response = failure(
                    StatusCode::REQUEST_TIMEOUT,
                    DEADLINE_EXCEEDED,
                    message,
                    encoding,
                );
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return response;
            }
            None => {
                intake.health.request("broken_body");
                return failure(StatusCode::BAD_REQUEST, INVALID_ARGUMENT, message, encoding);
            }
        },
    };
    match intake.submit(signal, Some(encoding), grant, body).await {
        Outcome::Accepted { rows_with_errors } => success(signal, encoding, rows_with_errors),
        Outcome::Rejected { message, too_large } => {
            let (status, code) = if too_large {
                (StatusCode::PAYLOAD_TOO_LARGE, RESOURCE_EXHAUSTED)
            } else {
                (StatusCode::BAD_REQUEST, INVALID_ARGUMENT)
            };
            failure(status, code, message, encoding)
        }
        Outcome::Unavailable(message) => unavailable(message, encoding),
    }
}

/// 503 with `Retry-After`: the client keeps the export and sends it again.
fn unavailable(message: String, encoding: Encoding) -> Response {
    let mut response = failure(
        StatusCode::SERVICE_UNAVAILABLE,
        UNAVAILABLE,
        message,
        encoding,
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// The export response, in the request's encoding.
fn success(signal: Signal, encoding: Encoding, rows_with_errors: u64) -> Response {
    let warning = partial_success_warning(rows_with_errors);
    match encoding {
        Encoding::Proto => {
            let body = match signal {
                Signal::Logs => logs_response(warning).encode_to_vec(),
                Signal::Metrics => metrics_response(warning).encode_to_vec(),
                Signal::Traces => traces_response(warning).encode_to_vec(),
            };
            ([(header::CONTENT_TYPE, "application/x-protobuf")], body).into_response()
        }
        Encoding::Json => {
            let body = match warning {
                None => serde_json::json!({}),
                Some(message) => {
                    serde_json::json!({ "partialSuccess": { "errorMessage": message } })
                }
            };
            (
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
    }
}

pub(super) fn failure(
    status: StatusCode,
    code: i32,
    message: String,
    encoding: Encoding,
) -> Response {
    match encoding {
        Encoding::Proto => (
            status,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            RpcStatus { code, message }.encode_to_vec(),
        )
            .into_response(),
        Encoding::Json => (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "code": code, "message": message }).to_string(),
        )
            .into_response(),
    }
}
