//! Golden tests over the real Claude Code captures in `shared/otlp-samples/` (2.1.197) and
//! `shared/otlp-samples-2.1.332/`: exact row counts and exact sums, with the expected values taken
//! from each folder's README.

use std::path::PathBuf;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::{concat_batches, sum};
use arrow::datatypes::{Float64Type, Int64Type, TimestampNanosecondType, UInt64Type};
use burnrate_otlp::{
    CallSource, Decoder, DeltaTracker, Encoding, Export, MappingConfig, PayloadHint, Table,
    decode_export,
};
use burnrate_pricing::PriceTable;
use prost::Message;

fn samples_dir() -> PathBuf {
    std::env::var_os("BURNRATE_SAMPLES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/otlp-samples")
        })
}

/// The Claude Code 2.1.332 captures, beside the 2.1.197 ones.
fn samples_2_1_332_dir() -> PathBuf {
    std::env::var_os("BURNRATE_SAMPLES_2_1_332")
        .map(PathBuf::from)
        .unwrap_or_else(|| samples_dir().join("../otlp-samples-2.1.332"))
}

fn run_files(run: &str) -> Vec<(String, Vec<u8>)> {
    files_of(&samples_dir().join(run))
}

fn files_of(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let run = dir.display();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("samples of {run}: {e}"))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// Every table of a run, concatenated across its files, with cumulative metrics converted.
struct Run {
    tables: Vec<(Table, RecordBatch)>,
}

impl Run {
    fn decode(run: &str, config: MappingConfig) -> Run {
        Run::decode_files(run, run_files(run), config, PriceTable::embedded())
    }

    fn decode_files(
        run: &str,
        files: Vec<(String, Vec<u8>)>,
        config: MappingConfig,
        prices: PriceTable,
    ) -> Run {
        let decoder = Decoder::new(config, prices);
        let mut tracker = DeltaTracker::new();
        let mut parts: Vec<(Table, RecordBatch)> = Vec::new();
        for (name, bytes) in files {
            let decoded = decoder
                .decode(&bytes, PayloadHint::default())
                .unwrap_or_else(|e| panic!("{run}/{name}: {e}"));
            assert_eq!(decoded.stats.rows_with_errors, 0, "{run}/{name}");
            for (table, batch) in decoded.batches {
                let batch = if table == Table::UsageMetrics {
                    tracker.apply(&batch, 0).unwrap().0
                } else {
                    batch
                };
                parts.push((table, batch));
            }
        }
        let tables = Table::ALL
            .iter()
            .map(|&t| {
                let batches: Vec<_> = parts
                    .iter()
                    .filter(|(p, _)| *p == t)
                    .map(|(_, b)| b.clone())
                    .collect();
                (t, concat_batches(&t.schema(), &batches).unwrap())
            })
            .collect();
        Run { tables }
    }

    fn table(&self, table: Table) -> &RecordBatch {
        &self.tables.iter().find(|(t, _)| *t == table).unwrap().1
    }

    fn rows(&self, table: Table) -> usize {
        self.table(table).num_rows()
    }

    fn strings(&self, table: Table, column: &str) -> Vec<Option<String>> {
        let col = self
            .table(table)
            .column_by_name(column)
            .unwrap()
            .as_string::<i32>();
        col.iter().map(|v| v.map(str::to_string)).collect()
    }

    fn count_where(&self, table: Table, column: &str, value: &str) -> usize {
        self.strings(table, column)
            .iter()
            .filter(|v| v.as_deref() == Some(value))
            .count()
    }

    fn sum_i64(&self, table: Table, column: &str) -> i64 {
        let col = self.table(table).column_by_name(column).unwrap();
        sum(col.as_primitive::<Int64Type>()).unwrap_or(0)
    }

    fn sum_f64(&self, table: Table, column: &str) -> f64 {
        let col = self.table(table).column_by_name(column).unwrap();
        col.as_primitive::<Float64Type>().iter().flatten().sum()
    }

