//! Column builders shared by the table builders: attribute maps with the content policy applied,
//! string columns (hex ids among them), timestamps that are checked before they are trusted.

use std::sync::Arc;

use crate::view::KeyValue;
use crate::view::Value;
use arrow::array::{Array, ArrayRef, MapArray, NullBufferBuilder, StringArray, StructArray};
use arrow::buffer::Buffer;
use arrow_buffer::OffsetBufferBuilder;

use crate::SERIES_ID_MASK;
use crate::attributes::{keys_equal, render, render_into};
use crate::config::ContentPolicy;
use crate::schema::{string_map_entries, string_map_fields};

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

/// Rows a column builder has room for before it grows, when no run before it says how many
/// ([`crate::room`]). Arrow's default (1,024 rows and 1 KiB of string data per column) costs
/// ~300 KB of allocation per export across the tables' columns, which dominated decoding the
/// few-KB exports Claude Code sends; builders double as they fill, so large exports pay a few
/// reallocations instead. Room for a Kafka run's rows from the start (1,024) made a catch-up 14%
/// slower, not faster: fresh memory for every column of every table costs more than growing the
/// columns that fill (docs/benchmarks.md, 2026-12-06).
pub const INITIAL_ROWS: usize = 16;

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
    keys: TextColumn,
    values: TextColumn,
    /// Where each row's entries end.
    ends: OffsetBufferBuilder<i32>,
    rows: NullBufferBuilder,
    /// Where a value that is not a string is spelled out, reused from row to row.
    scratch: String,
}

impl AttributeMap {
    /// A map with room for `rows` rows of `entries` entries in all, whose keys and values come
    /// to `key_bytes` and `value_bytes` (see [`crate::room`]).
    pub fn with_room(rows: usize, entries: usize, key_bytes: usize, value_bytes: usize) -> Self {
        AttributeMap {
            keys: TextColumn::with_room(entries, key_bytes),
            values: TextColumn::with_room(entries, value_bytes),
            ends: OffsetBufferBuilder::new(rows),
            rows: NullBufferBuilder::new(rows),
            scratch: String::new(),
        }
    }

    /// How many bytes of keys and of values the map has room for.
    #[cfg(test)]
    pub fn capacity(&self) -> (usize, usize) {
        (self.keys.bytes.capacity(), self.values.bytes.capacity())
    }

    pub fn append(&mut self, attributes: &[KeyValue<'_>], content: &ContentFilter) {
        append_entries(
            &mut self.keys,
            &mut self.values,
            &mut self.scratch,
            attributes,
            content,
        );
        self.end_row(true);
    }

    /// Appends attributes rendered once for many rows (see [`RenderedAttributes`]).
    pub fn append_rendered(&mut self, rendered: &RenderedAttributes) {
        self.keys.extend(&rendered.keys);
        self.values.extend(&rendered.values);
        self.end_row(true);
    }

    /// A row with no map: a raw row whose resource is in `resources`.
    pub fn append_null(&mut self) {
        self.end_row(false);
    }

    fn end_row(&mut self, valid: bool) {
        // The builder's offsets start at 0 and never go below it.
        let start = self.ends.last().map_or(0, |&end| end as usize);
        self.ends.push_length(self.keys.len() - start);
        self.rows.append(valid);
    }

    pub fn finish(&mut self) -> ArrayRef {
        let entries = StructArray::new(
            string_map_fields(),
            vec![
                Arc::new(self.keys.finish()) as ArrayRef,
                Arc::new(self.values.finish()),
            ],
            None,
        );
        let ends = std::mem::replace(&mut self.ends, OffsetBufferBuilder::new(INITIAL_ROWS));
        Arc::new(MapArray::new(
            Arc::new(string_map_entries()),
            ends.finish(),
            entries,
            self.rows.finish(),
            false,
        ))
    }
}

/// A UTF-8 column appended one short string at a time: an attribute map's keys or values,
/// about 400 strings a message, nearly all under 32 bytes (see [`copy_short`]). With the map
/// assembled once at `finish` instead of through `MapBuilder`, real exports decoded one by one
/// took 11-13% less time, runs of them 0-3% (`benches/decode.rs`, docs/benchmarks.md,
/// 2026-12-06).
///
/// A column passes 2 GiB, where the offsets' `finish` panics as arrow's own builders do, only far
/// past any input burnrate takes: a Kafka run is at most 1 MiB of exports, a request at most
/// the receiver's body limit.
struct TextColumn {
    /// Where each string ends.
    ends: OffsetBufferBuilder<i32>,
    bytes: Vec<u8>,
}

impl TextColumn {
    fn new() -> Self {
        Self::with_room(INITIAL_ROWS, 0)
    }

