//! Deterministic synthetic `api_requests` rows shared by the windows and report benches
//! (`#[path]`-included by each: benches are separate crates).

use std::sync::Arc;

use burnrate_otlp::Table;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampNanosecondArray, UInt32Array, new_null_array,
};

pub const BATCH_ROWS: usize = 20_000;
#[allow(dead_code)] // not every bench that includes this file uses it
const USERS: usize = 50;

/// Where the synthetic event time starts: 2026-11-18T20:53:20Z.
pub const START_NS: i64 = 1_795_000_000_000_000_000;

/// Deterministic rows in batches of [`BATCH_ROWS`]: 50 users in 5 teams and 10 projects, 3
/// models, one call every `step_ns` of event time from [`START_NS`], a few seconds of disorder,
/// log-normal latencies, 2% failures.
#[allow(dead_code)]
pub fn synthetic(rows: usize, step_ns: i64) -> Vec<RecordBatch> {
    synthetic_team(rows, step_ns, USERS)
}

/// [`synthetic`] for `people` users, in a team per ten of them (at least 5).
#[allow(dead_code)] // not every bench that includes this file uses it
pub fn synthetic_team(rows: usize, step_ns: i64, people: usize) -> Vec<RecordBatch> {
    let schema = Table::ApiRequests.schema();
    let mut state = 7u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let users: Vec<String> = (0..people).map(|u| format!("user-{u:03}")).collect();
    let team_count = (people / 10).max(5);
    let teams: Vec<String> = (0..team_count).map(|t| format!("team-{t}")).collect();
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
                time.push(START_NS + row * step_ns - disorder);
                let u = (next() * people as f64) as usize % people;
                user.push(users[u].as_str());
                team.push(teams[u % team_count].as_str());
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
