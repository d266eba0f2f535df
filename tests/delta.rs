//! The tables as Delta Lake tables: what an independent reader (delta-rs's Python package) sees
//! through their logs, and a dataset from before the logs migrated in place.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::s3::S3Server;
use crate::support::*;

/// `tests/support/delta_reader.py` over `table`: its version, files and the rows of `sql`.
fn delta_reader(data: &Path, table: &str, sql: &str) -> Value {
    delta_reader_at(data.to_str().unwrap(), table, sql, &[], &[])
}

/// The same, over a directory or an `s3://` dataset reached with `env`, with the versions its
/// log holds for `app_ids`.
fn delta_reader_at(
    data: &str,
    table: &str,
    sql: &str,
    app_ids: &[String],
    env: &[(&str, String)],
) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/support/delta_reader.py");
    let out = Command::new("python3")
        .arg(script)
        .args([data, table, sql, &app_ids.join(",")])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the deltalake package could not read {table} (scripts/test.sh installs it): {}",
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The data files below a table's directory, its log left out.
fn data_files(table_dir: &Path) -> Vec<String> {
    walk(table_dir)
        .into_iter()
        .filter(|p| p.ends_with(".parquet") && !p.contains("/_delta_log/"))
        .collect()
}

/// Every data file below `table_dir` holds each column in the Parquet type its log declares
/// (`declared`, as the reader printed it): what a reader that trusts the log, such as Spark,
/// needs. Spark refuses `TIMESTAMP(NANOS)`, and reads `UINT_64` as a decimal, not a `long`.
fn assert_files_hold_the_declared_types(table_dir: &Path, declared: &Value) {
    use datafusion::parquet::basic::{
        IntType, LogicalType, TimeUnit, TimestampType, Type as Physical,
    };
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};

    let files = data_files(table_dir);
    assert!(!files.is_empty(), "{}: no files", table_dir.display());
    for path in files {
        let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        let metadata = reader.metadata();
        for column in metadata.file_metadata().schema_descr().columns() {
            let name = column.path().parts()[0].as_str();
            let Some(declared) = declared[name].as_str() else {
                // A map or a struct: its leaves are strings.
                assert!(
                    declared[name].is_object(),
                    "{path}: {name} is not in the log"
                );
                continue;
            };
            let logical = column.logical_type_ref();
            let physical = column.physical_type();
            let matches = match declared {
                "timestamp" => {
                    physical == Physical::INT64
                        && logical
                            == Some(&LogicalType::Timestamp(TimestampType {
                                is_adjusted_to_u_t_c: true,
                                unit: TimeUnit::MICROS,
                            }))
                }
                "long" | "integer" => {
                    let (width, stored) = match declared {
                        "long" => (64, Physical::INT64),
                        _ => (32, Physical::INT32),
                    };
                    let signed = LogicalType::Integer(IntType {
                        bit_width: width,
                        is_signed: true,
                    });
                    physical == stored && logical.is_none_or(|l| *l == signed)
                }
                "double" => physical == Physical::DOUBLE,
                "boolean" => physical == Physical::BOOLEAN,
                "string" | "binary" => physical == Physical::BYTE_ARRAY,
                other => {
                    panic!("{path}: {name} is declared {other}, which this check does not know")
                }
            };
            assert!(
                matches,
                "{path}: {name} is declared {declared} but the file holds {physical:?} {logical:?}"
            );
        }
    }
}

const COST_SQL: &str = "SELECT count(*) AS calls, sum(cost_usd) AS cost, \
    sum(input_tokens) AS input, count(DISTINCT date) AS days FROM api_requests";

