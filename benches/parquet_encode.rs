//! Encoding a flush's Parquet files, several ways over the same rows:
//! - `flush`: [`ParquetSink::flush_properties`], what every flush's files are written with
//!   (no statistics; numbers and times without dictionaries);
//! - `rewrite`: [`ParquetSink::rewrite_properties`], what compaction and erasure write the files
//!   readers keep with (page statistics), the baseline;
//! - the choices a flush's files could make and do not, each `flush` with one thing changed:
//!   Snappy or LZ4_RAW instead of zstd (no zstd context to make for every column chunk),
//!   8,192 values a column writer's step instead of `parquet`'s 1,024, dictionaries for the
//!   numbers too (what a flush wrote until 2026-12-07), and no dictionaries at all.
//!   Encoded alone, Snappy and LZ4_RAW take about 0.65x the time of `flush`, the larger steps
//!   0.94x to 1.0x (by which way runs before them); a Kafka catch-up gained nothing measurable
//!   from the codecs (`docs/benchmarks.md`), which is why they are here and not in
//!   [`ParquetSink`].
//!
//! The rows are every real export of the Kafka bench's stream (`shared/otlp-samples/`, logs,
//! metrics and traces), each copy a second later in a session of its own as that bench sends
//! them, decoded as a Kafka flush holds them: one segment a signal of 36 copies of its exports
//! in three decoded runs, the size of one partition's segment in `kafka_throughput` (a flush
//! of its 1,000,008 messages holds about 3,900, over 9 partitions). Until 2026-12-07 the copies
//! were the samples as they are, whose times repeat 36 times, which flattered dictionaries.
//! (`resources` holds a resource once a run here, once a segment in a flush: a few rows.)
//! Each table's file is encoded into memory (no disk, no fsync: the encoders' CPU alone),
//! every way in turn, many times, so that a shared machine's swings hit them alike.
//!
//! `cargo bench -p burnrate --bench parquet_encode`

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use burnrate_engine::sink::parquet_sink::ParquetSink;
use burnrate_engine::sink::stored_types;
use burnrate_otlp::{Decoder, MappingConfig, PayloadHint, Table, TableBuilders};
use burnrate_pricing::PriceTable;
use datafusion::arrow::array::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::{
    EnabledStatistics, WriterProperties, WriterPropertiesBuilder,
};
use support::stream::{COPY_STEP, LaterCopies};

/// Copies of a signal's exports in one partition's segment, and the decoded runs they make.
const COPIES: usize = 36;
const RUNS: usize = 3;

/// One segment's tables, in the types their files hold.
fn segments() -> Vec<(Table, Vec<RecordBatch>)> {
    let exports = support::sample_exports();
    let decoder = Decoder::new(MappingConfig::default(), PriceTable::embedded());
    let mut tables = Vec::new();
    let mut next_copy = 0;
    for signal in ["logs", "metrics", "traces"] {
        let mut segment: BTreeMap<Table, Vec<RecordBatch>> = BTreeMap::new();
        for _ in 0..RUNS {
            let mut run = TableBuilders::default();
            for _ in 0..COPIES / RUNS {
                for export in exports.iter().filter(|e| e.signal == signal) {
                    let copy = LaterCopies::new(export).copy(next_copy, COPY_STEP);
                    decoder
                        .decode_into(&copy, PayloadHint::default(), &mut run)
                        .expect("a real export decodes");
                }
                next_copy += 1;
            }
            for (table, batch) in run.finish().expect("builders finish").batches {
                let stored = stored_types::to_stored(&batch).expect("stored types");
                segment.entry(table).or_default().push(stored);
            }
        }
        tables.extend(segment);
    }
    tables
}

/// Encodes one file of `batches`; its size in bytes.
fn encode(batches: &[RecordBatch], properties: &WriterProperties) -> usize {
    let schema = batches[0].schema();
    let mut writer = ArrowWriter::try_new(Vec::new(), schema, Some(properties.clone()))
        .expect("a writer for the table's schema");
    for batch in batches {
        writer.write(batch).expect("encodes");
    }
    writer.into_inner().expect("file closes").len()
}

/// Each table's [`ParquetSink::flush_properties`] with one thing changed.
fn flush_but(change: impl Fn(WriterPropertiesBuilder) -> WriterPropertiesBuilder) -> Way {
    Table::ALL
        .into_iter()
        .map(|table| {
            let flush = ParquetSink::flush_properties(table).into_builder();
            (table, change(flush).build())
        })
        .collect()
}

/// How each table's file is encoded one way.
type Way = BTreeMap<Table, WriterProperties>;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let repeats = if full { 300 } else { 3 };
    let tables = segments();
    let rewrite: Way = Table::ALL
        .into_iter()
        .map(|table| (table, ParquetSink::rewrite_properties()))
        .collect();
    // What a flush wrote until 2026-12-07: every column with a dictionary.
    let numbers_with_dictionaries: Way = Table::ALL
        .into_iter()
        .map(|table| {
            let properties = ParquetSink::rewrite_properties()
                .into_builder()
                .set_statistics_enabled(EnabledStatistics::None);
            (table, properties.build())
        })
        .collect();
    let ways = [
        ("flush", flush_but(|p| p)),
        ("rewrite", rewrite),
        (
            "flush, Snappy",
            flush_but(|p| p.set_compression(Compression::SNAPPY)),
        ),
        (
            "flush, LZ4_RAW",
            flush_but(|p| p.set_compression(Compression::LZ4_RAW)),
        ),
        (
            "flush, batches of 8192",
            flush_but(|p| p.set_write_batch_size(8192)),
        ),
        (
            "flush, numbers with dictionaries",
            numbers_with_dictionaries,
        ),
        (
            "flush, no dictionaries",
            flush_but(|p| p.set_dictionary_enabled(false)),
        ),
    ];
    const REWRITE: usize = 1;
    let mut time = vec![Duration::ZERO; ways.len()];
    let mut bytes: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for _ in 0..repeats {
        for (way, (_, properties)) in ways.iter().enumerate() {
            let started = Instant::now();
            for (table, batches) in &tables {
                let sizes = bytes
                    .entry(table.name())
                    .or_insert_with(|| vec![0; ways.len()]);
                sizes[way] = encode(batches, &properties[table]);
            }
            time[way] += started.elapsed();
        }
    }
    let rows: usize = tables
        .iter()
        .flat_map(|(_, batches)| batches)
        .map(RecordBatch::num_rows)
        .sum();
    println!(
        "parquet_encode: {} files of {rows} rows (three partitions' segments, {COPIES} copies each), {repeats} times each way",
        tables.len()
    );
    for (table, sizes) in &bytes {
        println!(
            "  {table:14} {:8} bytes flushed, {:8} rewritten",
            sizes[0], sizes[REWRITE]
        );
    }
    let per_set = |way: usize| time[way].as_secs_f64() * 1e3 / repeats as f64;
    let total = |way: usize| bytes.values().map(|b| b[way]).sum::<usize>();
    for (way, (name, _)) in ways.iter().enumerate() {
        println!(
            "  {name:24} {:7.2} ms a set of files, {:8} bytes: {:.2}x the time of rewritten ones, {:.2}x their bytes",
            per_set(way),
            total(way),
            per_set(way) / per_set(REWRITE),
            total(way) as f64 / total(REWRITE) as f64
        );
    }
}
