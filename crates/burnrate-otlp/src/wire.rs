//! The protobuf wire format, read in place: the reader under the direct decoder ([`crate::view`]).
//!
//! It accepts and rejects exactly what prost 0.14 does, with the same error text, because the
//! prost decode stays as the reference (the differential test in `tests/direct_decoder.rs`)
//! and a dead letter must say the same whichever path read it. So it mirrors prost where the
//! protobuf spec leaves room:
//! - nested messages are read against the whole input, not a sub-slice: a field may run past
//!   its message's end, which is then reported as `delimited length exceeded`, as prost does;
//! - a message nests at most 100 deep, and skipping an unknown field counts as a level;
//! - a field seen twice: the last scalar wins, a message merges, a repeated field appends;
//! - a repeated number may come packed or one by one.

use std::fmt;

/// How deep messages may nest (prost's `RECURSION_LIMIT`).
const RECURSION_LIMIT: u32 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireType {
    Varint = 0,
    SixtyFourBit = 1,
    LengthDelimited = 2,
    StartGroup = 3,
    EndGroup = 4,
    ThirtyTwoBit = 5,
}

/// Why bytes are not the message they claim to be, and where in it (innermost field first).
#[derive(Debug, Clone, PartialEq)]
pub struct WireError {
    kind: WireErrorKind,
    stack: Vec<(&'static str, &'static str)>,
}

#[derive(Debug, Clone, PartialEq)]
enum WireErrorKind {
    InvalidVarint,
    RecursionLimitReached,
    InvalidWireType {
        value: u64,
    },
    InvalidKey {
        key: u64,
    },
    InvalidTag,
    UnexpectedWireType {
        actual: WireType,
        expected: WireType,
    },
    BufferUnderflow,
    DelimitedLengthExceeded,
    UnexpectedEndGroupTag,
    InvalidString,
}

impl WireError {
    fn new(kind: WireErrorKind) -> Self {
        WireError {
            kind,
            stack: Vec::new(),
        }
    }

    /// Records that the error happened inside `message.field`.
    pub fn push(mut self, message: &'static str, field: &'static str) -> Self {
        self.stack.push((message, field));
        self
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("failed to decode Protobuf message: ")?;
        for (message, field) in &self.stack {
            write!(f, "{message}.{field}: ")?;
        }
        match &self.kind {
            WireErrorKind::InvalidVarint => f.write_str("invalid varint"),
            WireErrorKind::RecursionLimitReached => f.write_str("recursion limit reached"),
            WireErrorKind::InvalidWireType { value } => {
                write!(f, "invalid wire type value: {value}")
            }
            WireErrorKind::InvalidKey { key } => write!(f, "invalid key value: {key}"),
            WireErrorKind::InvalidTag => f.write_str("invalid tag value: 0"),
            WireErrorKind::UnexpectedWireType { actual, expected } => {
                write!(f, "invalid wire type: {actual:?} (expected {expected:?})")
            }
            WireErrorKind::BufferUnderflow => f.write_str("buffer underflow"),
            WireErrorKind::DelimitedLengthExceeded => f.write_str("delimited length exceeded"),
            WireErrorKind::UnexpectedEndGroupTag => f.write_str("unexpected end group tag"),
            WireErrorKind::InvalidString => {
                f.write_str("invalid string value: data is not UTF-8 encoded")
            }
        }
    }
}

impl std::error::Error for WireError {}

pub type WireResult<T> = Result<T, WireError>;

/// How many more levels of nesting are allowed.
#[derive(Debug, Clone, Copy)]
pub struct Depth(u32);

impl Depth {
    fn check(self) -> WireResult<()> {
        if self.0 == 0 {
            Err(WireError::new(WireErrorKind::RecursionLimitReached))
        } else {
            Ok(())
        }
    }

    fn enter(self) -> Depth {
        Depth(self.0 - 1)
    }
}

/// A message read field by field into a borrowed view.
pub trait Message<'a>: Default {
    /// The message's name as prost reports it in errors.
    const NAME: &'static str;

    /// Reads field `tag`; unknown fields are skipped with [`Reader::skip`].
    fn field(
        &mut self,
        reader: &mut Reader<'a>,
        tag: u32,
        wire: WireType,
        depth: Depth,
    ) -> WireResult<()>;
}

/// Reads a whole buffer as one top-level message.
pub fn decode<'a, M: Message<'a>>(bytes: &'a [u8]) -> WireResult<M> {
    let mut reader = Reader { bytes, pos: 0 };
    let mut message = M::default();
    let depth = Depth(RECURSION_LIMIT);
    while reader.pos < bytes.len() {
        let (tag, wire) = reader.key()?;
        message.field(&mut reader, tag, wire, depth)?;
    }
    Ok(message)
}