#[test]
fn an_independent_delta_reader_sees_the_totals_burnrate_does() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = run_files(&samples(), &data);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_sample_totals(&data, 1.0);

    let ours = one(&data, COST_SQL);
    let theirs = delta_reader(&data, "api_requests", COST_SQL);
    let row = &theirs["rows"][0];
    assert_eq!(row["calls"].as_f64(), Some(num(&ours, "calls")), "{theirs}");
    assert!(close(row["cost"].as_f64().unwrap(), TOTAL_COST), "{theirs}");
    assert_eq!(row["input"].as_f64(), Some(TOTAL_INPUT), "{theirs}");
    assert_eq!(row["days"].as_f64(), Some(num(&ours, "days")), "{theirs}");
    let files = data_files(&data.join("api_requests")).len();
    assert_eq!(theirs["files"].as_u64(), Some(files as u64), "{theirs}");
    assert_files_hold_the_declared_types(&data.join("api_requests"), &theirs["declared"]);

    // Every table with data opens, and its rows are burnrate's.
    for table in [
        "log_records",
        "metric_points",
        "spans",
        "tool_calls",
        "usage_metrics",
    ] {
        let sql = format!("SELECT count(*) AS n FROM {table}");
        let theirs = delta_reader(&data, table, &sql);
        assert_eq!(
            theirs["rows"][0]["n"].as_f64(),
            Some(num(&one(&data, &sql), "n")),
            "{table}: {theirs}"
        );
        assert_files_hold_the_declared_types(&data.join(table), &theirs["declared"]);
    }
    // Span times arrive as Delta timestamps (microseconds) at the same instants.
    let first = "SELECT CAST(min(start_time) AS BIGINT) AS t FROM spans";
    let theirs = delta_reader(&data, "spans", first);
    let ours = one(
        &data,
        "SELECT CAST(min(start_time) AS BIGINT) / 1000 AS t FROM spans",
    );
    assert_eq!(
        theirs["rows"][0]["t"].as_f64(),
        Some(num(&ours, "t")),
        "{theirs}"
    );
}

#[test]
fn a_dataset_from_before_the_logs_is_migrated_in_place_with_identical_totals() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = run_files(&samples(), &data);
    assert!(out.status.success(), "{}", stderr(&out));
    // The dataset as a version before the logs left it: plain Hive-partitioned Parquet.
    let mut tables = 0;
    for entry in std::fs::read_dir(&data).unwrap().flatten() {
        let log = entry.path().join("_delta_log");
        if log.is_dir() {
            std::fs::remove_dir_all(log).unwrap();
            tables += 1;
        }
    }
    assert!(tables >= 6, "{tables} tables had a log");
    let before = one(&data, TOTALS_SQL);
    assert_sample_totals(&data, 1.0);
    let files_before: Vec<(String, Vec<u8>)> = data_files(&data)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();

    let out = burnrate(&["migrate", "--data", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    let adopted = files_before
        .iter()
        .filter(|(p, _)| !p.contains("/_burnrate/"))
        .count();
    assert!(
        said.contains(&format!(
            "{tables} of {tables} tables given a Delta log, {adopted} files adopted in place"
        )),
        "{said}"
    );
    assert_eq!(one(&data, TOTALS_SQL), before);
    for (path, bytes) in &files_before {
        assert_eq!(&std::fs::read(path).unwrap(), bytes, "{path} was rewritten");
    }
    let theirs = delta_reader(&data, "api_requests", COST_SQL);
    assert!(
        close(theirs["rows"][0]["cost"].as_f64().unwrap(), TOTAL_COST),
        "{theirs}"
    );

    // Again: nothing to do.
    let out = burnrate(&["migrate", "--data", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("0 of {tables} tables given a Delta log, 0 files")),
        "{said}"
    );

    // From now on a file no commit added is not read: a crashed flush's copy counts nothing.
    let some_file = data_files(&data.join("api_requests")).remove(0);
    std::fs::copy(
        &some_file,
        some_file.replace(".parquet", "-crashed.parquet"),
    )
    .unwrap();
    assert_eq!(one(&data, TOTALS_SQL), before);
    // A run over the same input adds nothing: the files ledger holds every input.
    let out = run_files(&samples(), &data);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_sample_totals(&data, 1.0);
}

/// Three days of four people's log exports, run one export per segment: over a hundred
/// commits and files per table (`dir/data`, returned).
fn one_file_per_export(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("burnrate.toml");
    std::fs::write(&config, "[files]\nsegment_files = 1\n").unwrap();
    let spec = ["--days", "3", "--users", "4", "--signals", "logs"];
    generated_dataset_with(dir, &spec, &["--config", config.to_str().unwrap()])
}

const CALLS_SQL: &str = "SELECT count(*) AS calls, sum(cost_usd) AS cost, \
    sum(input_tokens) AS input FROM api_requests";

#[test]
fn an_independent_reader_starts_from_burnrates_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = one_file_per_export(dir.path());
    // The hundredth commit wrote a checkpoint.
    let log = data.join("api_requests/_delta_log");
    assert!(
        log.join("00000000000000000100.checkpoint.parquet").exists(),
        "{:?}",
        walk(&log)
    );

    // With the commits the checkpoint covers gone, the table is the checkpoint and the rest.
    for version in 0..100 {
        std::fs::remove_file(log.join(format!("{version:020}.json"))).unwrap();
    }
    let ours = one(&data, CALLS_SQL);
    assert!(num(&ours, "calls") > 1_000.0, "{ours:?}");
    let theirs = delta_reader(&data, "api_requests", CALLS_SQL);
    let row = &theirs["rows"][0];
    assert_eq!(row["calls"].as_f64(), Some(num(&ours, "calls")), "{theirs}");
    assert!(
        close(row["cost"].as_f64().unwrap(), num(&ours, "cost")),
        "{theirs}"
    );
    assert_eq!(row["input"].as_f64(), Some(num(&ours, "input")), "{theirs}");
    let files = data_files(&data.join("api_requests")).len();
    assert_eq!(theirs["files"].as_u64(), Some(files as u64), "{theirs}");
}

