//! The direct decoder (protobuf read in place, `view.rs` and `wire.rs`; OTLP/JSON read in place,
//! `json.rs`) against the reference: prost structs (from protobuf, or from JSON by serde), then
//! the same table mapping (`Decoder::decode_with_prost`). Every input must give identical
//! batches, stats and sizes, or the identical error (dead letters carry its text). Inputs: every
//! real sample of both releases, generated workloads in both encodings, hand-made edge cases of
//! the wire format and of JSON, and thousands of seeded mutations of all of them.

use std::path::{Path, PathBuf};

use burnrate_otlp::proto::collector::logs::v1::ExportLogsServiceRequest;
use burnrate_otlp::proto::common::v1::{AnyValue, KeyValue, KeyValueList, any_value};
use burnrate_otlp::proto::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use burnrate_otlp::{
    Decoded, Decoder, MappingConfig, PayloadHint, RunRoom, Signal, TableBuilders, json,
};
use burnrate_pricing::PriceTable;
use burnrate_workload::{Format, Signals, Temporality, WorkloadSpec};
use prost::Message;

fn samples(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../..")
            .join(default)
    })
}

/// Every sample file of both releases, in a stable order.
fn sample_files() -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for dir in [
        samples("BURNRATE_SAMPLES", "shared/otlp-samples"),
        samples("BURNRATE_SAMPLES_2_1_332", "shared/otlp-samples-2.1.332"),
    ] {
        collect(&dir, &mut files);
    }
    assert!(files.len() > 40, "the samples are beside the repository");
    files
}

fn collect(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "pb" || e == "json") {
            out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
}

fn generated() -> Vec<(String, Vec<u8>)> {
    generated_as(Format::Proto)
}

fn generated_as(format: Format) -> Vec<(String, Vec<u8>)> {
    let spec = WorkloadSpec::team(
        5,
        chrono::NaiveDate::from_ymd_opt(2026, 11, 2).unwrap(),
        1,
        4,
    );
    let calls = spec.calls();
    let mut out = Vec::new();
    for temporality in [Temporality::Delta, Temporality::Cumulative] {
        let signals = Signals {
            metrics: Some(temporality),
            ..Signals::default()
        };
        for export in burnrate_workload::exports(&spec, &calls, signals) {
            out.push((
                format!("generated {format:?} {temporality:?} {}", export.name),
                export.encode(format),
            ));
        }
    }
    out
}

fn decoder() -> Decoder {
    Decoder::new(MappingConfig::default(), PriceTable::embedded())
}

const HINTS: [Option<Signal>; 4] = [
    None,
    Some(Signal::Logs),
    Some(Signal::Metrics),
    Some(Signal::Traces),
];

/// Decodes `bytes` both ways and requires the same answer; returns whether it decoded.
fn same_answer(decoder: &Decoder, what: &str, bytes: &[u8], signal: Option<Signal>) -> bool {
    let hint = PayloadHint {
        signal,
        ..PayloadHint::default()
    };
    let direct = decoder.decode(bytes, hint).map_err(|e| e.to_string());
    let reference = decoder
        .decode_with_prost(bytes, hint)
        .map_err(|e| e.to_string());
    assert_eq!(direct, reference, "{what} read as {signal:?}");
    direct.is_ok()
}

#[test]
fn every_sample_and_generated_export_decodes_as_the_reference_does() {
    let decoder = decoder();
    let mut inputs = sample_files();
    inputs.extend(generated());
    inputs.extend(generated_as(Format::Json));
    let (mut decoded, mut refused) = (0, 0);
    for (name, bytes) in &inputs {
        for signal in HINTS {
            if same_answer(&decoder, name, bytes, signal) {
                decoded += 1;
            } else {
                refused += 1;
            }
        }
    }
    // Each export decodes sniffed and as its own signal; read as another signal, most fail.
    assert!(decoded >= inputs.len() * 2, "{decoded} decoded");
    assert!(refused > inputs.len(), "{refused} refused");
}

/// xorshift64*: seeded, so a failure names an input that can be rebuilt.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of `bytes`, with `other` for splices: what a broken client, a flipped bit or a
/// truncated transfer does to an export.
/// `exports` decoded as one run onto builders given `room`, as a decode worker decodes a
/// Kafka run. Made here, where they are filled: see `examples/moved_builders.rs`.
fn decode_run(decoder: &Decoder, exports: &[&[u8]], room: RunRoom) -> Decoded {
    let mut builders = TableBuilders::with_room(room);
    for bytes in exports {
        decoder
            .decode_into(bytes, PayloadHint::default(), &mut builders)
            .unwrap();
    }
    builders.finish().unwrap()
}

