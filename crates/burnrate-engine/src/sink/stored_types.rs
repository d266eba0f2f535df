//! The column types the tables' files hold: Delta's, so that every engine reads a file as its
//! table's log declares it.
//!
//! burnrate computes on nanosecond timestamps and unsigned integers (OTLP's types). Delta has
//! neither: its `timestamp` is microseconds since the epoch in UTC, and its integers are signed.
//! Spark refuses a Parquet `TIMESTAMP(NANOS)` outright and reads `UINT_64` as a decimal where
//! the log says `long`. So each file is written in Delta's types:
//! - a nanosecond timestamp as microseconds (the decoder keeps event times to the microsecond
//!   already, so nothing is truncated that burnrate compares later);
//! - `UInt64` as `Int64` and `UInt32` as `Int32`, the same numbers (a value past the signed
//!   maximum, which no count or size reaches, is stored as that maximum);
//! - `series_id` and `resource_id`, hashes, as `Int64` with the top bit cleared, which is how
//!   the decoder makes them now (a series id from before, with the bit set, becomes the id
//!   the decoder would give it today).
//!
//! burnrate reads every file back in its own types (DataFusion casts each file's columns to the
//! table's schema), files from before this layout included.

use std::sync::Arc;

use burnrate_otlp::SERIES_ID_MASK;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int32Array, Int64Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit, UInt32Type, UInt64Type,
};

use crate::EngineError;

/// The columns that hold a hash, not a quantity: reinterpreted, not saturated.
const HASH_IDS: [&str; 2] = ["series_id", "resource_id"];

/// The type a column of `data_type` is stored as.
fn stored_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Timestamp(TimeUnit::Nanosecond, zone) => {
            DataType::Timestamp(TimeUnit::Microsecond, zone.clone())
        }
        DataType::UInt64 => DataType::Int64,
        DataType::UInt32 => DataType::Int32,
        other => other.clone(),
    }
}

fn stored_field(field: &FieldRef) -> FieldRef {
    let stored = stored_type(field.data_type());
    if &stored == field.data_type() {
        return field.clone();
    }
    Arc::new(
        Field::new(field.name(), stored, field.is_nullable())
            .with_metadata(field.metadata().clone()),
    )
}

/// `schema` as its files hold it.
pub fn stored_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<FieldRef> = schema.fields().iter().map(stored_field).collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batch` in the types its file holds. Columns already stored as they are (strings, maps,
/// floats) are shared, not copied.
pub fn to_stored(batch: &RecordBatch) -> Result<RecordBatch, EngineError> {
    let schema = batch.schema();
    let stored = stored_schema(&schema);
    if stored == schema {
        return Ok(batch.clone());
    }
    let columns = schema
        .fields()
        .iter()
        .zip(stored.fields())
        .zip(batch.columns())
        .map(|((field, target), column)| stored_column(field.name(), column, target.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(stored, columns)?)
}

fn stored_column(
    name: &str,
    column: &ArrayRef,
    target: &DataType,
) -> Result<ArrayRef, EngineError> {
    Ok(match column.data_type() {
        DataType::UInt64 if HASH_IDS.contains(&name) => {
            let ids = column.as_primitive::<UInt64Type>();
            Arc::new(Int64Array::from_unary(ids, |id| {
                (id & SERIES_ID_MASK) as i64
            }))
        }
        DataType::UInt64 => {
            let values = column.as_primitive::<UInt64Type>();
            Arc::new(Int64Array::from_unary(values, |v| {
                i64::try_from(v).unwrap_or(i64::MAX)
            }))
        }
        DataType::UInt32 => {
            let values = column.as_primitive::<UInt32Type>();
            Arc::new(Int32Array::from_unary(values, |v| {
                i32::try_from(v).unwrap_or(i32::MAX)
            }))
        }
        data_type if data_type == target => column.clone(),
        _ => cast(column, target)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{
        StringArray, TimestampNanosecondArray, UInt32Array, UInt64Array,
    };
    use datafusion::arrow::datatypes::{Int32Type, Int64Type, TimestampMicrosecondType};

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                true,
            ),
            Field::new("count", DataType::UInt64, true),
            Field::new("series_id", DataType::UInt64, false),
            Field::new("revision", DataType::UInt32, false),
            Field::new("user", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(
                    TimestampNanosecondArray::from(vec![Some(1_764_547_200_123_456_000), None])
                        .with_timezone("UTC"),
                ),
                Arc::new(UInt64Array::from(vec![Some(7), Some(u64::MAX)])),
                Arc::new(UInt64Array::from(vec![18_397_761_719_065_401_570, 42])),
                Arc::new(UInt32Array::from(vec![3, u32::MAX])),
                Arc::new(StringArray::from(vec![Some("ana"), None])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn a_batch_is_stored_in_deltas_types() {
        let batch = batch();
        let stored = to_stored(&batch).unwrap();
        let types: Vec<DataType> = stored
            .schema()
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        assert_eq!(
            types,
            vec![
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                DataType::Int64,
                DataType::Int64,
                DataType::Int32,
                DataType::Utf8,
            ]
        );
        let time = stored.column(0).as_primitive::<TimestampMicrosecondType>();
        assert_eq!(time.value(0), 1_764_547_200_123_456);
        assert!(time.is_null(1));
        let count = stored.column(1).as_primitive::<Int64Type>();
        assert_eq!((count.value(0), count.value(1)), (7, i64::MAX));
        let ids = stored.column(2).as_primitive::<Int64Type>();
        // The top bit cleared: 18,397,761,719,065,401,570 - 2^63.
        assert_eq!(ids.value(0), 9_174_389_682_210_625_762);
        assert_eq!(ids.value(1), 42);
        let revision = stored.column(3).as_primitive::<Int32Type>();
        assert_eq!((revision.value(0), revision.value(1)), (3, i32::MAX));
        assert!(Arc::ptr_eq(stored.column(4), batch.column(4)));
    }

    #[test]
    fn a_stored_batch_is_stored_as_it_is() {
        let stored = to_stored(&batch()).unwrap();
        let again = to_stored(&stored).unwrap();
        assert_eq!(again, stored);
    }
}
