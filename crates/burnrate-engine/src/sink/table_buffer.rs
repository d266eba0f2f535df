//! Decoded batches waiting to be flushed as one segment, whatever source they came from.

use std::collections::BTreeMap;
use std::time::Instant;

use burnrate_otlp::{
    DecodeError, DecodeStats, Decoded, Decoder, DeltaStats, DeltaTracker, PayloadHint, Table,
};
use datafusion::arrow::array::RecordBatch;

use crate::EngineError;
use crate::publish::health::PipelineHealth;
use crate::sink::dead_letters::{DeadLetter, dead_letter_batch};
use crate::sink::parquet_sink::ParquetSink;
use crate::stream::windows::WindowStage;

/// What the segments a run flushed add up to, whatever source they came from.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct FlushTotals {
    pub segments_written: u64,
    pub dead_letters: u64,
    pub rows: BTreeMap<&'static str, usize>,
    pub rows_with_errors: u64,
    /// Model calls with no price, by model: their `cost_usd` is NULL.
    pub unpriced_models: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
pub struct TableBuffer {
    tables: BTreeMap<Table, Vec<RecordBatch>>,
    dead: Vec<DeadLetter>,
    /// Input bytes taken in since the last flush, as decoded (a gzip export counts inflated:
    /// 224 KB of gzip can hold 31 MiB of export).
    pub bytes: usize,
    /// Memory the buffered batches take: many small exports make many small batches, each
    /// with per-column buffers, so this runs well past `bytes`.
    pub memory: usize,
    pub stats: DecodeStats,
    pub delta: DeltaStats,
    /// Rows booked to a token's team over the team their attributes named.
    pub team_overrides: u64,
}

/// A buffer turned into the batches of one segment, ready to be written (again, if a write
/// failed: writing a segment is idempotent).
#[derive(Debug)]
pub struct Segment {
    pub tables: BTreeMap<Table, Vec<RecordBatch>>,
    dead_letters: usize,
    rows_with_errors: u64,
    unpriced_models: BTreeMap<String, u64>,
}

impl Segment {
    /// Writes the segment as `name` and counts it in `totals` and `health`.
    pub fn write(
        &self,
        sink: &ParquetSink,
        name: &str,
        health: &PipelineHealth,
        totals: &mut FlushTotals,
    ) -> Result<(), EngineError> {
        let started = Instant::now();
        let written = sink.write_segment(name, &self.tables)?;
        health.flushed(
            &written.rows,
            self.dead_letters,
            self.rows_with_errors,
            started.elapsed(),
        );
        for (model, calls) in &self.unpriced_models {
            *totals.unpriced_models.entry(model.clone()).or_default() += calls;
        }
        totals.segments_written += 1;
        totals.dead_letters += self.dead_letters as u64;
        totals.rows_with_errors += self.rows_with_errors;
        for (table, rows) in written.rows {
            *totals.rows.entry(table).or_default() += rows;
        }
        Ok(())
    }
}

impl TableBuffer {
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty() && self.dead.is_empty()
    }

    /// Decodes one export into the buffer, converting cumulative metrics with `tracker`, and
    /// booking every row to `team` when there is one.
    /// An export that cannot be decoded becomes `dead(reason)`'s dead letter; the error is
    /// returned so the caller can report it.
    pub fn add(
        &mut self,
        decoder: &Decoder,
        tracker: &mut DeltaTracker,
        export: &[u8],
        hint: PayloadHint,
        team: Option<&str>,
        dead: impl FnOnce(String) -> DeadLetter,
    ) -> Result<Option<DecodeError>, EngineError> {
        match decoder.decode(export, hint) {
            Ok(decoded) => {
                self.add_decoded(decoded, tracker, team)?;
                Ok(None)
            }
            Err(error) => {
                self.add_dead(dead(error.to_string()));
                Ok(Some(error))
            }
        }
    }

    /// Takes in an export decoded elsewhere (the decode stage), in its order: cumulative
    /// metrics are converted with `tracker`, which depends on the order points arrive in.
    pub fn add_decoded(
        &mut self,
        mut decoded: Decoded,
        tracker: &mut DeltaTracker,
        team: Option<&str>,
    ) -> Result<(), EngineError> {
        if let Some(team) = team {
            self.team_overrides += decoded.book_to_team(team)?;
        }
        self.bytes += decoded.plain_bytes;
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
            self.memory += batch.get_array_memory_size();
            self.tables.entry(table).or_default().push(batch);
        }
        Ok(())
    }

    /// Keeps an export that could not be decoded, as its dead letter.
    pub fn add_dead(&mut self, dead: DeadLetter) {
        self.bytes += dead.payload.len();
        self.memory += dead.payload.len();
        self.dead.push(dead);
    }

    pub fn dead_letters(&self) -> usize {
        self.dead.len()
    }

    /// Writes the buffer as segment `name` (atomically, see [`ParquetSink`]), feeds it to
    /// `windows` as `origin`'s micro-batch up to `position`, and counts it in `totals` and
    /// `health`.
    pub fn flush(
        self,
        sink: &ParquetSink,
        name: &str,
        (origin, position): (&str, i64),
        windows: &mut WindowStage,
        health: &PipelineHealth,
        totals: &mut FlushTotals,
    ) -> Result<(), EngineError> {
        let tables = self.write(sink, name, health, totals)?;
        let progress = windows.feed(origin, position, &tables)?;
        health.windowed(progress.closed, progress.late_events);
        Ok(())
    }

    /// Writes the buffer as segment `name` and counts it in `totals` and `health`, returning
    /// its tables for the window stage, which the caller feeds (see [`Self::flush`]).
    pub fn write(
        self,
        sink: &ParquetSink,
        name: &str,
        health: &PipelineHealth,
        totals: &mut FlushTotals,
    ) -> Result<BTreeMap<Table, Vec<RecordBatch>>, EngineError> {
        let segment = self.into_segment()?;
        segment.write(sink, name, health, totals)?;
        Ok(segment.tables)
    }

    /// The segment this buffer makes, to write later.
    pub fn into_segment(self) -> Result<Segment, EngineError> {
        let (dead_letters, rows_with_errors) = (self.dead_letters(), self.stats.rows_with_errors);
        let unpriced_models = self.stats.unpriced_models.clone();
        Ok(Segment {
            tables: self.into_tables()?,
            dead_letters,
            rows_with_errors,
            unpriced_models,
        })
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