#[test]
fn a_run_given_room_learnt_from_any_run_decodes_to_the_same_batches() {
    let decoder = decoder();
    let samples = sample_files();
    let generated = generated_as(Format::Json);
    let runs: Vec<Vec<&[u8]>> = vec![
        samples.iter().map(|(_, b)| b.as_slice()).collect(),
        generated.iter().map(|(_, b)| b.as_slice()).collect(),
        // One export: its room scaled up to a whole run's, the most room is ever scaled.
        vec![samples[0].1.as_slice()],
    ];
    let bytes = |run: &[&[u8]]| run.iter().map(|b| b.len()).sum::<usize>();
    for (i, run) in runs.iter().enumerate() {
        let without = decode_run(&decoder, run, RunRoom::default());
        assert!(!without.batches.is_empty());
        for (j, teacher) in runs.iter().enumerate() {
            let mut room = RunRoom::default();
            let taught = decode_run(&decoder, teacher, RunRoom::default());
            // Taught as a worker is, whatever the run's size (the smallest teach nothing).
            room.learn(
                &taught.batches,
                bytes(teacher).max(burnrate_otlp::room::LEARN_FROM_BYTES),
            );
            assert_ne!(room, RunRoom::default(), "run {j} taught nothing");
            let with = decode_run(&decoder, run, room.for_run(bytes(run)));
            assert_eq!(with, without, "run {i} given the room of run {j}");
        }
    }
}

fn mutate(rng: &mut Rng, bytes: &[u8], other: &[u8]) -> (String, Vec<u8>) {
    let mut out = bytes.to_vec();
    let at = rng.below(out.len());
    let what = match rng.below(9) {
        0 => {
            out[at] ^= 1 << rng.below(8);
            "bit flip"
        }
        1 => {
            out[at] = [0x00, 0x80, 0xff, 0x7f, 0x0a, 0x12][rng.below(6)];
            "byte set"
        }
        2 => {
            out.truncate(at);
            "truncated"
        }
        3 => {
            let end = (at + 1 + rng.below(64)).min(out.len());
            out.drain(at..end);
            "range deleted"
        }
        4 => {
            let end = (at + 1 + rng.below(64)).min(out.len());
            let copy = out[at..end].to_vec();
            let to = rng.below(out.len());
            out.splice(to..to, copy);
            "range duplicated"
        }
        5 => {
            // A field seen twice: scalars take the last value, messages merge, lists append.
            out.extend_from_slice(other);
            "concatenated"
        }
        6 => {
            let key = [0x08, 0x11, 0x1a, 0x1b, 0x1c, 0x25, 0x26, 0x27, 0xf8, 0x01][rng.below(10)];
            out.insert(at, key);
            "key inserted"
        }
        7 => {
            let start = rng.below(other.len());
            let end = (start + 1 + rng.below(128)).min(other.len());
            out.splice(at..at, other[start..end].iter().copied());
            "spliced"
        }
        _ => {
            // A length prefix made larger or smaller.
            if out[at] & 0x80 == 0 {
                out[at] = out[at].wrapping_add(if rng.below(2) == 0 { 1 } else { 0xff }) & 0x7f;
            }
            "length nudged"
        }
    };
    (what.to_string(), out)
}

#[test]
fn mutated_exports_decode_or_fail_exactly_as_the_reference_does() {
    let decoder = decoder();
    let mut inputs: Vec<Vec<u8>> = sample_files()
        .into_iter()
        .filter(|(name, _)| name.ends_with(".pb"))
        .map(|(_, bytes)| bytes)
        .collect();
    inputs.extend(generated().into_iter().take(40).map(|(_, bytes)| bytes));
    let mut rng = Rng(0x5eed_b1a5);
    let (mut decoded, mut refused) = (0, 0);
    for round in 0..10_000 {
        let bytes = &inputs[rng.below(inputs.len())];
        let other = &inputs[rng.below(inputs.len())];
        let (what, mut mutated) = mutate(&mut rng, bytes, other);
        // Some inputs get a second mutation on top of the first.
        let mut what = what;
        if rng.below(3) == 0 {
            let (again, twice) = mutate(&mut rng, &mutated, other);
            what = format!("{what}, then {again}");
            mutated = twice;
        }
        let signal = HINTS[rng.below(HINTS.len())];
        let name = format!("round {round} ({what})");
        if same_answer(&decoder, &name, &mutated, signal) {
            decoded += 1;
        } else {
            refused += 1;
        }
    }
    // Both outcomes are exercised in numbers, or the comparison proves little.
    assert!(decoded > 500, "{decoded} decoded, {refused} refused");
    assert!(refused > 2000, "{decoded} decoded, {refused} refused");
}

/// The signal a JSON export's first key names.
fn json_signal(bytes: &[u8]) -> Signal {
    let text = String::from_utf8_lossy(bytes);
    let first = ["resourceLogs", "resourceMetrics", "resourceSpans"]
        .into_iter()
        .filter_map(|key| text.find(key).map(|at| (at, key)))
        .min();
    match first {
        Some((_, "resourceMetrics")) => Signal::Metrics,
        Some((_, "resourceSpans")) => Signal::Traces,
        _ => Signal::Logs,
    }
}

