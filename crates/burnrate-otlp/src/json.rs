//! OTLP/JSON read in place into the views the mapping reads, for the shape exporters send;
//! anything else is left to serde and `opentelemetry-proto`'s structs, which stay the reference.
//!
//! Why: through serde, `opentelemetry-proto` buffers every `AnyValue`, `Metric` and data point
//! into serde's generic `Content` first (its `#[serde(flatten)]` fields) and copies every
//! string. Half the Kafka bench's messages are OTLP/JSON (what a Collector's Kafka exporter
//! sends with `encoding: otlp_json`), and they took 80% of its decoding. Read here, the 25 real
//! JSON exports decode 1.8× to 2.0× faster than through serde's structs, and the Kafka decode
//! stage's CPU per message fell from 47 to 29 µs (`docs/benchmarks.md`, 2026-12-04).
//!
//! The contract, held by `tests/direct_decoder.rs` and the `decode_json` fuzz target: [`read`]
//! either gives the views serde's structs would give, or `None`, and then the caller asks
//! serde, whose answer (rows or error) is the one given. So it accepts only what it is sure of
//! and answers `None` to the rest:
//! - `null`, except for an optional message, which serde reads as absent;
//! - a field given twice (serde fails the export), an `AnyValue` with two values or an unknown
//!   one (serde keeps the last and skips the unknown without reading it);
//! - numbers serde reads its own way: `-0` (a float to serde_json), a float or an out-of-range
//!   number where an integer goes, a number past f64's range anywhere (even in a field it skips);
//! - `bytesValue`, histograms, exponential histograms and summaries, exemplars, links, entity
//!   refs, ids with a `0x` prefix or an odd length;
//! - nesting deeper than [`MAX_DEPTH`].
//!
//! Strings with escapes are unescaped by `serde_json` itself into an arena, and floats parsed by
//! it, so both read exactly as serde reads them.
//!
//! Owns: reading OTLP/JSON text. Must not know: what the mapping does with the views.

use bumpalo::Bump;

use crate::payload::Signal;
use crate::view::{
    AnyValue, ArrayValue, Data, Gauge, InstrumentationScope, KeyValue, KeyValueList, LogRecord,
    LogsRequest, Metric, MetricsRequest, NumberDataPoint, NumberValue, Request, Resource,
    ResourceLogs, ResourceMetrics, ResourceSpans, ScopeLogs, ScopeMetrics, ScopeSpans, Span,
    Status, Sum, TracesRequest, Value,
};

/// Objects and arrays nested deeper are left to serde (whose own limit is 128).
pub const MAX_DEPTH: u32 = 64;

/// `bytes` as an export request of `signal`, or of the signal its one top-level key names when
/// `None`; or `None` when serde must answer (see the module doc). Strings that need unescaping
/// and decoded ids live in `arena`.
///
/// Reading the signal from the key saves the pass serde made over the whole export only to find
/// it (`sniff_json_signal`): a Kafka topic of OTLP/JSON names no signal unless configured to.
/// Whatever that sniff would not answer with exactly this key (another signal's key too, its
/// snake_case alias, none) is left to it.
pub fn read<'a>(bytes: &'a [u8], signal: Option<Signal>, arena: &'a Bump) -> Option<Request<'a>> {
    let text = simdutf8::basic::from_utf8(bytes).ok()?;
    let mut r = Reader {
        text,
        bytes,
        at: 0,
        depth: 0,
        arena,
    };
    let mut request = None;
    r.object(|r, key| {
        let named = match key {
            "resourceLogs" => Signal::Logs,
            "resourceMetrics" => Signal::Metrics,
            "resourceSpans" => Signal::Traces,
            // The sniff takes these aliases as well; the structs then skip them.
            "resource_logs" | "resource_metrics" | "resource_spans" if signal.is_none() => {
                return None;
            }
            _ => return r.skip(),
        };
        if signal.is_some_and(|wanted| wanted != named) {
            return r.skip();
        }
        // The same key twice fails the export in serde; two signals' keys fail the sniff.
        if request.is_some() {
            return None;
        }
        request = Some(match named {
            Signal::Logs => {
                let mut logs = LogsRequest::default();
                r.list(&mut logs.resource_logs, resource_logs)?;
                Request::Logs(logs)
            }
            Signal::Metrics => {
                let mut metrics = MetricsRequest::default();
                r.list(&mut metrics.resource_metrics, resource_metrics)?;
                Request::Metrics(metrics)
            }
            Signal::Traces => {
                let mut traces = TracesRequest::default();
                r.list(&mut traces.resource_spans, resource_spans)?;
                Request::Traces(traces)
            }
        });
        Some(())
    })?;
    let request = request?;
    let empty = match &request {
        Request::Logs(logs) => logs.resource_logs.is_empty(),
        Request::Metrics(metrics) => metrics.resource_metrics.is_empty(),
        Request::Traces(traces) => traces.resource_spans.is_empty(),
    };
    // An export with nothing in it may be another signal's: serde says which.
    if empty {
        return None;
    }
    r.whitespace();
    (r.at == bytes.len()).then_some(request)
}

