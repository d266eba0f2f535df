//! The streaming windowed aggregation against DataFusion running the same SQL as one batch
//! query, over the same synthetic `api_requests` rows in the same run.
//!
//! - baseline: `sql/window_aggregate.sql` then `sql/window_merge.sql` over every row at once
//!   (one MemTable), as an offline job would.
//! - streaming: the same rows fed to a `WindowStage` in micro-batches of 20,000 rows, in event
//!   time order, as the sources flush them: aggregation, merging into the open windows,
//!   closing, writing `usage_windows` and the checkpoint (fsync included) after every batch.
//!
//! `cargo bench -p burnrate-engine --bench windows` runs 10 million rows; under `cargo test`
//! it runs 200,000 as a smoke test (`BURNRATE_BENCH_ROWS` sets another count). Prints rows/s of
//! both and their ratio.

use std::collections::BTreeMap;
use std::time::Instant;

use burnrate_engine::{WindowSpec, WindowSql, WindowStage};
use burnrate_otlp::Table;
use datafusion::arrow::array::RecordBatch;

#[path = "synthetic_calls.rs"]
mod synthetic_calls;
use synthetic_calls::synthetic;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rows = std::env::var("BURNRATE_BENCH_ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(if full { 10_000_000 } else { 200_000 });
    let generated = Instant::now();
    let batches = synthetic(rows, 50_000_000);
    eprintln!(
        "windows bench: {rows} rows in {} micro-batches, generated in {:.1?}",
        batches.len(),
        generated.elapsed()
    );
    let spec = WindowSpec::default();
    let sql = WindowSql::load(&spec).expect("window SQL loads");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let started = Instant::now();
    let windows = runtime
        .block_on(sql.aggregate(batches.clone(), Vec::new()))
        .expect("batch query runs");
    let batch_seconds = started.elapsed().as_secs_f64();
    let batch_windows: usize = windows.iter().map(RecordBatch::num_rows).sum();

    let dir = tempfile::tempdir().expect("temp dir");
    let mut stage = WindowStage::open(dir.path(), &spec, "bench", 500).expect("stage opens");
    let started = Instant::now();
    for (i, batch) in batches.into_iter().enumerate() {
        let tables = BTreeMap::from([(Table::ApiRequests, vec![batch])]);
        stage.feed("bench", i as i64, &tables).expect("feed");
    }
    stage.close_all().expect("close");
    let stream_seconds = started.elapsed().as_secs_f64();
    let closed = stage.state().windows_closed;
    assert_eq!(
        closed as usize, batch_windows,
        "the streaming and batch paths found different windows"
    );
    let rate = |s: f64| rows as f64 / s;
    println!(
        "windows bench ({rows} rows, {closed} windows): batch query {:.0} rows/s ({batch_seconds:.2} s), \
         streaming {:.0} rows/s ({stream_seconds:.2} s), ratio {:.2}x",
        rate(batch_seconds),
        rate(stream_seconds),
        batch_seconds / stream_seconds
    );
}
