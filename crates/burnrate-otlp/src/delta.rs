//! Cumulative sums → deltas, per series, reset-aware.
//!
//! A cumulative point says "total since `start_time`". Its delta is the increase over the last
//! point of the same series and start. A new, later start time or a smaller value is a reset
//! (the client restarted): the delta is the new total. A point no newer than the last one seen
//! is a replayed or reordered duplicate and is dropped. No delta is ever negative.
//!
//! The state is one entry per live series. A series unseen for a while can be forgotten
//! ([`DeltaTracker::forget`]) once its last point is written: a point that may belong to a
//! forgotten series is [`DeltaTracker::unknown`] until its series' last point is read back
//! from the raw `metric_points` table with [`DeltaTracker::observe`], as after a restart. The
//! engine owns where that table is and when points are written.
//!
//! What was forgotten is remembered in Bloom filters of series ids, about 2.6 bytes a series
//! against the 40 of an entry, so that the new series of a long session (a first commit, a
//! new model, hours after the process started), or of a partition hours behind the others,
//! need nothing read back.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use arrow::array::{
    Array, AsArray, BooleanArray, Float64Array, PrimitiveArray, RecordBatch, StringArray,
};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{Float64Type, TimestampNanosecondType, UInt64Type};
use arrow::error::ArrowError;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Last {
    start_time: i64,
    time: i64,
    value: f64,
    /// The caller's generation when this point was taken: it may be forgotten once that
    /// generation is written.
    generation: u32,
    /// Where it came from (a Kafka partition, say): it is forgotten by that origin's clock.
    origin: u32,
}

/// The origin of a point read back or rebuilt: forgotten once every origin's clock has passed.
const ANY_ORIGIN: u32 = u32::MAX;

#[derive(Debug, Clone)]
pub struct DeltaTracker {
    series: HashMap<u64, Last>,
    /// Points taken from now on belong to this generation.
    generation: u32,
    /// The newest event time seen in any row of each origin, in nanoseconds: in a catch-up one
    /// partition runs hours of event time ahead of another, and a series of the one behind is
    /// not stale for that.
    latest: HashMap<u32, i64>,
    /// Every forgotten point is older than this (event time, nanoseconds): a series whose
    /// point starts at or after it cannot have been forgotten.
    forgotten_before: i64,
    /// The series forgotten since `remembered_since`, oldest filter first.
    forgotten: VecDeque<ForgottenSeries>,
    /// Series forgotten with points older than this are in no filter (dropped, or forgotten
    /// before a restart): a point starting before it may belong to one.
    remembered_since: i64,
}

impl Default for DeltaTracker {
    fn default() -> Self {
        DeltaTracker {
            series: HashMap::new(),
            generation: 0,
            latest: HashMap::new(),
            forgotten_before: i64::MIN,
            forgotten: VecDeque::new(),
            remembered_since: i64::MIN,
        }
    }
}

/// A Bloom filter of forgotten series ids: 256 KiB for 100,000 series, one in about 24,000 of
/// the series it never held taken for one it holds (and read back for nothing). At 128 KiB
/// (one in 150, and a few filters to a week) a partition hours behind the others in a
/// catch-up had 4,319 of its new series read back, a query each, and ran at 0.03x.
#[derive(Debug, Clone)]
struct ForgottenSeries {
    bits: Vec<u64>,
    series: usize,
    /// The newest last point among them.
    newest: i64,
}

const FILTER_BITS: u64 = 1 << 21;
const FILTER_SERIES: usize = 100_000;
const FILTER_PROBES: u64 = 14;

impl ForgottenSeries {
    fn new() -> Self {
        ForgottenSeries {
            bits: vec![0; (FILTER_BITS / 64) as usize],
            series: 0,
            newest: i64::MIN,
        }
    }

    /// The bits of `series_id`: a series id is already a hash, so two of its halves make
    /// the probes (Kirsch and Mitzenmacher's double hashing).
    fn probes(series_id: u64) -> impl Iterator<Item = (usize, u64)> {
        let first = series_id;
        let second = series_id
            .rotate_left(32)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            | 1;
        (0..FILTER_PROBES).map(move |i| {
            let bit = first.wrapping_add(i.wrapping_mul(second)) % FILTER_BITS;
            ((bit / 64) as usize, 1 << (bit % 64))
        })
    }

