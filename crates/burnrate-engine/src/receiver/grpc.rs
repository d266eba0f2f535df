//! OTLP/gRPC: the collector's Logs, Metrics and Trace services, gzip accepted.
//!
//! tonic hands over decoded prost structs; they are encoded back to protobuf for the write-ahead
//! log, so both front doors share one durable path. That second encode costs about as much as
//! the decode did, which is fine at the rates one laptop or a few sends to the embedded receiver.

use std::sync::Arc;

use burnrate_otlp::proto::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use burnrate_otlp::proto::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use burnrate_otlp::proto::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use burnrate_otlp::proto::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use burnrate_otlp::proto::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use burnrate_otlp::proto::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use burnrate_otlp::{Encoding, Signal};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use super::{
    Intake, Outcome, logs_response, metrics_response, partial_success_warning, traces_response,
};
use crate::EngineError;

#[derive(Clone)]
struct Exports(Arc<Intake>);

impl Exports {
    /// The partial-success warning, if any rows kept unparsable values.
    async fn submit(&self, signal: Signal, payload: Vec<u8>) -> Result<Option<String>, Status> {
        match self.0.submit(signal, Some(Encoding::Proto), payload).await {
            Outcome::Accepted { rows_with_errors } => Ok(partial_success_warning(rows_with_errors)),
            Outcome::Rejected {
                message,
                too_large: true,
            } => Err(Status::resource_exhausted(message)),
            Outcome::Rejected { message, .. } => Err(Status::invalid_argument(message)),
            Outcome::Unavailable(message) => Err(Status::unavailable(message)),
        }
    }
}

#[tonic::async_trait]
impl LogsService for Exports {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let warning = self
            .submit(Signal::Logs, request.into_inner().encode_to_vec())
            .await?;
        Ok(Response::new(logs_response(warning)))
    }
}

#[tonic::async_trait]
impl MetricsService for Exports {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let warning = self
            .submit(Signal::Metrics, request.into_inner().encode_to_vec())
            .await?;
        Ok(Response::new(metrics_response(warning)))
    }
}

#[tonic::async_trait]
impl TraceService for Exports {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let warning = self
            .submit(Signal::Traces, request.into_inner().encode_to_vec())
            .await?;
        Ok(Response::new(traces_response(warning)))
    }
}

pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    intake: Arc<Intake>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), EngineError> {
    let limit = intake.max_body_bytes;
    let exports = Exports(intake);
    tonic::transport::Server::builder()
        .add_service(
            LogsServiceServer::new(exports.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(limit),
        )
        .add_service(
            MetricsServiceServer::new(exports.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(limit),
        )
        .add_service(
            TraceServiceServer::new(exports)
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(limit),
        )
        .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener), stop)
        .await
        .map_err(|e| EngineError::Config(format!("OTLP/gRPC server: {e}")))
}
