//! Column builders shared by the table builders: attribute maps with the content policy applied,
//! hex ids, timestamps that are checked before they are trusted.

use std::sync::Arc;

use crate::view::KeyValue;
use crate::view::Value;
use arrow::array::{
    ArrayRef, MapBuilder, MapFieldNames, StringArray, StringBuilder, TimestampNanosecondBuilder,
};

use crate::SERIES_ID_MASK;
use crate::attributes::{keys_equal, render, render_into};
use crate::config::ContentPolicy;

/// Latest instant accepted as an event time: 2200-01-01T00:00:00Z. Arrow's nanosecond
/// timestamps end in 2262; anything past 2200 is a broken clock, not telemetry.
pub const MAX_EVENT_TIME_NANOS: u64 = 7_258_118_400_000_000_000;
/// Earliest instant accepted: 2000-01-01T00:00:00Z. Zero means "not set" in OTLP.
pub const MIN_EVENT_TIME_NANOS: u64 = 946_684_800_000_000_000;

/// An OTLP timestamp if it is set and plausible, to the microsecond: Delta's resolution, so
/// that a time read back from a table is the time burnrate computed with (the
/// cumulative-to-delta state compares them).
pub fn event_time(nanos: u64) -> Result<Option<i64>, String> {
    if nanos == 0 {
        return Ok(None);
    }
    if !(MIN_EVENT_TIME_NANOS..=MAX_EVENT_TIME_NANOS).contains(&nanos) {
        return Err(format!(
            "timestamp {nanos} ns is outside 2000-01-01..2200-01-01"
        ));
    }
    Ok(Some((nanos - nanos % 1_000) as i64))
}

/// Rows a column builder has room for before it grows. Arrow's default (1,024 rows and 1 KiB of
/// string data per column) costs ~300 KB of allocation per export across the tables' columns,
/// which dominated decoding the few-KB exports Claude Code sends; builders double as they fill,
/// so large exports pay a few reallocations instead. Room for a Kafka run's rows from the start
/// (1,024) made a catch-up 14% slower, not faster: fresh memory for every column of every
/// table costs more than growing the columns that fill (docs/benchmarks.md, 2026-12-06).
pub const INITIAL_ROWS: usize = 16;

pub fn strings() -> StringBuilder {
    StringBuilder::with_capacity(INITIAL_ROWS, INITIAL_ROWS * 16)
}

pub fn timestamps() -> TimestampNanosecondBuilder {
    TimestampNanosecondBuilder::with_capacity(INITIAL_ROWS).with_timezone("UTC")
}

/// Applies the content policy to attributes named as content.
#[derive(Debug, Clone)]
pub struct ContentFilter {
    policy: ContentPolicy,
    keys: Arc<[String]>,
    /// Bit n is set when a content key is n bytes long (n < 128; longer keys set bit 127):
    /// every attribute of every row is asked, and almost all are told no by their length.
    lengths: u128,
}

impl ContentFilter {
    pub fn new(policy: ContentPolicy, keys: &[String]) -> Self {
        ContentFilter {
            policy,
            keys: keys.into(),
            lengths: keys.iter().fold(0, |mask, k| mask | length_bit(k)),
        }
    }

    fn rewrite(&self, key: &str, value: &Value) -> Option<String> {
        if self.policy == ContentPolicy::Keep
            || self.lengths & length_bit(key) == 0
            || !self
                .keys
                .iter()
                .any(|k| keys_equal(k.as_bytes(), key.as_bytes()))
        {
            return None;
        }
        let text = render(value);
        Some(match self.policy {
            ContentPolicy::Hash => {
                format!("xxh3:{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
            }
            _ => format!("[redacted: {} chars]", text.chars().count()),
        })
    }
}

fn length_bit(key: &str) -> u128 {
    1 << key.len().min(127)
}

/// A `Map<Utf8, Utf8>` column of attributes. View-typed strings (`Utf8View`) were slower, even
/// pointing into the export's bytes instead of copying: the large export 3.58 ms against 3.34,
/// the real exports as a run 334 µs against 303 (`benches/decode.rs`, `docs/benchmarks.md`,
/// 2026-12-06). These strings are short, and a view is 16 bytes a value.
pub struct AttributeMap {
    builder: MapBuilder<StringBuilder, StringBuilder>,
    /// Where a value that is not a string is spelled out, reused from row to row.
    scratch: String,
}

impl AttributeMap {
    pub fn new() -> Self {
        let names = MapFieldNames {
            entry: "entries".into(),
            key: "keys".into(),
            value: "values".into(),
        };
        AttributeMap {
            builder: MapBuilder::with_capacity(Some(names), strings(), strings(), INITIAL_ROWS),
            scratch: String::new(),
        }
    }

