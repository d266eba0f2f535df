//! Typed reads of OTLP attributes. Claude Code sends some numbers as strings and others as
//! ints; every reader accepts both and reports what it could not parse instead of guessing.

use crate::config::{Attr, AttributeNames};
use crate::view::{AnyValue, KeyValue, Value};

/// Where each attribute the mapping reads is found, so that a record's attributes are scanned
/// once instead of once per alias of every column: with Claude Code's defaults, an
/// `api_request` row asks for 30 columns under up to 4 keys each, and the scans were a tenth
/// of decoding (`benches/decode.rs`).
#[derive(Debug, Clone)]
pub struct AttributeIndex {
    /// Indexed by key length: the columns (and the key's rank among their aliases) each key
    /// feeds. Most attributes are told no by their length alone.
    by_length: Vec<Vec<KeyColumns>>,
}

/// A configured key and the columns it feeds, with its rank among each column's keys.
#[derive(Debug, Clone)]
struct KeyColumns {
    key: Box<str>,
    columns: Vec<(Attr, u8)>,
}

impl AttributeIndex {
    pub fn new(names: &AttributeNames) -> Self {
        let mut by_length: Vec<Vec<KeyColumns>> = Vec::new();
        for &attr in Attr::ALL {
            // Keys past the 255th alias of a column are never reached in practice; they keep
            // the last rank, so they still lose to every alias listed before them.
            for (rank, key) in names.keys(attr).iter().enumerate() {
                let rank = u8::try_from(rank).unwrap_or(u8::MAX - 1);
                if by_length.len() <= key.len() {
                    by_length.resize_with(key.len() + 1, Vec::new);
                }
                let keys = &mut by_length[key.len()];
                match keys.iter_mut().find(|k| *k.key == **key) {
                    Some(known) => known.columns.push((attr, rank)),
                    None => keys.push(KeyColumns {
                        key: key.as_str().into(),
                        columns: vec![(attr, rank)],
                    }),
                }
            }
        }
        AttributeIndex { by_length }
    }

    fn columns(&self, key: &str) -> &[(Attr, u8)] {
        self.by_length
            .get(key.len())
            .and_then(|keys| {
                keys.iter()
                    .find(|k| keys_equal(k.key.as_bytes(), key.as_bytes()))
            })
            .map_or(&[], |k| k.columns.as_slice())
    }

    /// The best key of every column among `attributes`.
    pub fn slots(&self, attributes: &[KeyValue<'_>]) -> Slots {
        let mut slots = Slots::default();
        // (column, rank) whose first occurrence had no value: a later duplicate of the key is
        // not read either, as a plain lookup of the first occurrence would not.
        let mut blocked: Vec<(Attr, u8)> = Vec::new();
        for (index, kv) in attributes.iter().enumerate() {
            let columns = self.columns(kv.key);
            if columns.is_empty() {
                continue;
            }
            let has_value = kv.value.as_ref().is_some_and(|v| v.value.is_some());
            for &(attr, rank) in columns {
                let slot = &mut slots.0[attr as usize];
                if !has_value {
                    if slot.rank != rank {
                        blocked.push((attr, rank));
                    }
                } else if rank < slot.rank && !blocked.contains(&(attr, rank)) {
                    *slot = Slot {
                        rank,
                        index: u32::try_from(index).unwrap_or(u32::MAX),
                    };
                }
            }
        }
        slots
    }
}

/// Whether two keys are equal, compared a word at a time. Every attribute of every record is
/// looked up, and the keys are short: `memcmp` was 7% of the time decoding a large export
/// (`perf`); comparing word by word took 3.5% off its instructions (callgrind,
/// `benches/decode.rs`, 2026-12-02).
#[inline]
pub fn keys_equal(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    let word = |s: &[u8], at: usize| -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_ne_bytes(w)
    };
    let half = |s: &[u8], at: usize| -> u32 {
        let mut w = [0u8; 4];
        w.copy_from_slice(&s[at..at + 4]);
        u32::from_ne_bytes(w)
    };
    if n != b.len() {
        false
    } else if n > 16 {
        a == b
    } else if n >= 8 {
        // The first and the last word, overlapping when shorter than 16 bytes.
        word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8)
    } else if n >= 4 {
        half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4)
    } else {
        a.iter().zip(b).all(|(x, y)| x == y)
    }
}

/// For each column, the position of its best key in one list of attributes.
#[derive(Debug, Clone, Copy)]
pub struct Slots([Slot; Attr::COUNT]);

#[derive(Debug, Clone, Copy, PartialEq)]
struct Slot {
    /// The key's place among the column's aliases; `u8::MAX` when none is present.
    rank: u8,
    index: u32,
}

impl Slot {
    const NONE: Slot = Slot {
        rank: u8::MAX,
        index: 0,
    };
}

