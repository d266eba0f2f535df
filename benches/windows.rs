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
use std::sync::Arc;
use std::time::Instant;

use burnrate_engine::{WindowSpec, WindowSql, WindowStage};
use burnrate_otlp::Table;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampNanosecondArray, UInt32Array, new_null_array,
};

const BATCH_ROWS: usize = 20_000;
const USERS: usize = 50;

/// Deterministic rows: 50 users in 5 teams and 10 projects, 3 models, one call every ~50 ms
/// of event time, a few seconds of disorder, log-normal latencies.
fn synthetic(rows: usize) -> Vec<RecordBatch> {
    let schema = Table::ApiRequests.schema();
    let mut state = 7u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let start_ns = 1_795_000_000_000_000_000i64;
    let users: Vec<String> = (0..USERS).map(|u| format!("user-{u:03}")).collect();
    let teams: Vec<String> = (0..5).map(|t| format!("team-{t}")).collect();
    let projects: Vec<String> = (0..10).map(|p| format!("project-{p}")).collect();
    let models = ["claude-opus-4-8", "claude-sonnet-4-5", "claude-haiku-4-5"];
    (0..rows.div_ceil(BATCH_ROWS))
        .map(|b| {
            let n = BATCH_ROWS.min(rows - b * BATCH_ROWS);
            let mut time = Vec::with_capacity(n);
            let (mut user, mut team, mut project, mut model, mut session) =
                (vec![], vec![], vec![], vec![], vec![]);
            let (mut input, mut output, mut cache_read, mut cache_creation) =
                (vec![], vec![], vec![], vec![]);
            let (mut cost, mut duration, mut success) = (vec![], vec![], vec![]);
            for i in 0..n {
                let row = (b * BATCH_ROWS + i) as i64;
                let disorder = (next() * 5e9) as i64;
                time.push(start_ns + row * 50_000_000 - disorder);
                let u = (next() * USERS as f64) as usize % USERS;
                user.push(users[u].as_str());
                team.push(teams[u % 5].as_str());
                project.push(projects[u % 10].as_str());
                model.push(models[(next() * 3.0) as usize % 3]);
                session.push(format!("{}-{}", users[u], row / 20_000));
                input.push((next() * 5000.0) as i64);
                output.push((next() * 2000.0) as i64);
                cache_read.push((next() * 50_000.0) as i64);
                cache_creation.push((next() * 1000.0) as i64);
                cost.push(next() * 0.2);
                let normal = (-2.0 * next().max(1e-12).ln()).sqrt()
                    * (2.0 * std::f64::consts::PI * next()).cos();
                duration.push((7.5 + 0.8 * normal).exp());
                success.push(next() > 0.02);
            }
            let columns: Vec<ArrayRef> = schema
                .fields()
                .iter()
                .map(|field| -> ArrayRef {
                    match field.name().as_str() {
                        "time" => Arc::new(
                            TimestampNanosecondArray::from(time.clone()).with_timezone("UTC"),
                        ),
                        "user_id" => Arc::new(StringArray::from(user.clone())),
                        "team" => Arc::new(StringArray::from(team.clone())),
                        "project" => Arc::new(StringArray::from(project.clone())),
                        "model" => Arc::new(StringArray::from(model.clone())),
                        "session_id" => Arc::new(StringArray::from(session.clone())),
                        "input_tokens" => Arc::new(Int64Array::from(input.clone())),
                        "output_tokens" => Arc::new(Int64Array::from(output.clone())),
                        "cache_read_tokens" => Arc::new(Int64Array::from(cache_read.clone())),
                        "cache_creation_tokens" => {
                            Arc::new(Int64Array::from(cache_creation.clone()))
                        }
                        "cost_usd" => Arc::new(Float64Array::from(cost.clone())),
                        "duration_ms" => Arc::new(Float64Array::from(duration.clone())),
                        "success" => Arc::new(BooleanArray::from(success.clone())),
                        "parse_errors" => Arc::new(UInt32Array::from(vec![0; n])),
                        _ => new_null_array(field.data_type(), n),
                    }
                })
                .collect();
            RecordBatch::try_new(schema.clone(), columns).expect("synthetic rows fit the schema")
        })
        .collect()
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rows = std::env::var("BURNRATE_BENCH_ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(if full { 10_000_000 } else { 200_000 });
    let generated = Instant::now();
    let batches = synthetic(rows);
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