/// A field seen once: a second time, serde fails the export ("duplicate field").
fn once(seen: &mut u32, field: u32) -> Option<()> {
    let bit = 1 << field;
    if *seen & bit != 0 {
        return None;
    }
    *seen |= bit;
    Some(())
}

/// Where the first byte that ends a run of plain characters in a string is: its closing quote,
/// an escape, a control character. Sixteen bytes a step on x86_64 (SSE2, which every x86_64
/// has), then eight (the word tricks of "Bit Twiddling Hacks"), the tail through
/// [`STRING_STOPS`]. One table lookup a byte was 13% of the decode stage in a profile of the
/// Kafka bench, half of whose messages are OTLP/JSON; eight bytes a step took the real JSON
/// exports from 1.05× to 1.09× the structs-only baseline; sixteen took a string read from 117
/// to 102 instructions and an export's decoding from 189k to 182k (callgrind;
/// `benches/decode.rs`, docs/benchmarks.md).
fn string_stop(bytes: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    let at = {
        let mut at = 0;
        while let Some(block) = bytes.get(at..).and_then(<[u8]>::first_chunk::<16>) {
            let stops = block_stops(block);
            if stops != 0 {
                return Some(at + stops.trailing_zeros() as usize);
            }
            at += 16;
        }
        at
    };
    #[cfg(not(target_arch = "x86_64"))]
    let at = 0;
    word_stop(&bytes[at..]).map(|i| at + i)
}

/// A bit for each byte of `block` that ends a run of plain characters, the first byte lowest.
#[cfg(target_arch = "x86_64")]
fn block_stops(block: &[u8; 16]) -> u32 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of the x86_64 baseline, and the unaligned load reads the 16 bytes
    // `block` holds.
    unsafe {
        let v = _mm_loadu_si128(block.as_ptr().cast());
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let escape = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        // Unsigned: a byte is a control character where min(byte, 0x1f) is the byte.
        let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, escape), control)) as u32
    }
}

/// [`string_stop`] eight bytes a step.
fn word_stop(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // A byte of `word - ONES * n & !word & HIGHS` has its high bit set where the word's byte is
    // below n, exactly for the lowest such byte (a borrow only runs towards higher bytes).
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS;
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let stops = below(word, 0x20)
            | below(word ^ (ONES * u64::from(b'"')), 1)
            | below(word ^ (ONES * u64::from(b'\\')), 1);
        if stops != 0 {
            return Some(at + stops.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    let tail = chunks.remainder();
    tail.iter()
        .position(|b| STRING_STOPS[usize::from(*b)])
        .map(|i| at + i)
}

/// The bytes that end a run of plain characters in a string: its closing quote, an escape,
/// a control character.
const STRING_STOPS: [bool; 256] = {
    let mut stops = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        stops[b] = true;
        b += 1;
    }
    stops[b'"' as usize] = true;
    stops[b'\\' as usize] = true;
    stops
};

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    depth: u32,
    arena: &'a Bump,
}

/// A number token as JSON spells it.
struct Number<'a> {
    text: &'a str,
    integer: bool,
}

