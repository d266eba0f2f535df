//! OTLP/gRPC: the collector's Logs, Metrics and Trace services, gzip accepted.
//!
//! Requests are taken as the bytes the client sent (a codec that does not decode), so gRPC and
//! HTTP share one path: the writer decodes, logs and answers both alike. A body that is not an
//! export of its service's signal is `INVALID_ARGUMENT`, kept in `dead_letters` and counted, as
//! over HTTP; one over `max_body_bytes` is `RESOURCE_EXHAUSTED` (tonic's own limit answers
//! `OUT_OF_RANGE`, which OTLP clients retry). A body the gate cut off for the memory budget is
//! `UNAVAILABLE` (retried), one that did not arrive in time `DEADLINE_EXCEEDED`.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use burnrate_otlp::{Encoding, Signal};
use prost::Message;
use prost::bytes::{Buf, BufMut};
use tonic::codec::{
    Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings, EncodeBuf, Encoder,
};
use tonic::codegen::{Body, BoxFuture, StdError, http};
use tonic::server::{NamedService, UnaryService};
use tonic::{Code, Status};

use super::auth::Grant;
use super::connections::{BodyCut, InFlight};
use super::{
    Intake, Outcome, logs_response, metrics_response, partial_success_warning, traces_response,
};

/// One OTLP export service: its gRPC name and signal.
trait ExportService: Send + Sync + 'static {
    const NAME: &'static str;
    const PATH: &'static str;
    const SIGNAL: Signal;
}

struct Logs;
struct Metrics;
struct Traces;

impl ExportService for Logs {
    const NAME: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const PATH: &'static str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
    const SIGNAL: Signal = Signal::Logs;
}

impl ExportService for Metrics {
    const NAME: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    const PATH: &'static str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
    const SIGNAL: Signal = Signal::Metrics;
}

impl ExportService for Traces {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const PATH: &'static str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    const SIGNAL: Signal = Signal::Traces;
}

/// A gRPC codec that hands over a message's bytes as they came (after gzip) and sends bytes
/// already encoded: the receiver decodes exports itself, and a client can send anything.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawBytes;

impl Codec for RawBytes {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawBytes;
    type Decoder = RawBytes;

    fn encoder(&mut self) -> Self::Encoder {
        RawBytes
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawBytes
    }
}

impl Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut bytes = vec![0; src.remaining()];
        src.copy_to_slice(&mut bytes);
        Ok(Some(bytes))
    }
}

/// The `Export` method of one service, over the receiver's intake.
struct Export<S> {
    intake: Arc<Intake>,
    service: PhantomData<S>,
}

impl<S: ExportService> UnaryService<Vec<u8>> for Export<S> {
    type Response = Vec<u8>;
    type Future = BoxFuture<tonic::Response<Vec<u8>>, Status>;

    fn call(&mut self, request: tonic::Request<Vec<u8>>) -> Self::Future {
        let intake = self.intake.clone();
        Box::pin(async move {
            // The gate puts a grant on every request it lets through.
            let Some(grant) = request.extensions().get::<Grant>().cloned() else {
                return Err(Status::internal("request did not pass the receiver's gate"));
            };
            let payload = request.into_inner();
            let outcome = intake
                .submit(S::SIGNAL, Some(Encoding::Proto), grant, payload)
                .await;
            let warning = match outcome {
                Outcome::Accepted { rows_with_errors } => partial_success_warning(rows_with_errors),
                Outcome::Rejected {
                    message,
                    too_large: true,
                } => return Err(Status::resource_exhausted(message)),
                Outcome::Rejected { message, .. } => return Err(Status::invalid_argument(message)),
                Outcome::Unavailable(message) => return Err(Status::unavailable(message)),
            };
            let body = match S::SIGNAL {
                Signal::Logs => logs_response(warning).encode_to_vec(),
                Signal::Metrics => metrics_response(warning).encode_to_vec(),
                Signal::Traces => traces_response(warning).encode_to_vec(),
            };
            Ok(tonic::Response::new(body))
        })
    }
}

/// One OTLP service as tonic's server takes it.
struct OtlpService<S> {
    intake: Arc<Intake>,
    service: PhantomData<S>,
}

impl<S> Clone for OtlpService<S> {
    fn clone(&self) -> Self {
        OtlpService {
            intake: self.intake.clone(),
            service: PhantomData,
        }
    }
}

impl<S: ExportService> NamedService for OtlpService<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tonic::codegen::Service<http::Request<B>> for OtlpService<S>
where
    S: ExportService,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let intake = self.intake.clone();
        if request.uri().path() != S::PATH {
            return Box::pin(async move {
                Ok(Status::unimplemented("only Export is served").into_http())
            });
        }
        let in_flight = request.extensions().get::<Arc<InFlight>>().cloned();
        Box::pin(async move {
            let mut accept = EnabledCompressionEncodings::default();
            accept.enable(CompressionEncoding::Gzip);
            let mut grpc = tonic::server::Grpc::new(RawBytes)
                .apply_compression_config(accept, EnabledCompressionEncodings::default())
                .apply_max_message_size_config(Some(intake.max_body_bytes), None);
            let method = Export::<S> {
                intake: intake.clone(),
                service: PhantomData,
            };
            let mut response = grpc.unary(method, request).await;
            // tonic refuses a message over the limit with OUT_OF_RANGE, which OTLP clients
            // retry; the OTLP answer for "too large" is RESOURCE_EXHAUSTED.
            let out_of_range = (Code::OutOfRange as i32).to_string();
            let status = response.headers().get(Status::GRPC_STATUS);
            if status.is_some_and(|s| s.as_bytes() == out_of_range.as_bytes()) {
                response
                    .headers_mut()
                    .insert(Status::GRPC_STATUS, (Code::ResourceExhausted as i32).into());
                intake.health.request("too_large");
            }
            // A body the gate cut off reaches tonic as a transport error; say why instead.
            let cut = in_flight.as_ref().and_then(|f| f.cut_off());
            if let Some(cut) = cut {
                let (code, counted) = match cut {
                    BodyCut::OverBudget => (Code::Unavailable, "over_budget"),
                    BodyCut::TimedOut => (Code::DeadlineExceeded, "body_timeout"),
                };
                response
                    .headers_mut()
                    .insert(Status::GRPC_STATUS, (code as i32).into());
                intake.health.request(counted);
            }
            Ok(response)
        })
    }
}

/// The three OTLP export services over the receiver's intake.
pub(super) fn routes(intake: Arc<Intake>) -> tonic::service::Routes {
    tonic::service::Routes::new(OtlpService::<Logs> {
        intake: intake.clone(),
        service: PhantomData,
    })
    .add_service(OtlpService::<Metrics> {
        intake: intake.clone(),
        service: PhantomData,
    })
    .add_service(OtlpService::<Traces> {
        intake,
        service: PhantomData,
    })
}