fn json_inputs() -> Vec<(String, Vec<u8>)> {
    let mut inputs: Vec<_> = sample_files()
        .into_iter()
        .filter(|(name, _)| name.ends_with(".json"))
        .collect();
    inputs.extend(generated_as(Format::Json));
    inputs
}

#[test]
fn json_exports_as_claude_code_and_opentelemetry_proto_write_them_are_read_in_place() {
    let inputs = json_inputs();
    assert!(inputs.len() > 40, "{} JSON exports", inputs.len());
    for (name, bytes) in &inputs {
        let arena = bumpalo::Bump::new();
        assert!(
            json::read(bytes, None, &arena).is_some(),
            "{name} was left to serde: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(3000)])
        );
    }
}

/// Fragments of OTLP/JSON that serde reads in its own ways: nulls, numbers as strings and
/// strings as numbers, `-0`, floats and exponents where integers go, integers past 64 bits,
/// numbers past f64's range (`1e400`, a 318-digit integer), escapes, hex ids with a prefix, in
/// upper case or odd, values of every kind.
const JSON_VALUES: [&str; 32] = [
    "null",
    "1e400",
    "-184467440737095516160000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "-0",
    "0",
    "-1",
    "7",
    "1.5",
    "1e2",
    "-2.5E-3",
    "4294967296",
    "18446744073709551616",
    "9223372036854775808",
    "\"12\"",
    "\"+12\"",
    "\"-3\"",
    "\"abc\"",
    "\"\\u0041\\n\\\"q\\\"\"",
    "\"\\ud800\"",
    "\"0x0102\"",
    "\"ABCDEF0123456789\"",
    "\"abc\"",
    "true",
    "false",
    "{}",
    "[]",
    "[{}]",
    "{\"stringValue\":\"x\"}",
    "{\"intValue\":\"5\"}",
    "{\"doubleValue\":1}",
    "{\"values\":[]}",
    "{\"bytesValue\":\"AAE=\"}",
];

/// Field names of every OTLP/JSON message, and a few that are no field.
const JSON_KEYS: [&str; 38] = [
    "key",
    "value",
    "keyStrindex",
    "stringValue",
    "intValue",
    "doubleValue",
    "boolValue",
    "arrayValue",
    "kvlistValue",
    "bytesValue",
    "values",
    "attributes",
    "droppedAttributesCount",
    "timeUnixNano",
    "observedTimeUnixNano",
    "startTimeUnixNano",
    "severityNumber",
    "body",
    "traceId",
    "spanId",
    "parentSpanId",
    "kind",
    "status",
    "code",
    "events",
    "links",
    "asDouble",
    "asInt",
    "sum",
    "gauge",
    "histogram",
    "isMonotonic",
    "time_unix_nano",
    "x-unknown",
    // The top-level keys, so an export names two signals, one twice, or one by its alias.
    "resourceLogs",
    "resourceMetrics",
    "resourceSpans",
    "resource_logs",
];

/// One mutation of a JSON export: a value, a key or a member replaced or added, or one of the
/// byte mutations any transfer can make.
fn mutate_json(rng: &mut Rng, bytes: &[u8], other: &[u8]) -> (String, Vec<u8>) {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let at_each = |c: char| -> Vec<usize> { text.match_indices(c).map(|(i, _)| i).collect() };
    let pick = |rng: &mut Rng, list: &[usize]| list.get(rng.below(list.len())).copied();
    let value = JSON_VALUES[rng.below(JSON_VALUES.len())];
    let key = JSON_KEYS[rng.below(JSON_KEYS.len())];
    match rng.below(4) {
        0 => {
            // The scalar after a colon replaced.
            let Some(colon) = pick(rng, &at_each(':')) else {
                return mutate(rng, bytes, other);
            };
            let rest = &text[colon + 1..];
            let end = if let Some(string) = rest.strip_prefix('"') {
                string.find('"').map(|i| i + 2)
            } else {
                rest.find([',', '}', ']'])
            };
            match end {
                Some(end) if !rest.starts_with(['{', '[']) => {
                    let out = format!("{}:{value}{}", &text[..colon], &rest[end..]);
                    (format!("value set to {value}"), out.into_bytes())
                }
                _ => mutate(rng, bytes, other),
            }
        }
        1 => {
            // A key renamed: duplicates, unknown fields, fields of another message.
            let Some(quote) = pick(rng, &at_each('"')) else {
                return mutate(rng, bytes, other);
            };
            let rest = &text[quote + 1..];
            match rest.find('"') {
                Some(end) if rest[end + 1..].trim_start().starts_with(':') => {
                    let out = format!("{}\"{key}{}", &text[..quote], &rest[end..]);
                    (format!("key renamed to {key}"), out.into_bytes())
                }
                _ => mutate(rng, bytes, other),
            }
        }
        2 => {
            // A member added at the start of an object.
            let Some(brace) = pick(rng, &at_each('{')) else {
                return mutate(rng, bytes, other);
            };
            let empty = text[brace + 1..].trim_start().starts_with('}');
            let member = format!("\"{key}\": {value}{}", if empty { "" } else { "," });
            let out = format!("{}{member}{}", &text[..=brace], &text[brace + 1..]);
            (format!("member {member} added"), out.into_bytes())
        }
        _ => mutate(rng, bytes, other),
    }
}