impl<'a> Reader<'a> {
    fn whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.whitespace();
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn deeper(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    /// An object, each of its fields handed to `field` with the reader at its value.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        self.deeper()?;
        if self.peek()? == b'}' {
            self.at += 1;
        } else {
            loop {
                let key = self.string()?;
                self.eat(b':')?;
                field(self, key)?;
                match self.peek()? {
                    b',' => self.at += 1,
                    b'}' => {
                        self.at += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        Some(())
    }

    fn array(&mut self, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        self.deeper()?;
        if self.peek()? == b']' {
            self.at += 1;
        } else {
            loop {
                item(self)?;
                match self.peek()? {
                    b',' => self.at += 1,
                    b']' => {
                        self.at += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        Some(())
    }

    /// An array of messages, appended to `list` (serde replaces a list given twice, but a
    /// second one is a duplicate field, left to serde by the callers' `once`).
    fn list<T: Default>(
        &mut self,
        list: &mut Vec<T>,
        message: fn(&mut Self, &mut T) -> Option<()>,
    ) -> Option<()> {
        self.array(|r| {
            let mut item = T::default();
            message(r, &mut item)?;
            list.push(item);
            Some(())
        })
    }

    /// A list that is read only when empty: its messages are not kept, and checking them as
    /// serde would is left to serde.
    fn empty_list(&mut self) -> Option<()> {
        self.array(|_| None)
    }

    /// A string: borrowed from the input, or unescaped into the arena.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let rest = self.bytes.get(start..)?;
        let end = start + string_stop(rest)?;
        self.at = end;
        match self.bytes[end] {
            b'"' => {
                // Both ends are ASCII quotes, so the slice falls on character boundaries.
                let s = self.text.get(start..end)?;
                self.at += 1;
                Some(s)
            }
            b'\\' => self.escaped(start),
            // A control character: JSON wants it escaped, and serde fails the export.
            _ => None,
        }
    }

    /// At `from`: `head`, a string with no escape, then `tail`, which begins with the string's
    /// closing quote. The string, and where `tail` ends; `None` for anything else.
    fn plain_string_between(
        &self,
        from: usize,
        head: &[u8],
        tail: &[u8],
    ) -> Option<(&'a str, usize)> {
        self.bytes.get(from..)?.starts_with(head).then_some(())?;
        let start = from + head.len();
        let end = start + string_stop(self.bytes.get(start..)?)?;
        self.bytes.get(end..)?.starts_with(tail).then_some(())?;
        // Both ends are ASCII quotes, so the slice falls on character boundaries.
        Some((self.text.get(start..end)?, end + tail.len()))
    }

    /// The rest of a string with escapes from `start` (just after its opening quote),
    /// unescaped by `serde_json` into the arena.
    fn escaped(&mut self, start: usize) -> Option<&'a str> {
        loop {
            match *self.bytes.get(self.at)? {
                b'"' => break,
                b'\\' => self.at += 2,
                0..=0x1f => return None,
                _ => self.at += 1,
            }
        }
        let token = self.text.get(start - 1..=self.at)?;
        self.at += 1;
        let unescaped: String = serde_json::from_str(token).ok()?;
        Some(self.arena.alloc_str(&unescaped))
    }

    fn number(&mut self) -> Option<Number<'a>> {
        self.whitespace();
        let start = self.at;
        let digits = |r: &mut Self| {
            let from = r.at;
            while r.bytes.get(r.at).is_some_and(u8::is_ascii_digit) {
                r.at += 1;
            }
            r.at > from
        };
        if self.bytes.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        match self.bytes.get(self.at)? {
            b'0' => self.at += 1,
            b'1'..=b'9' => {
                digits(self);
            }
            _ => return None,
        }
        let mut integer = true;
        if self.bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            integer = false;
            digits(self).then_some(())?;
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.at) {
            self.at += 1;
            integer = false;
            if let Some(b'+' | b'-') = self.bytes.get(self.at) {
                self.at += 1;
            }
            digits(self).then_some(())?;
        }
        let text = self.text.get(start..self.at)?;
        // serde_json reads `-0` as the float -0.0, which no integer field accepts.
        (text != "-0").then_some(Number { text, integer })
    }

    /// An integer field of a derived struct (`i32`, `u32`): an integer token in range.
    fn integer<T: TryFrom<i64>>(&mut self) -> Option<T> {
        let number = self.number()?;
        number.integer.then_some(())?;
        T::try_from(number.text.parse::<i64>().ok()?).ok()
    }

    /// A `u64` that `opentelemetry-proto` reads from a number or a string of one.
    fn u64(&mut self) -> Option<u64> {
        if self.peek()? == b'"' {
            return self.string()?.parse().ok();
        }
        let number = self.number()?;
        (number.integer && !number.text.starts_with('-')).then_some(())?;
        number.text.parse().ok()
    }

    /// An `i64` that `opentelemetry-proto` reads from a number or a string of one.
    fn i64(&mut self) -> Option<i64> {
        if self.peek()? == b'"' {
            return self.string()?.parse().ok();
        }
        let number = self.number()?;
        number.integer.then_some(())?;
        number.text.parse().ok()
    }

    /// An `f64`, parsed by serde_json (which rounds a few inputs differently from `str::parse`).
    fn f64(&mut self) -> Option<f64> {
        serde_json::from_str(self.number()?.text).ok()
    }

    fn bool(&mut self) -> Option<bool> {
        self.whitespace();
        let rest = self.bytes.get(self.at..)?;
        let (value, len) = if rest.starts_with(b"true") {
            (true, 4)
        } else if rest.starts_with(b"false") {
            (false, 5)
        } else {
            return None;
        };
        self.at += len;
        Some(value)
    }

    /// Whether the next value is `null`, read if so: what serde reads as `None` for a field
    /// that holds an optional message.
    fn null(&mut self) -> Option<bool> {
        if self.peek()? != b'n' {
            return Some(false);
        }
        self.bytes
            .get(self.at..)?
            .starts_with(b"null")
            .then_some(())?;
        self.at += 4;
        Some(true)
    }

    /// A trace or span id: hex digits in pairs, decoded into the arena.
    fn id(&mut self) -> Option<&'a [u8]> {
        let hex = self.string()?.as_bytes();
        if hex.len() % 2 != 0 {
            return None;
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        // Decoded where it is kept: an id that turns out not to be hex leaves a few bytes unused
        // in the arena, which lives as long as one export.
        let id = self.arena.alloc_slice_fill_copy(hex.len() / 2, 0u8);
        for (byte, pair) in id.iter_mut().zip(hex.chunks_exact(2)) {
            *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
        }
        Some(id)
    }

    /// An `ArrayValue` or `KeyValueList`: an object whose one field, `values`, has no default
    /// (serde fails it when absent) and is read by `list`.
    fn values(&mut self, mut list: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        let mut listed = false;
        self.object(|r, field| match field {
            "values" if !listed => {
                listed = true;
                list(r)
            }
            "values" => None,
            _ => r.skip(),
        })?;
        listed.then_some(())
    }

    /// Any value of a field serde ignores, checked as serde_json checks it.
    fn skip(&mut self) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(|r, _| r.skip()),
            b'[' => self.array(Self::skip),
            b'"' => self.string().map(drop),
            b't' | b'f' => self.bool().map(drop),
            // `null` is left to serde, which fails some fields on it and not others.
            // So is a number past f64's range: serde skips it in most structs but fails it in
            // those it buffers for a `flatten` field (`Metric`, data points, `AnyValue`).
            _ => {
                let number = self.number()?;
                number
                    .text
                    .parse::<f64>()
                    .is_ok_and(f64::is_finite)
                    .then_some(())
            }
        }
    }

    /// A record's attributes, with room for 16 at the first, as the protobuf reader makes
    /// ([`crate::wire::append`]): growing from 4 to 32 was 301,000 regrowths in a Kafka round
    /// of 36,000 messages, 0.9% of its instructions (docs/benchmarks.md, 2026-12-07).
    fn attributes(&mut self, list: &mut Vec<KeyValue<'a>>) -> Option<()> {
        self.array(|r| {
            let mut attribute = KeyValue::default();
            key_value(r, &mut attribute)?;
            crate::wire::append(list, attribute);
            Some(())
        })
    }
}

fn key_value<'a>(r: &mut Reader<'a>, kv: &mut KeyValue<'a>) -> Option<()> {
    // Exporters write `{"key":"…","value":…}`, so the key and the value's field name are taken
    // in one go when they are spelled so; anything else is read field by field from the start
    // (`docs/benchmarks.md`: an export read in 39% fewer instructions, 2026-12-05).
    r.whitespace();
    let from = r.at;
    if r.depth < MAX_DEPTH
        && let Some((key, value_at)) =
            r.plain_string_between(from, br#"{"key":""#, br#"","value":"#)
    {
        // Most often the whole attribute: `{"key":"…","value":{"stringValue":"…"}}`.
        if r.depth + 1 < MAX_DEPTH
            && let Some((text, end)) =
                r.plain_string_between(value_at, br#"{"stringValue":""#, br#""}}"#)
        {
            r.at = end;
            kv.key = key;
            kv.value = Some(AnyValue {
                value: Some(Value::StringValue(text)),
            });
            return Some(());
        }
        r.at = value_at;
        r.depth += 1;
        // What fails here fails field by field too: the same bytes, read the same way.
        let value = if r.null()? { None } else { Some(any_value(r)?) };
        r.depth -= 1;
        if r.bytes.get(r.at) == Some(&b'}') {
            r.at += 1;
            kv.key = key;
            kv.value = value;
            return Some(());
        }
        r.at = from;
    }
    let (mut seen, mut key) = (0, None);
    r.object(|r, field| match field {
        "key" => {
            once(&mut seen, 0)?;
            key = Some(r.string()?);
            Some(())
        }
        "value" => {
            once(&mut seen, 1)?;
            if !r.null()? {
                kv.value = Some(any_value(r)?);
            }
            Some(())
        }
        // Read by serde as an i32 (its default 0 when absent); what it says is not kept.
        "keyStrindex" => {
            once(&mut seen, 2)?;
            r.integer::<i32>().map(drop)
        }
        _ => r.skip(),
    })?;
    // `key` has no default: serde fails an attribute without one.
    kv.key = key?;
    Some(())
}

/// An `AnyValue` with at most one of its value fields (serde keeps the last of several, and
/// skips unknown ones without reading them: both left to it).
fn any_value<'a>(r: &mut Reader<'a>) -> Option<AnyValue<'a>> {
    // Four in five values are `{"stringValue":"…"}` as exporters write it: read in one go.
    r.whitespace();
    if r.depth < MAX_DEPTH
        && let Some((text, end)) = r.plain_string_between(r.at, br#"{"stringValue":""#, br#""}"#)
    {
        r.at = end;
        return Some(AnyValue {
            value: Some(Value::StringValue(text)),
        });
    }
    if r.depth < MAX_DEPTH
        && let Some(value) = number_value(r)
    {
        return Some(AnyValue { value: Some(value) });
    }
    let mut value = None;
    r.object(|r, field| {
        if value.is_some() {
            return None;
        }
        value = Some(match field {
            "stringValue" => Value::StringValue(r.string()?),
            "boolValue" => Value::BoolValue(r.bool()?),
            "intValue" => Value::IntValue(r.i64()?),
            "doubleValue" => Value::DoubleValue(r.f64()?),
            "arrayValue" => {
                let mut array = ArrayValue::default();
                r.values(|r| {
                    r.array(|r| {
                        array.values.push(any_value(r)?);
                        Some(())
                    })
                })?;
                Value::ArrayValue(array)
            }
            "kvlistValue" => {
                let mut list = KeyValueList::default();
                r.values(|r| r.attributes(&mut list.values))?;
                Value::KvlistValue(list)
            }
            _ => return None,
        });
        Some(())
    })?;
    Some(AnyValue { value })
}

/// `{"intValue":…}` or `{"doubleValue":…}`, the value read as the field-by-field path reads
/// it, and the object closed right after: most of the values that are not strings (token
/// counts, durations, costs). `None`, with nothing consumed, for any other spelling, which
/// `any_value` then reads field by field.
fn number_value<'a>(r: &mut Reader<'a>) -> Option<Value<'a>> {
    const INT: &[u8] = br#"{"intValue":"#;
    const DOUBLE: &[u8] = br#"{"doubleValue":"#;
    let from = r.at;
    let rest = r.bytes.get(from..)?;
    let value = if rest.starts_with(INT) {
        r.at = from + INT.len();
        r.i64().map(Value::IntValue)
    } else if rest.starts_with(DOUBLE) {
        r.at = from + DOUBLE.len();
        r.f64().map(Value::DoubleValue)
    } else {
        None
    };
    match value {
        Some(value) if r.bytes.get(r.at) == Some(&b'}') => {
            r.at += 1;
            Some(value)
        }
        _ => {
            r.at = from;
            None
        }
    }
}

