//! Latency percentiles that merge: a DDSketch, and the DataFusion functions the window SQL uses
//! to build, merge and read it.
//!
//! Why DDSketch: its error is relative to the true value and holds for every quantile, so a p99
//! of 40 s is off by at most 0.4 s whatever the distribution, and merging two sketches gives
//! exactly the sketch of the union. Hour and day percentiles are then exact merges of minute
//! windows, with the same guarantee. (DataFusion's own `approx_percentile_cont` is a t-digest:
//! accurate in the tails in practice, but with no bound to state and a state that cannot be
//! stored in a Parquet column.)
//!
//! Guarantee: for `q` in [0, 1] over `n` values, [`LatencySketch::quantile`] returns a value within
//! [`RELATIVE_ACCURACY`] (1%) of the nearest-rank quantile, the `ceil(q * n)`-th smallest value
//! (the smallest for `q = 0`): at least a fraction `q` of the values are at or below it. Values
//! at or below zero are counted as zero.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryBuilder, Float64Builder};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, ColumnarValue, ScalarUDF, Volatility, create_udaf, create_udf,
};
use datafusion::prelude::SessionContext;

/// The largest error of a quantile, relative to the true value.
pub const RELATIVE_ACCURACY: f64 = 0.01;
const GAMMA: f64 = (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY);
static LN_GAMMA: LazyLock<f64> = LazyLock::new(|| GAMMA.ln());
/// Values this small are indistinguishable from zero for latencies in milliseconds.
const MIN_POSITIVE: f64 = 1e-9;
/// First byte of the serialized form, so a future layout can be told apart.
const FORMAT_VERSION: u8 = 1;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencySketch {
    zeros: u64,
    /// Count of values in `(GAMMA^(k-1), GAMMA^k]`, by `k`.
    buckets: BTreeMap<i32, u64>,
}

#[derive(Debug, thiserror::Error)]
#[error("latency sketch: {0}")]
pub struct SketchError(&'static str);

impl LatencySketch {
    pub fn add(&mut self, value: f64) {
        if value.is_nan() {
            return;
        }
        if value <= MIN_POSITIVE {
            self.zeros += 1;
            return;
        }
        // f64::MAX lands near index 35,000: far inside i32.
        let index = (value.ln() / *LN_GAMMA).ceil() as i32;
        *self.buckets.entry(index).or_default() += 1;
    }

    pub fn count(&self) -> u64 {
        self.zeros + self.buckets.values().sum::<u64>()
    }

    pub fn merge(&mut self, other: &LatencySketch) {
        self.zeros += other.zeros;
        for (index, count) in &other.buckets {
            *self.buckets.entry(*index).or_default() += count;
        }
    }

    /// The value at quantile `q` (clamped to [0, 1]), or `None` for an empty sketch.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 || q.is_nan() {
            return None;
        }
        let rank = nearest_rank(q.clamp(0.0, 1.0), n);
        if rank < self.zeros {
            return Some(0.0);
        }
        let mut seen = self.zeros;
        for (index, count) in &self.buckets {
            seen += count;
            if seen > rank {
                // The point of the bucket whose relative distance to both ends is RELATIVE_ACCURACY.
                return Some(2.0 * GAMMA.powi(*index) / (GAMMA + 1.0));
            }
        }
        None
    }

    /// Varints: version, zero count, bucket count, then (index delta, count) pairs in order.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.buckets.len() * 3);
        out.push(FORMAT_VERSION);
        put_varint(&mut out, self.zeros);
        put_varint(&mut out, self.buckets.len() as u64);
        let mut previous = 0i64;
        for (index, count) in &self.buckets {
            let delta = i64::from(*index) - previous;
            previous = i64::from(*index);
            put_varint(&mut out, ((delta << 1) ^ (delta >> 63)) as u64);
            put_varint(&mut out, *count);
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SketchError> {
        let (&version, mut rest) = bytes.split_first().ok_or(SketchError("empty"))?;
        if version != FORMAT_VERSION {
            return Err(SketchError("unknown format version"));
        }
        let zeros = take_varint(&mut rest)?;
        let len = take_varint(&mut rest)?;
        let mut buckets = BTreeMap::new();
        let mut index = 0i64;
        for _ in 0..len {
            let zigzag = take_varint(&mut rest)?;
            index += ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
            let key = i32::try_from(index).map_err(|_| SketchError("bucket index out of range"))?;
            buckets.insert(key, take_varint(&mut rest)?);
        }
        if !rest.is_empty() {
            return Err(SketchError("trailing bytes"));
        }
        Ok(LatencySketch { zeros, buckets })
    }
}

