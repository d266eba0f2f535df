//! OTLP protobuf → Arrow, three ways over the same bytes:
//! - `baseline_prost_structs`: decoding into `opentelemetry-proto` prost structs only, no Arrow;
//! - `via_prost_to_arrow`: prost structs, then the table mapping (the reference path);
//! - `direct_to_arrow`: the direct decoder, wire bytes read in place, then the same mapping;
//! - `direct_views_only`: the direct decoder's wire reading alone, no Arrow: the like-for-like
//!   peer of the prost baseline;
//! - `direct_to_arrow_as_a_run` (real exports only): the exports decoded onto one set of
//!   builders, as the Kafka decode stage does with a run of messages;
//! - `direct_to_arrow_sized` and `direct_to_arrow_as_a_run_sized`: the same with each call's
//!   builders sized by the call before (`RunRoom`), as a decode worker sizes every run by its
//!   last one: what the decode stage runs once it has seen one run;
//! - `paired` (printed before the groups): the baseline and `direct_to_arrow` (and, for the
//!   large export, `direct_to_arrow_sized`) called in turn, pair by pair, for a ratio that a
//!   shared machine's swings in speed do not skew.
//!
//! Three payloads:
//! - `large`: the real log records captured in `shared/otlp-samples/` (every event kind:
//!   api_request, api_error, tool_result, tool_decision, user_prompt, ...), repeated to 2,048
//!   records in one export, about what a busy Collector batch holds;
//! - `real`: every protobuf export Claude Code itself sent in those captures, as sent (logs,
//!   metrics and traces, of both releases, about 3 KB each), decoded one by one;
//! - `real_json`: every OTLP/JSON export of those captures (about 7 KB each), what a Collector's
//!   Kafka exporter sends with `encoding: otlp_json` and half the Kafka bench's messages. Its
//!   baseline is serde into the same prost structs (`baseline_serde_structs`), its reference
//!   path those structs → Arrow (`via_serde_structs_to_arrow`), and `direct_to_arrow` the JSON
//!   reader (`json.rs`) into the same views and mapping.
//!
//! `cargo bench -p burnrate-otlp --bench decode`

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use burnrate_otlp::proto::collector::logs::v1::ExportLogsServiceRequest;
use burnrate_otlp::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use burnrate_otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use burnrate_otlp::view::Request;
use burnrate_otlp::{
    Decoded, Decoder, Encoding, Export, MappingConfig, PayloadHint, RunRoom, Signal, Table,
    TableBuilders, decode_export,
};
use burnrate_pricing::PriceTable;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;

// The binary's allocator: decoding allocates per list and per batch, and the allocator is part
// of what the Kafka path pays.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// Every captured export as Claude Code sent it (both releases) in one encoding (the files'
/// extension, `pb` or `json`), with its signal.
fn real_exports(extension: &str) -> Vec<(Signal, Vec<u8>)> {
    let mut exports = Vec::new();
    let current = std::env::var_os("BURNRATE_SAMPLES_2_1_332")
        .map(PathBuf::from)
        .unwrap_or_else(|| samples_dir().join("../otlp-samples-2.1.332"));
    let mut runs: Vec<_> = [samples_dir(), current]
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).expect("the samples are beside the repository"))
        .map(|e| e.expect("readable sample").path())
        .filter(|p| p.is_dir())
        .collect();
    runs.sort();
    for run in runs {
        let mut files: Vec<_> = std::fs::read_dir(&run)
            .expect("readable run")
            .map(|e| e.expect("readable sample").path())
            .filter(|p| p.extension().is_some_and(|e| e == extension))
            .collect();
        files.sort();
        for file in files {
            let bytes = std::fs::read(&file).expect("readable sample");
            let signal = match decode_export(&bytes, PayloadHint::default()) {
                Ok(export) => export.signal(),
                Err(_) => continue,
            };
            exports.push((signal, bytes));
        }
    }
    exports
}

fn prost_structs(signal: Signal, bytes: &[u8]) -> usize {
    match signal {
        Signal::Logs => ExportLogsServiceRequest::decode(bytes)
            .expect("decodes")
            .resource_logs
            .len(),
        Signal::Metrics => ExportMetricsServiceRequest::decode(bytes)
            .expect("decodes")
            .resource_metrics
            .len(),
        Signal::Traces => ExportTraceServiceRequest::decode(bytes)
            .expect("decodes")
            .resource_spans
            .len(),
    }
}

fn views_only(signal: Signal, bytes: &[u8]) -> usize {
    match Request::decode(bytes, signal).expect("decodes") {
        Request::Logs(r) => r.resource_logs.len(),
        Request::Metrics(r) => r.resource_metrics.len(),
        Request::Traces(r) => r.resource_spans.len(),
    }
}

fn hint(signal: Signal) -> PayloadHint {
    PayloadHint {
        encoding: Some(Encoding::Proto),
        signal: Some(signal),
        ..PayloadHint::default()
    }
}