fn resource<'a>(r: &mut Reader<'a>) -> Option<Resource<'a>> {
    let mut resource = Resource::default();
    let mut seen = 0;
    r.object(|r, field| match field {
        "attributes" => {
            once(&mut seen, 0)?;
            r.attributes(&mut resource.attributes)
        }
        "droppedAttributesCount" => {
            once(&mut seen, 1)?;
            r.integer::<u32>().map(drop)
        }
        "entityRefs" => {
            once(&mut seen, 2)?;
            r.empty_list()
        }
        _ => r.skip(),
    })?;
    Some(resource)
}

fn scope<'a>(r: &mut Reader<'a>) -> Option<InstrumentationScope<'a>> {
    let mut scope = InstrumentationScope::default();
    let mut seen = 0;
    r.object(|r, field| match field {
        "name" => {
            once(&mut seen, 0)?;
            scope.name = r.string()?;
            Some(())
        }
        "version" => {
            once(&mut seen, 1)?;
            r.string().map(drop)
        }
        "attributes" => {
            once(&mut seen, 2)?;
            r.attributes(&mut Vec::new())
        }
        "droppedAttributesCount" => {
            once(&mut seen, 3)?;
            r.integer::<u32>().map(drop)
        }
        _ => r.skip(),
    })?;
    Some(scope)
}

