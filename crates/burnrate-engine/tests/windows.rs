//! Golden tests of `sql/window_aggregate.sql` and `sql/window_merge.sql` over fixed inputs, and
//! of the window stage around them: empty windows, late events and their corrections,
//! out-of-order events across partitions, restarts, and rollups checked against a direct
//! aggregation (sums exact, percentiles within the sketch's stated error).
//!
//! Goldens live in `tests/golden/`; `BURNRATE_BLESS=1 cargo test` rewrites them after a
//! deliberate change, and the diff is reviewed like code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burnrate_engine::stream::sketch::{RELATIVE_ACCURACY, nearest_rank};
use burnrate_engine::stream::windows::WindowSql;
use burnrate_engine::{PushTotals, WindowSpec, WindowStage, open_dataset};
use burnrate_otlp::Table;
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::Float64Type;
use datafusion::arrow::json::ReaderBuilder;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/windows")
        .join(name)
}

/// Rows of `table` from JSON lines (absent columns are NULL).
fn rows(table: Table, json: &str) -> RecordBatch {
    let mut reader = ReaderBuilder::new(table.schema())
        .build(std::io::Cursor::new(json.as_bytes().to_vec()))
        .unwrap();
    let batch = reader.next().map(|b| b.unwrap());
    batch.unwrap_or_else(|| RecordBatch::new_empty(table.schema()))
}

fn fixture_rows(table: Table) -> RecordBatch {
    let file = format!("{}.ndjson", table.name());
    rows(table, &std::fs::read_to_string(fixture(&file)).unwrap())
}

/// One API request as a JSON line.
fn call(
    time: &str,
    user: &str,
    model: &str,
    session: &str,
    cost: f64,
    ms: f64,
    ok: bool,
) -> String {
    format!(
        r#"{{"time":"{time}","session_id":"{session}","user_id":"{user}","team":"t-{user}","project":"p","model":"{model}","input_tokens":10,"output_tokens":5,"cache_read_tokens":100,"cache_creation_tokens":1,"cost_usd":{cost},"duration_ms":{ms},"success":{ok},"parse_errors":0}}"#
    )
}

fn tables(requests: RecordBatch, tools: Option<RecordBatch>) -> BTreeMap<Table, Vec<RecordBatch>> {
    let mut tables = BTreeMap::from([(Table::ApiRequests, vec![requests])]);
    if let Some(tools) = tools {
        tables.insert(Table::ToolCalls, vec![tools]);
    }
    tables
}

/// `usage_windows` rows as a readable table: the sketch bytes are left out, floats rounded.
async fn render(batches: Vec<RecordBatch>, order: &str) -> String {
    let ctx = SessionContext::new();
    let schema = Table::UsageWindows.schema();
    ctx.register_table(
        "w",
        Arc::new(MemTable::try_new(schema, vec![batches]).unwrap()),
    )
    .unwrap();
    let sql = format!(
        "SELECT window_start, window_end, user_id, team, project, model, revision, requests, errors, \
         round(error_rate, 4) AS error_rate, input_tokens AS input, output_tokens AS output, \
         cache_read_tokens AS cache_read, cache_creation_tokens AS cache_creation, \
         round(cost_usd, 6) AS cost, round(cost_usd_reported, 6) AS cost_reported, \
         round(latency_p50_ms, 1) AS p50, round(latency_p95_ms, 1) AS p95, round(latency_p99_ms, 1) AS p99, \
         latency_sum_ms AS latency_sum, tool_calls AS tools, tool_successes AS tools_ok, \
         round(tool_success_rate, 4) AS tool_rate, sessions, session_ids \
         FROM w ORDER BY {order}"
    );
    let out = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    pretty_format_batches(&out).unwrap().to_string()
}

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("BURNRATE_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("no golden {}; run with BURNRATE_BLESS=1", path.display()));
    assert_eq!(
        actual.trim_end(),
        expected.trim_end(),
        "golden {name} differs"
    );
}

const ORDER: &str = "window_start, user_id, model NULLS FIRST, revision";