    fn insert(&mut self, series_id: u64, time: i64) {
        for (word, bit) in Self::probes(series_id) {
            self.bits[word] |= bit;
        }
        self.series += 1;
        self.newest = self.newest.max(time);
    }

    fn contains(&self, series_id: u64) -> bool {
        Self::probes(series_id).all(|(word, bit)| self.bits[word] & bit != 0)
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeltaStats {
    pub converted: u64,
    pub resets: u64,
    /// Points dropped because their series had already seen a newer one.
    pub stale: u64,
}

impl DeltaTracker {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// The newest event time seen in any row of any origin (nanoseconds), if any.
    pub fn newest(&self) -> Option<i64> {
        self.latest.values().copied().max()
    }

    /// Points taken from now on belong to `generation` (the caller's count of what it hands
    /// on to be written; never smaller than the last).
    pub fn set_generation(&mut self, generation: u32) {
        self.generation = self.generation.max(generation);
    }

    /// A tracker that holds only what it is shown and counts every point older than
    /// `forgotten_before` as possibly forgotten: the state after a restart that read back
    /// only the points since then.
    pub fn forgetting_before(forgotten_before: i64) -> Self {
        DeltaTracker {
            forgotten_before,
            remembered_since: forgotten_before,
            ..Self::default()
        }
    }

    /// Forgets the series whose last point is more than `staleness` older than the newest
    /// point of its origin (or than `ceiling`, if that is earlier) and belongs to a generation
    /// no newer than `written` (so it can be read back); returns how many.
    pub fn forget(&mut self, staleness: i64, ceiling: i64, written: u32) -> usize {
        let horizons: HashMap<u32, i64> = self
            .latest
            .iter()
            .map(|(&origin, &newest)| (origin, newest.min(ceiling).saturating_sub(staleness)))
            .collect();
        let slowest = horizons.values().copied().min();
        let before = self.series.len();
        let forgotten = &mut self.forgotten;
        let mut forgotten_before = self.forgotten_before;
        self.series.retain(|&series_id, last| {
            let horizon = match last.origin {
                ANY_ORIGIN => slowest,
                origin => horizons.get(&origin).copied(),
            };
            let Some(horizon) = horizon else {
                return true;
            };
            let keep = last.time >= horizon || last.generation > written;
            if !keep {
                forgotten_before = forgotten_before.max(horizon);
                if forgotten
                    .back()
                    .is_none_or(|filter| filter.series >= FILTER_SERIES)
                {
                    forgotten.push_back(ForgottenSeries::new());
                }
                if let Some(filter) = forgotten.back_mut() {
                    filter.insert(series_id, last.time);
                }
            }
            keep
        });
        self.forgotten_before = forgotten_before;
        let forgotten = before - self.series.len();
        if forgotten > 0 {
            // A table emptied by most of its entries gives its memory back.
            if self.series.capacity() > 4 * self.series.len().max(1024) {
                self.series.shrink_to(2 * self.series.len());
            }
        }
        forgotten
    }

    /// Drops the filters of series forgotten with points older than `before` (so memory
    /// stays bounded): a point starting before then that the tracker does not hold is read
    /// back.
    pub fn forget_remembered(&mut self, before: i64) {
        while let Some(oldest) = self.forgotten.front()
            && oldest.newest < before
            // The filter being filled stays.
            && self.forgotten.len() > 1
        {
            self.remembered_since = self.remembered_since.max(oldest.newest.saturating_add(1));
            self.forgotten.pop_front();
        }
    }

    /// Bytes the filters of forgotten series take.
    pub fn remembered_bytes(&self) -> usize {
        self.forgotten.len() * (FILTER_BITS / 8) as usize
    }

    /// The series of `batch`'s cumulative points that may have been forgotten, with the
    /// earliest start time each is wanted from: read their last points back with
    /// [`DeltaTracker::observe`] before [`DeltaTracker::apply`], which takes any series it does
    /// not hold as new.
    pub fn unknown(&self, batch: &RecordBatch) -> Result<Vec<(u64, i64)>, ArrowError> {
        if self.forgotten_before == i64::MIN {
            // Nothing forgotten, nothing rebuilt short: the state holds every series.
            return Ok(Vec::new());
        }
        let columns = UsageColumns::of(batch)?;
        let mut wanted: HashMap<u64, i64> = HashMap::new();
        for i in 0..batch.num_rows() {
            let Some((series_id, point)) = columns.cumulative_point(i, self.generation, ANY_ORIGIN)
            else {
                continue;
            };
            // Every forgotten point is older than `forgotten_before`, so a point that starts
            // at or after it is new, or a reset of whatever was forgotten; the same holds for
            // `remembered_since` and a series no filter holds, and for a filter whose newest
            // point is older than the start (what it holds converts this point as new).
            if point.start_time >= self.forgotten_before
                || self.series.contains_key(&series_id)
                || (point.start_time >= self.remembered_since
                    && !self
                        .forgotten
                        .iter()
                        .any(|f| f.newest >= point.start_time && f.contains(series_id)))
            {
                continue;
            }
            wanted
                .entry(series_id)
                .and_modify(|start| *start = (*start).min(point.start_time))
                .or_insert(point.start_time);
        }
        let mut wanted: Vec<(u64, i64)> = wanted.into_iter().collect();
        wanted.sort_unstable();
        Ok(wanted)
    }

    /// Records a cumulative point already accounted for (rebuilding state after a restart,
    /// or reading back a forgotten series).
    pub fn observe(&mut self, series_id: u64, start_time: i64, time: i64, value: f64) {
        let point = Last {
            start_time,
            time,
            value,
            generation: self.generation,
            origin: ANY_ORIGIN,
        };
        self.series
            .entry(series_id)
            .and_modify(|last| {
                if (start_time, time) > (last.start_time, last.time) {
                    *last = point;
                }
            })
            .or_insert(point);
    }

    /// Converts the cumulative rows of a `usage_metrics` batch in place and drops stale ones.
    /// Rows are taken in time order so that a batch holding several points of one series
    /// converts the same way whatever order they arrived in. `origin` is where the batch came
    /// from (any number the caller keeps for it).
    pub fn apply(
        &mut self,
        batch: &RecordBatch,
        origin: u32,
    ) -> Result<(RecordBatch, DeltaStats), ArrowError> {
        let columns = UsageColumns::of(batch)?;
        let time = columns.time;
        if let Some(newest) = arrow::compute::max(time) {
            let latest = self.latest.entry(origin).or_insert(newest);
            *latest = (*latest).max(newest);
        }

        let mut order: Vec<usize> = (0..batch.num_rows()).collect();
        order.sort_by_key(|&i| (time.is_valid(i).then(|| time.value(i)), i));

        let mut values: Vec<Option<f64>> = columns.value.iter().collect();
        let mut keep = vec![true; batch.num_rows()];
        let mut stats = DeltaStats::default();
        for i in order {
            let Some((series_id, point)) = columns.cumulative_point(i, self.generation, origin)
            else {
                continue;
            };
            match self.step(series_id, point) {
                Step::Delta(delta) => {
                    stats.converted += 1;
                    values[i] = Some(delta);
                }
                Step::Reset(delta) => {
                    stats.converted += 1;
                    stats.resets += 1;
                    values[i] = Some(delta);
                }
                Step::Stale => {
                    stats.stale += 1;
                    keep[i] = false;
                }
            }
        }
        let schema = batch.schema();
        let index = schema.index_of("value")?;
        let mut columns = batch.columns().to_vec();
        columns[index] = Arc::new(Float64Array::from(values));
        let converted = RecordBatch::try_new(schema, columns)?;
        let filtered = filter_record_batch(&converted, &BooleanArray::from(keep))?;
        Ok((filtered, stats))
    }

    fn step(&mut self, series_id: u64, point: Last) -> Step {
        let Some(last) = self.series.get_mut(&series_id) else {
            self.series.insert(series_id, point);
            return Step::Delta(point.value);
        };
        let step = if point.start_time > last.start_time {
            Step::Reset(point.value)
        } else if point.start_time < last.start_time || point.time <= last.time {
            return Step::Stale;
        } else if point.value < last.value {
            Step::Reset(point.value)
        } else {
            Step::Delta(point.value - last.value)
        };
        *last = point;
        step
    }
}

enum Step {
    Delta(f64),
    Reset(f64),
    Stale,
}

/// The columns of a `usage_metrics` batch the conversion reads.
struct UsageColumns<'a> {
    time: &'a PrimitiveArray<TimestampNanosecondType>,
    start: &'a PrimitiveArray<TimestampNanosecondType>,
    value: &'a PrimitiveArray<Float64Type>,
    series: &'a PrimitiveArray<UInt64Type>,
    temporality: &'a StringArray,
}

impl<'a> UsageColumns<'a> {
    fn of(batch: &'a RecordBatch) -> Result<Self, ArrowError> {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| ArrowError::SchemaError(format!("usage_metrics has no {name}")))
        };
        Ok(UsageColumns {
            time: column("time")?.as_primitive::<TimestampNanosecondType>(),
            start: column("start_time")?.as_primitive::<TimestampNanosecondType>(),
            value: column("value")?.as_primitive::<Float64Type>(),
            series: column("series_id")?.as_primitive::<UInt64Type>(),
            temporality: column("temporality")?.as_string::<i32>(),
        })
    }