    /// Sum of `usage_metrics.value` for one metric, optionally one `type`.
    fn metric_sum(&self, metric: &str, kind: Option<&str>) -> f64 {
        let t = self.table(Table::UsageMetrics);
        let metrics = t.column_by_name("metric").unwrap().as_string::<i32>();
        let kinds = t.column_by_name("type").unwrap().as_string::<i32>();
        let values = t
            .column_by_name("value")
            .unwrap()
            .as_primitive::<Float64Type>();
        (0..t.num_rows())
            .filter(|&i| metrics.value(i) == metric)
            .filter(|&i| kind.is_none_or(|k| kinds.is_valid(i) && kinds.value(i) == k))
            .map(|i| values.value(i))
            .sum()
    }

    fn durations(&self) -> Vec<f64> {
        let t = self.table(Table::ApiRequests);
        let mut d: Vec<f64> = t
            .column_by_name("duration_ms")
            .unwrap()
            .as_primitive::<Float64Type>()
            .iter()
            .flatten()
            .collect();
        d.sort_by(f64::total_cmp);
        d
    }
}

struct Expected {
    run: &'static str,
    requests: usize,
    errors: usize,
    cost: f64,
    input: i64,
    output: i64,
    cache_read: i64,
    cache_creation: i64,
    /// duration_ms p50 (lower median) and max
    p50_max: Option<(f64, f64)>,
}

const EXPECTED: [Expected; 5] = [
    Expected {
        run: "r01",
        requests: 4,
        errors: 0,
        cost: 0.29192,
        input: 27570,
        output: 4336,
        cache_read: 75840,
        cache_creation: 1240,
        p50_max: Some((698.0, 1247.0)),
    },
    Expected {
        run: "r03",
        requests: 4,
        errors: 0,
        cost: 0.15498105,
        input: 21820,
        output: 2544,
        cache_read: 9791,
        cache_creation: 12913,
        p50_max: Some((207.0, 1009.0)),
    },
    Expected {
        run: "r04",
        requests: 4,
        errors: 0,
        cost: 0.215259,
        input: 13658,
        output: 2917,
        cache_read: 13538,
        cache_creation: 10764,
        p50_max: Some((664.0, 1429.0)),
    },
    Expected {
        run: "r12",
        requests: 4,
        errors: 0,
        cost: 0.13198695,
        input: 17035,
        output: 2378,
        cache_read: 18719,
        cache_creation: 10559,
        p50_max: Some((839.0, 1351.0)),
    },
    Expected {
        run: "r31",
        requests: 0,
        errors: 1,
        cost: 0.0,
        input: 0,
        output: 0,
        cache_read: 0,
        cache_creation: 0,
        p50_max: None,
    },
];

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1.0)
}

#[test]
fn api_requests_match_the_readme_totals_exactly() {
    for e in &EXPECTED {
        let run = Run::decode(e.run, MappingConfig::default());
        let ok = run
            .table(Table::ApiRequests)
            .column_by_name("success")
            .unwrap()
            .as_boolean()
            .true_count();
        assert_eq!(ok, e.requests, "{}: successful api requests", e.run);
        assert_eq!(
            run.rows(Table::ApiRequests) - ok,
            e.errors,
            "{}: api errors",
            e.run
        );
        assert_eq!(
            run.sum_i64(Table::ApiRequests, "input_tokens"),
            e.input,
            "{}",
            e.run
        );
        assert_eq!(
            run.sum_i64(Table::ApiRequests, "output_tokens"),
            e.output,
            "{}",
            e.run
        );
        assert_eq!(
            run.sum_i64(Table::ApiRequests, "cache_read_tokens"),
            e.cache_read,
            "{}",
            e.run
        );
        assert_eq!(
            run.sum_i64(Table::ApiRequests, "cache_creation_tokens"),
            e.cache_creation,
            "{}",
            e.run
        );
        let reported = run.sum_f64(Table::ApiRequests, "cost_usd_reported");
        let computed = run.sum_f64(Table::ApiRequests, "cost_usd");
        assert!(
            close(reported, e.cost),
            "{}: reported {reported} vs {}",
            e.run,
            e.cost
        );
        assert!(
            close(computed, e.cost),
            "{}: computed {computed} vs {}",
            e.run,
            e.cost
        );
        if let Some((p50, max)) = e.p50_max {
            let d = run.durations();
            assert_eq!(d[(d.len() - 1) / 2], p50, "{}: p50", e.run);
            assert_eq!(*d.last().unwrap(), max, "{}: max", e.run);
        }
        // One session per run, and every canonical row knows it.
        let sessions = run.strings(Table::ApiRequests, "session_id");
        assert!(sessions.iter().all(|s| s.is_some()), "{}", e.run);
    }
}