/// A position in the input. Every read checks against the end of the whole input; a nested
/// message's end is checked once its fields are read.
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn varint(&mut self) -> WireResult<u64> {
        let rest = &self.bytes[self.pos..];
        match rest.first() {
            None => return Err(WireError::new(WireErrorKind::InvalidVarint)),
            Some(&byte) if byte < 0x80 => {
                self.pos += 1;
                return Ok(u64::from(byte));
            }
            Some(_) => {}
        }
        let mut value = 0u64;
        for (count, &byte) in rest.iter().take(10).enumerate() {
            value |= u64::from(byte & 0x7f) << (count * 7);
            if byte < 0x80 {
                // The tenth byte may only hold the top bit of a u64.
                if count == 9 && byte >= 0x02 {
                    break;
                }
                self.pos += count + 1;
                return Ok(value);
            }
        }
        Err(WireError::new(WireErrorKind::InvalidVarint))
    }

    fn key(&mut self) -> WireResult<(u32, WireType)> {
        let key = self.varint()?;
        if key > u64::from(u32::MAX) {
            return Err(WireError::new(WireErrorKind::InvalidKey { key }));
        }
        let wire = match key & 0x07 {
            0 => WireType::Varint,
            1 => WireType::SixtyFourBit,
            2 => WireType::LengthDelimited,
            3 => WireType::StartGroup,
            4 => WireType::EndGroup,
            5 => WireType::ThirtyTwoBit,
            value => return Err(WireError::new(WireErrorKind::InvalidWireType { value })),
        };
        let tag = key as u32 >> 3;
        if tag < 1 {
            return Err(WireError::new(WireErrorKind::InvalidTag));
        }
        Ok((tag, wire))
    }

    fn expect(actual: WireType, expected: WireType) -> WireResult<()> {
        if actual == expected {
            Ok(())
        } else {
            Err(WireError::new(WireErrorKind::UnexpectedWireType {
                actual,
                expected,
            }))
        }
    }

    fn take(&mut self, len: u64) -> WireResult<&'a [u8]> {
        if len > self.remaining() as u64 {
            return Err(WireError::new(WireErrorKind::BufferUnderflow));
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok(&self.bytes[start..self.pos])
    }

    fn fixed<const N: usize>(&mut self) -> WireResult<[u8; N]> {
        let bytes = self
            .bytes
            .get(self.pos..self.pos + N)
            .ok_or_else(|| WireError::new(WireErrorKind::BufferUnderflow))?;
        self.pos += N;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub fn bytes(&mut self, wire: WireType) -> WireResult<&'a [u8]> {
        Self::expect(wire, WireType::LengthDelimited)?;
        let len = self.varint()?;
        self.take(len)
    }

    pub fn string(&mut self, wire: WireType) -> WireResult<&'a str> {
        let bytes = self.bytes(wire)?;
        utf8(bytes).ok_or_else(|| WireError::new(WireErrorKind::InvalidString))
    }

    pub fn uint64(&mut self, wire: WireType) -> WireResult<u64> {
        Self::expect(wire, WireType::Varint)?;
        self.varint()
    }

    pub fn int64(&mut self, wire: WireType) -> WireResult<i64> {
        self.uint64(wire).map(|v| v as i64)
    }

    /// `int32` and enumerations: the low 32 bits of the varint.
    pub fn int32(&mut self, wire: WireType) -> WireResult<i32> {
        self.uint64(wire).map(|v| v as i32)
    }

    pub fn uint32(&mut self, wire: WireType) -> WireResult<u32> {
        self.uint64(wire).map(|v| v as u32)
    }

    pub fn sint32(&mut self, wire: WireType) -> WireResult<i32> {
        self.uint64(wire).map(|v| {
            let v = v as u32;
            ((v >> 1) as i32) ^ (-((v & 1) as i32))
        })
    }

    pub fn bool(&mut self, wire: WireType) -> WireResult<bool> {
        self.uint64(wire).map(|v| v != 0)
    }

    pub fn fixed64(&mut self, wire: WireType) -> WireResult<u64> {
        Self::expect(wire, WireType::SixtyFourBit)?;
        self.fixed::<8>().map(u64::from_le_bytes)
    }

    pub fn sfixed64(&mut self, wire: WireType) -> WireResult<i64> {
        self.fixed64(wire).map(|v| v as i64)
    }

    pub fn double(&mut self, wire: WireType) -> WireResult<f64> {
        self.fixed64(wire).map(f64::from_bits)
    }

    pub fn fixed32(&mut self, wire: WireType) -> WireResult<u32> {
        Self::expect(wire, WireType::ThirtyTwoBit)?;
        self.fixed::<4>().map(u32::from_le_bytes)
    }

    /// A repeated 64-bit number (`fixed64`, `double`), packed or not; the values are checked
    /// and dropped, as nothing burnrate keeps reads them.
    pub fn repeated_fixed64(&mut self, wire: WireType) -> WireResult<()> {
        if wire == WireType::LengthDelimited {
            self.packed(|reader| reader.fixed::<8>().map(drop))
        } else {
            self.fixed64(wire).map(drop)
        }
    }

    /// A repeated varint (`uint64`), packed or not; checked and dropped.
    pub fn repeated_varint(&mut self, wire: WireType) -> WireResult<()> {
        if wire == WireType::LengthDelimited {
            self.packed(|reader| reader.varint().map(drop))
        } else {
            self.uint64(wire).map(drop)
        }
    }

    fn packed(&mut self, mut value: impl FnMut(&mut Self) -> WireResult<()>) -> WireResult<()> {
        let len = self.varint()?;
        if len > self.remaining() as u64 {
            return Err(WireError::new(WireErrorKind::BufferUnderflow));
        }
        let end = self.pos + len as usize;
        while self.pos < end {
            value(self)?;
        }
        if self.pos != end {
            return Err(WireError::new(WireErrorKind::DelimitedLengthExceeded));
        }
        Ok(())
    }

    /// Merges a length-delimited message into `message`.
    pub fn message<M: Message<'a>>(
        &mut self,
        wire: WireType,
        message: &mut M,
        depth: Depth,
    ) -> WireResult<()> {
        Self::expect(wire, WireType::LengthDelimited)?;
        depth.check()?;
        let len = self.varint()?;
        if len > self.remaining() as u64 {
            return Err(WireError::new(WireErrorKind::BufferUnderflow));
        }
        let end = self.pos + len as usize;
        let inner = depth.enter();
        while self.pos < end {
            let (tag, wire) = self.key()?;
            message.field(self, tag, wire, inner)?;
        }
        if self.pos != end {
            return Err(WireError::new(WireErrorKind::DelimitedLengthExceeded));
        }
        Ok(())
    }

    /// One more element of a repeated message field.
    pub fn push<M: Message<'a>>(
        &mut self,
        wire: WireType,
        list: &mut Vec<M>,
        depth: Depth,
    ) -> WireResult<()> {
        Self::expect(wire, WireType::LengthDelimited)?;
        let mut message = M::default();
        self.message(wire, &mut message, depth)?;
        append(list, message);
        Ok(())
    }

    /// A message that is exactly a string in field 1 and, in field 2, a message that is exactly
    /// a string in field 1: how every encoder writes an attribute with a string value
    /// (`KeyValue { key, value: AnyValue { string_value } }`). Read in one go; `None`, with
    /// nothing consumed, for any other bytes, which the caller then reads field by field (and
    /// so reports any error as the field-by-field reading does). Four in five of Claude Code's
    /// attributes are strings; reading them in one go took 12% off the instructions of
    /// decoding a large export, 6% off a real one's (callgrind, `benches/decode.rs`, 2026-12-02).
    pub fn string_pair(&mut self, wire: WireType, depth: Depth) -> Option<(&'a str, &'a str)> {
        let start = self.pos;
        let pair = self.read_string_pair(wire, depth);
        if pair.is_none() {
            self.pos = start;
        }
        pair
    }

    fn read_string_pair(&mut self, wire: WireType, depth: Depth) -> Option<(&'a str, &'a str)> {
        // Field by field, the pair and its value each take a level.
        if wire != WireType::LengthDelimited || depth.0 < 2 {
            return None;
        }
        let len = self.varint().ok()?;
        if len > self.remaining() as u64 {
            return None;
        }
        let end = self.pos + len as usize;
        let key = self.tagged_string(end)?;
        if self.bytes.get(self.pos) != Some(&0x12) {
            return None;
        }
        self.pos += 1;
        let value_len = self.varint().ok()?;
        if end.checked_sub(self.pos)? as u64 != value_len {
            return None;
        }
        let value = self.tagged_string(end)?;
        (self.pos == end).then_some((key, value))
    }

    /// Field 1 as a string, ending at or before `end`.
    fn tagged_string(&mut self, end: usize) -> Option<&'a str> {
        if self.bytes.get(self.pos) != Some(&0x0a) {
            return None;
        }
        self.pos += 1;
        let len = self.varint().ok()?;
        if len > end.checked_sub(self.pos)? as u64 {
            return None;
        }
        let bytes = &self.bytes[self.pos..self.pos + len as usize];
        self.pos += len as usize;
        utf8(bytes)
    }

    /// A message that is checked and dropped: what prost would reject is still rejected.
    pub fn check<M: Message<'a>>(&mut self, wire: WireType, depth: Depth) -> WireResult<()> {
        Self::expect(wire, WireType::LengthDelimited)?;
        self.message(wire, &mut M::default(), depth)
    }

    /// Skips a field this reader does not know.
    pub fn skip(&mut self, wire: WireType, tag: u32, depth: Depth) -> WireResult<()> {
        depth.check()?;
        let len = match wire {
            WireType::Varint => self.varint().map(|_| 0)?,
            WireType::ThirtyTwoBit => 4,
            WireType::SixtyFourBit => 8,
            WireType::LengthDelimited => self.varint()?,
            WireType::StartGroup => loop {
                let (inner_tag, inner_wire) = self.key()?;
                if inner_wire == WireType::EndGroup {
                    if inner_tag != tag {
                        return Err(WireError::new(WireErrorKind::UnexpectedEndGroupTag));
                    }
                    break 0;
                }
                self.skip(inner_wire, inner_tag, depth.enter())?;
            },
            WireType::EndGroup => {
                return Err(WireError::new(WireErrorKind::UnexpectedEndGroupTag));
            }
        };
        self.take(len).map(drop)
    }
}