impl Default for Slots {
    fn default() -> Self {
        Slots([Slot::NONE; Attr::COUNT])
    }
}

/// Attributes of one record with its resource behind it: a column's keys are tried in order,
/// each on the record first, then on the resource.
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    record: &'a [KeyValue<'a>],
    resource: &'a [KeyValue<'a>],
    record_slots: Slots,
    resource_slots: Slots,
}

impl<'a> Scope<'a> {
    /// `resource_slots` are `index.slots(resource)`, found once for all the resource's records.
    pub fn new(
        index: &AttributeIndex,
        record: &'a [KeyValue<'a>],
        resource: &'a [KeyValue<'a>],
        resource_slots: &Slots,
    ) -> Self {
        Scope {
            record,
            resource,
            record_slots: index.slots(record),
            resource_slots: *resource_slots,
        }
    }

    /// The column's value and the key it was found under.
    pub fn get(&self, attr: Attr) -> Option<(&'a str, &'a Value<'a>)> {
        let on_record = self.record_slots.0[attr as usize];
        let on_resource = self.resource_slots.0[attr as usize];
        if on_record.rank <= on_resource.rank {
            read(self.record, on_record)
        } else {
            read(self.resource, on_resource)
        }
    }

    /// The column's value on the record itself, never the resource's.
    pub fn get_record(&self, attr: Attr) -> Option<(&'a str, &'a Value<'a>)> {
        read(self.record, self.record_slots.0[attr as usize])
    }

    pub fn str(&self, attr: Attr) -> Option<&'a str> {
        match self.get(attr)?.1 {
            Value::StringValue(s) => Some(s),
            _ => None,
        }
    }
}

fn read<'a>(attributes: &'a [KeyValue<'a>], slot: Slot) -> Option<(&'a str, &'a Value<'a>)> {
    if slot.rank == u8::MAX {
        return None;
    }
    let kv = attributes.get(usize::try_from(slot.index).ok()?)?;
    Some((kv.key, kv.value.as_ref()?.value.as_ref()?))
}

pub fn find<'a>(attributes: &'a [KeyValue<'a>], key: &str) -> Option<&'a Value<'a>> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

/// Collects the first problem of a row, and how many there were.
#[derive(Debug, Default)]
pub struct RowErrors {
    pub count: u32,
    pub first: Option<String>,
}

impl RowErrors {
    pub fn push(&mut self, message: String) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(message);
        }
    }

    /// Reads a value with `parse`, recording a failure as `key: reason`.
    pub fn read<T>(
        &mut self,
        found: Option<(&str, &Value)>,
        parse: impl Fn(&Value) -> Result<T, String>,
    ) -> Option<T> {
        let (key, value) = found?;
        match parse(value) {
            Ok(v) => Some(v),
            Err(reason) => {
                self.push(format!("{key}: {reason}"));
                None
            }
        }
    }
}

/// A token count: a non-negative integer, as an int, an integral double or a decimal string.
pub fn count(value: &Value) -> Result<i64, String> {
    let n = integer(value)?;
    if n < 0 {
        return Err(format!("negative count {n}"));
    }
    Ok(n)
}

/// More tokens than any model's context window holds in one call: a count past it is a broken
/// or hostile client, not usage, and would book absurd spend (2^63 tokens cost $4.6e13).
pub const MAX_TOKENS_PER_CALL: i64 = 10_000_000;

/// A token count of one model call: a count no larger than [`MAX_TOKENS_PER_CALL`].
pub fn tokens(value: &Value) -> Result<i64, String> {
    let n = count(value)?;
    if n > MAX_TOKENS_PER_CALL {
        return Err(format!(
            "{n} tokens in one call is more than any context window ({MAX_TOKENS_PER_CALL})"
        ));
    }
    Ok(n)
}

/// The most one call can plausibly cost, in US dollars: ten million tokens at any list price
/// stays far below it.
pub const MAX_COST_PER_CALL_USD: f64 = 10_000.0;

/// A reported cost of one call: non-negative and no more than [`MAX_COST_PER_CALL_USD`].
pub fn call_cost(value: &Value) -> Result<f64, String> {
    let usd = non_negative(value)?;
    if usd > MAX_COST_PER_CALL_USD {
        return Err(format!(
            "a cost of {usd} USD for one call is not plausible (over {MAX_COST_PER_CALL_USD})"
        ));
    }
    Ok(usd)
}

pub fn integer(value: &Value) -> Result<i64, String> {
    match value {
        Value::IntValue(n) => Ok(*n),
        Value::DoubleValue(d) => integral(*d),
        Value::StringValue(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .or_else(|_| {
                    s.parse::<f64>()
                        .map_err(|_| ())
                        .and_then(|d| integral(d).map_err(|_| ()))
                })
                .map_err(|_| format!("{s:?} is not an integer"))
        }
        other => Err(format!("{} is not an integer", kind(other))),
    }
}

