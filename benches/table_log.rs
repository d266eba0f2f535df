//! What committing each flush to its table's Delta log costs, against the Parquet-only path in
//! the same run: the same rows written as the same files, without the log.
//!
//! - baseline: a flush writes its Parquet file (`write_atomically`: encode, fsync, rename).
//! - logged: `ParquetSink::write_segment`, which writes the same file and then commits it to
//!   the table's log (one commit, fsynced).
//!
//! The two are called in turn, flush by flush, into two datasets, so a swing in the machine's
//! speed falls on both. Each flush is 2,000 `api_requests` rows: about what the receiver
//! flushes every 10 s at a few hundred requests a minute. Prints the time per flush of both,
//! the logged path's time over the first and the last hundred commits (the log grows, so a
//! commit that listed or read all of it would slow down), the slowest flush (one that writes a
//! checkpoint, every 100th), how long a reader takes to open the table at the end, and the
//! process's peak RSS.
//!
//! `cargo bench -p burnrate-engine --bench table_log` runs 2,000 flushes; under `cargo test`
//! it runs 40 as a smoke test (`BURNRATE_BENCH_FLUSHES` sets another count).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use burnrate_engine::ParquetSink;
use burnrate_engine::sink::parquet_sink::write_atomically;
use burnrate_otlp::Table;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;

#[path = "synthetic_calls.rs"]
mod synthetic_calls;
use synthetic_calls::synthetic;

const ROWS_PER_FLUSH: usize = 2_000;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let flushes: usize = std::env::var("BURNRATE_BENCH_FLUSHES")
        .ok()
        .and_then(|f| f.parse().ok())
        .unwrap_or(if full { 2_000 } else { 40 });
    // One batch of calls, a minute of event time apart, all on one day.
    let calls = synthetic(ROWS_PER_FLUSH, 1_000_000)
        .into_iter()
        .next()
        .expect("a batch");
    let dir = tempfile::tempdir().expect("temp dir");
    let (plain, logged) = (dir.path().join("plain"), dir.path().join("logged"));
    let day = plain.join("api_requests/date=2026-11-18");
    std::fs::create_dir_all(&day).expect("day directory");
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let sink = ParquetSink::new(&logged);

    let mut plain_times = Vec::with_capacity(flushes);
    let mut logged_times = Vec::with_capacity(flushes);
    for flush in 0..flushes {
        let segment = format!("receiver-{flush:020}");
        let started = Instant::now();
        write_atomically(
            &day.join(format!("{segment}.parquet")),
            Table::ApiRequests.schema(),
            std::slice::from_ref(&calls),
            properties.clone(),
        )
        .expect("plain flush");
        plain_times.push(started.elapsed());

        let tables = BTreeMap::from([(Table::ApiRequests, vec![calls.clone()])]);
        let started = Instant::now();
        sink.write_segment(&segment, &tables).expect("logged flush");
        logged_times.push(started.elapsed());
    }

    let mean = |times: &[Duration]| {
        times.iter().map(Duration::as_secs_f64).sum::<f64>() / times.len().max(1) as f64
    };
    let (plain_mean, logged_mean) = (mean(&plain_times), mean(&logged_times));
    let window = 100.min(flushes / 2).max(1);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let opened = Instant::now();
    let files = runtime
        .block_on(burnrate_engine::sink::table_log::logged_files(
            &logged.join("api_requests"),
        ))
        .expect("log opens")
        .expect("a log")
        .len();
    let open_seconds = opened.elapsed().as_secs_f64();
    assert_eq!(files, flushes, "every flush's file is in the log");
    let log_files = std::fs::read_dir(logged.join("api_requests/_delta_log"))
        .expect("log directory")
        .count();

    println!("table_log bench: {flushes} flushes of {ROWS_PER_FLUSH} api_requests rows");
    println!(
        "  baseline, Parquet only:      {:8.2} ms a flush",
        plain_mean * 1e3
    );
    println!(
        "  Parquet and a Delta commit:  {:8.2} ms a flush  ({:.2}x the baseline's time)",
        logged_mean * 1e3,
        logged_mean / plain_mean
    );
    println!(
        "  logged, first {window} flushes: {:.2} ms; last {window}: {:.2} ms",
        mean(&logged_times[..window]) * 1e3,
        mean(&logged_times[flushes - window..]) * 1e3
    );
    let slowest = logged_times.iter().max().copied().unwrap_or_default();
    println!(
        "  logged, slowest flush: {:.2} ms",
        slowest.as_secs_f64() * 1e3
    );
    println!(
        "  a reader opens the table ({files} files, {log_files} entries in _delta_log) in {:.1} ms",
        open_seconds * 1e3
    );
    // The checkpoints (every 100th commit) read the log: their memory shows here.
    let peak = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().to_string()))
        })
        .unwrap_or_else(|| "unknown".into());
    println!("  the process's peak RSS: {peak}");
}