    /// Room for `strings` strings of `bytes` bytes in all; at least [`INITIAL_ROWS`] strings of
    /// 16 bytes.
    fn with_room(strings: usize, bytes: usize) -> Self {
        TextColumn {
            ends: OffsetBufferBuilder::new(strings.max(INITIAL_ROWS)),
            bytes: Vec::with_capacity(bytes.max(INITIAL_ROWS * 16)),
        }
    }

    fn len(&self) -> usize {
        self.ends.len() - 1
    }

    #[inline(always)]
    fn push(&mut self, text: &str) {
        copy_short(&mut self.bytes, text.as_bytes());
        self.ends.push_length(text.len());
    }

    /// Appends every string of `column`, which has no nulls.
    fn extend(&mut self, column: &StringArray) {
        let offsets = column.value_offsets();
        let (Some(&first), Some(&last)) = (offsets.first(), offsets.last()) else {
            return;
        };
        self.bytes
            .extend_from_slice(&column.value_data()[first as usize..last as usize]);
        self.ends.reserve(offsets.len() - 1);
        for pair in offsets.windows(2) {
            self.ends.push_length((pair[1] - pair[0]) as usize);
        }
    }

    fn finish(&mut self) -> StringArray {
        let ends = std::mem::replace(&mut self.ends, OffsetBufferBuilder::new(INITIAL_ROWS));
        let bytes = std::mem::take(&mut self.bytes);
        // SAFETY: every string appended was a whole `&str` (or a whole string of a
        // `StringArray`), so the bytes are UTF-8 and each offset is on a character boundary;
        // each length pushed is the bytes appended with it, so the offsets start at 0, never
        // fall, and the last is the bytes' length; `finish` panics rather than hand over
        // offsets past `i32::MAX`.
        unsafe { StringArray::new_unchecked(ends.finish(), Buffer::from_vec(bytes), None) }
    }
}

/// A nullable UTF-8 column: the tables' string columns (ids, names, models), with
/// [`TextColumn`]'s short copies in place of `StringBuilder`'s call to `memcpy` a value.
/// The same calls as `StringBuilder`'s, so a table reads alike with either.
pub struct StringColumn {
    text: TextColumn,
    valid: NullBufferBuilder,
}

impl StringColumn {
    /// Room for `rows` strings of `bytes` bytes in all (see [`TextColumn::with_room`]).
    pub fn with_room(rows: usize, bytes: usize) -> Self {
        StringColumn {
            text: TextColumn::with_room(rows, bytes),
            valid: NullBufferBuilder::new(rows.max(INITIAL_ROWS)),
        }
    }

    #[inline]
    pub fn append_value(&mut self, text: impl AsRef<str>) {
        self.text.push(text.as_ref());
        self.valid.append_non_null();
    }

    #[inline]
    pub fn append_null(&mut self) {
        self.text.ends.push_length(0);
        self.valid.append_null();
    }

    #[inline]
    pub fn append_option(&mut self, text: Option<impl AsRef<str>>) {
        match text {
            Some(text) => self.append_value(text),
            None => self.append_null(),
        }
    }