#[test]
fn metrics_agree_with_events_for_delta_and_cumulative_runs() {
    for e in EXPECTED.iter().filter(|e| e.requests > 0) {
        let run = Run::decode(e.run, MappingConfig::default());
        let cost = run.metric_sum("claude_code.cost.usage", None);
        assert!(
            close(cost, e.cost),
            "{}: metric cost {cost} vs {}",
            e.run,
            e.cost
        );
        for (kind, want) in [
            ("input", e.input),
            ("output", e.output),
            ("cacheRead", e.cache_read),
            ("cacheCreation", e.cache_creation),
        ] {
            let got = run.metric_sum("claude_code.token.usage", Some(kind));
            assert_eq!(got, want as f64, "{}: token.usage type={kind}", e.run);
        }
        assert_eq!(
            run.metric_sum("claude_code.lines_of_code.count", None),
            4.0,
            "{}",
            e.run
        );
        assert_eq!(
            run.metric_sum("claude_code.session.count", None),
            1.0,
            "{}",
            e.run
        );
    }
}

#[test]
fn events_tools_and_spans_have_the_documented_counts() {
    for run_name in ["r01", "r03", "r04", "r12"] {
        let run = Run::decode(run_name, MappingConfig::default());
        assert_eq!(run.rows(Table::ToolCalls), 3, "{run_name}");
        let tools = run.strings(Table::ToolCalls, "tool_name");
        let mut tools: Vec<_> = tools.into_iter().flatten().collect();
        tools.sort();
        assert_eq!(tools, ["Bash", "Read", "Write"], "{run_name}");
        let ok = run
            .table(Table::ToolCalls)
            .column_by_name("success")
            .unwrap()
            .as_boolean()
            .true_count();
        assert_eq!(ok, 3, "{run_name}");
        let decisions = run.strings(Table::ToolCalls, "decision");
        assert!(
            decisions.iter().all(|d| d.is_some()),
            "{run_name}: decisions {decisions:?}"
        );
        for (event, n) in [
            ("api_request", 4),
            ("tool_result", 3),
            ("tool_decision", 3),
            ("user_prompt", 1),
            ("assistant_response", 1),
        ] {
            assert_eq!(
                run.count_where(Table::LogRecords, "event_name", event),
                n,
                "{run_name}: {event}"
            );
        }
        for (span, n) in [
            ("claude_code.interaction", 1),
            ("claude_code.llm_request", 4),
            ("claude_code.tool", 3),
            ("claude_code.tool.blocked_on_user", 3),
            ("claude_code.tool.execution", 3),
        ] {
            assert_eq!(
                run.count_where(Table::Spans, "name", span),
                n,
                "{run_name}: {span}"
            );
        }
    }
}

