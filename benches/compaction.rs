//! A quarter of small files, before and after `burnrate compact`, with DuckDB over the same
//! files in the same run.
//!
//! The dataset is what the receiver leaves after 90 days at a flush every 78 s: 100,000 small
//! `api_requests` files (`date=<day>/receiver-<n>.parquet`, about 15 rows each) listed by the
//! table's Delta log, 200 people in 20 teams, 1.55 million calls (the month of the issue's
//! measurement, three times), and the `usage_windows` the window stage made of the same rows.
//! Files are written without the receiver's fsyncs and committed a thousand at a time, or the
//! set-up alone would take a quarter of an hour.
//!
//! Measured before and after compaction, each the median of 3 (`report daily` once: minutes at
//! this size), each its own process as a user
//! would run it (the CLI's time includes its start):
//! - `api_requests` and `usage_windows` files per day, as their logs list them;
//! - the 90-day query, cost by team and day: `burnrate query`, and DuckDB (Python package
//!   1.4.1) reading the same Parquet files with Hive partitioning, each a process started for
//!   it (DuckDB's query time alone, from inside its process, is printed too);
//! - `burnrate report daily` for the last day;
//! - each process's peak RSS.
//!
//! Then `burnrate compact --vacuum-after 0s` itself: time and peak RSS. The answers before and
//! after are checked to be the same, and DuckDB's against burnrate's.
//!
//! `cargo bench -p burnrate --bench compaction` runs the full size; under `cargo test` it runs
//! 2,000 files over 10 days as a smoke test (`BURNRATE_BENCH_FILES` sets another count). Needs
//! `python3` with `duckdb` (`scripts/test.sh` installs it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use burnrate_engine::sink::parquet_sink::split_by_day;
use burnrate_engine::sink::stored_types;
use burnrate_engine::sink::table_log::{self, DurableFile};
use burnrate_engine::{ParquetSink, WindowSpec, WindowStage};
use burnrate_otlp::Table;
use chrono::DateTime;
use datafusion::parquet::arrow::ArrowWriter;

#[path = "synthetic_calls.rs"]
mod synthetic_calls;
use synthetic_calls::{START_NS, synthetic_team};

const DAY_NS: i64 = 86_400_000_000_000;
const PEOPLE: usize = 200;

/// Set in the child that builds the dataset (its directory).
const BUILD_VAR: &str = "BURNRATE_BENCH_BUILD_INTO";
/// Set in the child that counts the files per day (the dataset's directory).
const COUNT_VAR: &str = "BURNRATE_BENCH_COUNT_FILES_OF";

const COST_BY_TEAM_AND_DAY: &str = "SELECT team, date, round(sum(cost_usd), 6) AS usd, \
    count(*) AS calls FROM api_requests GROUP BY team, date ORDER BY date, team";