    /// Lower-case hex of an id straight into the column, written in place: trace and span ids
    /// are on every row. An absent (empty or all-zero) id is null, as [`hex`] has it.
    pub fn append_hex(&mut self, id: &[u8]) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        if id.iter().all(|b| *b == 0) {
            self.append_null();
            return;
        }
        let bytes = &mut self.text.bytes;
        let at = bytes.len();
        bytes.resize(at + id.len() * 2, 0);
        for (pair, byte) in bytes[at..].chunks_exact_mut(2).zip(id) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0xf)];
        }
        self.text.ends.push_length(id.len() * 2);
        self.valid.append_non_null();
    }

    pub fn finish(&mut self) -> StringArray {
        let (offsets, values, _) = self.text.finish().into_parts();
        // SAFETY: the offsets and bytes are a valid `StringArray`'s (`TextColumn::finish`);
        // every row appended one length and one validity bit, so the nulls are as long as the
        // offsets. A null row is an empty string under a cleared bit, as arrow's builders write.
        unsafe { StringArray::new_unchecked(offsets, values, self.valid.finish()) }
    }
}

/// Appends `src` to `out`; up to 32 bytes with two overlapping fixed-width moves instead of a
/// call to `memcpy`. On attribute keys and values (3 to 40 bytes), alone in a loop, a string
/// took 2.3-2.5 ns against 3.5-4.6 ns through `extend_from_slice` (docs/benchmarks.md,
/// 2026-12-06).
#[inline(always)]
pub(crate) fn copy_short(out: &mut Vec<u8>, src: &[u8]) {
    let len = src.len();
    if len > 32 {
        out.extend_from_slice(src);
        return;
    }
    out.reserve(32);
    let at = out.len();
    // SAFETY: `reserve(32)` leaves room for at least 32 bytes past `at` and `len <= 32`, so
    // every write is within the allocation; each branch reads `width <= len` bytes from the
    // start and from the end of `src`, both within it; the two moves together write all `len`
    // bytes (they overlap when `len < 2 * width`), so `at + len` bytes are initialised. `src`
    // is never part of `out` (it borrows an export, a rendered value or a scratch string).
    unsafe {
        let from = src.as_ptr();
        let to = out.as_mut_ptr().add(at);
        match len {
            16.. => move_ends::<u128>(from, to, len),
            8.. => move_ends::<u64>(from, to, len),
            4.. => move_ends::<u32>(from, to, len),
            _ => {
                for i in 0..len {
                    *to.add(i) = *from.add(i);
                }
            }
        }
        out.set_len(at + len);
    }
}

/// Copies the first and the last `size_of::<W>()` bytes of `len` from `from` to `to`: all `len`
/// bytes when `len` is at most twice that. One typed load and store each, not
/// `copy_nonoverlapping` with the width a variable: the compiler merged the three widths' copies
/// into one call to `memcpy` (1.4 million calls, 4% of a real export's decode under callgrind,
/// 2026-12-07).
///
/// # Safety
/// `size_of::<W>() <= len`, `from` readable and `to` writable for `len` bytes.
#[inline(always)]
unsafe fn move_ends<W: Copy>(from: *const u8, to: *mut u8, len: usize) {
    let width = std::mem::size_of::<W>();
    // SAFETY: the caller's: both ranges hold `len >= width` bytes; unaligned reads and writes.
    unsafe {
        let head = from.cast::<W>().read_unaligned();
        let tail = from.add(len - width).cast::<W>().read_unaligned();
        to.cast::<W>().write_unaligned(head);
        to.add(len - width).cast::<W>().write_unaligned(tail);
    }
}