fn integral(d: f64) -> Result<i64, String> {
    if d.is_finite() && d.fract() == 0.0 && d.abs() < 9.0e15 {
        Ok(d as i64)
    } else {
        Err(format!("{d} is not an integer"))
    }
}

/// A finite number.
pub fn number(value: &Value) -> Result<f64, String> {
    let d = match value {
        Value::IntValue(n) => *n as f64,
        Value::DoubleValue(d) => *d,
        Value::StringValue(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("{s:?} is not a number"))?,
        other => return Err(format!("{} is not a number", kind(other))),
    };
    if d.is_finite() {
        Ok(d)
    } else {
        Err(format!("{d} is not a finite number"))
    }
}

/// A finite number that is not negative (durations, costs).
pub fn non_negative(value: &Value) -> Result<f64, String> {
    let d = number(value)?;
    if d < 0.0 {
        return Err(format!("negative value {d}"));
    }
    Ok(d)
}

pub fn boolean(value: &Value) -> Result<bool, String> {
    match value {
        Value::BoolValue(b) => Ok(*b),
        Value::IntValue(0) => Ok(false),
        Value::IntValue(1) => Ok(true),
        Value::StringValue(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(format!("{s:?} is not a boolean")),
        },
        other => Err(format!("{} is not a boolean", kind(other))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::StringValue(_) => "a string",
        Value::BoolValue(_) => "a boolean",
        Value::IntValue(_) => "an int",
        Value::DoubleValue(_) => "a double",
        Value::ArrayValue(_) => "an array",
        Value::KvlistValue(_) => "a key-value list",
        Value::BytesValue(_) => "bytes",
        Value::StringValueStrindex(_) => "a string-table index",
    }
}

/// An attribute value as text: strings verbatim, scalars in their usual spelling, arrays and
/// maps as JSON.
pub fn render(value: &Value) -> String {
    match value {
        Value::StringValue(s) => s.to_string(),
        _ => {
            let mut out = String::new();
            render_into(value, &mut out);
            out
        }
    }
}

pub fn render_any(value: Option<&AnyValue>) -> Option<String> {
    value.and_then(|v| v.value.as_ref()).map(render)
}

/// [`render`], appended to `out`.
pub fn render_into(value: &Value, out: &mut String) {
    use std::fmt::Write;
    match value {
        Value::StringValue(s) => out.push_str(s),
        Value::BoolValue(b) => out.push_str(if *b { "true" } else { "false" }),
        // Token counts and durations are most of the non-string values: itoa, not `fmt`.
        Value::IntValue(n) => out.push_str(itoa::Buffer::new().format(*n)),
        Value::DoubleValue(d) => {
            let _ = write!(out, "{d}");
        }
        Value::BytesValue(b) => {
            for byte in b.iter() {
                let _ = write!(out, "{byte:02x}");
            }
        }
        Value::StringValueStrindex(i) => {
            let _ = write!(out, "#{i}");
        }
        Value::ArrayValue(_) | Value::KvlistValue(_) => {
            out.push_str(&to_json(value).to_string());
        }
    }
}

fn to_json(value: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        Value::StringValue(s) => J::String(s.to_string()),
        Value::BoolValue(b) => J::Bool(*b),
        Value::IntValue(n) => J::from(*n),
        Value::DoubleValue(d) => serde_json::Number::from_f64(*d).map_or(J::Null, J::Number),
        Value::BytesValue(_) | Value::StringValueStrindex(_) => J::String(render(value)),
        Value::ArrayValue(array) => J::Array(
            array
                .values
                .iter()
                .map(|v| v.value.as_ref().map_or(J::Null, to_json))
                .collect(),
        ),
        Value::KvlistValue(list) => J::Object(
            list.values
                .iter()
                .map(|kv| {
                    let v = kv.value.as_ref().and_then(|v| v.value.as_ref());
                    (kv.key.to_string(), v.map_or(J::Null, to_json))
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_word_by_word_as_bytes_do() {
        for n in 0..40usize {
            let a: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(keys_equal(&a, &a.clone()), "length {n}");
            // A difference at any position, including those two words overlap on.
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert!(!keys_equal(&a, &b), "length {n}, byte {at}");
            }
            // Keys of different lengths, one the start of the other.
            if n > 0 {
                assert!(!keys_equal(&a, &a[..n - 1]), "length {n} against {}", n - 1);
            }
        }
    }

    /// The lookup the index replaces: each key in order, on the record, then on the resource,
    /// reading the first attribute of that key.
    fn scan<'a>(
        record: &'a [KeyValue<'a>],
        resource: &'a [KeyValue<'a>],
        keys: &[String],
        record_only: bool,
    ) -> Option<(&'a str, &'a Value<'a>)> {
        keys.iter().find_map(|key| {
            let on = |list: &'a [KeyValue<'a>]| {
                find(list, key).map(|value| {
                    let kv = list.iter().find(|kv| kv.key == key).expect("found above");
                    (kv.key, value)
                })
            };
            on(record).or_else(|| if record_only { None } else { on(resource) })
        })
    }

    fn kv<'a>(key: &'a str, value: Option<Value<'a>>) -> KeyValue<'a> {
        KeyValue::test(key, value)
    }

    #[test]
    fn the_index_finds_what_a_scan_of_every_key_finds() {
        let names = AttributeNames::default();
        let index = AttributeIndex::new(&names);
        // Every configured key, plus keys no column reads; some without a value.
        let mut pool: Vec<&str> = Attr::ALL
            .iter()
            .flat_map(|a| names.keys(*a))
            .map(String::as_str)
            .collect();
        pool.extend(["unrelated", "x", "model.extra", ""]);
        let values = [s("a"), Value::IntValue(7), s("b")];
        // A fixed-seed LCG: the same lists every run, duplicates and holes included.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: usize| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            usize::try_from(state >> 33).unwrap_or(0) % n
        };
        for _ in 0..3_000 {
            let mut list = |most: usize| -> Vec<KeyValue<'_>> {
                let len = next(most);
                (0..len)
                    .map(|_| {
                        let key = pool[next(pool.len())];
                        let value = (next(4) != 0).then(|| values[next(values.len())].clone());
                        kv(key, value)
                    })
                    .collect()
            };
            let record = list(24);
            let resource = list(8);
            let resource_slots = index.slots(&resource);
            let scope = Scope::new(&index, &record, &resource, &resource_slots);
            for &attr in Attr::ALL {
                let keys = names.keys(attr);
                assert_eq!(
                    scope.get(attr),
                    scan(&record, &resource, keys, false),
                    "{attr:?}"
                );
                assert_eq!(
                    scope.get_record(attr),
                    scan(&record, &resource, keys, true),
                    "{attr:?} on the record"
                );
            }
        }
    }

    #[test]
    fn a_first_attribute_without_a_value_hides_a_later_one_of_the_same_key() {
        let names = AttributeNames::default();
        let index = AttributeIndex::new(&names);
        let record = [kv("model", None), kv("model", Some(s("late")))];
        let resource = [kv("model", Some(s("from-resource")))];
        let scope = Scope::new(&index, &record, &resource, &index.slots(&resource));
        assert_eq!(scope.get(Attr::Model), Some(("model", &s("from-resource"))));
        assert_eq!(scope.get_record(Attr::Model), None);
        // A better alias on the resource beats a worse one on the record.
        let record = [kv("claude.model", Some(s("worse")))];
        let scope = Scope::new(&index, &record, &resource, &index.slots(&resource));
        assert_eq!(scope.get(Attr::Model), Some(("model", &s("from-resource"))));
        assert_eq!(
            scope.get_record(Attr::Model),
            Some(("claude.model", &s("worse")))
        );
    }

    fn s(v: &str) -> Value<'_> {
        Value::StringValue(v)
    }

    #[test]
    fn counts_accept_claude_codes_spellings_and_reject_the_rest() {
        assert_eq!(count(&Value::IntValue(42)), Ok(42));
        assert_eq!(count(&s(" 42 ")), Ok(42));
        assert_eq!(count(&s("42.0")), Ok(42));
        assert_eq!(count(&Value::DoubleValue(7.0)), Ok(7));
        assert!(
            count(&Value::IntValue(-1))
                .unwrap_err()
                .contains("negative")
        );
        assert!(count(&Value::DoubleValue(f64::NAN)).is_err());
        assert!(count(&s("NaN")).is_err());
        assert!(count(&s("12abc")).is_err());
        assert!(count(&Value::DoubleValue(1.5)).is_err());
        assert!(count(&Value::BoolValue(true)).is_err());
    }

    #[test]
    fn numbers_and_booleans() {
        assert_eq!(number(&s("0.25")), Ok(0.25));
        assert!(number(&s("inf")).is_err());
        assert!(non_negative(&Value::DoubleValue(-0.5)).is_err());
        assert_eq!(boolean(&s("true")), Ok(true));
        assert_eq!(boolean(&s("False")), Ok(false));
        assert!(boolean(&s("maybe")).is_err());
    }

    #[test]
    fn renders_nested_values_as_json() {
        use crate::view::ArrayValue;
        let array = Value::ArrayValue(ArrayValue {
            values: vec![
                AnyValue {
                    value: Some(s("end_turn")),
                },
                AnyValue {
                    value: Some(Value::IntValue(3)),
                },
            ],
        });
        assert_eq!(render(&array), r#"["end_turn",3]"#);
        assert_eq!(render(&Value::DoubleValue(0.5)), "0.5");
    }
}