#[test]
fn spans_as_call_source_give_the_same_totals_and_never_both() {
    for e in EXPECTED.iter().filter(|e| e.requests > 0) {
        let config = MappingConfig {
            call_source: CallSource::Spans,
            ..MappingConfig::default()
        };
        let run = Run::decode(e.run, config);
        let sources = run.strings(Table::ApiRequests, "source");
        assert!(
            sources
                .iter()
                .all(|s| s.as_deref() == Some("claude_code.span")),
            "{}",
            e.run
        );
        assert_eq!(run.rows(Table::ApiRequests), e.requests, "{}", e.run);
        assert_eq!(
            run.sum_i64(Table::ApiRequests, "input_tokens"),
            e.input,
            "{}",
            e.run
        );
        assert_eq!(
            run.sum_i64(Table::ApiRequests, "output_tokens"),
            e.output,
            "{}",
            e.run
        );
        assert_eq!(
            run.sum_i64(Table::ApiRequests, "cache_read_tokens"),
            e.cache_read,
            "{}",
            e.run
        );
        let computed = run.sum_f64(Table::ApiRequests, "cost_usd");
        assert!(close(computed, e.cost), "{}: {computed}", e.run);
        assert_eq!(run.rows(Table::ToolCalls), 3, "{}", e.run);
        let ok = run
            .table(Table::ToolCalls)
            .column_by_name("success")
            .unwrap()
            .as_boolean()
            .true_count();
        assert_eq!(ok, 3, "{}", e.run);
    }
}

#[test]
fn r31_every_call_failed_with_529() {
    let run = Run::decode("r31", MappingConfig::default());
    let t = run.table(Table::ApiRequests);
    assert_eq!(t.num_rows(), 1);
    let status = t
        .column_by_name("status_code")
        .unwrap()
        .as_primitive::<arrow::datatypes::Int32Type>();
    assert_eq!(status.value(0), 529);
    assert!(!t.column_by_name("success").unwrap().as_boolean().value(0));
    assert_eq!(
        run.count_where(Table::LogRecords, "event_name", "api_retries_exhausted"),
        1
    );
}

/// JSON and protobuf of the same export decode to identical rows. The JSON runs are turned
/// into protobuf bytes (and the protobuf runs into JSON) by the prost/serde types; both byte
/// strings then go through the full decoder.
#[test]
fn json_and_protobuf_of_the_same_export_decode_identically() {
    let decoder = Decoder::new(MappingConfig::default(), PriceTable::embedded());
    for run in ["r01", "r03", "r04", "r12", "r31"] {
        for (name, bytes) in run_files(run) {
            let export = decode_export(&bytes, PayloadHint::default()).unwrap();
            let (proto, json) = match &export {
                Export::Logs(r) => (r.encode_to_vec(), serde_json::to_vec(r).unwrap()),
                Export::Metrics(r) => (r.encode_to_vec(), serde_json::to_vec(r).unwrap()),
                Export::Traces(r) => (r.encode_to_vec(), serde_json::to_vec(r).unwrap()),
            };
            assert_eq!(Encoding::sniff(&json), Encoding::Json);
            let from_proto = decoder.decode(&proto, PayloadHint::default()).unwrap();
            let from_json = decoder.decode(&json, PayloadHint::default()).unwrap();
            assert_eq!(from_proto.batches, from_json.batches, "{run}/{name}");
            assert!(!from_proto.batches.is_empty());
        }
    }
}

#[test]
fn the_signal_is_read_from_the_payload_not_the_file_name() {
    for run in ["r01", "r03", "r04", "r12", "r31"] {
        for (name, bytes) in run_files(run) {
            let export = decode_export(&bytes, PayloadHint::default()).unwrap();
            let expected = name.split(['-', '.']).nth(1).unwrap();
            assert_eq!(export.signal().as_str(), expected, "{run}/{name}");
        }
    }
}

/// The 2.1.332 captures (shared/otlp-samples-2.1.332/README.md), each with its model.
const EXPECTED_2_1_332: [(&str, Expected); 2] = [
    (
        "claude-opus-5-5",
        Expected {
            run: "r01",
            requests: 4,
            errors: 0,
            cost: 0.218368,
            input: 27570,
            output: 4336,
            cache_read: 75840,
            cache_creation: 1240,
            p50_max: Some((719.0, 1243.0)),
        },
    ),
    (
        "claude-sonnet-4-5",
        Expected {
            run: "r03",
            requests: 4,
            errors: 0,
            cost: 0.15498105,
            input: 21820,
            output: 2544,
            cache_read: 9791,
            cache_creation: 12913,
            p50_max: Some((182.0, 1008.0)),
        },
    ),
];

