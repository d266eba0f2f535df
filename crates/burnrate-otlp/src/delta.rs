//! Cumulative sums → deltas, per series, reset-aware.
//!
//! A cumulative point says "total since `start_time`". Its delta is the increase over the last
//! point of the same series and start. A new, later start time or a smaller value is a reset
//! (the client restarted): the delta is the new total. A point no newer than the last one seen
//! is a replayed or reordered duplicate and is dropped. No delta is ever negative.
//!
//! The state is small (one entry per live series) and can be rebuilt from the raw
//! `metric_points` table with [`DeltaTracker::observe`]: the engine owns where it comes from.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, Float64Array, RecordBatch, StringArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{Float64Type, TimestampNanosecondType, UInt64Type};
use arrow::error::ArrowError;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Last {
    start_time: i64,
    time: i64,
    value: f64,
}

#[derive(Debug, Default, Clone)]
pub struct DeltaTracker {
    series: HashMap<u64, Last>,
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

    /// Records a cumulative point already accounted for (rebuilding state after a restart).
    pub fn observe(&mut self, series_id: u64, start_time: i64, time: i64, value: f64) {
        let point = Last {
            start_time,
            time,
            value,
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
    /// converts the same way whatever order they arrived in.
    pub fn apply(&mut self, batch: &RecordBatch) -> Result<(RecordBatch, DeltaStats), ArrowError> {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| ArrowError::SchemaError(format!("usage_metrics has no {name}")))
        };
        let time = column("time")?.as_primitive::<TimestampNanosecondType>();
        let start = column("start_time")?.as_primitive::<TimestampNanosecondType>();
        let value = column("value")?.as_primitive::<Float64Type>();
        let series = column("series_id")?.as_primitive::<UInt64Type>();
        let temporality = column("temporality")?.as_string::<i32>();

        let mut order: Vec<usize> = (0..batch.num_rows()).collect();
        order.sort_by_key(|&i| (time.is_valid(i).then(|| time.value(i)), i));

        let mut values: Vec<Option<f64>> = value.iter().collect();
        let mut keep = vec![true; batch.num_rows()];
        let mut stats = DeltaStats::default();
        for i in order {
            if !is_cumulative(temporality, i) || value.is_null(i) || time.is_null(i) {
                continue;
            }
            let point = Last {
                start_time: if start.is_valid(i) { start.value(i) } else { 0 },
                time: time.value(i),
                value: value.value(i),
            };
            match self.step(series.value(i), point) {
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

fn is_cumulative(temporality: &StringArray, i: usize) -> bool {
    temporality.is_valid(i) && temporality.value(i) == "cumulative"
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

    #[test]
    fn observed_state_continues_where_it_left_off() {
        let mut t = DeltaTracker::new();
        t.observe(1, 100, 120, 8.0);
        t.observe(1, 100, 110, 5.0);
        assert_eq!(step(&mut t, 100, 130, 9.5), Some(1.5));
    }
}