    /// Row `i` as a cumulative point of its series, if it is one with a value and a time.
    fn cumulative_point(&self, i: usize, generation: u32, origin: u32) -> Option<(u64, Last)> {
        let cumulative = self.temporality.is_valid(i) && self.temporality.value(i) == "cumulative";
        if !cumulative || self.value.is_null(i) || self.time.is_null(i) {
            return None;
        }
        let point = Last {
            start_time: if self.start.is_valid(i) {
                self.start.value(i)
            } else {
                0
            },
            time: self.time.value(i),
            value: self.value.value(i),
            generation,
            origin,
        };
        Some((self.series.value(i), point))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(t: &mut DeltaTracker, start: i64, time: i64, value: f64) -> Option<f64> {
        match t.step(
            1,
            Last {
                start_time: start,
                time,
                value,
                generation: 0,
                origin: 0,
            },
        ) {
            Step::Delta(d) | Step::Reset(d) => Some(d),
            Step::Stale => None,
        }
    }

    #[test]
    fn deltas_resets_and_stale_points() {
        let mut t = DeltaTracker::new();
        assert_eq!(step(&mut t, 100, 110, 5.0), Some(5.0));
        assert_eq!(step(&mut t, 100, 120, 8.0), Some(3.0));
        assert_eq!(
            step(&mut t, 100, 120, 8.0),
            None,
            "same point again is stale"
        );
        assert_eq!(step(&mut t, 100, 115, 7.0), None, "older point is stale");
        assert_eq!(
            step(&mut t, 100, 130, 2.0),
            Some(2.0),
            "value drop is a reset"
        );
        assert_eq!(
            step(&mut t, 200, 210, 1.0),
            Some(1.0),
            "new start is a reset"
        );
        assert_eq!(
            step(&mut t, 100, 300, 50.0),
            None,
            "old start after a new one is stale"
        );
        assert_eq!(step(&mut t, 200, 220, 1.0), Some(0.0));
    }

    /// Series ids as the decoder's hash spreads them (xorshift from `seed`), 63 bits.
    fn series_ids(seed: u64) -> impl FnMut() -> u64 {
        let mut id = seed;
        move || {
            id ^= id << 13;
            id ^= id >> 7;
            id ^= id << 17;
            id & crate::SERIES_ID_MASK
        }
    }

    /// A `usage_metrics`-shaped batch of cumulative points (series, start, time, value).
    fn points(rows: &[(u64, i64, i64, f64)]) -> RecordBatch {
        use arrow::array::{ArrayRef, TimestampNanosecondArray, UInt64Array};
        let column = |f: fn(&(u64, i64, i64, f64)) -> i64| {
            Arc::new(TimestampNanosecondArray::from_iter_values(
                rows.iter().map(f),
            )) as ArrayRef
        };
        RecordBatch::try_from_iter([
            (
                "series_id",
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef,
            ),
            ("start_time", column(|r| r.1)),
            ("time", column(|r| r.2)),
            (
                "value",
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.3))),
            ),
            (
                "temporality",
                Arc::new(StringArray::from(vec!["cumulative"; rows.len()])),
            ),
        ])
        .unwrap()
    }

    #[test]
    fn only_written_series_past_the_horizon_are_forgotten() {
        let mut t = DeltaTracker::new();
        t.set_generation(1);
        t.apply(&points(&[(1, 0, 100, 1.0), (2, 0, 200, 1.0)]), 0)
            .unwrap();
        t.set_generation(2);
        t.apply(&points(&[(3, 0, 100, 1.0)]), 0).unwrap();
        assert_eq!(t.newest(), Some(200));

        // Series 3 is as old as series 1 but its generation is not written yet.
        assert_eq!(t.forget(50, i64::MAX, 1), 1);
        assert_eq!(t.len(), 2);
        assert!(t.unknown(&points(&[(2, 0, 300, 2.0)])).unwrap().is_empty());
        assert!(t.unknown(&points(&[(3, 0, 300, 2.0)])).unwrap().is_empty());
        // Series 1 started before the horizon: it may have been forgotten.
        assert_eq!(
            t.unknown(&points(&[(1, 50, 300, 2.0), (1, 0, 310, 3.0)]))
                .unwrap(),
            vec![(1, 0)]
        );
        // A series starting at or after the horizon cannot have been; one that was never
        // forgotten is in no filter, however old its start.
        assert!(
            t.unknown(&points(&[(9, 150, 300, 2.0)]))
                .unwrap()
                .is_empty()
        );
        assert!(t.unknown(&points(&[(9, 0, 300, 2.0)])).unwrap().is_empty());
        assert_eq!(t.forget(50, i64::MAX, 2), 1);
        assert_eq!(t.len(), 1);
        // The ceiling (a clock) holds the horizon back from points far ahead of it.
        t.apply(&points(&[(2, 0, 10_000, 3.0)]), 0).unwrap();
        assert_eq!(t.forget(50, 200, 2), 0);
        assert_eq!(t.forget(50, 10_000, 2), 0);
    }

    #[test]
    fn each_origin_forgets_by_its_own_clock() {
        let mut t = DeltaTracker::new();
        // Origin 0 is hours ahead of origin 1, as one partition can be in a catch-up.
        t.apply(&points(&[(1, 0, 10_000, 1.0)]), 0).unwrap();
        t.apply(&points(&[(2, 0, 100, 1.0), (3, 0, 30, 1.0)]), 1)
            .unwrap();
        t.observe(4, 0, 60, 1.0);
        assert_eq!(
            t.forget(50, i64::MAX, 0),
            1,
            "only series 3, behind origin 1"
        );
        assert!(t.unknown(&points(&[(2, 0, 110, 2.0)])).unwrap().is_empty());
        // A point read back or rebuilt waits for the slowest origin.
        t.apply(&points(&[(2, 0, 200, 2.0)]), 1).unwrap();
        assert_eq!(
            t.forget(50, i64::MAX, 0),
            1,
            "series 4, behind every origin"
        );
        assert_eq!(t.len(), 2);
    }

    /// A partition hours behind the others in a catch-up brings new sessions that started
    /// before points the others let go: each is checked against the filters, and only the
    /// filters' false positives are looked up, a few of 100,000.
    #[test]
    fn a_partition_behind_has_few_of_its_new_series_looked_up() {
        const SECOND: i64 = 1_000_000_000;
        let mut next = series_ids(0x2545_f491_4f6c_dd1d);
        let mut t = DeltaTracker::new();
        // Origin 0: three hours of sessions, one series each 36 ms, each seen once.
        for chunk in 0..30 {
            let rows: Vec<_> = (0..10_000)
                .map(|i| {
                    let time = (chunk * 10_000 + i) * 36 * SECOND / 1_000;
                    (next(), time - 60 * SECOND, time, 1.0)
                })
                .collect();
            t.apply(&points(&rows), 0).unwrap();
        }
        // The series more than an hour behind the newest (199,999 of them) are let go, into
        // two filters, one full.
        assert_eq!(t.forget(3_600 * SECOND, i64::MAX, 0), 199_999);
        // Origin 1, two hours behind: its sessions start within what origin 0 let go.
        let behind: Vec<_> = (0..100_000)
            .map(|i| {
                let start = 1_800 * SECOND + i * 36 * SECOND / 1_000;
                (next(), start, start + 60 * SECOND, 1.0)
            })
            .collect();
        let looked_up = t.unknown(&points(&behind)).unwrap().len();
        assert!(
            looked_up < 50,
            "{looked_up} of 100,000 new series looked up"
        );
    }

    #[test]
    fn what_the_filters_no_longer_remember_and_a_restart_are_read_back() {
        let mut t = DeltaTracker::new();
        t.apply(&points(&[(1, 0, 100, 1.0), (2, 0, 1_000, 1.0)]), 0)
            .unwrap();
        assert_eq!(t.forget(500, i64::MAX, 0), 1);
        assert_eq!(t.remembered_bytes(), 256 << 10);
        // The filter being filled stays, whatever its age.
        t.forget_remembered(2_000);
        assert!(
            t.unknown(&points(&[(9, 0, 3_000, 1.0)]))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            t.unknown(&points(&[(1, 0, 3_000, 1.0)])).unwrap(),
            vec![(1, 0)]
        );

        let mut full = DeltaTracker::new();
        let mut many: Vec<_> = (0..FILTER_SERIES as u64 + 1)
            .map(|id| (id + 10, 0, 100, 1.0))
            .collect();
        many.push((5, 0, 1_000, 1.0));
        full.apply(&points(&many), 0).unwrap();
        full.forget(500, i64::MAX, 0);
        assert_eq!(full.remembered_bytes(), 2 * (256 << 10));
        full.forget_remembered(101);
        assert_eq!(full.remembered_bytes(), 256 << 10);
        // A point starting before what the filters remember may be anyone's.
        assert_eq!(
            full.unknown(&points(&[(9, 100, 3_000, 1.0)])).unwrap(),
            vec![(9, 100)]
        );
        assert!(
            full.unknown(&points(&[(9, 101, 3_000, 1.0)]))
                .unwrap()
                .is_empty()
        );

        // After a restart nothing before its horizon is remembered.
        let restarted = DeltaTracker::forgetting_before(500);
        assert_eq!(
            restarted.unknown(&points(&[(9, 0, 600, 1.0)])).unwrap(),
            vec![(9, 0)]
        );
        assert!(
            restarted
                .unknown(&points(&[(9, 500, 600, 1.0)]))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn the_filters_hold_every_series_they_were_given_and_few_others() {
        let mut filter = ForgottenSeries::new();
        let mut next = series_ids(0x853c_49e6_748f_ea9b);
        let held: Vec<u64> = (0..FILTER_SERIES).map(|_| next()).collect();
        for &series in &held {
            filter.insert(series, 0);
        }
        assert!(held.iter().all(|&series| filter.contains(series)));
        let others = 100_000;
        let false_positives = (0..others).filter(|_| filter.contains(next())).count();
        assert!(
            false_positives < others / 10_000,
            "{false_positives} of {others}"
        );
    }

    #[test]
    fn a_series_read_back_converts_as_if_never_forgotten() {
        let mut t = DeltaTracker::new();
        t.apply(&points(&[(1, 0, 100, 5.0), (7, 0, 1_000, 1.0)]), 0)
            .unwrap();
        t.forget(500, i64::MAX, 0);
        assert_eq!(
            t.unknown(&points(&[(1, 0, 200, 8.0)])).unwrap(),
            vec![(1, 0)]
        );
        t.observe(1, 0, 100, 5.0);
        let (converted, stats) = t.apply(&points(&[(1, 0, 200, 8.0)]), 0).unwrap();
        let value = converted.column_by_name("value").unwrap();
        assert_eq!(value.as_primitive::<Float64Type>().value(0), 3.0);
        assert_eq!(stats.resets, 0);
    }

    #[test]
    fn observed_state_continues_where_it_left_off() {
        let mut t = DeltaTracker::new();
        t.observe(1, 100, 120, 8.0);
        t.observe(1, 100, 110, 5.0);
        assert_eq!(step(&mut t, 100, 130, 9.5), Some(1.5));
    }
}
