//! `burnrate report daily` over 30 days × 50 users: the time to build one day's report from
//! the Parquet dataset, next to one DataFusion scan of the same day (the baseline) in the same
//! run.
//!
//! The dataset is what `burnrate run` writes: `api_requests` partitioned by day (zstd Parquet)
//! and the `usage_windows` the `WindowStage` made from the same rows. `cargo bench -p
//! burnrate-engine --bench report` uses 3 million calls (one every 864 ms of event time, so 30
//! days); under `cargo test` it runs 20,000 over 3 days and builds each once, as a smoke test
//! (`BURNRATE_BENCH_ROWS` sets another count). Prints the median of 5 builds of each.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use burnrate_engine::{Budget, CostReport, ParquetSink, WindowSpec, WindowStage, open_dataset};
use burnrate_otlp::Table;
use burnrate_pricing::PriceTable;
use chrono::{DateTime, Days};

#[path = "synthetic_calls.rs"]
mod synthetic_calls;
use synthetic_calls::{START_NS, synthetic};

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rows: usize = std::env::var("BURNRATE_BENCH_ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(if full { 3_000_000 } else { 20_000 });
    // The smoke run only proves the bench works: 100,000 rows over 30 days and 5 rounds made it
    // a CI run's longest bench at 63 s (2026-12-02), most of it windows closing.
    let (days, rounds): (i64, usize) = if full { (30, 5) } else { (3, 1) };
    let step_ns = days * 86_400_000_000_000 / rows as i64;
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path();

    let started = Instant::now();
    let sink = ParquetSink::new(data);
    let mut stage = WindowStage::open(data, &WindowSpec::default(), "bench", 500).expect("stage");
    for (i, batch) in synthetic(rows, step_ns).into_iter().enumerate() {
        let tables = BTreeMap::from([(Table::ApiRequests, vec![batch])]);
        sink.write_segment(&format!("bench-{i:05}"), &tables)
            .expect("api_requests written");
        stage.feed("bench", i as i64, &tables).expect("windows fed");
    }
    stage.close_all().expect("windows closed");
    eprintln!(
        "report bench: {rows} calls over {days} days written with their windows in {:.1?}",
        started.elapsed()
    );

    // The middle day, reported on as the CronJob would the morning after.
    let day = DateTime::from_timestamp_nanos(START_NS).date_naive() + Days::new(days as u64 / 2);
    let prices = PriceTable::embedded();
    let budgets = [Budget {
        dimension: "team".into(),
        value: "team-1".into(),
        daily_usd: Some(500.0),
        monthly_usd: Some(10_000.0),
    }];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let baseline_sql = format!(
        "SELECT count(*) AS requests, sum(cost_usd) AS usd FROM api_requests \
         WHERE time >= TIMESTAMP '{day}T00:00:00Z' AND time < TIMESTAMP '{}T00:00:00Z'",
        day + Days::new(1)
    );

    let (mut report_times, mut scan_times) = (Vec::new(), Vec::new());
    let mut requests = 0;
    for _ in 0..rounds {
        let started = Instant::now();
        let report = runtime
            .block_on(CostReport::build(
                data,
                day,
                day,
                &prices,
                &budgets,
                chrono_tz::UTC,
            ))
            .expect("report builds");
        report_times.push(started.elapsed());
        requests = report.headline.requests;

        let started = Instant::now();
        let scanned = runtime.block_on(async {
            let ctx = open_dataset(data).await.expect("dataset opens");
            let frame = ctx.sql(&baseline_sql).await.expect("baseline plans");
            frame.collect().await.expect("baseline runs")
        });
        scan_times.push(started.elapsed());
        assert_eq!(scanned[0].num_rows(), 1);
    }
    assert!(requests > 0, "the reported day has calls");
    let (report, scan) = (median(report_times), median(scan_times));
    println!(
        "report bench ({rows} calls over {days} days, {requests} on {day}): report daily {:.3} s, \
         one scan of the day {:.3} s (baseline), ratio {:.2}x the baseline's time",
        report.as_secs_f64(),
        scan.as_secs_f64(),
        report.as_secs_f64() / scan.as_secs_f64()
    );
}