#[tokio::test]
async fn aggregate_sql_golden_one_micro_batch() {
    let sql = WindowSql::load(&WindowSpec::default()).unwrap();
    let out = sql
        .aggregate(
            vec![fixture_rows(Table::ApiRequests)],
            vec![fixture_rows(Table::ToolCalls)],
        )
        .await
        .unwrap();
    let text = render(out, ORDER).await;
    // 10:01 had no calls: it has no row. The untimed row (carol) is in no window.
    assert!(
        !text.contains("| 2026-11-24T10:01:00Z | 2026-11-24T10:02:00Z"),
        "{text}"
    );
    assert!(!text.contains("carol"), "{text}");
    golden("window_aggregate.txt", &text);
}

#[tokio::test]
async fn merge_sql_golden_hour_rollup_and_other_dimensions() {
    let sql = WindowSql::load(&WindowSpec::default()).unwrap();
    let minutes = sql
        .aggregate(
            vec![fixture_rows(Table::ApiRequests)],
            vec![fixture_rows(Table::ToolCalls)],
        )
        .await
        .unwrap();
    let hours = sql.merge_windows(minutes, 3600).await.unwrap();
    golden("window_merge_hour.txt", &render(hours, ORDER).await);

    // Grouped by team only: users and models fold together.
    let by_team = WindowSpec {
        dimensions: vec!["team".into()],
        width_seconds: 300,
        ..WindowSpec::default()
    };
    let sql = WindowSql::load(&by_team).unwrap();
    let out = sql
        .aggregate(
            vec![fixture_rows(Table::ApiRequests)],
            vec![fixture_rows(Table::ToolCalls)],
        )
        .await
        .unwrap();
    golden(
        "window_aggregate_by_team_5m.txt",
        &render(out, "window_start, team").await,
    );
}

async fn dataset_rows(data: &Path, sql: &str) -> Vec<RecordBatch> {
    let ctx = open_dataset(data).await.unwrap();
    ctx.sql(sql).await.unwrap().collect().await.unwrap()
}

async fn usage_windows(data: &Path) -> Vec<RecordBatch> {
    let columns: Vec<String> = Table::UsageWindows
        .schema()
        .fields()
        .iter()
        .map(|f| format!("\"{}\"", f.name()))
        .collect();
    dataset_rows(
        data,
        &format!("SELECT {} FROM usage_windows", columns.join(", ")),
    )
    .await
}

async fn scalar(data: &Path, sql: &str) -> f64 {
    let batches = dataset_rows(data, sql).await;
    let column = datafusion::arrow::compute::cast(
        batches[0].column(0),
        &datafusion::arrow::datatypes::DataType::Float64,
    )
    .unwrap();
    column.as_primitive::<Float64Type>().value(0)
}

#[tokio::test]
async fn late_events_become_counted_corrections() {
    let dir = tempfile::tempdir().unwrap();
    let mut stage = WindowStage::open(dir.path(), &WindowSpec::default(), "r0", 100).unwrap();
    let first = [
        call(
            "2026-11-24T10:00:05Z",
            "alice",
            "opus",
            "s1",
            0.1,
            100.0,
            true,
        ),
        call(
            "2026-11-24T10:02:05Z",
            "alice",
            "opus",
            "s1",
            0.2,
            200.0,
            true,
        ),
        call(
            "2026-11-24T10:05:30Z",
            "alice",
            "opus",
            "s1",
            0.3,
            300.0,
            true,
        ),
    ];
    let progress = stage
        .feed(
            "kafka/t/0",
            1,
            &tables(rows(Table::ApiRequests, &first.join("\n")), None),
        )
        .unwrap();
    // Watermark 10:03:30: 10:00 and 10:02 closed (10:01 had nothing), 10:05 open.
    assert_eq!((progress.closed, progress.late_events), (2, 0));

    let second = [
        call(
            "2026-11-24T10:01:15Z",
            "alice",
            "opus",
            "s1",
            1.0,
            1000.0,
            true,
        ),
        call(
            "2026-11-24T10:04:10Z",
            "alice",
            "opus",
            "s1",
            0.4,
            400.0,
            true,
        ),
    ];
    let progress = stage
        .feed(
            "kafka/t/0",
            2,
            &tables(rows(Table::ApiRequests, &second.join("\n")), None),
        )
        .unwrap();
    assert_eq!((progress.late_events, progress.corrections), (1, 1));

    let third = [
        call(
            "2026-11-24T10:01:45Z",
            "alice",
            "opus",
            "s2",
            2.0,
            2000.0,
            false,
        ),
        call(
            "2026-11-24T10:00:59Z",
            "alice",
            "opus",
            "s2",
            4.0,
            4000.0,
            true,
        ),
    ];
    let progress = stage
        .feed(
            "kafka/t/0",
            3,
            &tables(rows(Table::ApiRequests, &third.join("\n")), None),
        )
        .unwrap();
    assert_eq!((progress.late_events, progress.corrections), (2, 2));
    assert_eq!(stage.close_all().unwrap(), 2);
    assert_eq!(stage.state().late_events, 3);

    golden(
        "late_events_usage_windows.txt",
        &render(usage_windows(dir.path()).await, ORDER).await,
    );
    // Sums over all revisions are exact.
    assert_eq!(
        scalar(dir.path(), "SELECT sum(requests) FROM usage_windows").await,
        7.0
    );
    let cost = scalar(dir.path(), "SELECT sum(cost_usd) FROM usage_windows").await;
    assert!((cost - 8.0).abs() < 1e-9, "{cost}");
    let late = dataset_rows(
        dir.path(),
        "SELECT time, window_start, table_name, cost_usd, closed_through FROM late_events ORDER BY time",
    )
    .await;
    golden(
        "late_events.txt",
        &pretty_format_batches(&late).unwrap().to_string(),
    );
}