/// `burnrate compact` while a reader queries in a loop: every answer is the exact total, the
/// closed days end with one file per table, and vacuum deletes the merged-away files later.
#[test]
fn compaction_under_a_query_loop_keeps_every_answer_exact() {
    let dir = tempfile::tempdir().unwrap();
    let data = one_file_per_export(dir.path());
    let expected = one(&data, CALLS_SQL);
    let files_before = data_files(&data.join("api_requests")).len();
    assert!(files_before > 100, "{files_before}");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (data, stop) = (data.clone(), stop.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            let mut answers = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let asked = std::time::Instant::now();
                let answer = runtime.block_on(async {
                    let ctx = burnrate_engine::open_dataset(&data).await.unwrap();
                    let batches = ctx.sql(CALLS_SQL).await.unwrap().collect().await.unwrap();
                    use datafusion::arrow::array::AsArray;
                    use datafusion::arrow::datatypes::{Float64Type, Int64Type};
                    let batch = &batches[0];
                    (
                        batch.column(0).as_primitive::<Int64Type>().value(0),
                        batch.column(1).as_primitive::<Float64Type>().value(0),
                    )
                });
                answers.push((asked, std::time::Instant::now(), answer));
            }
            answers
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let started = std::time::Instant::now();
    let out = burnrate(&["compact", "--data", data.to_str().unwrap()]);
    let ended = std::time::Instant::now();
    assert!(out.status.success(), "{}", stderr(&out));
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answers = reader.join().unwrap();
    let during = answers
        .iter()
        .filter(|(asked, answered, _)| *asked >= started && *answered <= ended)
        .count();
    assert!(
        during >= 2,
        "{during} of {} answers while compaction ran ({:?})",
        answers.len(),
        ended - started
    );
    for (_, _, (calls, cost)) in &answers {
        assert_eq!(*calls as f64, num(&expected, "calls"));
        assert!(close(*cost, num(&expected, "cost")), "{cost}");
    }
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("files merged into"), "{said}");

    // One file per table and day now, for burnrate and for an independent reader alike.
    let theirs = delta_reader(&data, "api_requests", CALLS_SQL);
    let days = num(
        &one(
            &data,
            "SELECT count(DISTINCT date) AS days FROM api_requests",
        ),
        "days",
    );
    assert_eq!(theirs["files"].as_f64(), Some(days), "{theirs}");
    assert_eq!(
        theirs["rows"][0]["calls"].as_f64(),
        Some(num(&expected, "calls"))
    );
    // The merged-away files stay until vacuum's time is up; then they go.
    assert_eq!(
        data_files(&data.join("api_requests")).len(),
        files_before + days as usize
    );
    let out = burnrate(&[
        "compact",
        "--data",
        data.to_str().unwrap(),
        "--vacuum-after",
        "0s",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(data_files(&data.join("api_requests")).len(), days as usize);
    // The same rows; a sum of floats over other files may differ in its last bit.
    let after = one(&data, CALLS_SQL);
    assert_eq!(num(&after, "calls"), num(&expected, "calls"));
    assert_eq!(num(&after, "input"), num(&expected, "input"));
    assert!(
        close(num(&after, "cost"), num(&expected, "cost")),
        "{after:?}"
    );
}

/// How many rows of every data file of `table` on disk, listed by its log or not, match
/// `predicate`: what a reader of the raw files would still find.
fn rows_on_disk(data: &Path, table: &str, predicate: &str) -> i64 {
    let files = data_files(&data.join(table));
    if files.is_empty() {
        return 0;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use datafusion::arrow::array::AsArray;
        use datafusion::arrow::datatypes::Int64Type;
        let ctx = datafusion::prelude::SessionContext::new();
        let frame = ctx
            .read_parquet(files, datafusion::prelude::ParquetReadOptions::default())
            .await
            .unwrap();
        ctx.register_table("files", frame.into_view()).unwrap();
        let sql = format!("SELECT count(*) FROM files WHERE {predicate}");
        let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
        batches[0].column(0).as_primitive::<Int64Type>().value(0)
    })
}

