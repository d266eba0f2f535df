//! A reproducer, kept until the toolchain is replaced: runs of the real protobuf exports decoded
//! onto a [`TableBuilders`] that is handed to a closure by value. Built with the machine's rustc
//! 1.95.0 at opt-level 2 or 3 (`cargo run --release -p burnrate-otlp --example moved_builders`)
//! the second run writes into a buffer the first run's batches freed (valgrind: "Invalid write
//! of size 8 ... inside a block of size 2,048 free'd", in `PrimitiveBuilder::append_value` of
//! `LogRecords::push`), and the process dies of SIGSEGV or an abort, or hangs, from a run of
//! two exports (5 KB) up. It runs clean built with opt-level 1 for this crate, with a nightly rustc
//! 1.97 (2026-05-19), and when the closure makes its builders itself, as the decode stage
//! (`burnrate-engine/src/decode.rs`) does; with burnrate's three `unsafe` blocks on this path
//! made safe it still fails (2026-12-07). See docs/benchmarks.md, "A stable-rustc hazard".
//!
//! `BURNRATE_SAMPLES` and `BURNRATE_SAMPLES_2_1_332` name the samples; `LIMIT` the run's bytes
//! (1 MiB by default).

use std::path::PathBuf;

use burnrate_otlp::{
    Decoder, Encoding, MappingConfig, PayloadHint, Signal, TableBuilders, decode_export,
};
use burnrate_pricing::PriceTable;

fn main() {
    let mut exports: Vec<(Signal, Vec<u8>)> = Vec::new();
    for variable in ["BURNRATE_SAMPLES", "BURNRATE_SAMPLES_2_1_332"] {
        let dir = std::env::var(variable).unwrap_or_else(|_| panic!("{variable} is not set"));
        let mut runs: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("a samples directory")
            .filter_map(|entry| Some(entry.ok()?.path()))
            .filter(|path| path.is_dir())
            .collect();
        runs.sort();
        for run in runs {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&run)
                .expect("a sample run")
                .filter_map(|entry| Some(entry.ok()?.path()))
                .filter(|path| path.extension().is_some_and(|e| e == "pb"))
                .collect();
            files.sort();
            for file in files {
                let bytes = std::fs::read(&file).expect("a readable sample");
                if let Ok(export) = decode_export(&bytes, PayloadHint::default()) {
                    exports.push((export.signal(), bytes));
                }
            }
        }
    }
    let limit: usize = std::env::var("LIMIT")
        .ok()
        .and_then(|limit| limit.parse().ok())
        .unwrap_or(1 << 20);
    let mut run: Vec<(Signal, &[u8])> = Vec::new();
    let mut bytes = 0;
    for (signal, export) in exports.iter().cycle().take(100_000) {
        if bytes >= limit {
            break;
        }
        bytes += export.len();
        run.push((*signal, export));
    }
    let decoder = Decoder::new(MappingConfig::default(), PriceTable::embedded());
    let hint = |signal| PayloadHint {
        encoding: Some(Encoding::Proto),
        signal: Some(signal),
        ..PayloadHint::default()
    };
    // The builders by value: the pattern that fails.
    let decode = |mut builders: TableBuilders| {
        for (signal, export) in &run {
            decoder
                .decode_into(std::hint::black_box(export), hint(*signal), &mut builders)
                .expect("the samples decode");
        }
        builders.finish().expect("the batches build")
    };
    let first = decode(TableBuilders::default());
    let expected = first.batches.clone();
    drop(first);
    let second = decode(TableBuilders::default());
    assert_eq!(second.batches, expected, "two decodes of one run differ");
    println!(
        "{} exports, {bytes} bytes: decoded twice, the same {} batches",
        run.len(),
        expected.len()
    );
}