    pub fn append(&mut self, attributes: &[KeyValue<'_>], content: &ContentFilter) {
        let (keys, values) = self.builder.entries();
        append_entries(keys, values, &mut self.scratch, attributes, content);
        // Appending entries then `true` cannot fail: keys and values grew in step.
        self.builder
            .append(true)
            .expect("keys and values appended in pairs");
    }

    /// Appends attributes rendered once for many rows (see [`RenderedAttributes`]).
    pub fn append_rendered(&mut self, rendered: &RenderedAttributes) {
        let (keys, values) = self.builder.entries();
        // An array fails to append only past 2 GiB of text in the column, and then appends
        // nothing: entry by entry, the column fails as every other append does.
        for (builder, array) in [(keys, &rendered.keys), (values, &rendered.values)] {
            if builder.append_array(array).is_err() {
                array.iter().for_each(|entry| builder.append_option(entry));
            }
        }
        self.builder
            .append(true)
            .expect("keys and values appended in pairs");
    }

    /// A row with no map: a raw row whose resource is in `resources`.
    pub fn append_null(&mut self) {
        // Appending no entries then `false` cannot fail.
        self.builder.append(false).expect("no entries appended");
    }

    pub fn finish(&mut self) -> ArrayRef {
        Arc::new(self.builder.finish())
    }
}

/// Appends each attribute that has a value, with the content policy applied and non-string
/// values spelled out.
fn append_entries(
    keys: &mut StringBuilder,
    values: &mut StringBuilder,
    scratch: &mut String,
    attributes: &[KeyValue<'_>],
    content: &ContentFilter,
) {
    for kv in attributes {
        let Some(value) = kv.value.as_ref().and_then(|v| v.value.as_ref()) else {
            continue;
        };
        keys.append_value(kv.key);
        match (value, content.rewrite(kv.key, value)) {
            (_, Some(rewritten)) => values.append_value(rewritten),
            (Value::StringValue(s), None) => values.append_value(s),
            (other, None) => {
                scratch.clear();
                render_into(other, scratch);
                values.append_value(&*scratch);
            }
        }
    }
}

/// A list of attributes rendered once (content policy applied, non-string values spelled out)
/// for a map column that repeats it on every row: a resource's attributes on each of its
/// records. Two array copies per row instead of an append per entry: 5% fewer instructions
/// decoding a large export (`benches/decode.rs` under callgrind, 2026-12-01).
pub struct RenderedAttributes {
    keys: StringArray,
    values: StringArray,
    id: u64,
}

impl RenderedAttributes {
    pub fn new(attributes: &[KeyValue<'_>], content: &ContentFilter) -> Self {
        let bytes = attributes.iter().map(|kv| kv.key.len()).sum::<usize>();
        let mut keys = StringBuilder::with_capacity(attributes.len(), bytes);
        let mut values = StringBuilder::with_capacity(attributes.len(), bytes * 2);
        append_entries(
            &mut keys,
            &mut values,
            &mut String::new(),
            attributes,
            content,
        );
        let (keys, values) = (keys.finish(), values.finish());
        let id = attributes_id(&keys, &values);
        RenderedAttributes { keys, values, id }
    }

    /// The id of these attributes: a hash of the rendered keys and values, in order.
    pub fn id(&self) -> u64 {
        self.id
    }
}

/// xxh3 of every key and value, each preceded by its length so that no two different lists
/// give the same bytes, in 63 bits ([`SERIES_ID_MASK`]).
fn attributes_id(keys: &StringArray, values: &StringArray) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for (key, value) in keys.iter().zip(values.iter()) {
        for text in [key, value] {
            let text = text.unwrap_or_default();
            hasher.update(&(text.len() as u64).to_le_bytes());
            hasher.update(text.as_bytes());
        }
    }
    hasher.digest() & SERIES_ID_MASK
}

impl Default for AttributeMap {
    fn default() -> Self {
        Self::new()
    }
}

/// Lower-case hex of an id; an absent (empty or all-zero) id is `None`.
pub fn hex(id: &[u8]) -> Option<String> {
    if id.iter().all(|b| *b == 0) {
        return None;
    }
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(id.len() * 2);
    for byte in id {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    Some(out)
}

/// [`hex`] straight into the column: trace and span ids are on every row, and a `String` each
/// was 3% of decoding a large export (callgrind, 2026-12-02).
pub fn append_hex(builder: &mut StringBuilder, id: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 64];
    if id.len() > digits.len() / 2 {
        // Not an OTLP id (16 or 8 bytes); still spelled out.
        builder.append_option(hex(id));
        return;
    }
    if id.iter().all(|b| *b == 0) {
        builder.append_null();
        return;
    }
    for (pair, byte) in digits.chunks_exact_mut(2).zip(id) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
    match std::str::from_utf8(&digits[..id.len() * 2]) {
        Ok(text) => builder.append_value(text),
        Err(_) => builder.append_option(hex(id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Array;

    #[test]
    fn ids_are_spelled_the_same_into_a_column_as_on_their_own() {
        let ids: [&[u8]; 6] = [
            &[],
            &[0; 16],
            &[0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 0xff],
            &[0x0f; 16],
            &[0xa5; 32],
            &[7; 40],
        ];
        let mut column = strings();
        for id in ids {
            append_hex(&mut column, id);
        }
        let column = column.finish();
        for (row, id) in ids.iter().enumerate() {
            let spelled = (!column.is_null(row)).then(|| column.value(row).to_string());
            assert_eq!(spelled, hex(id), "id {id:?}");
        }
    }
}