/// Appends to a repeated field's list.
pub fn append<M>(list: &mut Vec<M>, message: M) {
    if list.capacity() == 0 {
        // Claude Code's records carry 10 to 30 attributes: skip the smallest regrowths.
        list.reserve(16);
    }
    list.push(message);
}

/// Every string is checked, as prost checks them. Most are short ASCII (attribute keys, ids,
/// model names), where simdutf8 hands over to `core::str::from_utf8` and its byte loop;
/// `is_ascii` reads a word at a time. Measured in `benches/decode.rs` (see docs/benchmarks.md).
fn utf8(bytes: &[u8]) -> Option<&str> {
    if bytes.is_ascii() {
        // SAFETY: ASCII is valid UTF-8.
        return Some(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    simdutf8::basic::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_as_prost_reads_them() {
        let read = |bytes: &[u8]| Reader { bytes, pos: 0 }.varint();
        assert_eq!(read(&[0x00]), Ok(0));
        assert_eq!(read(&[0x96, 0x01]), Ok(150));
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(read(&max), Ok(u64::MAX));
        let overflow = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(read(&overflow).is_err());
        assert!(read(&[0x80; 11]).is_err());
        assert!(read(&[0x80]).is_err());
        assert!(read(&[]).is_err());
    }

    /// A pair's bytes (the attribute's length first, as `Reader::push` finds it) and what
    /// follows: `string_pair` reads the pair and stops at its end, or reads nothing.
    #[test]
    fn a_string_pair_is_read_whole_or_not_at_all() {
        let depth = Depth(RECURSION_LIMIT);
        fn read(bytes: &[u8]) -> (Option<(&str, &str)>, usize) {
            let mut reader = Reader { bytes, pos: 0 };
            let pair = reader.string_pair(WireType::LengthDelimited, Depth(RECURSION_LIMIT));
            (pair, reader.pos)
        }
        // "model" = "x", then a byte of the next field.
        let pair = [
            12, 0x0a, 5, b'm', b'o', b'd', b'e', b'l', 0x12, 3, 0x0a, 1, b'x', 0x3a,
        ];
        assert_eq!(read(&pair), (Some(("model", "x")), 13));
        // Not a string value: an int (field 3 of the value).
        let int = [11, 0x0a, 5, b'm', b'o', b'd', b'e', b'l', 0x12, 2, 0x18, 1];
        assert_eq!(read(&int), (None, 0));
        // The value's string ends past the pair; the pair ends past the input.
        let mut past = pair;
        past[11] = 2;
        assert_eq!(read(&past), (None, 0));
        assert_eq!(read(&pair[..10]), (None, 0));
        // Too deep for the pair and its value to each take a level.
        let mut reader = Reader {
            bytes: &pair,
            pos: 0,
        };
        assert_eq!(
            reader.string_pair(WireType::LengthDelimited, Depth(1)),
            None
        );
        assert_eq!(reader.pos, 0);
        let just_deep_enough = reader.string_pair(WireType::LengthDelimited, Depth(2));
        assert_eq!(just_deep_enough, Some(("model", "x")));
        reader.pos = 0;
        // Not length-delimited at all.
        assert_eq!(reader.string_pair(WireType::Varint, depth), None);
    }
}