/// `burnrate forget --user` after a compaction (whose merged-away copies are still on disk):
/// the person's rows leave every table and every file on disk, dead letters holding their id
/// go, everyone else's rows stay, and an independent reader agrees.
#[test]
fn forget_removes_one_persons_rows_from_every_table_and_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let data = one_file_per_export(dir.path());
    let data_arg = data.to_str().unwrap();
    let person = query(
        &data,
        "SELECT user_id FROM api_requests GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
    )[0]["user_id"]
        .as_str()
        .unwrap()
        .to_string();
    let is_person = format!("user_id = '{person}'");
    let raw_is_person = format!("attributes['user.id'] = '{person}'");

    // Two dead letters: one whose bytes hold the person's id, one that does not.
    let input = dir.path().join("in");
    let bad = input.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let export = format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"user.id","value":{{"stringValue":"{person}"}}}}"#
    );
    std::fs::write(bad.join("theirs.json"), &export).unwrap();
    std::fs::write(bad.join("nobodys.json"), r#"{"resourceLogs":[{"scope"#).unwrap();
    let config = dir.path().join("burnrate.toml");
    // (The run says so in its exit code.)
    run_files_with(&input, &data, &["--config", config.to_str().unwrap()]);
    assert_eq!(
        num(&one(&data, "SELECT count(*) AS n FROM dead_letters"), "n"),
        2.0
    );

    let others = "SELECT user_id, count(*) AS calls, sum(cost_usd) AS cost, \
        sum(input_tokens) AS input FROM api_requests GROUP BY 1 ORDER BY 1";
    let before: Vec<_> = query(&data, others)
        .into_iter()
        .filter(|row| row["user_id"].as_str() != Some(&person))
        .collect();
    let count = |table: &str, predicate: &str| {
        num(
            &one(
                &data,
                &format!("SELECT count(*) AS n FROM {table} WHERE {predicate}"),
            ),
            "n",
        )
    };
    let theirs_calls = count("api_requests", &is_person);
    let theirs_records = count("log_records", &raw_is_person);
    let records = count("log_records", "true");
    assert!(theirs_calls > 100.0 && theirs_records > 100.0);
    assert!(count("usage_windows", &is_person) > 0.0);

    // A compaction first: the small files it merges away stay on disk for a week.
    let out = burnrate(&["compact", "--data", data_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(rows_on_disk(&data, "api_requests", &is_person) > theirs_calls as i64);

    let out = burnrate(&["forget", "--user", &person, "--data", data_arg, "--json"]);
    assert!(
        out.status.success(),
        "{}{}",
        stderr(&out),
        String::from_utf8_lossy(&out.stdout)
    );
    let done: Value = serde_json::from_slice(&out.stdout).unwrap();
    let table = |name: &str| {
        done["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == name)
            .unwrap_or_else(|| panic!("{name} in {done}"))
            .clone()
    };
    assert_eq!(
        table("api_requests")["rows_removed"].as_f64(),
        Some(theirs_calls),
        "{done}"
    );
    assert_eq!(
        table("dead_letters")["rows_removed"].as_f64(),
        Some(1.0),
        "{done}"
    );
    assert!(done["sessions"].as_u64().unwrap() >= 1, "{done}");

    // Gone from every table, and from every file on disk.
    for (table, predicate) in [
        ("api_requests", &is_person),
        ("tool_calls", &is_person),
        ("usage_windows", &is_person),
        ("log_records", &raw_is_person),
    ] {
        assert_eq!(count(table, predicate), 0.0, "{table}");
        assert_eq!(rows_on_disk(&data, table, predicate), 0, "{table} on disk");
    }
    let dead = query(&data, "SELECT origin FROM dead_letters");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0]["origin"].as_str().unwrap().contains("nobodys"),
        "{dead:?}"
    );
    // Their sessions' raw rows went too, and nobody else's.
    assert!(count("log_records", "true") <= records - theirs_records);
    let after: Vec<_> = query(&data, others);
    assert_eq!(after.len(), before.len(), "{after:?}");
    for (after, before) in after.iter().zip(&before) {
        for key in ["user_id", "calls", "input"] {
            assert_eq!(after[key], before[key], "{after:?} {before:?}");
        }
        assert!(
            close(num(after, "cost"), num(before, "cost")),
            "{after:?} {before:?}"
        );
    }
    let theirs = delta_reader(&data, "api_requests", CALLS_SQL);
    let ours = one(&data, CALLS_SQL);
    assert_eq!(
        theirs["rows"][0]["calls"].as_f64(),
        Some(num(&ours, "calls"))
    );
    // The files compaction merged and erasure rewrote hold the logs' types too (the dead
    // letters' `size` and the windows' `revision` are unsigned in burnrate).
    for table in [
        "dead_letters",
        "usage_windows",
        "api_requests",
        "log_records",
    ] {
        let sql = format!("SELECT count(*) AS n FROM {table}");
        let theirs = delta_reader(&data, table, &sql);
        assert_files_hold_the_declared_types(&data.join(table), &theirs["declared"]);
    }

    // Nothing is left to forget.
    let out = burnrate(&["forget", "--user", &person, "--data", data_arg, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    for t in again["tables"].as_array().unwrap() {
        assert_eq!(t["rows_removed"], 0, "{again}");
        assert_eq!(t["files_deleted"], 0, "{again}");
    }
}

/// The local log of `table_dir`: its table id (the first commit's `metaData.id`) and its
/// latest version.
fn local_log(table_dir: &Path) -> (String, u64) {
    let log = table_dir.join("_delta_log");
    let first = std::fs::read_to_string(log.join(format!("{:020}.json", 0))).unwrap();
    let id = first
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find_map(|action| action["metaData"]["id"].as_str().map(str::to_string))
        .expect("the first commit has the table's metadata");
    let latest = std::fs::read_dir(&log)
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".json")?.parse::<u64>().ok()
        })
        .max()
        .unwrap();
    (id, latest)
}

