//! OTLP protobuf → Arrow for realistic Claude Code log exports, next to the baseline of
//! decoding the same bytes into `opentelemetry-proto` prost structs only.
//!
//! The payload is made of the real log records captured in `shared/otlp-samples/` (every event
//! kind: api_request, api_error, tool_result, tool_decision, user_prompt, ...), repeated to
//! 2,048 records per export, about what a busy Collector batch holds.
//!
//! `cargo bench -p burnrate-otlp --bench decode`

use std::hint::black_box;
use std::path::PathBuf;

use burnrate_otlp::proto::collector::logs::v1::ExportLogsServiceRequest;
use burnrate_otlp::{
    Decoder, Encoding, Export, MappingConfig, PayloadHint, Signal, Table, decode_export,
};
use burnrate_pricing::PriceTable;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;

const RECORDS_PER_EXPORT: usize = 2048;

fn samples_dir() -> PathBuf {
    std::env::var_os("BURNRATE_SAMPLES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/otlp-samples")
        })
}

/// One export with the real records of every sample run, repeated.
fn realistic_export() -> ExportLogsServiceRequest {
    let mut template: Option<ExportLogsServiceRequest> = None;
    let mut records = Vec::new();
    for run in ["r01", "r03", "r04", "r12", "r31"] {
        let mut files: Vec<_> = std::fs::read_dir(samples_dir().join(run))
            .expect("shared/otlp-samples is beside the repository")
            .map(|e| e.expect("readable sample").path())
            .collect();
        files.sort();
        for file in files {
            let bytes = std::fs::read(&file).expect("readable sample");
            if let Ok(Export::Logs(export)) = decode_export(&bytes, PayloadHint::default()) {
                for resource in &export.resource_logs {
                    for scope in &resource.scope_logs {
                        records.extend(scope.log_records.iter().cloned());
                    }
                }
                template.get_or_insert(export);
            }
        }
    }
    let mut export = template.expect("the samples hold log exports");
    let scope = &mut export.resource_logs[0].scope_logs[0];
    scope.log_records = records
        .iter()
        .cycle()
        .take(RECORDS_PER_EXPORT)
        .cloned()
        .collect();
    export.resource_logs.truncate(1);
    export.resource_logs[0].scope_logs.truncate(1);
    export
}

fn bench(c: &mut Criterion) {
    let bytes = realistic_export().encode_to_vec();
    let decoder = Decoder::new(MappingConfig::default(), PriceTable::embedded());
    let hint = PayloadHint {
        encoding: Some(Encoding::Proto),
        signal: Some(Signal::Logs),
        ..PayloadHint::default()
    };
    let check = decoder.decode(&bytes, hint).expect("decodes");
    assert_eq!(check.rows(Table::LogRecords), RECORDS_PER_EXPORT);
    assert!(check.rows(Table::ApiRequests) > 0);
    eprintln!(
        "payload: {} bytes, {} log records, {} api_requests, {} tool_calls per export",
        bytes.len(),
        RECORDS_PER_EXPORT,
        check.rows(Table::ApiRequests),
        check.rows(Table::ToolCalls)
    );

    for (name, throughput) in [
        ("records", Throughput::Elements(RECORDS_PER_EXPORT as u64)),
        ("bytes", Throughput::Bytes(bytes.len() as u64)),
    ] {
        let mut group = c.benchmark_group(format!("decode_{name}"));
        group.throughput(throughput);
        group.bench_function("baseline_prost_structs", |b| {
            b.iter(|| {
                ExportLogsServiceRequest::decode(black_box(bytes.as_slice())).expect("decodes")
            })
        });
        group.bench_function("burnrate_to_arrow", |b| {
            b.iter(|| decoder.decode(black_box(&bytes), hint).expect("decodes"))
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = bench
}
criterion_main!(benches);