/// Appends each attribute that has a value, with the content policy applied and non-string
/// values spelled out.
fn append_entries(
    keys: &mut TextColumn,
    values: &mut TextColumn,
    scratch: &mut String,
    attributes: &[KeyValue<'_>],
    content: &ContentFilter,
) {
    for kv in attributes {
        let Some(value) = kv.value.as_ref().and_then(|v| v.value.as_ref()) else {
            continue;
        };
        keys.push(kv.key);
        match (value, content.rewrite(kv.key, value)) {
            (_, Some(rewritten)) => values.push(&rewritten),
            (Value::StringValue(s), None) => values.push(s),
            (other, None) => {
                scratch.clear();
                render_into(other, scratch);
                values.push(scratch);
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
        let (mut keys, mut values) = (TextColumn::new(), TextColumn::new());
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
/// give the same bytes, in 63 bits ([`SERIES_ID_MASK`]). Laid out in one buffer and hashed in
/// one call, which gives what a streaming hasher fed piece by piece gives (as resource ids were
/// made until 2026-12-07) in a fifth of its instructions: two `update`s a string were 1.5% of
/// decoding a real export (callgrind, `benches/decode.rs`).
fn attributes_id(keys: &StringArray, values: &StringArray) -> u64 {
    let text_bytes = keys.value_data().len() + values.value_data().len();
    let mut laid = Vec::with_capacity(text_bytes + 16 * keys.len());
    for (key, value) in keys.iter().zip(values.iter()) {
        for text in [key, value] {
            let text = text.unwrap_or_default();
            laid.extend_from_slice(&(text.len() as u64).to_le_bytes());
            laid.extend_from_slice(text.as_bytes());
        }
    }
    xxhash_rust::xxh3::xxh3_64(&laid) & SERIES_ID_MASK
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{MapBuilder, MapFieldNames, StringBuilder};

    /// A map column written by [`AttributeMap`] is the one arrow's `MapBuilder` writes from the
    /// same rows: attribute lists of strings of every length up to past `copy_short`'s 32 bytes
    /// (ASCII and multi-byte), non-string values, content rewritten, rows with no attributes,
    /// null rows and rendered resources, in a seeded order.
    #[test]
    fn an_attribute_map_is_the_map_arrows_builder_makes() {
        let mut next = crate::seeded(0x9e37_79b9_7f4a_7c15_u64);
        let alphabet = ["a", "Z", "_", ".", "é", "日", "🦀"];
        let mut texts: Vec<String> = Vec::new();
        for _ in 0..400 {
            let chars = next(48);
            texts.push((0..chars).map(|_| alphabet[next(alphabet.len())]).collect());
        }
        texts.push("prompt".into());
        let content = ContentFilter::new(ContentPolicy::Hash, &["prompt".to_string()]);
        let attributes = |next: &mut dyn FnMut(usize) -> usize| -> Vec<KeyValue<'_>> {
            (0..next(12))
                .map(|_| {
                    let key = texts[next(texts.len())].as_str();
                    let value = match next(6) {
                        0 => None,
                        1 => Some(Value::IntValue(next(1_000_000) as i64 - 500)),
                        2 => Some(Value::BoolValue(next(2) == 0)),
                        _ => Some(Value::StringValue(texts[next(texts.len())].as_str())),
                    };
                    KeyValue::test(key, value)
                })
                .collect()
        };
        let names = MapFieldNames {
            entry: "entries".into(),
            key: "keys".into(),
            value: "values".into(),
        };
        let mut expected = MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new());
        let mut map = crate::room::Room::none(crate::Table::LogRecords).map("attributes");
        let rendered_list = attributes(&mut next);
        let rendered = RenderedAttributes::new(&rendered_list, &content);
        for _ in 0..600 {
            let row = match next(5) {
                0 => {
                    map.append_null();
                    None
                }
                1 => {
                    map.append_rendered(&rendered);
                    Some(rendered_list.clone())
                }
                _ => {
                    let list = attributes(&mut next);
                    map.append(&list, &content);
                    Some(list)
                }
            };
            for kv in row.iter().flatten() {
                let Some(value) = kv.value.as_ref().and_then(|v| v.value.as_ref()) else {
                    continue;
                };
                expected.keys().append_value(kv.key);
                let text = content
                    .rewrite(kv.key, value)
                    .unwrap_or_else(|| render(value));
                expected.values().append_value(text);
            }
            expected
                .append(row.is_some())
                .expect("keys and values in pairs");
        }
        let (actual, expected) = (map.finish(), expected.finish());
        assert_eq!(actual.data_type(), expected.data_type());
        assert_eq!(actual.data_type(), &crate::schema::string_map());
        assert_eq!(actual.as_ref(), &expected as &dyn Array);
        // A second column from the same builder starts afresh.
        map.append(&rendered_list, &content);
        let again = map.finish();
        assert_eq!(again.len(), 1);
    }

    /// A resource's id is the one the streaming hasher gave, fed key by key as ids were made
    /// before they were hashed in one call: stored rows join their resources on it.
    #[test]
    fn resource_ids_are_the_ids_made_before() {
        let streamed = |keys: &StringArray, values: &StringArray| {
            let mut hasher = xxhash_rust::xxh3::Xxh3::new();
            for (key, value) in keys.iter().zip(values.iter()) {
                for text in [key, value] {
                    let text = text.unwrap_or_default();
                    hasher.update(&(text.len() as u64).to_le_bytes());
                    hasher.update(text.as_bytes());
                }
            }
            hasher.digest() & SERIES_ID_MASK
        };
        let content = ContentFilter::new(ContentPolicy::Keep, &[]);
        let long = "x".repeat(300);
        let lists: Vec<Vec<KeyValue<'_>>> = vec![
            vec![],
            vec![KeyValue::test(
                "service.name",
                Some(Value::StringValue("claude-code")),
            )],
            (0..40)
                .map(|i| {
                    let value = match i % 3 {
                        0 => Value::StringValue(long.as_str()),
                        1 => Value::IntValue(i),
                        _ => Value::StringValue(""),
                    };
                    KeyValue::test(["host.arch", "os.type", "ü"][i as usize % 3], Some(value))
                })
                .collect(),
        ];
        for list in &lists {
            let rendered = RenderedAttributes::new(list, &content);
            assert_eq!(
                rendered.id(),
                streamed(&rendered.keys, &rendered.values),
                "{list:?}"
            );
        }
        // Pinned: a change would split every stored row from its resource.
        assert_eq!(
            RenderedAttributes::new(&lists[1], &content).id(),
            1_447_073_320_925_587_051
        );
    }

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
        let mut column = StringColumn::with_room(0, 0);
        for id in ids {
            column.append_hex(id);
        }
        let column = column.finish();
        for (row, id) in ids.iter().enumerate() {
            let spelled = (!column.is_null(row)).then(|| column.value(row).to_string());
            assert_eq!(spelled, hex(id), "id {id:?}");
        }
    }

    /// A [`StringColumn`] is the column arrow's `StringBuilder` makes from the same calls:
    /// strings of every length up to past `copy_short`'s 32 bytes (ASCII and multi-byte),
    /// nulls, options and hex ids, in a seeded order; a second column from the same builder
    /// starts afresh, and one with no nulls has no null buffer.
    #[test]
    fn a_string_column_is_the_one_arrows_builder_makes() {
        let mut next = crate::seeded(0x2545_f491_4f6c_dd1d_u64);
        let alphabet = ["a", "Z", "_", "-", "é", "日", "🦀"];
        let mut column = StringColumn::with_room(next(64), next(1024));
        for round in 0..3 {
            let mut expected = StringBuilder::new();
            for _ in 0..2_000 {
                match next(if round == 2 { 2 } else { 5 }) {
                    0 | 1 => {
                        let chars = next(48);
                        let text: String =
                            (0..chars).map(|_| alphabet[next(alphabet.len())]).collect();
                        column.append_value(&text);
                        expected.append_value(&text);
                    }
                    2 => {
                        column.append_null();
                        expected.append_null();
                    }
                    3 => {
                        let text = (next(2) == 0).then(|| "claude-opus-4-5".to_string());
                        column.append_option(text.as_deref());
                        expected.append_option(text);
                    }
                    _ => {
                        let id: Vec<u8> = (0..[0, 8, 16, 40][next(4)])
                            .map(|_| [0, next(256) as u8][next(2)])
                            .collect();
                        column.append_hex(&id);
                        expected.append_option(hex(&id));
                    }
                }
            }
            let (actual, expected) = (column.finish(), expected.finish());
            assert_eq!(actual, expected, "round {round}");
            assert_eq!(actual.nulls().is_none(), round == 2);
        }
    }
}