/// Three replicas append to the same Delta tables on S3 (moto) at once: the store's totals,
/// as burnrate and Python `deltalake` read them, are the three local tables'; each replica's
/// `txn` is its latest local version. Then a compaction of one replica, and the store's vacuum:
/// merged-away objects stay until it, and it also takes an object no log lists.
#[test]
fn three_replicas_append_to_the_same_delta_tables_on_s3() {
    let s3 = S3Server::start();
    s3.create_bucket("lake");
    let env = s3.env();
    let dir = tempfile::tempdir().unwrap();
    let mirrored = dir.path().join("mirrored.toml");
    // One commit per export file: many commits per table from each replica at once.
    std::fs::write(
        &mirrored,
        "[object_store]\nurl = \"s3://lake/data\"\n[files]\nsegment_files = 1\n",
    )
    .unwrap();
    let local_only = dir.path().join("local.toml");
    std::fs::write(&local_only, "[files]\nsegment_files = 1\n").unwrap();
    // Each replica its own copy of the samples under its own name: its own files.
    let input = |name: &str| {
        let input = dir.path().join(format!("in-{name}"));
        copy_dir(&samples(), &input.join(name));
        input
    };
    let data = |name: &str| dir.path().join(format!("data-{name}"));
    let run = |config: &Path, name: &str, input: &Path| {
        burnrate_command(&[
            "--config",
            config.to_str().unwrap(),
            "run",
            "--source",
            "files",
            "--input",
            input.to_str().unwrap(),
            "--output",
            data(name).to_str().unwrap(),
            "--replica",
            name,
            "--drain",
        ])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .spawn()
        .unwrap()
    };

    // Replica c ran before the store was configured: its commits reach the store when it
    // next starts with it.
    let input_c = input("c");
    let out = run(&local_only, "c", &input_c).wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(s3.keys("lake", "data/").is_empty());
    copy_dir(&samples(), &input_c.join("c2"));

    // Three replicas at once, each committing to the same tables in the bucket.
    let (input_a, input_b) = (input("a"), input("b"));
    let writers = [
        run(&mirrored, "a", &input_a),
        run(&mirrored, "b", &input_b),
        run(&mirrored, "c", &input_c),
    ];
    for writer in writers {
        let out = writer.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_sample_totals(&data("a"), 1.0);
    assert_sample_totals(&data("c"), 2.0);

    // Read through the store's logs alone: every replica's rows, once.
    let lake = "s3://lake/data";
    let totals = one_with_env(lake, TOTALS_SQL, &pairs(&env));
    assert_eq!(num(&totals, "requests"), 16.0 * 4.0, "{totals:?}");
    assert_eq!(num(&totals, "errors"), 4.0, "{totals:?}");
    assert!(close(num(&totals, "cost"), TOTAL_COST * 4.0), "{totals:?}");
    assert_eq!(num(&totals, "input"), TOTAL_INPUT * 4.0, "{totals:?}");

    // An independent reader agrees, and the log says how far each replica's log has come:
    // exactly its latest local version.
    let replicas: Vec<(String, u64)> = ["a", "b", "c"]
        .iter()
        .map(|name| local_log(&data(name).join("api_requests")))
        .collect();
    let app_ids: Vec<String> = replicas
        .iter()
        .map(|(id, _)| format!("burnrate-mirror-{id}"))
        .collect();
    let theirs = delta_reader_at(lake, "api_requests", CALLS_SQL, &app_ids, &env);
    let row = &theirs["rows"][0];
    assert_eq!(row["calls"].as_f64(), Some(4.0 * 17.0), "{theirs}");
    assert!(
        close(row["cost"].as_f64().unwrap(), 4.0 * TOTAL_COST),
        "{theirs}"
    );
    for ((_, latest), app_id) in replicas.iter().zip(&app_ids) {
        assert_eq!(theirs["txn"][app_id].as_u64(), Some(*latest), "{theirs}");
    }
    let local_files: usize = ["a", "b", "c"]
        .iter()
        .map(|name| data_files(&data(name).join("api_requests")).len())
        .sum();
    assert_eq!(
        theirs["files"].as_u64(),
        Some(local_files as u64),
        "{theirs}"
    );

    // A compaction of one replica's directory replaces its files in the store's log too. Its
    // merged-away objects stay in the bucket for readers of older versions, as the local files
    // do, until a vacuum: the totals stay, every listed file is there.
    let objects = || {
        s3.keys("lake", "data/api_requests/")
            .into_iter()
            .filter(|k| !k.contains("/_delta_log/"))
            .count()
    };
    let compact = |vacuum_after: &str| {
        let out = burnrate_command(&[
            "--config",
            mirrored.to_str().unwrap(),
            "compact",
            "--data",
            data("c").to_str().unwrap(),
            "--vacuum-after",
            vacuum_after,
        ])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    };
    let before_compaction = objects();
    compact("7d");
    assert!(
        objects() >= before_compaction,
        "an object left the bucket before its vacuum"
    );
    let after = delta_reader_at(lake, "api_requests", CALLS_SQL, &app_ids, &env);
    assert!(
        after["files"].as_u64() < theirs["files"].as_u64(),
        "{after} after {theirs}"
    );
    // The same rows; the cost summed over other files may differ in its last bit.
    let (before, now) = (&theirs["rows"][0], &after["rows"][0]);
    assert_eq!(now["calls"], before["calls"], "{after}");
    assert_eq!(now["input"], before["input"], "{after}");
    assert!(
        close(
            now["cost"].as_f64().unwrap(),
            before["cost"].as_f64().unwrap()
        ),
        "{after}"
    );
    let (_, compacted) = local_log(&data("c").join("api_requests"));
    assert_eq!(
        after["txn"][&app_ids[2]].as_u64(),
        Some(compacted),
        "{after}"
    );
    assert!(objects() as u64 > after["files"].as_u64().unwrap());
    // A flush that crashed between its put and its commit left an object no log lists. The
    // vacuum takes it and the merged-away objects; every object left is one the log lists.
    let orphan = "data/api_requests/date=2026-11-01/receiver-crashed-00000000000000000001.parquet";
    s3.put("lake", orphan, b"never committed");
    compact("0h");
    assert!(!s3.keys("lake", orphan).contains(&orphan.to_string()));
    let vacuumed = delta_reader_at(lake, "api_requests", CALLS_SQL, &app_ids, &env);
    assert_eq!(vacuumed["rows"], after["rows"], "{vacuumed}");
    assert_eq!(Some(objects() as u64), vacuumed["files"].as_u64());
    let totals = one_with_env(lake, TOTALS_SQL, &pairs(&env));
    assert!(close(num(&totals, "cost"), TOTAL_COST * 4.0), "{totals:?}");
}