#[tokio::test]
async fn out_of_order_across_partitions_within_lateness_is_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut stage = WindowStage::open(dir.path(), &WindowSpec::default(), "r0", 100).unwrap();
    let p0 = [
        call(
            "2026-11-24T10:00:10Z",
            "alice",
            "opus",
            "s1",
            0.1,
            100.0,
            true,
        ),
        call(
            "2026-11-24T10:02:00Z",
            "alice",
            "opus",
            "s1",
            0.1,
            100.0,
            true,
        ),
    ];
    let p1 = [
        call(
            "2026-11-24T10:01:30Z",
            "bob",
            "opus",
            "s2",
            0.1,
            100.0,
            true,
        ),
        call(
            "2026-11-24T10:00:20Z",
            "bob",
            "opus",
            "s2",
            0.1,
            100.0,
            true,
        ),
    ];
    let a = stage
        .feed(
            "kafka/t/0",
            10,
            &tables(rows(Table::ApiRequests, &p0.join("\n")), None),
        )
        .unwrap();
    let b = stage
        .feed(
            "kafka/t/1",
            7,
            &tables(rows(Table::ApiRequests, &p1.join("\n")), None),
        )
        .unwrap();
    assert_eq!(
        (a.late_events, b.late_events, a.closed, b.closed),
        (0, 0, 0, 0)
    );
    stage.close_all().unwrap();
    assert_eq!(
        scalar(dir.path(), "SELECT count(*) FROM late_events").await,
        0.0
    );
    assert_eq!(
        scalar(
            dir.path(),
            "SELECT sum(requests) FROM usage_windows WHERE window_start = '2026-11-24T10:00:00Z'"
        )
        .await,
        2.0
    );
    assert_eq!(
        scalar(dir.path(), "SELECT max(revision) FROM usage_windows").await,
        0.0
    );
}

/// A day of calls every few seconds, for four users and two models, in micro-batches.
fn synthetic_batches(batches: usize, per_batch: usize) -> Vec<RecordBatch> {
    let mut state = 42u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as f64 / (1u64 << 31) as f64
    };
    let start = 1_795_000_000i64; // 2026-11-18T08:26:40Z
    (0..batches)
        .map(|b| {
            let lines: Vec<String> = (0..per_batch)
                .map(|i| {
                    let n = (b * per_batch + i) as i64;
                    // Mostly in order, some up to 90 s behind.
                    let jitter = if next() < 0.2 {
                        (next() * 90.0) as i64
                    } else {
                        0
                    };
                    let t = start + n * 7 - jitter;
                    let time = chrono::DateTime::from_timestamp(t, 0).unwrap().to_rfc3339();
                    let user = ["ana", "ben", "cyd", "dee"][(next() * 4.0) as usize % 4];
                    let model = if next() < 0.3 { "opus" } else { "sonnet" };
                    let ms = (6.0 + 1.5 * (next() - 0.5)).exp() * (1.0 + 9.0 * next().powi(8));
                    let cost = (next() * 1000.0).round() / 10_000.0;
                    call(
                        &time,
                        user,
                        model,
                        &format!("s{}", n % 37),
                        cost,
                        ms.round(),
                        next() > 0.03,
                    )
                })
                .collect();
            rows(Table::ApiRequests, &lines.join("\n"))
        })
        .collect()
}