/// Reads one message of a kind, `None` when serde must answer.
type ReadMessage<'a, T> = fn(&mut Reader<'a>) -> Option<T>;

/// The shape of every `Resource*` and `Scope*` message: one optional message (`name`, read by
/// `message` into `slot`: the resource or the scope), one list (`items`, read by `list`) and a
/// schema URL.
fn holder<'a, T>(
    r: &mut Reader<'a>,
    (name, message, slot): (&str, ReadMessage<'a, T>, &mut Option<T>),
    (items, mut list): (&str, impl FnMut(&mut Reader<'a>) -> Option<()>),
) -> Option<()> {
    let mut seen = 0;
    r.object(|r, field| match field {
        "schemaUrl" => {
            once(&mut seen, 2)?;
            r.string().map(drop)
        }
        f if f == name => {
            once(&mut seen, 0)?;
            if !r.null()? {
                *slot = Some(message(r)?);
            }
            Some(())
        }
        f if f == items => {
            once(&mut seen, 1)?;
            list(r)
        }
        _ => r.skip(),
    })
}

fn resource_logs<'a>(r: &mut Reader<'a>, out: &mut ResourceLogs<'a>) -> Option<()> {
    let list = &mut out.scope_logs;
    holder(
        r,
        ("resource", resource, &mut out.resource),
        ("scopeLogs", |r| r.list(list, scope_logs)),
    )
}

fn scope_logs<'a>(r: &mut Reader<'a>, out: &mut ScopeLogs<'a>) -> Option<()> {
    let list = &mut out.log_records;
    holder(
        r,
        ("scope", scope, &mut out.scope),
        ("logRecords", |r| r.list(list, log_record)),
    )
}