fn decode_2_1_332(run: &str, config: MappingConfig, prices: PriceTable) -> Run {
    let files = files_of(&samples_2_1_332_dir().join(run));
    Run::decode_files(run, files, config, prices)
}

fn floats(run: &Run, column: &str) -> Vec<Option<f64>> {
    let t = run.table(Table::ApiRequests);
    t.column_by_name(column)
        .unwrap()
        .as_primitive::<Float64Type>()
        .iter()
        .collect()
}

#[test]
fn claude_code_2_1_332_costs_ttft_and_new_fields_land_exactly() {
    for (model, e) in &EXPECTED_2_1_332 {
        let (run_name, cost) = (e.run, e.cost);
        let run = decode_2_1_332(run_name, MappingConfig::default(), PriceTable::embedded());
        assert_eq!(run.rows(Table::ApiRequests), e.requests, "{run_name}");
        assert_eq!(run.count_where(Table::ApiRequests, "model", model), 4);
        assert_eq!(e.errors, 0);
        assert!(
            close(run.sum_f64(Table::ApiRequests, "cost_usd"), cost),
            "{run_name}"
        );
        assert!(
            close(run.sum_f64(Table::ApiRequests, "cost_usd_reported"), cost),
            "{run_name}"
        );
        // Every call priced by the table, and the table agrees with Claude Code to the digit.
        assert_eq!(
            run.count_where(Table::ApiRequests, "cost_source", "price_table"),
            4,
            "{run_name}"
        );
        let mismatch = run
            .table(Table::ApiRequests)
            .column_by_name("cost_mismatch")
            .unwrap()
            .as_boolean()
            .clone();
        assert_eq!(mismatch.false_count(), 4, "{run_name}: {mismatch:?}");
        for (column, want) in [
            ("input_tokens", e.input),
            ("output_tokens", e.output),
            ("cache_read_tokens", e.cache_read),
            ("cache_creation_tokens", e.cache_creation),
        ] {
            assert_eq!(
                run.sum_i64(Table::ApiRequests, column),
                want,
                "{run_name} {column}"
            );
        }
        // The split by cache lifetime is there (zeros: the stand-in API did not report it).
        for column in ["cache_creation_5m_tokens", "cache_creation_1h_tokens"] {
            let t = run.table(Table::ApiRequests);
            assert_eq!(
                t.column_by_name(column).unwrap().null_count(),
                0,
                "{column}"
            );
        }
        let ttft = floats(&run, "ttft_ms");
        assert!(ttft.iter().all(Option::is_some), "{run_name}: {ttft:?}");
        let durations = floats(&run, "duration_ms");
        for (t, d) in ttft.iter().zip(&durations) {
            assert!(
                t.unwrap() <= d.unwrap(),
                "{run_name}: ttft {t:?} > duration {d:?}"
            );
        }
        let d = run.durations();
        let p50_max = (d[(d.len() - 1) / 2], d[d.len() - 1]);
        assert_eq!(Some(p50_max), e.p50_max, "{run_name}");
        assert_eq!(run.count_where(Table::ApiRequests, "speed", "normal"), 4);
        assert_eq!(
            run.count_where(Table::ApiRequests, "query_source", "sdk"),
            4
        );
        // The metrics keep query_source and agree with the events.
        assert!(close(run.metric_sum("claude_code.cost.usage", None), cost));
        let sources = run.strings(Table::UsageMetrics, "query_source");
        assert!(
            sources.iter().any(|s| s.as_deref() == Some("main")),
            "{sources:?}"
        );
    }
}

