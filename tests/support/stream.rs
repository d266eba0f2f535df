//! The samples as a stream of many sessions, for what replays them thousands of times: copy
//! `n` of an export ([`LaterCopies`]) is what Claude Code would have sent `n` steps later, in a
//! session of its own. Replayed as they are, 27,778 copies of the samples are 27,778 sends of
//! the same minutes by the same five sessions: the windows see every copy after the first as
//! late, the cumulative metrics repeat the same series, and nothing a catch-up after an outage
//! does (event time moving on, windows closing, new series) happens.
//!
//! A copy changes only what a later session would: every time field, and the session's id. Its
//! other bytes are the ones Claude Code sent, so the decoders read what they read in production
//! (the exporter's field order and spacing, its strings' lengths).

use std::ops::Range;
use std::time::Duration;

use super::SampleExport;

/// How much later the benches make each copy of the samples than the one before: 27,778 copies
/// span 7.7 hours of event time, a backlog after an outage, with a few sessions of each run
/// under way at a time (a run's exports span 3 to 4 seconds).
pub const COPY_STEP: Duration = Duration::from_secs(1);

/// Where the copies of one export differ from it, found once: what a stream of thousands of
/// copies then patches into each.
pub struct LaterCopies {
    bytes: Vec<u8>,
    /// Each time: where its bytes are, and whether they are a protobuf `fixed64` (else the
    /// decimal digits of an OTLP/JSON string), with its value.
    times: Vec<(Range<usize>, Time)>,
    /// The session's id, and where it is written.
    session: Option<(Vec<u8>, Vec<usize>)>,
}

#[derive(Clone, Copy)]
enum Time {
    Fixed64(u64),
    Decimal(u64),
}

impl LaterCopies {
    pub fn new(export: &SampleExport) -> Self {
        let mut times = Vec::new();
        if export.is_json() {
            json_times(&export.bytes, &mut times);
        } else {
            let kind = match export.signal {
                "logs" => Kind::LogsRequest,
                "metrics" => Kind::MetricsRequest,
                _ => Kind::TracesRequest,
            };
            proto_times(&export.bytes, 0..export.bytes.len(), kind, &mut times);
        }
        let session = session_id(&export.bytes).map(|id| {
            let at = find_all(&export.bytes, &id);
            (id, at)
        });
        LaterCopies {
            bytes: export.bytes.clone(),
            times,
            session,
        }
    }

    /// Copy `copy`: every time `copy × step` later and the run's `session.id` made the copy's
    /// own (the same length: its last 12 hex digits plus `copy`). Copy 0 is the export.
    pub fn copy(&self, copy: u64, step: Duration) -> Vec<u8> {
        let shift = u64::try_from(step.as_nanos())
            .ok()
            .and_then(|step| step.checked_mul(copy))
            .expect("a shift within u64 nanoseconds");
        let mut bytes = self.bytes.clone();
        if let Some((id, at)) = &self.session {
            let own = own_session_id(id, copy);
            for &at in at {
                bytes[at..at + own.len()].copy_from_slice(&own);
            }
        }
        // Decimal times may change length: patched from the last, so earlier ranges hold.
        for (range, time) in self.times.iter().rev() {
            match *time {
                Time::Fixed64(time) => {
                    bytes[range.clone()].copy_from_slice(&time.wrapping_add(shift).to_le_bytes())
                }
                Time::Decimal(time) => {
                    let moved = (time + shift).to_string();
                    bytes.splice(range.clone(), moved.into_bytes());
                }
            }
        }
        bytes
    }
}

/// The OTLP messages a copy walks through to reach its times.
#[derive(Clone, Copy)]
enum Kind {
    LogsRequest,
    ResourceLogs,
    ScopeLogs,
    LogRecord,
    TracesRequest,
    ResourceSpans,
    ScopeSpans,
    Span,
    SpanEvent,
    MetricsRequest,
    ResourceMetrics,
    ScopeMetrics,
    Metric,
    /// `Gauge`, `Sum`, `Histogram`, `ExponentialHistogram` or `Summary`: `data_points` in 1.
    Points,
    /// Any data point: `start_time_unix_nano` in 2, `time_unix_nano` in 3.
    Point,
}