#[tokio::test]
async fn hour_and_day_rollups_equal_a_direct_aggregation() {
    let dir = tempfile::tempdir().unwrap();
    let spec = WindowSpec::default();
    let mut stage = WindowStage::open(dir.path(), &spec, "r0", 100).unwrap();
    let batches = synthetic_batches(40, 500);
    for (i, batch) in batches.iter().enumerate() {
        stage
            .feed("receiver", i as i64, &tables(batch.clone(), None))
            .unwrap();
    }
    stage.close_all().unwrap();
    let sql = WindowSql::load(&spec).unwrap();
    let minutes = usage_windows(dir.path()).await;

    let ctx = SessionContext::new();
    let schema = Table::ApiRequests.schema();
    ctx.register_table(
        "api_requests",
        Arc::new(MemTable::try_new(schema, vec![batches]).unwrap()),
    )
    .unwrap();
    for seconds in [3600u64, 86_400] {
        let rolled = sql.merge_windows(minutes.clone(), seconds).await.unwrap();
        let rctx = SessionContext::new();
        rctx.register_table(
            "r",
            Arc::new(MemTable::try_new(Table::UsageWindows.schema(), vec![rolled]).unwrap()),
        )
        .unwrap();
        let rolled = rctx
            .sql(
                "SELECT CAST(window_start AS BIGINT) AS w, user_id, model, requests, errors, input_tokens, \
                 output_tokens, cache_read_tokens, cache_creation_tokens, cost_usd, sessions, \
                 latency_p50_ms, latency_p95_ms, latency_p99_ms FROM r ORDER BY 1, 2, 3",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let direct = ctx
            .sql(&format!(
                "SELECT CAST(date_bin(INTERVAL '{seconds} seconds', time) AS BIGINT) AS w, user_id, model, \
                 count(*) AS requests, sum(CASE WHEN success THEN 0 ELSE 1 END) AS errors, \
                 sum(input_tokens), sum(output_tokens), sum(cache_read_tokens), sum(cache_creation_tokens), \
                 sum(cost_usd), count(DISTINCT session_id), array_agg(duration_ms) \
                 FROM api_requests GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
            ))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let rolled =
            datafusion::arrow::compute::concat_batches(&rolled[0].schema(), &rolled).unwrap();
        let direct =
            datafusion::arrow::compute::concat_batches(&direct[0].schema(), &direct).unwrap();
        assert_eq!(rolled.num_rows(), direct.num_rows(), "groups at {seconds}s");
        assert!(
            rolled.num_rows() >= 8,
            "{seconds}s rollup has {} groups",
            rolled.num_rows()
        );
        for column in 0..3 {
            assert_eq!(
                rolled.column(column),
                direct.column(column),
                "keys at {seconds}s"
            );
        }
        // Counts and token sums exactly; cost to float rounding; distinct sessions exactly.
        for column in 3..9 {
            let a = datafusion::arrow::compute::cast(
                rolled.column(column),
                &datafusion::arrow::datatypes::DataType::Int64,
            )
            .unwrap();
            let b = datafusion::arrow::compute::cast(
                direct.column(column),
                &datafusion::arrow::datatypes::DataType::Int64,
            )
            .unwrap();
            assert_eq!(&a, &b, "column {column} at {seconds}s");
        }
        let (a, b) = (
            rolled.column(9).as_primitive::<Float64Type>(),
            direct.column(9).as_primitive::<Float64Type>(),
        );
        for row in 0..rolled.num_rows() {
            assert!((a.value(row) - b.value(row)).abs() < 1e-9, "cost row {row}");
        }
        let a = datafusion::arrow::compute::cast(
            rolled.column(10),
            &datafusion::arrow::datatypes::DataType::Int64,
        )
        .unwrap();
        let b = datafusion::arrow::compute::cast(
            direct.column(10),
            &datafusion::arrow::datatypes::DataType::Int64,
        )
        .unwrap();
        assert_eq!(&a, &b, "distinct sessions at {seconds}s");
        // Percentiles within the stated relative error of the exact ones.
        let durations = direct.column(11).as_list::<i32>();
        for row in 0..rolled.num_rows() {
            let list = durations.value(row);
            let mut values: Vec<f64> = list
                .as_primitive::<Float64Type>()
                .iter()
                .flatten()
                .collect();
            values.sort_by(f64::total_cmp);
            for (q, column) in [(0.5, 11), (0.95, 12), (0.99, 13)] {
                let exact = values[nearest_rank(q, values.len() as u64) as usize];
                let estimate = rolled
                    .column(column)
                    .as_primitive::<Float64Type>()
                    .value(row);
                let error = (estimate - exact).abs() / exact;
                assert!(
                    error <= RELATIVE_ACCURACY + 1e-9,
                    "p{q} at {seconds}s row {row}: {estimate} vs exact {exact}"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_restart_resumes_open_windows_and_skips_what_it_already_counted() {
    let batches = synthetic_batches(6, 300);
    let once = tempfile::tempdir().unwrap();
    let mut stage = WindowStage::open(once.path(), &WindowSpec::default(), "r0", 100).unwrap();
    for (i, batch) in batches.iter().enumerate() {
        stage
            .feed(
                "kafka/t/0",
                i as i64 * 100 + 99,
                &tables(batch.clone(), None),
            )
            .unwrap();
    }
    stage.close_all().unwrap();
    let expected = stage.state().totals.render();

    let restarted = tempfile::tempdir().unwrap();
    for (i, batch) in batches.iter().enumerate() {
        // A new process for every batch; the one before it replayed (a crash before the
        // source committed) must be skipped.
        let mut stage =
            WindowStage::open(restarted.path(), &WindowSpec::default(), "r0", 100).unwrap();
        if i > 0 {
            let replay = stage
                .feed(
                    "kafka/t/0",
                    (i as i64 - 1) * 100 + 99,
                    &tables(batches[i - 1].clone(), None),
                )
                .unwrap();
            assert!(replay.skipped);
        }
        assert!(i == 0 || stage.open_windows() > 0, "open windows come back");
        stage
            .feed(
                "kafka/t/0",
                i as i64 * 100 + 99,
                &tables(batch.clone(), None),
            )
            .unwrap();
    }
    let mut stage = WindowStage::open(restarted.path(), &WindowSpec::default(), "r0", 100).unwrap();
    stage.close_all().unwrap();
    assert_same_exposition(&stage.state().totals.render(), &expected);
    for sql in [
        "SELECT sum(requests) FROM usage_windows",
        "SELECT sum(cost_usd) FROM usage_windows",
        "SELECT sum(input_tokens) FROM usage_windows",
        "SELECT count(*) FROM usage_windows",
        "SELECT count(*) FROM late_events",
    ] {
        let (a, b) = (
            scalar(once.path(), sql).await,
            scalar(restarted.path(), sql).await,
        );
        assert!((a - b).abs() < 1e-9, "{sql}: {a} vs {b}");
    }
    assert_eq!(
        scalar(restarted.path(), "SELECT sum(requests) FROM usage_windows").await,
        1800.0
    );
}

/// Two expositions with the same series and values equal up to float summation order.
fn assert_same_exposition(a: &str, b: &str) {
    let samples = |text: &str| -> Vec<(String, f64)> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').unwrap();
                (series.to_string(), value.parse().unwrap())
            })
            .collect()
    };
    let (a, b) = (samples(a), samples(b));
    assert_eq!(a.len(), b.len());
    for ((sa, va), (sb, vb)) in a.iter().zip(&b) {
        assert_eq!(sa, sb);
        assert!(
            (va - vb).abs() <= 1e-9 * va.abs().max(1.0),
            "{sa}: {va} vs {vb}"
        );
    }
}

#[tokio::test]
async fn window_files_past_the_checkpoint_are_a_crashed_runs_and_go() {
    let dir = tempfile::tempdir().unwrap();
    let mut stage = WindowStage::open(dir.path(), &WindowSpec::default(), "r0", 100).unwrap();
    stage
        .feed(
            "receiver",
            1,
            &tables(synthetic_batches(1, 200).remove(0), None),
        )
        .unwrap();
    let seq = stage.state().seq;
    drop(stage);
    // The data files: `usage_windows/_delta_log` holds the table's log beside them.
    let written: Vec<PathBuf> = walk(&dir.path().join("usage_windows"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    let one = written.first().expect("closed windows were written");
    let orphan = one.with_file_name(format!("windows-r0-{:012}.parquet", seq + 1));
    std::fs::copy(one, &orphan).unwrap();
    let _stage = WindowStage::open(dir.path(), &WindowSpec::default(), "r0", 100).unwrap();
    assert!(
        !orphan.exists(),
        "a window file past the checkpoint is removed at start"
    );
    assert!(one.exists());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.path().is_dir() {
            out.extend(walk(&entry.path()));
        } else {
            out.push(entry.path());
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn bad_configuration_is_refused_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = WindowSpec {
        dimensions: vec!["colour".into()],
        ..WindowSpec::default()
    };
    let error = WindowStage::open(dir.path(), &bad, "r0", 10)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("windows.dimensions") && error.contains("colour"),
        "{error}"
    );
    let bad = WindowSpec {
        width_seconds: 7,
        ..WindowSpec::default()
    };
    let error = WindowStage::open(dir.path(), &bad, "r0", 10)
        .unwrap_err()
        .to_string();
    assert!(error.contains("windows.width_seconds"), "{error}");
    let error = WindowStage::open(dir.path(), &WindowSpec::default(), "a/b", 10)
        .unwrap_err()
        .to_string();
    assert!(error.contains("replica"), "{error}");
    // One replica name, one process: the second is refused while the first runs.
    let first = WindowStage::open(dir.path(), &WindowSpec::default(), "pod-0", 10).unwrap();
    let error = WindowStage::open(dir.path(), &WindowSpec::default(), "pod-0", 10)
        .unwrap_err()
        .to_string();
    assert!(error.contains("already running"), "{error}");
    WindowStage::open(dir.path(), &WindowSpec::default(), "pod-1", 10).unwrap();
    drop(first);
    WindowStage::open(dir.path(), &WindowSpec::default(), "pod-0", 10).unwrap();
}

#[tokio::test]
async fn the_cardinality_cap_folds_small_spenders_into_other_without_resets() {
    let sql = WindowSql::load(&WindowSpec::default()).unwrap();
    let mut totals = PushTotals::default();
    totals.set_max_series(2);
    let mut previous: BTreeMap<String, f64> = BTreeMap::new();
    let mut grand_total = 0.0;
    // Spend shifts between users from one batch to the next.
    let rounds = [
        [("u1", 5.0), ("u2", 1.0), ("u3", 0.5)],
        [("u1", 0.1), ("u2", 0.1), ("u3", 9.0)],
        [("u1", 0.0), ("u2", 20.0), ("u3", 0.0)],
    ];
    for (round, spend) in rounds.iter().enumerate() {
        let lines: Vec<String> = spend
            .iter()
            .map(|(user, cost)| {
                call(
                    &format!("2026-11-24T1{round}:00:00Z"),
                    user,
                    "opus",
                    "s",
                    *cost,
                    10.0,
                    true,
                )
            })
            .collect();
        let windows = sql
            .aggregate(vec![rows(Table::ApiRequests, &lines.join("\n"))], vec![])
            .await
            .unwrap();
        for batch in &windows {
            totals.add_windows(batch).unwrap();
        }
        grand_total += spend.iter().map(|(_, c)| c).sum::<f64>();
        let text = totals.render();
        let series: BTreeMap<String, f64> = text
            .lines()
            .filter(|l| l.starts_with("burnrate_cost_usd_total{"))
            .map(|l| {
                let (labels, value) = l.rsplit_once(' ').unwrap();
                (labels.to_string(), value.parse().unwrap())
            })
            .collect();
        assert!(series.len() <= 3, "two series and other: {series:?}");
        let sum: f64 = series.values().sum();
        assert!(
            (sum - grand_total).abs() < 1e-9,
            "sum {sum} vs {grand_total}"
        );
        for (labels, value) in &series {
            if let Some(before) = previous.get(labels) {
                assert!(value >= before, "{labels} went from {before} to {value}");
            }
        }
        previous = series;
    }
    assert!(
        previous.keys().any(|l| l.contains("user=\"other\"")),
        "{previous:?}"
    );
}

/// A steady hour of calls for `user` starting at `hour` on `date`, `per_minute` dollars a minute.
fn steady_hour(date: &str, hour: u32, user: &str, per_minute: f64) -> String {
    (0..60)
        .map(|m| {
            call(
                &format!("{date}T{hour:02}:{m:02}:30Z"),
                user,
                "opus",
                "s",
                per_minute,
                800.0,
                true,
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn anomaly_history_is_rebuilt_from_usage_windows_after_a_restart() {
    // Day one: a calm hour. Day two, same hour: four times the spend.
    let calm = steady_hour("2026-11-23", 10, "alice", 0.1);
    let busy = steady_hour("2026-11-24", 10, "alice", 0.4);
    let tail = call("2026-11-24T12:00:00Z", "alice", "opus", "s", 0.0, 1.0, true);
    let run = |restart: bool| {
        let dir = tempfile::tempdir().unwrap();
        let mut stage = WindowStage::open(dir.path(), &WindowSpec::default(), "r0", 100).unwrap();
        stage
            .feed(
                "receiver",
                1,
                &tables(rows(Table::ApiRequests, &calm), None),
            )
            .unwrap();
        if restart {
            drop(stage);
            stage = WindowStage::open(dir.path(), &WindowSpec::default(), "r0", 100).unwrap();
        }
        let batch = format!("{busy}\n{tail}");
        stage
            .feed(
                "receiver",
                2,
                &tables(rows(Table::ApiRequests, &batch), None),
            )
            .unwrap();
        dir
    };
    let fired = |dir: tempfile::TempDir| async move {
        dataset_rows(
            dir.path(),
            "SELECT rule, dimension, value, status, CAST(first_seen AS BIGINT) AS first_seen \
             FROM anomalies ORDER BY time, rule, dimension, status",
        )
        .await
    };
    let uninterrupted = pretty_format_batches(&fired(run(false)).await)
        .unwrap()
        .to_string();
    let restarted = pretty_format_batches(&fired(run(true)).await)
        .unwrap()
        .to_string();
    assert!(
        uninterrupted
            .lines()
            .any(|l| ["cost_spike", "user_id", "alice", "firing"]
                .iter()
                .all(|w| l.contains(w))),
        "{uninterrupted}"
    );
    assert_eq!(restarted, uninterrupted, "a restart loses no history");
}

#[test]
fn an_unreachable_pushgateway_costs_ingestion_nothing_and_is_counted() {
    use burnrate_engine::{PipelineHealth, Pushgateway, PushgatewayConfig, WindowPublisher};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // bound, then dropped: nothing listens there
    let health = PipelineHealth::new();
    let config = PushgatewayConfig {
        url: Some(format!("http://127.0.0.1:{port}")),
        timeout_ms: 500,
        ..PushgatewayConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut stage = WindowStage::open(dir.path(), &WindowSpec::default(), "r0", 100).unwrap();
    stage.output_to(Box::new(WindowPublisher::new(
        Pushgateway::start(&config, "r0", health.clone()).unwrap(),
        health.clone(),
    )));
    let started = std::time::Instant::now();
    for (i, batch) in synthetic_batches(5, 200).into_iter().enumerate() {
        stage
            .feed("receiver", i as i64, &tables(batch, None))
            .unwrap();
    }
    let feeding = started.elapsed();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while health.push_failures() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(health.push_failures() > 0, "failed pushes are counted");
    assert!(
        health.render().contains("burnrate_push_failures_total"),
        "and exposed"
    );
    assert!(
        !stage.finish(std::time::Duration::from_millis(300)),
        "the last push is reported undelivered"
    );
    // Feeding never waited on the network: five batches take well under one push timeout each.
    assert!(feeding < std::time::Duration::from_secs(2), "{feeding:?}");
}