#[test]
fn mutated_json_exports_decode_or_fail_exactly_as_the_reference_does() {
    let decoder = decoder();
    let inputs: Vec<Vec<u8>> = json_inputs().into_iter().map(|(_, bytes)| bytes).collect();
    let mut rng = Rng(0x0715_0b1a);
    let (mut in_place, mut by_serde, mut refused) = (0, 0, 0);
    for round in 0..6_000 {
        let bytes = &inputs[rng.below(inputs.len())];
        let other = &inputs[rng.below(inputs.len())];
        let (mut what, mut mutated) = mutate_json(&mut rng, bytes, other);
        if rng.below(3) == 0 {
            let (again, twice) = mutate_json(&mut rng, &mutated, other);
            what = format!("{what}, then {again}");
            mutated = twice;
        }
        // Mostly as its own signal or sniffed; read as another, an export is refused.
        let signal = match rng.below(4) {
            0 => HINTS[rng.below(HINTS.len())],
            1 => None,
            _ => Some(json_signal(&mutated)),
        };
        let name = format!("JSON round {round} ({what})");
        let arena = bumpalo::Bump::new();
        let read = json::read(&mutated, signal, &arena);
        match (same_answer(&decoder, &name, &mutated, signal), read) {
            (true, Some(_)) => in_place += 1,
            (true, None) => by_serde += 1,
            (false, Some(_)) => panic!("{name}: read in place, yet the reference refused it"),
            (false, None) => refused += 1,
        }
    }
    // Each path is exercised in numbers, or the comparison proves little.
    assert!(
        in_place > 800 && by_serde > 500 && refused > 2_000,
        "{in_place} read in place, {by_serde} left to serde and decoded, {refused} refused"
    );
}

/// A logs export of one record with `record`'s members.
fn json_record(record: &str) -> String {
    format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"claude-code"}}}}]}},"scopeLogs":[{{"scope":{{"name":"s"}},"logRecords":[{{{record}}}]}}]}}]}}"#
    )
}

