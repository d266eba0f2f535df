//! Decoded batches waiting to be flushed as one segment, whatever source they came from.

use std::collections::BTreeMap;

use burnrate_otlp::{
    DecodeError, DecodeStats, Decoder, DeltaStats, DeltaTracker, PayloadHint, Table,
};
use datafusion::arrow::array::RecordBatch;

use crate::EngineError;
use crate::dead_letters::{DeadLetter, dead_letter_batch};

#[derive(Debug, Default)]
pub struct TableBuffer {
    tables: BTreeMap<Table, Vec<RecordBatch>>,
    dead: Vec<DeadLetter>,
    /// Input bytes taken in since the last flush.
    pub bytes: usize,
    pub stats: DecodeStats,
    pub delta: DeltaStats,
}

impl TableBuffer {
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty() && self.dead.is_empty()
    }

    /// Decodes one export into the buffer, converting cumulative metrics with `tracker`.
    /// An export that cannot be decoded becomes `dead(reason)`'s dead letter; the error is
    /// returned so the caller can report it.
    pub fn add(
        &mut self,
        decoder: &Decoder,
        tracker: &mut DeltaTracker,
        export: &[u8],
        hint: PayloadHint,
        dead: impl FnOnce(String) -> DeadLetter,
    ) -> Result<Option<DecodeError>, EngineError> {
        self.bytes += export.len();
        let decoded = match decoder.decode(export, hint) {
            Ok(decoded) => decoded,
            Err(error) => {
                self.dead.push(dead(error.to_string()));
                return Ok(Some(error));
            }
        };
        self.stats.merge(&decoded.stats);
        for (table, batch) in decoded.batches {
            let batch = if table == Table::UsageMetrics {
                let (converted, s) = tracker.apply(&batch)?;
                self.delta.converted += s.converted;
                self.delta.resets += s.resets;
                self.delta.stale += s.stale;
                converted
            } else {
                batch
            };
            self.tables.entry(table).or_default().push(batch);
        }
        Ok(None)
    }

    pub fn dead_letters(&self) -> usize {
        self.dead.len()
    }

    /// The batches to write, dead letters included.
    pub fn into_tables(self) -> Result<BTreeMap<Table, Vec<RecordBatch>>, EngineError> {
        let mut tables = self.tables;
        if !self.dead.is_empty() {
            let batch = dead_letter_batch(&self.dead)?;
            tables.entry(Table::DeadLetters).or_default().push(batch);
        }
        Ok(tables)
    }
}