/// The baseline and the direct decoder, one call each in turn, `PAIRS` times: the ratio of
/// each pair's times, medianed. Criterion measures one function after the other for seconds
/// each; on a shared machine whose speed swings over seconds (this project's moves by up to
/// 40% between runs) that skews the ratio, where pairs a few milliseconds apart see the same
/// machine.
///
/// Run with `cargo bench` and no filter, or a filter naming `paired`; not in `cargo test`'s
/// single pass, which builds benches unoptimised.
fn paired_ratio(what: &str, mut baseline: impl FnMut(), mut direct: impl FnMut()) {
    const PAIRS: usize = 400;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filter = args.iter().find(|a| !a.starts_with('-'));
    if !args.iter().any(|a| a == "--bench") || filter.is_some_and(|f| !f.contains("paired")) {
        return;
    }
    let mut ratios = Vec::with_capacity(PAIRS);
    let (mut base_total, mut direct_total) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..PAIRS {
        let start = Instant::now();
        baseline();
        let base = start.elapsed();
        let start = Instant::now();
        direct();
        let took = start.elapsed();
        base_total += base;
        direct_total += took;
        ratios.push(base.as_secs_f64() / took.as_secs_f64().max(1e-9));
    }
    ratios.sort_by(f64::total_cmp);
    eprintln!(
        "{what}: paired over {PAIRS} pairs: direct decoder → Arrow {:.2}x the structs-only baseline \
         (median of pair ratios; {:.2}x by total time: {:?} against {:?} a call)",
        ratios[PAIRS / 2],
        base_total.as_secs_f64() / direct_total.as_secs_f64(),
        direct_total / PAIRS as u32,
        base_total / PAIRS as u32,
    );
}

/// Decodes `exports` as one run onto builders sized by what `room` learnt from the run before,
/// and teaches it this one: a decode worker's loop (`burnrate-engine`'s `decode.rs`).
fn decode_sized<'a>(
    decoder: &Decoder,
    room: &mut RunRoom,
    exports: impl IntoIterator<Item = (&'a [u8], PayloadHint)> + Clone,
) -> Decoded {
    let bytes = exports.clone().into_iter().map(|(b, _)| b.len()).sum();
    let mut builders = TableBuilders::with_room(room.for_run(bytes));
    for (export, hint) in exports {
        decoder
            .decode_into(black_box(export), hint, &mut builders)
            .expect("decodes");
    }
    let decoded = builders.finish().expect("builds");
    room.learn(&decoded.batches, bytes);
    decoded
}