#[test]
fn claude_code_2_1_332_spans_carry_gen_ai_attributes_but_count_a_call_once() {
    for (model, e) in &EXPECTED_2_1_332 {
        let (run_name, cost, input) = (e.run, e.cost, e.input);
        let events = decode_2_1_332(run_name, MappingConfig::default(), PriceTable::embedded());
        assert_eq!(events.rows(Table::ApiRequests), 4);
        assert_eq!(
            events.count_where(Table::ApiRequests, "source", "claude_code.event"),
            4
        );
        let config = MappingConfig {
            call_source: CallSource::Spans,
            ..MappingConfig::default()
        };
        let spans = decode_2_1_332(run_name, config, PriceTable::embedded());
        assert_eq!(spans.rows(Table::ApiRequests), 4, "{run_name}");
        assert_eq!(spans.count_where(Table::ApiRequests, "model", model), 4);
        assert_eq!(spans.sum_i64(Table::ApiRequests, "input_tokens"), input);
        assert!(close(spans.sum_f64(Table::ApiRequests, "cost_usd"), cost));
        assert!(floats(&spans, "ttft_ms").iter().all(Option::is_some));
    }
}

#[test]
fn a_model_the_price_table_lacks_is_booked_at_its_reported_cost() {
    // A table without claude-opus-5-5: the release before it was added, in effect.
    let table = PriceTable::parse_toml(
        "[models.claude-sonnet-4-5]\ninput = 3.0\noutput = 15.0\ncache_write_5m = 3.75\ncache_read = 0.3\n",
        "old.toml",
    )
    .unwrap();
    let run = decode_2_1_332("r01", MappingConfig::default(), table);
    assert_eq!(
        run.count_where(Table::ApiRequests, "cost_source", "reported"),
        4
    );
    assert!(close(run.sum_f64(Table::ApiRequests, "cost_usd"), 0.218368));
    let mismatch = run
        .table(Table::ApiRequests)
        .column_by_name("cost_mismatch")
        .unwrap()
        .null_count();
    assert_eq!(mismatch, 4, "nothing to compare without a table price");
}

/// Decoding many exports onto one set of builders (as the Kafka source does for a run of
/// messages) gives exactly the rows of decoding each alone, in the same order, for every sample
/// of both releases; an unreadable export in between adds nothing.
#[test]
fn exports_decoded_onto_shared_builders_equal_each_decoded_alone() {
    let decoder = Decoder::new(MappingConfig::default(), PriceTable::embedded());
    let mut files = Vec::new();
    for run in ["r01", "r03", "r04", "r12", "r31"] {
        files.extend(run_files(run));
    }
    for run in ["r01", "r03"] {
        files.extend(files_of(&samples_2_1_332_dir().join(run)));
    }
    for signal in ["logs", "metrics", "traces"] {
        let exports: Vec<&Vec<u8>> = files
            .iter()
            .filter(|(name, _)| name.contains(signal))
            .map(|(_, bytes)| bytes)
            .collect();
        assert!(exports.len() > 2, "{signal}");
        let mut alone: Vec<(Table, Vec<RecordBatch>)> = Vec::new();
        let mut builders = burnrate_otlp::TableBuilders::default();
        let mut plain_bytes = 0;
        for (i, bytes) in exports.iter().enumerate() {
            let decoded = decoder.decode(bytes, PayloadHint::default()).unwrap();
            plain_bytes += decoded.plain_bytes;
            for (table, batch) in decoded.batches {
                match alone.iter_mut().find(|(t, _)| *t == table) {
                    Some((_, batches)) => batches.push(batch),
                    None => alone.push((table, vec![batch])),
                }
            }
            decoder
                .decode_into(bytes, PayloadHint::default(), &mut builders)
                .unwrap();
            if i == 1 {
                let bad = decoder.decode_into(b"\x0a\xff", PayloadHint::default(), &mut builders);
                assert!(bad.is_err());
            }
        }
        let shared = builders.finish().unwrap();
        assert_eq!(shared.plain_bytes, plain_bytes);
        let tables: Vec<Table> = shared.batches.iter().map(|(t, _)| *t).collect();
        let expected: Vec<Table> = alone.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            tables, expected,
            "{signal}: the same tables in the same order"
        );
        for ((table, batch), (_, batches)) in shared.batches.iter().zip(&alone) {
            let concatenated = concat_batches(&batches[0].schema(), batches).unwrap();
            if *table == Table::Resources {
                // Shared builders name a resource once a day for the whole run, each export
                // alone once for itself.
                assert_eq!(
                    resource_days(batch),
                    resource_days(&concatenated),
                    "{signal}"
                );
                assert!(batch.num_rows() < concatenated.num_rows(), "{signal}");
                continue;
            }
            assert_eq!(batch, &concatenated, "{signal}: {table:?}");
        }
    }
}