fn log_record<'a>(r: &mut Reader<'a>, record: &mut LogRecord<'a>) -> Option<()> {
    let mut seen = 0;
    r.object(|r, field| {
        match field {
            "timeUnixNano" => {
                once(&mut seen, 0)?;
                record.time_unix_nano = r.u64()?;
            }
            "observedTimeUnixNano" => {
                once(&mut seen, 1)?;
                record.observed_time_unix_nano = r.u64()?;
            }
            "severityNumber" => {
                once(&mut seen, 2)?;
                record.severity_number = r.integer()?;
            }
            "severityText" => {
                once(&mut seen, 3)?;
                record.severity_text = r.string()?;
            }
            "body" => {
                once(&mut seen, 4)?;
                if !r.null()? {
                    record.body = Some(any_value(r)?);
                }
            }
            "attributes" => {
                once(&mut seen, 5)?;
                r.attributes(&mut record.attributes)?;
            }
            "droppedAttributesCount" => {
                once(&mut seen, 6)?;
                r.integer::<u32>()?;
            }
            "flags" => {
                once(&mut seen, 7)?;
                r.integer::<u32>()?;
            }
            "traceId" => {
                once(&mut seen, 8)?;
                record.trace_id = r.id()?;
            }
            "spanId" => {
                once(&mut seen, 9)?;
                record.span_id = r.id()?;
            }
            "eventName" => {
                once(&mut seen, 10)?;
                record.event_name = r.string()?;
            }
            _ => r.skip()?,
        }
        Some(())
    })
}

fn resource_metrics<'a>(r: &mut Reader<'a>, out: &mut ResourceMetrics<'a>) -> Option<()> {
    let list = &mut out.scope_metrics;
    holder(
        r,
        ("resource", resource, &mut out.resource),
        ("scopeMetrics", |r| r.list(list, scope_metrics)),
    )
}