/// The 0-based index of the nearest-rank `q` quantile among `n` sorted values.
pub fn nearest_rank(q: f64, n: u64) -> u64 {
    ((q * n as f64).ceil() as u64).clamp(1, n.max(1)) - 1
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn take_varint(input: &mut &[u8]) -> Result<u64, SketchError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first().ok_or(SketchError("truncated"))?;
        *input = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(SketchError("varint too long"))
}

/// Registers `latency_sketch(ms)`, `sketch_merge(sketch)` (aggregates returning a sketch as
/// `Binary`) and `sketch_quantile(sketch, q)` (a scalar returning `Float64`).
pub fn register_sketch_functions(ctx: &SessionContext) {
    ctx.register_udaf(sketch_udaf("latency_sketch", DataType::Float64));
    ctx.register_udaf(sketch_udaf("sketch_merge", DataType::Binary));
    ctx.register_udf(sketch_quantile_udf());
}

fn sketch_udaf(name: &str, input: DataType) -> AggregateUDF {
    let merging = input == DataType::Binary;
    create_udaf(
        name,
        vec![input],
        Arc::new(DataType::Binary),
        Volatility::Immutable,
        Arc::new(move |_| {
            Ok(Box::new(SketchAccumulator {
                sketch: LatencySketch::default(),
                merging,
            }))
        }),
        Arc::new(vec![DataType::Binary]),
    )
}

#[derive(Debug)]
struct SketchAccumulator {
    sketch: LatencySketch,
    /// Inputs are sketches (`sketch_merge`) rather than values (`latency_sketch`).
    merging: bool,
}

impl SketchAccumulator {
    fn merge_binary(&mut self, array: &ArrayRef) -> datafusion::error::Result<()> {
        let sketches = array.as_binary_opt::<i32>().ok_or_else(|| {
            DataFusionError::Execution("sketch_merge takes a Binary sketch column".into())
        })?;
        for sketch in sketches.iter().flatten() {
            let other = LatencySketch::from_bytes(sketch)
                .map_err(|e| DataFusionError::Execution(e.to_string()))?;
            self.sketch.merge(&other);
        }
        Ok(())
    }
}

impl Accumulator for SketchAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> datafusion::error::Result<()> {
        let Some(values) = values.first() else {
            return Ok(());
        };
        if self.merging {
            return self.merge_binary(values);
        }
        let values = values.as_primitive_opt::<Float64Type>().ok_or_else(|| {
            DataFusionError::Execution("latency_sketch takes a Float64 column".into())
        })?;
        for value in values.iter().flatten() {
            self.sketch.add(value);
        }
        Ok(())
    }

    fn evaluate(&mut self) -> datafusion::error::Result<ScalarValue> {
        Ok(ScalarValue::Binary(Some(self.sketch.to_bytes())))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.sketch.buckets.len() * 32
    }

    fn state(&mut self) -> datafusion::error::Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> datafusion::error::Result<()> {
        match states.first() {
            Some(states) => self.merge_binary(states),
            None => Ok(()),
        }
    }
}