/// What one measured process took.
#[derive(Clone, Copy)]
struct Run {
    seconds: f64,
    peak_rss_kib: i64,
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let files: usize = std::env::var("BURNRATE_BENCH_FILES")
        .ok()
        .and_then(|f| f.parse().ok())
        .unwrap_or(if full { 100_000 } else { 2_000 });
    let (days, rows, rounds): (i64, usize, usize) = if full {
        (90, 3 * 517_345, 3)
    } else {
        (10, 30_000, 1)
    };
    // The dataset is built, and its log read, by child processes: a child's peak RSS counts
    // from its parent's at the fork (Linux keeps it across exec), so this process stays small.
    if let Ok(data) = std::env::var(BUILD_VAR) {
        build(Path::new(&data), files, days, rows);
        return;
    }
    if let Ok(data) = std::env::var(COUNT_VAR) {
        for table in COMPACTED {
            let (mean, max) = files_per_day(Path::new(&data), table);
            println!("{mean} {max}");
        }
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let built = timed(
        Command::new(std::env::current_exe().expect("this bench"))
            .args(std::env::args().skip(1))
            .env(BUILD_VAR, &data),
    );
    eprintln!(
        "compaction bench: {files} files, {rows} calls over {days} days written in {:.1} s",
        built.seconds
    );
    let last_day =
        DateTime::from_timestamp_nanos(start_ns(days) + (days - 1) * DAY_NS).date_naive();

    let before = measure(&data, rounds, &last_day.to_string());
    eprintln!(
        "compaction bench, before: {:.1} files a day (most {}); query {:.2} s {} MiB; DuckDB {:.2} s ({:.2} s query) {} MiB; report {:.1} s {} MiB",
        before.files_per_day.0,
        before.files_per_day.1,
        before.query.seconds,
        before.query.peak_rss_kib / 1024,
        before.duckdb.seconds,
        before.duckdb_query,
        before.duckdb.peak_rss_kib / 1024,
        before.report.seconds,
        before.report.peak_rss_kib / 1024
    );
    let compacted = timed(
        Command::new(env!("CARGO_BIN_EXE_burnrate"))
            .args(["compact", "--data"])
            .arg(&data)
            .args(["--vacuum-after", "0s", "--json"]),
    );
    let after = measure(&data, rounds, &last_day.to_string());
    assert_eq!(before.answer, after.answer, "compaction changed the answer");
    for (table, most) in [
        ("api_requests", after.files_per_day.1),
        ("usage_windows", after.window_files_per_day.1),
    ] {
        assert!(most <= 4, "{most} {table} files on a day after compaction");
    }

    println!(
        "compaction bench: {files} api_requests files, {rows} calls, {PEOPLE} people, {days} days"
    );
    println!("| | before | after |");
    println!("|---|---|---|");
    println!(
        "| api_requests files per day (mean / max) | {:.0} / {} | {:.0} / {} |",
        before.files_per_day.0,
        before.files_per_day.1,
        after.files_per_day.0,
        after.files_per_day.1
    );
    println!(
        "| usage_windows files per day (mean / max) | {:.0} / {} | {:.0} / {} |",
        before.window_files_per_day.0,
        before.window_files_per_day.1,
        after.window_files_per_day.0,
        after.window_files_per_day.1
    );
    let row = |what: &str, b: Run, a: Run| {
        println!(
            "| {what} | {:.2} s, {} MiB | {:.2} s, {} MiB |",
            b.seconds,
            b.peak_rss_kib / 1024,
            a.seconds,
            a.peak_rss_kib / 1024
        );
    };
    row(
        "`burnrate query`, cost by team and day",
        before.query,
        after.query,
    );
    row(
        "DuckDB (Python), the same query",
        before.duckdb,
        after.duckdb,
    );
    println!(
        "| DuckDB's query alone, inside its process | {:.2} s | {:.2} s |",
        before.duckdb_query, after.duckdb_query
    );
    row("`burnrate report daily`", before.report, after.report);
    println!(
        "| burnrate's time / DuckDB's | {:.2}x | {:.2}x |",
        before.query.seconds / before.duckdb.seconds,
        after.query.seconds / after.duckdb.seconds
    );
    println!(
        "`burnrate compact`: {:.1} s, peak RSS {} MiB",
        compacted.seconds,
        compacted.peak_rss_kib / 1024
    );
}

/// Where the data starts: `days` before today (UTC) began, so that every day is closed and
/// compaction takes them all.
fn start_ns(days: i64) -> i64 {
    let today = chrono::Utc::now().timestamp_nanos_opt().expect("in range") / DAY_NS * DAY_NS;
    today - days * DAY_NS
}

/// `batch` with its `time` column moved by `by_ns`.
fn shifted(
    batch: &datafusion::arrow::array::RecordBatch,
    by_ns: i64,
) -> datafusion::arrow::array::RecordBatch {
    use datafusion::arrow::array::{AsArray, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::TimestampNanosecondType;
    let index = batch.schema().index_of("time").expect("a time column");
    let times: TimestampNanosecondArray = batch
        .column(index)
        .as_primitive::<TimestampNanosecondType>()
        .unary::<_, TimestampNanosecondType>(|t| t + by_ns)
        .with_timezone("UTC");
    let mut columns = batch.columns().to_vec();
    columns[index] = std::sync::Arc::new(times);
    datafusion::arrow::array::RecordBatch::try_new(batch.schema(), columns).expect("same schema")
}

/// `files` small `api_requests` files over `days`, committed to the table's log, and the
/// windows of the same rows.
fn build(data: &Path, files: usize, days: i64, rows: usize) {
    let step_ns = days * DAY_NS / rows as i64;
    let rows_per_file = rows.div_ceil(files);
    let table_dir = data.join(Table::ApiRequests.name());
    let properties = ParquetSink::flush_properties(Table::ApiRequests);
    let mut stage =
        WindowStage::open(data, &WindowSpec::default(), "bench", 500).expect("window stage");
    let mut pending: Vec<DurableFile> = Vec::new();
    let mut seq = 0usize;
    for (b, batch) in synthetic_team(rows, step_ns, PEOPLE)
        .into_iter()
        .enumerate()
    {
        let batch = shifted(&batch, start_ns(days) - START_NS);
        let mut offset = 0;
        while offset < batch.num_rows() {
            let slice = batch.slice(offset, rows_per_file.min(batch.num_rows() - offset));
            offset += slice.num_rows();
            for (date, part) in split_by_day(&slice, "time").expect("days") {
                let day = table_dir.join(format!("date={date}"));
                std::fs::create_dir_all(&day).expect("day directory");
                let path = day.join(format!("receiver-{seq:020}.parquet"));
                seq += 1;
                let file = std::fs::File::create(&path).expect("file");
                // In the types the receiver's files hold.
                let part = stored_types::to_stored(&part).expect("stored types");
                let mut writer =
                    ArrowWriter::try_new(file, part.schema(), Some(properties.clone()))
                        .expect("writer");
                writer.write(&part).expect("rows");
                writer.close().expect("footer");
                pending.push(DurableFile {
                    table: Table::ApiRequests,
                    path,
                    date,
                    rows: part.num_rows(),
                });
            }
            if pending.len() >= 1_000 {
                table_log::add_files(data, &pending).expect("commit");
                pending.clear();
            }
        }
        let tables = BTreeMap::from([(Table::ApiRequests, vec![batch])]);
        stage.feed("bench", b as i64, &tables).expect("windows fed");
    }
    table_log::add_files(data, &pending).expect("commit");
    stage.close_all().expect("windows closed");
}

/// Mean and most files of `table` on a day, as the table's log lists them.
fn files_per_day(data: &Path, table: Table) -> (f64, usize) {
    let read = table_log::read_table(data, table)
        .expect("log")
        .expect("a table");
    let mut days: BTreeMap<String, usize> = BTreeMap::new();
    for file in &read.files {
        *days.entry(file.date.clone()).or_default() += 1;
    }
    (
        read.files.len() as f64 / days.len().max(1) as f64,
        days.values().copied().max().unwrap_or(0),
    )
}

/// The tables the dataset holds, whose files a day are counted.
const COMPACTED: [Table; 2] = [Table::ApiRequests, Table::UsageWindows];

struct Measured {
    /// Mean and most `api_requests` files on a day.
    files_per_day: (f64, usize),
    /// The same for `usage_windows`.
    window_files_per_day: (f64, usize),
    query: Run,
    duckdb: Run,
    /// DuckDB's query alone, timed inside its process.
    duckdb_query: f64,
    report: Run,
    answer: String,
}

fn measure(data: &Path, rounds: usize, last_day: &str) -> Measured {
    let (_, counted) = timed_output(
        Command::new(std::env::current_exe().expect("this bench")).env(COUNT_VAR, data),
    );
    let mut counted = counted
        .split_whitespace()
        .map(|n| n.parse::<f64>().expect("a count"));
    let mut next_pair = || {
        (
            counted.next().expect("mean"),
            counted.next().expect("max") as usize,
        )
    };
    let files_per_day = next_pair();
    let window_files_per_day = next_pair();
    let mut answer = String::new();
    let query = median(rounds, || {
        let (run, out) = timed_output(
            Command::new(env!("CARGO_BIN_EXE_burnrate"))
                .args(["query", "--format", "csv", "--data"])
                .arg(data)
                .arg(COST_BY_TEAM_AND_DAY),
        );
        answer = out;
        run
    });
    let mut duck_answer = String::new();
    let mut duckdb_query = Vec::new();
    let duckdb = median(rounds, || {
        let (run, query, out) = duckdb(data);
        duck_answer = out;
        duckdb_query.push(query);
        run
    });
    duckdb_query.sort_by(f64::total_cmp);
    let duckdb_query = duckdb_query[duckdb_query.len() / 2];
    let (theirs, ours) = (normalized(&duck_answer), normalized(&answer));
    let first_difference = theirs.iter().zip(&ours).find(|(a, b)| a != b);
    assert!(
        theirs.len() == ours.len() && first_difference.is_none(),
        "DuckDB and burnrate disagree: {} rows against {}, first difference {first_difference:?}",
        theirs.len(),
        ours.len()
    );
    // `report daily` takes minutes at the full size: once.
    let report = median(1, || {
        timed(
            Command::new(env!("CARGO_BIN_EXE_burnrate"))
                .args([
                    "report", "daily", "--format", "json", "--date", last_day, "--data",
                ])
                .arg(data),
        )
    });
    Measured {
        files_per_day,
        window_files_per_day,
        query,
        duckdb,
        duckdb_query,
        report,
        answer,
    }
}

/// The CSV rows without their header, numbers as burnrate and DuckDB both print them.
fn normalized(csv: &str) -> Vec<String> {
    csv.lines()
        .skip(1)
        .map(|line| {
            line.split(',')
                .map(|field| match field.parse::<f64>() {
                    Ok(number) => format!("{number:.4}"),
                    Err(_) => field.to_string(),
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

/// The same query by DuckDB over the table's Parquet files (Hive partitions), in a Python
/// process: the process's run, the query's time alone, and its rows as CSV.
fn duckdb(data: &Path) -> (Run, f64, String) {
    let glob = data.join("api_requests/date=*/*.parquet");
    let script = format!(
        r#"
import csv, io, sys, time, duckdb
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
con.execute("CREATE VIEW api_requests AS SELECT * FROM read_parquet('{glob}', hive_partitioning = true, hive_types = {{'date': VARCHAR}})")
started = time.perf_counter()
rows = con.execute("""{COST_BY_TEAM_AND_DAY}""").fetchall()
seconds = time.perf_counter() - started
out = io.StringIO()
writer = csv.writer(out, lineterminator="\n")
writer.writerow(["team", "date", "usd", "calls"])
writer.writerows(rows)
sys.stderr.write(f"{{seconds}}\n")
sys.stdout.write(out.getvalue())
"#,
        glob = glob.display()
    );
    let mut command = Command::new("python3");
    command.args(["-c", &script]);
    let (run, out, err) = spawn_measured(&mut command);
    let seconds: f64 = err
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("duckdb (pip install duckdb==1.4.1): {err}"));
    (run, seconds, out)
}

fn median(rounds: usize, mut measure: impl FnMut() -> Run) -> Run {
    let mut runs: Vec<Run> = (0..rounds).map(|_| measure()).collect();
    runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    runs[runs.len() / 2]
}

fn timed(command: &mut Command) -> Run {
    timed_output(command).0
}

fn timed_output(command: &mut Command) -> (Run, String) {
    let (run, out, _) = spawn_measured(command);
    (run, out)
}

/// Runs `command` to its end: its wall time, its peak RSS (from `wait4`), its stdout and
/// stderr. Panics if it fails.
fn spawn_measured(command: &mut Command) -> (Run, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (out_path, err_path): (PathBuf, PathBuf) = (dir.path().join("out"), dir.path().join("err"));
    command
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"));
    let started = Instant::now();
    // Reaped by wait4 below, which also gives its rusage; `Child::wait` would not.
    #[allow(clippy::zombie_processes)]
    let child = command.spawn().expect("spawns");
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for the child just spawned.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    // SAFETY: `pid` is this process's child, not reaped yet (`child` is never waited on).
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{command:?} failed: {err}"
    );
    (
        Run {
            seconds,
            peak_rss_kib: usage.ru_maxrss,
        },
        out,
        err,
    )
}