fn scope_metrics<'a>(r: &mut Reader<'a>, out: &mut ScopeMetrics<'a>) -> Option<()> {
    let list = &mut out.metrics;
    holder(
        r,
        ("scope", scope, &mut out.scope),
        ("metrics", |r| r.list(list, metric)),
    )
}

/// A metric with a sum or a gauge; histograms and summaries are left to serde.
fn metric<'a>(r: &mut Reader<'a>, metric: &mut Metric<'a>) -> Option<()> {
    let mut seen = 0;
    r.object(|r, field| {
        match field {
            "name" => {
                once(&mut seen, 0)?;
                metric.name = r.string()?;
            }
            "description" => {
                once(&mut seen, 1)?;
                r.string()?;
            }
            "unit" => {
                once(&mut seen, 2)?;
                metric.unit = r.string()?;
            }
            "sum" => {
                once(&mut seen, 3)?;
                let mut sum = Sum::default();
                let mut fields = 0;
                r.object(|r, field| {
                    match field {
                        "dataPoints" => {
                            once(&mut fields, 0)?;
                            r.list(&mut sum.data_points, number_point)?;
                        }
                        "aggregationTemporality" => {
                            once(&mut fields, 1)?;
                            sum.aggregation_temporality = r.integer()?;
                        }
                        "isMonotonic" => {
                            once(&mut fields, 2)?;
                            sum.is_monotonic = r.bool()?;
                        }
                        _ => r.skip()?,
                    }
                    Some(())
                })?;
                metric.data = Some(Data::Sum(sum));
            }
            "gauge" => {
                once(&mut seen, 3)?;
                let mut gauge = Gauge::default();
                let mut fields = 0;
                r.object(|r, field| match field {
                    "dataPoints" => {
                        once(&mut fields, 0)?;
                        r.list(&mut gauge.data_points, number_point)
                    }
                    _ => r.skip(),
                })?;
                metric.data = Some(Data::Gauge(gauge));
            }
            "metadata" => {
                once(&mut seen, 4)?;
                r.attributes(&mut Vec::new())?;
            }
            "histogram" | "exponentialHistogram" | "summary" => return None,
            _ => r.skip()?,
        }
        Some(())
    })
}

fn number_point<'a>(r: &mut Reader<'a>, point: &mut NumberDataPoint<'a>) -> Option<()> {
    let mut seen = 0;
    r.object(|r, field| {
        match field {
            "attributes" => {
                once(&mut seen, 0)?;
                r.attributes(&mut point.attributes)?;
            }
            "startTimeUnixNano" => {
                once(&mut seen, 1)?;
                point.start_time_unix_nano = r.u64()?;
            }
            "timeUnixNano" => {
                once(&mut seen, 2)?;
                point.time_unix_nano = r.u64()?;
            }
            "asDouble" => {
                once(&mut seen, 3)?;
                point.value = Some(NumberValue::AsDouble(r.f64()?));
            }
            "asInt" => {
                once(&mut seen, 3)?;
                point.value = Some(NumberValue::AsInt(r.i64()?));
            }
            "exemplars" => {
                once(&mut seen, 4)?;
                r.empty_list()?;
            }
            "flags" => {
                once(&mut seen, 5)?;
                r.integer::<u32>()?;
            }
            _ => r.skip()?,
        }
        Some(())
    })
}

fn resource_spans<'a>(r: &mut Reader<'a>, out: &mut ResourceSpans<'a>) -> Option<()> {
    let list = &mut out.scope_spans;
    holder(
        r,
        ("resource", resource, &mut out.resource),
        ("scopeSpans", |r| r.list(list, scope_spans)),
    )
}

fn scope_spans<'a>(r: &mut Reader<'a>, out: &mut ScopeSpans<'a>) -> Option<()> {
    let list = &mut out.spans;
    holder(
        r,
        ("scope", scope, &mut out.scope),
        ("spans", |r| r.list(list, span)),
    )
}

