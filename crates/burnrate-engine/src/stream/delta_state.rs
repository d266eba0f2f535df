//! Rebuilds the cumulative-to-delta state from the committed `metric_points` table, so a
//! restarted process converts the next cumulative point exactly as the old one would have.

use std::path::Path;

use burnrate_otlp::{DeltaTracker, SERIES_ID_MASK};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Float64Type, TimestampNanosecondType, UInt64Type};

use crate::EngineError;
use crate::query::catalog::open_dataset;

const LAST_CUMULATIVE_POINTS: &str = "
    SELECT series_id,
           last_value(start_time ORDER BY start_time, time) AS start_time,
           last_value(time ORDER BY start_time, time) AS time,
           last_value(value ORDER BY start_time, time) AS value
    FROM metric_points
    WHERE temporality = 'cumulative' AND kind = 'sum' AND value IS NOT NULL AND time IS NOT NULL
    GROUP BY series_id";

pub async fn rebuild_delta_tracker(data_dir: &Path) -> Result<DeltaTracker, EngineError> {
    let mut tracker = DeltaTracker::new();
    if !data_dir.join("metric_points").is_dir() {
        return Ok(tracker);
    }
    let ctx = open_dataset(data_dir).await?;
    let batches = ctx.sql(LAST_CUMULATIVE_POINTS).await?.collect().await?;
    for batch in batches {
        let series = batch.column(0).as_primitive::<UInt64Type>();
        let start = batch.column(1).as_primitive::<TimestampNanosecondType>();
        let time = batch.column(2).as_primitive::<TimestampNanosecondType>();
        let value = batch.column(3).as_primitive::<Float64Type>();
        for i in 0..batch.num_rows() {
            let start_time = if start.is_valid(i) { start.value(i) } else { 0 };
            // A series stored before ids had 63 bits is the same series now.
            let series_id = series.value(i) & SERIES_ID_MASK;
            tracker.observe(series_id, start_time, time.value(i), value.value(i));
        }
    }
    Ok(tracker)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use burnrate_otlp::Table;
    use datafusion::arrow::array::{
        ArrayRef, Float64Array, RecordBatch, StringArray, TimestampNanosecondArray, UInt64Array,
        new_null_array,
    };
    use datafusion::arrow::datatypes::SchemaRef;

    use super::*;
    use crate::sink::parquet_sink::write_atomically;
    use crate::sink::stored_types::{stored_schema, to_stored};

    const START: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z
    const SECOND: i64 = 1_000_000_000;
    /// A series whose id has the top bit set, as burnrate stored it before ids had 63 bits.
    const OLD_ID: u64 = 18_397_761_719_065_401_570;

    /// One cumulative sum point, every other column null.
    fn point(schema: &SchemaRef, series_id: u64, time: i64, value: f64) -> RecordBatch {
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|field| -> ArrayRef {
                match field.name().as_str() {
                    "time" => {
                        Arc::new(TimestampNanosecondArray::from(vec![time]).with_timezone("UTC"))
                    }
                    "start_time" => {
                        Arc::new(TimestampNanosecondArray::from(vec![START]).with_timezone("UTC"))
                    }
                    "kind" => Arc::new(StringArray::from(vec!["sum"])),
                    "temporality" => Arc::new(StringArray::from(vec!["cumulative"])),
                    "value" => Arc::new(Float64Array::from(vec![value])),
                    "series_id" => Arc::new(UInt64Array::from(vec![series_id])),
                    _ => new_null_array(field.data_type(), 1),
                }
            })
            .collect();
        RecordBatch::try_new(schema.clone(), columns).unwrap()
    }

    /// A table holding a file an older burnrate wrote (nanoseconds, the id's top bit set) and
    /// one this version wrote (microseconds, signed): burnrate reads both in its own types, and
    /// the series goes on converting where it stopped instead of starting over.
    #[tokio::test]
    async fn a_series_stored_before_ids_had_63_bits_goes_on_after_the_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let day = dir.path().join("metric_points").join("date=2026-01-01");
        std::fs::create_dir_all(&day).unwrap();
        let schema = Table::MetricPoints.schema();
        let old = point(&schema, OLD_ID, START + SECOND, 10.0);
        write_atomically(
            &day.join("old.parquet"),
            schema.clone(),
            &[old],
            Default::default(),
        )
        .unwrap();
        let other = to_stored(&point(&schema, 42, START + SECOND, 3.0)).unwrap();
        write_atomically(
            &day.join("new.parquet"),
            stored_schema(&schema),
            &[other],
            Default::default(),
        )
        .unwrap();

        let ctx = open_dataset(dir.path()).await.unwrap();
        let sql = "SELECT series_id, time FROM metric_points ORDER BY value";
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let ids = batches[0].column(0).as_primitive::<UInt64Type>();
        let times = batches[0]
            .column(1)
            .as_primitive::<TimestampNanosecondType>();
        assert_eq!(ids.values().to_vec(), vec![42, OLD_ID]);
        assert_eq!(times.values().to_vec(), vec![START + SECOND; 2]);

        // The decoder names the same series OLD_ID with its top bit cleared.
        let mut tracker = rebuild_delta_tracker(dir.path()).await.unwrap();
        let next = point(&schema, OLD_ID & SERIES_ID_MASK, START + 2 * SECOND, 15.0);
        let (converted, _) = tracker.apply(&next).unwrap();
        let value = converted.column_by_name("value").unwrap();
        assert_eq!(value.as_primitive::<Float64Type>().value(0), 5.0);
    }
}
