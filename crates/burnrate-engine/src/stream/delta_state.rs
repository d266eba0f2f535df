//! Rebuilds the cumulative-to-delta state from the committed `metric_points` table, so a
//! restarted process converts the next cumulative point exactly as the old one would have.

use std::path::Path;

use burnrate_otlp::DeltaTracker;
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
            tracker.observe(series.value(i), start_time, time.value(i), value.value(i));
        }
    }
    Ok(tracker)
}