fn span<'a>(r: &mut Reader<'a>, span: &mut Span<'a>) -> Option<()> {
    let mut seen = 0;
    r.object(|r, field| {
        match field {
            "traceId" => {
                once(&mut seen, 0)?;
                span.trace_id = r.id()?;
            }
            "spanId" => {
                once(&mut seen, 1)?;
                span.span_id = r.id()?;
            }
            "parentSpanId" => {
                once(&mut seen, 2)?;
                span.parent_span_id = r.id()?;
            }
            "traceState" => {
                once(&mut seen, 3)?;
                r.string()?;
            }
            "flags" => {
                once(&mut seen, 4)?;
                r.integer::<u32>()?;
            }
            "name" => {
                once(&mut seen, 5)?;
                span.name = r.string()?;
            }
            "kind" => {
                once(&mut seen, 6)?;
                span.kind = r.integer()?;
            }
            "startTimeUnixNano" => {
                once(&mut seen, 7)?;
                span.start_time_unix_nano = r.u64()?;
            }
            "endTimeUnixNano" => {
                once(&mut seen, 8)?;
                span.end_time_unix_nano = r.u64()?;
            }
            "attributes" => {
                once(&mut seen, 9)?;
                r.attributes(&mut span.attributes)?;
            }
            "droppedAttributesCount" => {
                once(&mut seen, 10)?;
                r.integer::<u32>()?;
            }
            "events" => {
                once(&mut seen, 11)?;
                r.array(event)?;
            }
            "droppedEventsCount" => {
                once(&mut seen, 12)?;
                r.integer::<u32>()?;
            }
            "links" => {
                once(&mut seen, 13)?;
                r.empty_list()?;
            }
            "droppedLinksCount" => {
                once(&mut seen, 14)?;
                r.integer::<u32>()?;
            }
            "status" => {
                once(&mut seen, 15)?;
                if !r.null()? {
                    span.status = Some(status(r)?);
                }
            }
            _ => r.skip()?,
        }
        Some(())
    })
}

/// A span event: read as serde reads it, not kept.
fn event(r: &mut Reader<'_>) -> Option<()> {
    let mut seen = 0;
    r.object(|r, field| match field {
        "timeUnixNano" => {
            once(&mut seen, 0)?;
            r.u64().map(drop)
        }
        "name" => {
            once(&mut seen, 1)?;
            r.string().map(drop)
        }
        "attributes" => {
            once(&mut seen, 2)?;
            r.attributes(&mut Vec::new())
        }
        "droppedAttributesCount" => {
            once(&mut seen, 3)?;
            r.integer::<u32>().map(drop)
        }
        _ => r.skip(),
    })
}

fn status<'a>(r: &mut Reader<'a>) -> Option<Status<'a>> {
    let mut status = Status::default();
    let mut seen = 0;
    r.object(|r, field| {
        match field {
            "message" => {
                once(&mut seen, 0)?;
                status.message = r.string()?;
            }
            "code" => {
                once(&mut seen, 1)?;
                status.code = r.integer()?;
            }
            _ => r.skip()?,
        }
        Some(())
    })?;
    Some(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The block-at-a-time and word-at-a-time scans find what a table lookup a byte finds,
    /// wherever the stop is in a block or a word and whatever bytes come before and after it.
    #[test]
    fn the_block_and_word_scans_stop_where_the_byte_scan_does() {
        let by_byte = |bytes: &[u8]| bytes.iter().position(|b| STRING_STOPS[usize::from(*b)]);
        let plain = [
            b'a', b' ', b'~', 0x7f, 0x80, 0xc3, 0xff, b'!', b'#', b'[', b']', 0x21,
        ];
        let stops = [b'"', b'\\', 0x00, 0x01, 0x0a, 0x1f];
        let mut next = crate::seeded(0x9e37_79b9_7f4a_7c15_u64);
        for _ in 0..20_000 {
            let len = next(40);
            let mut bytes: Vec<u8> = (0..len).map(|_| plain[next(plain.len())]).collect();
            for _ in 0..next(3) {
                if len > 0 {
                    let at = next(len);
                    bytes[at] = stops[next(stops.len())];
                }
            }
            for from in 0..bytes.len().min(9) {
                assert_eq!(
                    string_stop(&bytes[from..]),
                    by_byte(&bytes[from..]),
                    "{bytes:?} from {from}"
                );
            }
        }
        // Every byte value, alone at every place in a block, a word and a tail.
        for value in 0..=255u8 {
            for at in 0..40 {
                let mut bytes = vec![b'x'; 40];
                bytes[at] = value;
                assert_eq!(string_stop(&bytes), by_byte(&bytes), "{value:#x} at {at}");
                assert_eq!(word_stop(&bytes), by_byte(&bytes), "{value:#x} at {at}");
            }
        }
    }
}
