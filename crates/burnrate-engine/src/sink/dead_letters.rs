//! Inputs that could not be decoded, kept with their bytes and the reason, so that nothing is
//! lost and nothing stops the pipeline.

use std::sync::Arc;

use burnrate_otlp::Table;
use datafusion::arrow::array::{
    ArrayRef, BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampNanosecondArray, UInt64Array,
};
use datafusion::arrow::error::ArrowError;

#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub received_at_nanos: i64,
    /// Where the bytes came from: a file path, `topic/partition@offset`, or a receiver route.
    pub origin: String,
    pub topic: Option<String>,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    pub error: String,
    pub payload: Vec<u8>,
}

impl DeadLetter {
    pub fn now(origin: String, error: String, payload: Vec<u8>) -> Self {
        DeadLetter {
            received_at_nanos: chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default(),
            origin,
            topic: None,
            partition: None,
            offset: None,
            error,
            payload,
        }
    }

    /// The `i`th of a test's letters, received at `received_at_nanos`.
    #[cfg(test)]
    pub(crate) fn numbered(i: usize, received_at_nanos: i64, payload: Vec<u8>) -> Self {
        DeadLetter {
            received_at_nanos,
            origin: format!("test/{i}"),
            topic: None,
            partition: None,
            offset: None,
            error: "bad".into(),
            payload,
        }
    }
}

pub fn dead_letter_batch(letters: &[DeadLetter]) -> Result<RecordBatch, ArrowError> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampNanosecondArray::from_iter_values(letters.iter().map(|l| l.received_at_nanos))
                .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from_iter_values(
            letters.iter().map(|l| &l.origin),
        )),
        Arc::new(StringArray::from_iter(
            letters.iter().map(|l| l.topic.as_deref()),
        )),
        Arc::new(Int32Array::from_iter(letters.iter().map(|l| l.partition))),
        Arc::new(Int64Array::from_iter(letters.iter().map(|l| l.offset))),
        Arc::new(StringArray::from_iter_values(
            letters.iter().map(|l| &l.error),
        )),
        Arc::new(UInt64Array::from_iter_values(
            letters.iter().map(|l| l.payload.len() as u64),
        )),
        Arc::new(BinaryArray::from_iter_values(
            letters.iter().map(|l| l.payload.as_slice()),
        )),
    ];
    RecordBatch::try_new(Table::DeadLetters.schema(), columns)
}