#[test]
fn json_edge_cases_are_answered_as_the_reference_answers_them() {
    let decoder = decoder();
    let attr = |value: &str| {
        format!(
            r#""timeUnixNano":"1795536505716000000","attributes":[{{"key":"k","value":{value}}}]"#
        )
    };
    // (record members, whether the reader takes it in place)
    let cases: Vec<(String, bool)> = vec![
        (attr(r#"{"stringValue":"plain"}"#), true),
        (attr(r#"{"stringValue":"tab\there \"quoted\" \u00e9 \ud83d\ude00"}"#), true),
        (attr(r#"{"intValue":"-42"}"#), true),
        (attr(r#"{"intValue":42}"#), true),
        (attr(r#"{"intValue":"+42"}"#), true),
        (attr(r#"{"doubleValue":2}"#), true),
        (attr(r#"{"doubleValue":0.1e-2}"#), true),
        (attr(r#"{"boolValue":false}"#), true),
        (attr(r#"{}"#), true),
        (attr("null"), true),
        (attr(r#"{"arrayValue":{"values":[{"stringValue":"a"},{"intValue":1}]}}"#), true),
        (attr(r#"{"kvlistValue":{"values":[{"key":"in","value":{"boolValue":true}}]}}"#), true),
        (r#""timeUnixNano":1795536505716000000,"body":null,"traceId":"ABCDEF0123456789ABCDEF0123456789","spanId":"""#.into(), true),
        (r#""timeUnixNano":"1795536505716000000","severityNumber":9,"severityText":"INFO","eventName":"claude_code.api_request","flags":1,"droppedAttributesCount":0,"unknownField":{"a":[1,true,"x"]}"#.into(), true),
        // Near misses of the attribute and string value read in one go (`{"key":"…","value":`,
        // `{"stringValue":"…"}`), read field by field instead.
        (r#""attributes":[{"key":"k","value":{"stringValue":"v"},"keyStrindex":0}]"#.into(), true),
        (r#""attributes":[{"value":{"stringValue":"v"},"key":"k"}]"#.into(), true),
        (r#""attributes":[{ "key":"k","value":{ "stringValue":"v" } }]"#.into(), true),
        (r#""attributes":[{"key":"k","value":{"stringValue":"v"} }]"#.into(), true),
        (r#""attributes":[{"key":"k\u0041","value":{"stringValue":"v\u0042"}}]"#.into(), true),
        (r#""attributes":[{"key":"k","value":null},{"key":"","value":{"stringValue":""}}]"#.into(), true),
        (r#""body":{"stringValue":"b"},"attributes":[{"key":"k","value":{"intValue":"7"}}]"#.into(), true),
        (r#""attributes":[{"key":"k","value":{"stringValue":"v"},"key":"k2"}]"#.into(), false),
        (r#""attributes":[{"key":"k","value":{"stringValue":"v"},"value":null}]"#.into(), false),
        (r#""attributes":[{"key":"k","value":{"stringValue":"v","stringValue":"w"}}]"#.into(), false),
        (r#""attributes":[{"key":"k","value":{"stringValue":"v","intValue":1}}]"#.into(), false),
        (r#""attributes":[{"key":"k","value":{"stringValue":null}}]"#.into(), false),
        ("\"attributes\":[{\"key\":\"k\u{1}\",\"value\":{\"stringValue\":\"v\"}}]".into(), false),
        ("\"attributes\":[{\"key\":\"k\",\"value\":{\"stringValue\":\"v\u{1f}\"}}]".into(), false),
        // Left to serde: it reads these in its own ways, or fails them.
        (attr(r#"{"intValue":-0}"#), false),
        (attr(r#"{"intValue":1.0}"#), false),
        (attr(r#"{"intValue":"9223372036854775808"}"#), false),
        (attr(r#"{"stringValue":null}"#), false),
        (attr(r#"{"stringValue":"a","intValue":1}"#), false),
        (attr(r#"{"bytesValue":"AAE="}"#), false),
        (attr(r#"{"stringValue":"raw	tab"}"#), false),
        (attr(r#"{"arrayValue":{}}"#), false),
        (r#""timeUnixNano":"1","timeUnixNano":"2""#.into(), false),
        (r#""timeUnixNano":-0"#.into(), false),
        (r#""timeUnixNano":"-1""#.into(), false),
        (r#""severityNumber":9.0"#.into(), false),
        (r#""severityNumber":4294967296"#.into(), false),
        (r#""traceId":"0x0102""#.into(), false),
        (r#""traceId":"abc""#.into(), false),
        (r#""severityText":null"#.into(), false),
        (r#""attributes":[{"value":{"stringValue":"no key"}}]"#.into(), false),
        // Past f64's range: serde skips it here, but fails it where it buffers (below).
        (r#""unknownField":1e400"#.into(), false),
        (r#""unknownField":[-1e309]"#.into(), false),
    ];
    for (record, in_place) in &cases {
        let export = json_record(record);
        let arena = bumpalo::Bump::new();
        let read = json::read(export.as_bytes(), Some(Signal::Logs), &arena).is_some();
        assert_eq!(read, *in_place, "{record}");
        for signal in [None, Some(Signal::Logs)] {
            same_answer(&decoder, record, export.as_bytes(), signal);
        }
    }
    // A number past f64's range in a field serde does not know, where it buffers the struct
    // for its `flatten` field: serde fails the export, so the reader must not take it (a
    // finding of the decode_json fuzz target, fuzz/regressions/decode_json/).
    for unknown in [
        r#"{"name":"m","x":1e754,"gauge":{"dataPoints":[{"asInt":"1"}]}}"#,
        r#"{"name":"m","gauge":{"dataPoints":[{"asInt":"1","x":[-1e309]}]}}"#,
        r#"{"name":"m","gauge":{"dataPoints":[{"asInt":"1","attributes":[{"key":"k","value":{"x":{"y":1e400}}}]}]}}"#,
    ] {
        let export =
            format!(r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{unknown}]}}]}}]}}"#);
        let arena = bumpalo::Bump::new();
        assert!(
            json::read(export.as_bytes(), None, &arena).is_none(),
            "{unknown}"
        );
        for signal in HINTS {
            assert!(
                !same_answer(&decoder, unknown, export.as_bytes(), signal),
                "{unknown}"
            );
        }
    }
    // Nesting past the reader's limit is left to serde, which reads it up to its own.
    let mut deep = r#"{"stringValue":"x"}"#.to_string();
    for _ in 0..json::MAX_DEPTH {
        deep = format!(r#"{{"arrayValue":{{"values":[{deep}]}}}}"#);
    }
    let export = json_record(&attr(&deep));
    let arena = bumpalo::Bump::new();
    assert!(json::read(export.as_bytes(), Some(Signal::Logs), &arena).is_none());
    same_answer(&decoder, "deep", export.as_bytes(), Some(Signal::Logs));
    // The attribute and string value read in one go stop at the same depth as the field by
    // field read: nestings of every depth around the limit (an `arrayValue` nests three deep, a
    // `kvlistValue` four), read as written and with spaces that defeat the one-go read.
    let mut answers = (0, 0);
    for arrays in (json::MAX_DEPTH as usize / 3 - 7)..=(json::MAX_DEPTH as usize / 3) {
        let innermost = [r#"{"stringValue":"x"}"#, "null"];
        for (lists, innermost) in (0..4).flat_map(|l| innermost.map(|value| (l, value))) {
            let mut value = innermost.to_string();
            for _ in 0..lists {
                value =
                    format!(r#"{{"kvlistValue":{{"values":[{{"key":"k","value":{value}}}]}}}}"#);
            }
            for _ in 0..arrays {
                value = format!(r#"{{"arrayValue":{{"values":[{value}]}}}}"#);
            }
            let export = json_record(&attr(&value));
            let spaced = export
                .replace(r#"{"key""#, r#"{ "key""#)
                .replace(r#"{"stringValue""#, r#"{ "stringValue""#);
            let read = |text: &str| {
                let arena = bumpalo::Bump::new();
                json::read(text.as_bytes(), Some(Signal::Logs), &arena).is_some()
            };
            let in_place = read(&export);
            assert_eq!(
                in_place,
                read(&spaced),
                "{arrays} arrays, {lists} lists, {innermost}"
            );
            if in_place {
                answers.0 += 1;
            } else {
                answers.1 += 1;
            }
            same_answer(&decoder, &export, export.as_bytes(), Some(Signal::Logs));
        }
    }
    // The nestings straddle the limit: some are read in place, some left to serde.
    assert!(answers.0 > 0 && answers.1 > 0, "{answers:?} read, refused");
    // Trailing bytes after the export, and an export of another signal.
    for bad in [
        format!("{} x", json_record("")),
        r#"{"resourceSpans":[{}]}"#.to_string(),
    ] {
        let arena = bumpalo::Bump::new();
        assert!(json::read(bad.as_bytes(), Some(Signal::Logs), &arena).is_none());
        assert!(!same_answer(
            &decoder,
            &bad,
            bad.as_bytes(),
            Some(Signal::Logs)
        ));
    }
    // Read with no signal given, the one top-level key names it; whatever the sniff would
    // answer otherwise (two signals, one twice, an alias, none) is left to it.
    let logs = r#"[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"1"}]}]}]"#;
    let metrics =
        r#"[{"scopeMetrics":[{"metrics":[{"name":"m","gauge":{"dataPoints":[{"asInt":"1"}]}}]}]}]"#;
    for (export, in_place) in [
        (format!(r#"{{"resourceLogs":{logs}}}"#), true),
        (
            format!(r#"{{"x":1,"resourceLogs":{logs},"y":[true,"z"]}}"#),
            true,
        ),
        (format!(r#"{{"resource\u004cogs":{logs}}}"#), true),
        (format!(r#"{{"resourceMetrics":{metrics}}}"#), true),
        (
            format!(r#"{{"resourceLogs":{logs},"resourceMetrics":{metrics}}}"#),
            false,
        ),
        (
            format!(r#"{{"resourceLogs":{logs},"resourceMetrics":null}}"#),
            false,
        ),
        (
            format!(r#"{{"resourceLogs":{logs},"resourceLogs":{logs}}}"#),
            false,
        ),
        (format!(r#"{{"resource_logs":{logs}}}"#), false),
        (
            format!(r#"{{"resourceLogs":{logs},"resource_spans":{logs}}}"#),
            false,
        ),
        (r#"{"resourceLogs":[]}"#.to_string(), false),
        ("{}".to_string(), false),
    ] {
        let arena = bumpalo::Bump::new();
        let read = json::read(export.as_bytes(), None, &arena).is_some();
        assert_eq!(read, in_place, "{export}");
        for signal in HINTS {
            same_answer(&decoder, &export, export.as_bytes(), signal);
        }
    }
}

fn log_export(attributes: Vec<KeyValue>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: 1_764_000_000_000_000_000,
                    attributes,
                    ..LogRecord::default()
                }],
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}

/// An attribute whose value nests `depth` key-value lists.
fn nested(depth: usize) -> KeyValue {
    let mut value = AnyValue {
        value: Some(any_value::Value::StringValue("leaf".into())),
    };
    for _ in 0..depth {
        value = AnyValue {
            value: Some(any_value::Value::KvlistValue(KeyValueList {
                values: vec![KeyValue {
                    key: "k".into(),
                    value: Some(value),
                    ..KeyValue::default()
                }],
            })),
        };
    }
    KeyValue {
        key: "deep".into(),
        value: Some(value),
        ..KeyValue::default()
    }
}

fn varint(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A length-delimited field wrapping `inner`.
fn field(tag: usize, inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint((tag << 3) | 2, &mut out);
    varint(inner.len(), &mut out);
    out.extend_from_slice(inner);
    out
}

/// A record's attribute (field 6): `key` and a value of `value_fields`, framed by hand.
fn string_attribute(key: &[u8], value_fields: &[u8]) -> Vec<u8> {
    field(6, &[field(1, key), field(2, value_fields)].concat())
}

/// A log export whose one record is `record`, framed by hand.
fn framed_record(record: &[u8]) -> Vec<u8> {
    field(1, &field(2, &field(2, record)))
}

#[test]
fn edge_cases_of_the_wire_format_are_answered_as_the_reference_answers_them() {
    let decoder = decoder();
    let logs = Some(Signal::Logs);
    let time = {
        let mut t = vec![0x09];
        t.extend_from_slice(&1_764_000_000_000_000_000u64.to_le_bytes());
        t
    };
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        // Nesting: prost stops at 100 messages deep. A record's attribute value is 5 deep and
        // each key-value list adds 3 (list, pair, value): 31 lists fit, 32 do not.
        (
            "31 lists deep",
            log_export(vec![nested(31)]).encode_to_vec(),
            true,
        ),
        (
            "32 lists deep",
            log_export(vec![nested(32)]).encode_to_vec(),
            false,
        ),
        ("empty", Vec::new(), true),
        ("an empty record", framed_record(&[]), true),
        ("a time", framed_record(&time), true),
        (
            "unknown fields of every wire type",
            framed_record(
                &[
                    time.clone(),
                    vec![0xf8, 0x01, 0x05], // field 31, varint
                    vec![0xf9, 0x01, 1, 2, 3, 4, 5, 6, 7, 8], // field 31, fixed64
                    vec![0xfd, 0x01, 1, 2, 3, 4], // field 31, fixed32
                    field(30, b"unknown bytes"), // field 30, length-delimited
                    vec![0xfb, 0x01, 0x08, 0x01, 0xfc, 0x01], // field 31, a group
                ]
                .concat(),
            ),
            true,
        ),
        (
            "a group ended by another tag",
            framed_record(&[0xfb, 0x01, 0xf4, 0x01]),
            false,
        ),
        ("a lone end group", framed_record(&[0xfc, 0x01]), false),
        ("field number 0", framed_record(&[0x00, 0x01]), false),
        ("wire type 7", framed_record(&[0x0f]), false),
        ("the time as a varint", framed_record(&[0x08, 0x01]), false),
        (
            "a severity text that is not UTF-8",
            framed_record(&field(3, &[0xc3, 0x28])),
            false,
        ),
        (
            "an attribute key that is not UTF-8",
            framed_record(&field(6, &field(1, &[0xff, 0xfe]))),
            false,
        ),
        (
            "the severity text twice: the last wins",
            framed_record(&[time.clone(), field(3, b"INFO"), field(3, b"WARN")].concat()),
            true,
        ),
        (
            "the body twice: the two merge",
            framed_record(
                &[
                    time.clone(),
                    field(5, &field(1, b"claude_code.api_request")),
                    field(5, &[0x10, 0x01]),
                ]
                .concat(),
            ),
            true,
        ),
        (
            "a record running past its export",
            {
                let mut bytes = framed_record(&time);
                bytes[1] -= 2;
                bytes
            },
            false,
        ),
        (
            "a length past the end",
            framed_record(&[0x1a, 0x7f, b'x']),
            false,
        ),
        (
            "a varint of eleven bytes",
            framed_record(&[
                0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ]),
            false,
        ),
        ("a cut fixed64", framed_record(&[0x09, 1, 2, 3]), false),
        // Attributes with a string value are read in one go when they are exactly a key and a
        // value (`Reader::string_pair`); near misses are read field by field.
        (
            "a string attribute",
            framed_record(&string_attribute(b"model", &field(1, b"claude-opus-4-6"))),
            true,
        ),
        (
            "a string attribute with lengths of two bytes",
            framed_record(&string_attribute(&[b'k'; 200], &field(1, &[b'v'; 300]))),
            true,
        ),
        (
            "an empty key and an empty value",
            framed_record(&string_attribute(b"", &field(1, b""))),
            true,
        ),
        (
            "a string attribute whose value is not UTF-8",
            framed_record(&string_attribute(b"model", &field(1, &[0xc3, 0x28]))),
            false,
        ),
        (
            "a string attribute whose value holds two strings: the last wins",
            framed_record(&string_attribute(
                b"model",
                &[field(1, b"first"), field(1, b"second")].concat(),
            )),
            true,
        ),
        (
            "a string attribute with an unknown field after its value",
            framed_record(&field(
                6,
                &[
                    field(1, b"model"),
                    field(2, &field(1, b"x")),
                    field(9, b"?"),
                ]
                .concat(),
            )),
            true,
        ),
        (
            "a string attribute, value before key",
            framed_record(&field(
                6,
                &[field(2, &field(1, b"x")), field(1, b"model")].concat(),
            )),
            true,
        ),
        (
            "a string value running past its attribute",
            {
                let mut pair = string_attribute(b"model", &field(1, b"claude"));
                // The value's own length (its last byte before the text) grows by one.
                let at = pair.len() - b"claude".len() - 1;
                pair[at] += 1;
                framed_record(&pair)
            },
            false,
        ),
        (
            "a string attribute cut short",
            {
                let pair = string_attribute(b"model", &field(1, b"claude"));
                framed_record(&pair[..pair.len() - 2])
            },
            false,
        ),
    ];
    for (what, bytes, decodes) in cases {
        assert_eq!(
            same_answer(&decoder, what, &bytes, logs),
            decodes,
            "{what}: decodes?"
        );
    }
}

/// A metrics export with every kind of point, as a Collector's host metrics might send it.
fn every_metric_kind() -> Vec<u8> {
    use burnrate_otlp::proto::collector::metrics::v1::ExportMetricsServiceRequest;
    use burnrate_otlp::proto::metrics::v1::{
        ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
        Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Summary, SummaryDataPoint,
        exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
        summary_data_point::ValueAtQuantile,
    };
    let time = 1_764_000_000_000_000_000;
    let attributes = vec![KeyValue {
        key: "host".into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue("a".into())),
        }),
        ..KeyValue::default()
    }];
    let metric = |name: &str, data| Metric {
        name: name.into(),
        unit: "1".into(),
        data: Some(data),
        ..Metric::default()
    };
    let metrics = vec![
        metric(
            "gauge",
            Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint {
                    attributes: attributes.clone(),
                    time_unix_nano: time,
                    value: Some(number_data_point::Value::AsInt(7)),
                    ..NumberDataPoint::default()
                }],
            }),
        ),
        metric(
            "histogram",
            Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    attributes: attributes.clone(),
                    time_unix_nano: time,
                    count: 3,
                    sum: Some(4.5),
                    bucket_counts: vec![1, 2],
                    explicit_bounds: vec![1.0],
                    min: Some(0.5),
                    max: Some(3.0),
                    ..HistogramDataPoint::default()
                }],
                aggregation_temporality: 1,
            }),
        ),
        metric(
            "exponential",
            Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    attributes: attributes.clone(),
                    time_unix_nano: time,
                    count: 2,
                    scale: -3,
                    positive: Some(Buckets {
                        offset: -2,
                        bucket_counts: vec![1, 1],
                    }),
                    ..ExponentialHistogramDataPoint::default()
                }],
                aggregation_temporality: 2,
            }),
        ),
        metric(
            "summary",
            Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    attributes,
                    time_unix_nano: time,
                    count: 2,
                    sum: 3.0,
                    quantile_values: vec![ValueAtQuantile {
                        quantile: 0.5,
                        value: 1.5,
                    }],
                    ..SummaryDataPoint::default()
                }],
            }),
        ),
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..ScopeMetrics::default()
            }],
            ..ResourceMetrics::default()
        }],
    }
    .encode_to_vec()
}

#[test]
fn every_kind_of_metric_point_decodes_as_the_reference_does_packed_or_not() {
    let decoder = decoder();
    let bytes = every_metric_kind();
    assert!(same_answer(
        &decoder,
        "every metric kind",
        &bytes,
        Some(Signal::Metrics)
    ));
    assert!(same_answer(
        &decoder,
        "every metric kind, sniffed",
        &bytes,
        None
    ));
    // The histogram's bucket counts one by one instead of packed: the same point.
    let packed = [0x32, 0x10, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0];
    let at = bytes
        .windows(packed.len())
        .position(|w| w == packed)
        .expect("prost packs repeated fixed64");
    let mut unpacked = bytes[..at].to_vec();
    unpacked.extend_from_slice(&[0x31, 1, 0, 0, 0, 0, 0, 0, 0, 0x31, 2, 0, 0, 0, 0, 0, 0, 0]);
    unpacked.extend_from_slice(&bytes[at + packed.len()..]);
    // Same length, so every enclosing length prefix still holds.
    assert_eq!(unpacked.len(), bytes.len());
    assert!(same_answer(
        &decoder,
        "unpacked buckets",
        &unpacked,
        Some(Signal::Metrics)
    ));
    let mut rng = Rng(17);
    for round in 0..2000 {
        let (what, mutated) = mutate(&mut rng, &bytes, &unpacked);
        same_answer(
            &decoder,
            &format!("metric kinds, round {round} ({what})"),
            &mutated,
            Some(Signal::Metrics),
        );
    }
}
