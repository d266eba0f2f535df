//! An OTLP/gRPC client that sends any bytes as the request message, so tests can send what a
//! broken or hostile client would: truncated exports, random bytes, the wrong signal. It uses
//! the receiver's own raw-bytes codec.

use burnrate_engine::source::receiver::RawBytes;

/// Sends `body` as the `Export` request of `service` (`logs`, `metrics` or `trace`) and returns
/// the answer's status code.
pub async fn export_raw(port: u16, service: &str, body: Vec<u8>) -> tonic::Code {
    let path = match service {
        "logs" => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        "metrics" => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        _ => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    };
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("a loopback endpoint")
        .connect()
        .await
        .expect("the receiver accepts gRPC connections");
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.expect("the channel is ready");
    let answer = client
        .unary(
            tonic::Request::new(body),
            tonic::codegen::http::uri::PathAndQuery::from_static(path),
            RawBytes,
        )
        .await;
    match answer {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    }
}