fn bench(c: &mut Criterion) {
    let decoder = Decoder::new(MappingConfig::default(), PriceTable::embedded());

    let bytes = realistic_export().encode_to_vec();
    let logs = hint(Signal::Logs);
    let check = decoder.decode(&bytes, logs).expect("decodes");
    assert_eq!(check.rows(Table::LogRecords), RECORDS_PER_EXPORT);
    assert!(check.rows(Table::ApiRequests) > 0);
    eprintln!(
        "large: {} bytes, {} log records, {} api_requests, {} tool_calls per export",
        bytes.len(),
        RECORDS_PER_EXPORT,
        check.rows(Table::ApiRequests),
        check.rows(Table::ToolCalls)
    );
    paired_ratio(
        "large",
        || {
            black_box(prost_structs(Signal::Logs, black_box(&bytes)));
        },
        || {
            black_box(decoder.decode(black_box(&bytes), logs).expect("decodes"));
        },
    );
    let mut room = RunRoom::default();
    paired_ratio(
        "large, sized by the call before",
        || {
            black_box(prost_structs(Signal::Logs, black_box(&bytes)));
        },
        || {
            black_box(decode_sized(&decoder, &mut room, [(&bytes[..], logs)]));
        },
    );
    let mut group = c.benchmark_group("decode_large");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("baseline_prost_structs", |b| {
        b.iter(|| prost_structs(Signal::Logs, black_box(&bytes)))
    });
    group.bench_function("via_prost_to_arrow", |b| {
        b.iter(|| {
            decoder
                .decode_with_prost(black_box(&bytes), logs)
                .expect("decodes")
        })
    });
    group.bench_function("direct_to_arrow", |b| {
        b.iter(|| decoder.decode(black_box(&bytes), logs).expect("decodes"))
    });
    group.bench_function("direct_to_arrow_sized", |b| {
        let mut room = RunRoom::default();
        b.iter(|| decode_sized(&decoder, &mut room, [(&bytes[..], logs)]))
    });
    group.bench_function("direct_views_only", |b| {
        b.iter(|| views_only(Signal::Logs, black_box(&bytes)))
    });
    group.finish();

    let exports = real_exports("pb");
    let total: usize = exports.iter().map(|(_, e)| e.len()).sum();
    eprintln!(
        "real: {} exports, {} bytes, {} bytes on average",
        exports.len(),
        total,
        total / exports.len().max(1)
    );
    paired_ratio(
        "real",
        || {
            for (signal, bytes) in &exports {
                black_box(prost_structs(*signal, black_box(bytes)));
            }
        },
        || {
            for (signal, bytes) in &exports {
                black_box(
                    decoder
                        .decode(black_box(bytes), hint(*signal))
                        .expect("decodes"),
                );
            }
        },
    );
    let mut group = c.benchmark_group("decode_real");
    group.throughput(Throughput::Bytes(total as u64));
    group.bench_function("baseline_prost_structs", |b| {
        b.iter(|| {
            for (signal, bytes) in &exports {
                black_box(prost_structs(*signal, black_box(bytes)));
            }
        })
    });
    group.bench_function("via_prost_to_arrow", |b| {
        b.iter(|| {
            for (signal, bytes) in &exports {
                black_box(
                    decoder
                        .decode_with_prost(black_box(bytes), hint(*signal))
                        .expect("decodes"),
                );
            }
        })
    });
    group.bench_function("direct_to_arrow", |b| {
        b.iter(|| {
            for (signal, bytes) in &exports {
                black_box(
                    decoder
                        .decode(black_box(bytes), hint(*signal))
                        .expect("decodes"),
                );
            }
        })
    });
    group.bench_function("direct_to_arrow_as_a_run", |b| {
        b.iter(|| {
            let mut builders = TableBuilders::default();
            for (signal, bytes) in &exports {
                decoder
                    .decode_into(black_box(bytes), hint(*signal), &mut builders)
                    .expect("decodes");
            }
            builders.finish().expect("builds")
        })
    });
    group.bench_function("direct_to_arrow_as_a_run_sized", |b| {
        let mut room = RunRoom::default();
        let run = exports
            .iter()
            .map(|(signal, bytes)| (&bytes[..], hint(*signal)));
        b.iter(|| decode_sized(&decoder, &mut room, run.clone()))
    });
    group.bench_function("direct_views_only", |b| {
        b.iter(|| {
            for (signal, bytes) in &exports {
                black_box(views_only(*signal, black_box(bytes)));
            }
        })
    });
    group.finish();

    // OTLP/JSON, which a Collector's Kafka exporter sends with `encoding: otlp_json` and which
    // is half of the Kafka bench's messages.
    let json = real_exports("json");
    let total: usize = json.iter().map(|(_, e)| e.len()).sum();
    eprintln!(
        "real JSON: {} exports, {} bytes, {} bytes on average",
        json.len(),
        total,
        total / json.len().max(1)
    );
    let json_hint = |signal| PayloadHint {
        encoding: Some(Encoding::Json),
        signal: Some(signal),
        ..PayloadHint::default()
    };
    let serde_structs =
        |signal, bytes: &[u8]| decode_export(bytes, json_hint(signal)).expect("decodes");
    paired_ratio(
        "real JSON",
        || {
            for (signal, bytes) in &json {
                black_box(serde_structs(*signal, black_box(bytes)));
            }
        },
        || {
            for (signal, bytes) in &json {
                black_box(
                    decoder
                        .decode(black_box(bytes), json_hint(*signal))
                        .expect("decodes"),
                );
            }
        },
    );
    let mut group = c.benchmark_group("decode_real_json");
    group.throughput(Throughput::Bytes(total as u64));
    group.bench_function("baseline_serde_structs", |b| {
        b.iter(|| {
            for (signal, bytes) in &json {
                black_box(serde_structs(*signal, black_box(bytes)));
            }
        })
    });
    group.bench_function("via_serde_structs_to_arrow", |b| {
        b.iter(|| {
            for (signal, bytes) in &json {
                black_box(
                    decoder
                        .decode_with_prost(black_box(bytes), json_hint(*signal))
                        .expect("decodes"),
                );
            }
        })
    });
    group.bench_function("direct_to_arrow", |b| {
        b.iter(|| {
            for (signal, bytes) in &json {
                black_box(
                    decoder
                        .decode(black_box(bytes), json_hint(*signal))
                        .expect("decodes"),
                );
            }
        })
    });
    group.bench_function("direct_to_arrow_as_a_run", |b| {
        b.iter(|| {
            let mut builders = TableBuilders::default();
            for (signal, bytes) in &json {
                decoder
                    .decode_into(black_box(bytes), json_hint(*signal), &mut builders)
                    .expect("decodes");
            }
            builders.finish().expect("builds")
        })
    });
    // As the Kafka source runs a topic configured with no signal (the default): each export's
    // signal read from the export itself.
    group.bench_function("direct_to_arrow_as_a_run_signal_unnamed", |b| {
        let unnamed = PayloadHint {
            encoding: Some(Encoding::Json),
            ..PayloadHint::default()
        };
        b.iter(|| {
            let mut builders = TableBuilders::default();
            for (_, bytes) in &json {
                decoder
                    .decode_into(black_box(bytes), unnamed, &mut builders)
                    .expect("decodes");
            }
            builders.finish().expect("builds")
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = bench
}
criterion_main!(benches);