/// Each (resource, day) of a `resources` batch, with its attributes as `key=value` lines.
fn resource_days(batch: &RecordBatch) -> std::collections::BTreeMap<(u64, i64), Vec<String>> {
    let times = batch.column(0).as_primitive::<TimestampNanosecondType>();
    let ids = batch.column(1).as_primitive::<UInt64Type>();
    let maps = batch.column(2).as_map();
    (0..batch.num_rows())
        .map(|row| {
            let entries = maps.value(row);
            let keys = entries.column(0).as_string::<i32>();
            let values = entries.column(1).as_string::<i32>();
            let pairs = (0..entries.len())
                .map(|i| format!("{}={}", keys.value(i), values.value(i)))
                .collect();
            let day = times.value(row).div_euclid(86_400_000_000_000);
            ((ids.value(row), day), pairs)
        })
        .collect()
}

/// The raw tables carry no resource attributes of their own: each row names its resource by
/// `resource_id`, and `resources` holds that resource, with its attributes as the export sent
/// them, for the row's day. The same attributes give the same id in every signal; two
/// people's exports give two.
#[test]
fn every_raw_row_names_a_resource_its_day_holds() {
    let decoder = Decoder::new(MappingConfig::default(), PriceTable::embedded());
    let mut ids_by_run = Vec::new();
    for run in ["r01", "r03"] {
        let mut builders = burnrate_otlp::TableBuilders::default();
        let files = run_files(run);
        for (_, bytes) in &files {
            decoder
                .decode_into(bytes, PayloadHint::default(), &mut builders)
                .unwrap();
        }
        let decoded = builders.finish().unwrap();
        let resources = resource_days(decoded.batch(Table::Resources).unwrap());
        let mut named = std::collections::BTreeSet::new();
        for table in [Table::LogRecords, Table::MetricPoints, Table::Spans] {
            let batch = decoded.batch(table).unwrap();
            assert!(batch.num_rows() > 0, "{run}: {table:?}");
            assert_eq!(
                batch.column_by_name("resource").unwrap().null_count(),
                batch.num_rows(),
                "{run}: {table:?} carries no attributes of its own"
            );
            let ids = batch
                .column_by_name("resource_id")
                .unwrap()
                .as_primitive::<UInt64Type>();
            let times = batch
                .column_by_name(table.time_column())
                .unwrap()
                .as_primitive::<TimestampNanosecondType>();
            for row in 0..batch.num_rows() {
                let day = times.value(row).div_euclid(86_400_000_000_000);
                assert!(
                    resources.contains_key(&(ids.value(row), day)),
                    "{run}: {table:?} row {row} names a resource its day does not hold"
                );
                named.insert(ids.value(row));
            }
        }
        // Every signal of a run comes from one client: one resource, as the export sent it.
        assert_eq!(named.len(), 1, "{run}: {named:?}");
        let attributes = resources.values().next().unwrap();
        assert!(
            attributes.iter().any(|a| a.starts_with("service.name=")),
            "{run}: {attributes:?}"
        );
        assert!(resources.values().all(|a| a == attributes), "{run}");
        ids_by_run.push(named);
    }
    assert_ne!(ids_by_run[0], ids_by_run[1], "two people, two resources");
}