impl Kind {
    /// The field numbers of its messages that hold times further down, as `opentelemetry-proto`
    /// numbers them.
    fn child(self, field: u64) -> Option<Kind> {
        use Kind::*;
        Some(match (self, field) {
            (LogsRequest, 1) => ResourceLogs,
            (ResourceLogs, 2) => ScopeLogs,
            (ScopeLogs, 2) => LogRecord,
            (TracesRequest, 1) => ResourceSpans,
            (ResourceSpans, 2) => ScopeSpans,
            (ScopeSpans, 2) => Span,
            (Span, 11) => SpanEvent,
            (MetricsRequest, 1) => ResourceMetrics,
            (ResourceMetrics, 2) => ScopeMetrics,
            (ScopeMetrics, 2) => Metric,
            (Metric, 5 | 7 | 9 | 10 | 11) => Points,
            (Points, 1) => Point,
            _ => return None,
        })
    }

    /// Its `fixed64` times.
    fn is_time(self, field: u64) -> bool {
        matches!(
            (self, field),
            (Kind::LogRecord, 1 | 11)
                | (Kind::Span, 7 | 8)
                | (Kind::SpanEvent, 1)
                | (Kind::Point, 2 | 3)
        )
    }
}

/// The times of the message of `kind` in `bytes[range]`: OTLP times are `fixed64`, so a
/// copy's keep their length.
fn proto_times(
    bytes: &[u8],
    range: Range<usize>,
    kind: Kind,
    times: &mut Vec<(Range<usize>, Time)>,
) {
    let mut at = range.start;
    while at < range.end {
        let key = varint(bytes, &mut at);
        let field = key >> 3;
        match key & 7 {
            0 => {
                varint(bytes, &mut at);
            }
            1 => {
                if kind.is_time(field) {
                    let time: [u8; 8] = bytes[at..at + 8].try_into().expect("8 bytes");
                    times.push((at..at + 8, Time::Fixed64(u64::from_le_bytes(time))));
                }
                at += 8;
            }
            2 => {
                let len = varint(bytes, &mut at) as usize;
                if let Some(child) = kind.child(field) {
                    proto_times(bytes, at..at + len, child, times);
                }
                at += len;
            }
            5 => at += 4,
            other => panic!("wire type {other} in a sample export"),
        }
    }
}

fn varint(bytes: &[u8], at: &mut usize) -> u64 {
    let mut value = 0;
    for shift in (0..64).step_by(7) {
        let byte = bytes[*at];
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            break;
        }
    }
    value
}

/// OTLP/JSON spells every time as a field ending in `UnixNano`, its value a decimal string (or
/// a number).
fn json_times(bytes: &[u8], times: &mut Vec<(Range<usize>, Time)>) {
    const FIELD_END: &[u8] = b"UnixNano\":";
    for found in find_all(bytes, FIELD_END) {
        let mut digits = found + FIELD_END.len();
        if bytes[digits] == b'"' {
            digits += 1;
        }
        let end = digits
            + bytes[digits..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
        let time = std::str::from_utf8(&bytes[digits..end])
            .expect("digits")
            .parse()
            .expect("a time in nanoseconds");
        times.push((digits..end, Time::Decimal(time)));
    }
}

/// The value of the first `session.id` attribute: the first UUID after the key.
fn session_id(bytes: &[u8]) -> Option<Vec<u8>> {
    let after = find(bytes, b"session.id")? + b"session.id".len();
    let window = &bytes[after..bytes.len().min(after + 64)];
    (0..window.len().saturating_sub(35))
        .map(|start| &window[start..start + 36])
        .find(|candidate| is_uuid(candidate))
        .map(<[u8]>::to_vec)
}

fn is_uuid(text: &[u8]) -> bool {
    text.len() == 36
        && text.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// `session` with its last 12 hex digits plus `copy` (modulo 2^48): a different id for each
/// copy, as long as the one Claude Code made.
fn own_session_id(session: &[u8], copy: u64) -> Vec<u8> {
    let (head, tail) = session.split_at(24);
    let tail = u64::from_str_radix(std::str::from_utf8(tail).expect("hex"), 16).expect("hex");
    let mut own = head.to_vec();
    own.extend_from_slice(format!("{:012x}", (tail + copy) & 0xffff_ffff_ffff).as_bytes());
    own
}

/// Where `needle` starts in `haystack`, each time, not overlapping.
fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(next) = find(&haystack[at..], needle) {
        found.push(at + next);
        at += next + needle.len();
    }
    found
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