fn sketch_quantile_udf() -> ScalarUDF {
    create_udf(
        "sketch_quantile",
        vec![DataType::Binary, DataType::Float64],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let rows = args
                .iter()
                .find_map(|a| match a {
                    ColumnarValue::Array(a) => Some(a.len()),
                    ColumnarValue::Scalar(_) => None,
                })
                .unwrap_or(1);
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let (Some(sketches), Some(qs)) = (
                arrays[0].as_binary_opt::<i32>(),
                arrays[1].as_primitive_opt::<Float64Type>(),
            ) else {
                return Err(DataFusionError::Execution(
                    "sketch_quantile takes (Binary sketch, Float64 quantile)".into(),
                ));
            };
            let mut out = Float64Builder::with_capacity(rows);
            for row in 0..rows {
                if sketches.is_null(row) || qs.is_null(row) {
                    out.append_null();
                    continue;
                }
                let sketch = LatencySketch::from_bytes(sketches.value(row))
                    .map_err(|e| DataFusionError::Execution(e.to_string()))?;
                out.append_option(sketch.quantile(qs.value(row)));
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    )
}

/// A sketch column built in Rust, for tests and state that do not go through SQL.
pub fn sketch_column(sketches: &[Option<&LatencySketch>]) -> ArrayRef {
    let mut builder = BinaryBuilder::with_capacity(sketches.len(), sketches.len() * 16);
    for sketch in sketches {
        builder.append_option(sketch.map(LatencySketch::to_bytes));
    }
    Arc::new(builder.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic, heavy-tailed latency sample (log-normal-ish), in milliseconds.
    fn latencies(n: usize, seed: u64) -> Vec<f64> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let u1 = ((state >> 11) as f64 / (1u64 << 53) as f64).max(1e-12);
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let u2 = (state >> 11) as f64 / (1u64 << 53) as f64;
                let normal = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                (7.5 + 1.2 * normal).exp()
            })
            .collect()
    }

    fn exact(sorted: &[f64], q: f64) -> f64 {
        sorted[nearest_rank(q, sorted.len() as u64) as usize]
    }

    #[test]
    fn every_quantile_is_within_the_stated_relative_error() {
        let values = latencies(100_000, 7);
        let mut sketch = LatencySketch::default();
        values.iter().for_each(|v| sketch.add(*v));
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
            let (estimate, truth) = (sketch.quantile(q).unwrap(), exact(&sorted, q));
            let error = (estimate - truth).abs() / truth;
            assert!(
                error <= RELATIVE_ACCURACY + 1e-12,
                "q={q}: {estimate} vs {truth} ({error})"
            );
        }
    }

    #[test]
    fn merging_equals_sketching_the_union() {
        let values = latencies(10_000, 3);
        let mut whole = LatencySketch::default();
        values.iter().for_each(|v| whole.add(*v));
        let mut merged = LatencySketch::default();
        for chunk in values.chunks(777) {
            let mut part = LatencySketch::default();
            chunk.iter().for_each(|v| part.add(*v));
            let part = LatencySketch::from_bytes(&part.to_bytes()).unwrap();
            merged.merge(&part);
        }
        assert_eq!(merged, whole);
    }

    #[test]
    fn zeros_empties_and_garbage() {
        let mut sketch = LatencySketch::default();
        assert_eq!(sketch.quantile(0.5), None);
        sketch.add(0.0);
        sketch.add(-3.0);
        sketch.add(f64::NAN);
        sketch.add(100.0);
        assert_eq!(sketch.count(), 3);
        assert_eq!(sketch.quantile(0.5), Some(0.0));
        assert_eq!(nearest_rank(0.95, 3), 2);
        assert_eq!(nearest_rank(0.5, 3), 1);
        assert_eq!(nearest_rank(0.0, 3), 0);
        assert_eq!(nearest_rank(1.0, 3), 2);
        assert!((sketch.quantile(1.0).unwrap() - 100.0).abs() <= 1.0);
        assert!(LatencySketch::from_bytes(&[]).is_err());
        assert!(LatencySketch::from_bytes(&[9, 0, 0]).is_err());
        assert!(LatencySketch::from_bytes(&[1, 0, 5, 2]).is_err());
        let bytes = sketch.to_bytes();
        assert!(LatencySketch::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    }
}
