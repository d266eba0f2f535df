//! The durability path, the same for every source, in one order:
//! 1. **write**: each segment's files, one per table and day, written under a temporary name,
//!    fsynced, renamed, and committed to their tables' Delta logs ([`crate::sink`]), the files
//!    of every segment in a flush in one commit per table. Writing a segment again writes the
//!    same names, so a write that failed can be retried and a replay after a crash doubles
//!    nothing;
//! 2. **settle**: the written segments go to the window stage as one micro-batch (one
//!    aggregation and one checkpoint however many segments), each under its origin and
//!    position there, which the windows skip when they counted it already; then each segment's
//!    source position is reported to the [`CommitCoordinator`];
//! 3. **commit**: the coordinator writes the reported positions to the positions table, when
//!    the source asks (the receiver and the files source after every flush, Kafka on its
//!    consuming thread, which then commits the group's offsets). Only then does a source let
//!    go of what it could replay from: the receiver deletes its logs, the ledger counts its
//!    line.
//!
//! A crash between any two steps replays from the last committed position: the files are
//! written again under the same names, and the windows skip what they counted.
//!
//! Steps 1 and 2 can run on two threads ([`DurablePath::into_stages`]), each in order: the
//! Kafka source writes the next flush while the windows take the last.
//!
//! Must not know: how a source reads or numbers its input, or what it does once a position is
//! committed.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::EngineError;
use crate::publish::health::PipelineHealth;
use crate::sink::parquet_sink::ParquetSink;
use crate::sink::table_buffer::{FlushTotals, Segment};
use crate::source::commit::CommitCoordinator;
use crate::stream::windows::WindowStage;

/// A segment on its way to durability, with where it stands in its source.
pub struct SegmentFlush<K> {
    /// The name of its files in every table.
    pub name: String,
    pub segment: Segment,
    /// The window stage's origin for the segment's source (a partition, a receiver, the files
    /// source) and the segment's position there: the windows skip a segment at or before the
    /// position they were last fed for its origin.
    pub origin: String,
    pub window_position: i64,
    /// The source position the segment makes durable: its key in the coordinator and the
    /// value the positions table holds once it is committed.
    pub key: K,
    pub position: i64,
}

/// Writes segments, feeds them to the windows and reports their positions, for one source.
pub struct DurablePath<K> {
    writes: SegmentWrites,
    settles: Settlement<K>,
}

/// Step 1 of the path on its own, for a source that runs step 2 on another thread.
pub struct SegmentWrites {
    parquet: ParquetSink,
    health: Arc<PipelineHealth>,
    written: FlushTotals,
}

/// Step 2 of the path on its own: the windows and the positions reported to the coordinator.
pub struct Settlement<K> {
    windows: WindowStage,
    health: Arc<PipelineHealth>,
    commits: CommitCoordinator<K>,
}

impl<K: Ord + Clone> DurablePath<K> {
    pub fn new(
        parquet: ParquetSink,
        windows: WindowStage,
        health: Arc<PipelineHealth>,
        commits: CommitCoordinator<K>,
    ) -> Self {
        DurablePath {
            writes: SegmentWrites {
                parquet,
                health: health.clone(),
                written: FlushTotals::default(),
            },
            settles: Settlement {
                windows,
                health,
                commits,
            },
        }
    }

    /// The two steps apart, to run on two threads; [`Self::from_stages`] puts them back.
    pub fn into_stages(self) -> (SegmentWrites, Settlement<K>) {
        (self.writes, self.settles)
    }

    pub fn from_stages(writes: SegmentWrites, settles: Settlement<K>) -> Self {
        DurablePath { writes, settles }
    }

    /// Step 1: see [`SegmentWrites::write`].
    pub fn write(&mut self, flushes: &[SegmentFlush<K>]) -> Result<(), EngineError> {
        self.writes.write(flushes)
    }

    /// Step 2: see [`Settlement::settle`].
    pub fn settle(&mut self, written: &[SegmentFlush<K>]) -> Result<(), EngineError> {
        self.settles.settle(written)
    }

    /// Steps 1 and 2 for `segments`; nothing is settled unless every one was written.
    pub fn flush(&mut self, segments: &[SegmentFlush<K>]) -> Result<(), EngineError> {
        self.write(segments)?;
        self.settle(segments)
    }

    /// Step 3, for a source that commits where it flushes: the positions committed.
    pub fn commit(&self) -> Result<BTreeMap<K, i64>, EngineError> {
        self.settles.commits.commit()
    }

    pub fn windows(&self) -> &WindowStage {
        &self.settles.windows
    }

    pub fn windows_mut(&mut self) -> &mut WindowStage {
        &mut self.settles.windows
    }

    pub fn health(&self) -> &PipelineHealth {
        &self.settles.health
    }

    /// What the writes since the last call added up to.
    pub fn take_written(&mut self) -> FlushTotals {
        self.writes.take_written()
    }

    /// The window stage and the totals, once the source is done with the path.
    pub fn into_parts(self) -> (WindowStage, FlushTotals) {
        (self.settles.windows, self.writes.written)
    }
}

impl SegmentWrites {
    /// Writes the files of `flushes` and commits them to their tables' logs, as one step (one
    /// commit per table however many segments). Idempotent: a failed write may be retried.
    pub fn write<K>(&mut self, flushes: &[SegmentFlush<K>]) -> Result<(), EngineError> {
        let segments: Vec<(&str, &Segment)> = flushes
            .iter()
            .map(|flush| (flush.name.as_str(), &flush.segment))
            .collect();
        Segment::write_all(&segments, &self.parquet, &self.health, &mut self.written)
    }

    /// What the writes since the last call added up to.
    pub fn take_written(&mut self) -> FlushTotals {
        std::mem::take(&mut self.written)
    }
}

impl<K: Ord + Clone> Settlement<K> {
    /// Feeds written segments to the windows as one micro-batch, then reports their positions
    /// as durable. Call only with segments [`SegmentWrites::write`] wrote, in their source's
    /// order. The windows read only [`crate::stream::windows::WINDOW_INPUTS`]: the segments'
    /// other tables may be gone.
    pub fn settle(&mut self, written: &[SegmentFlush<K>]) -> Result<(), EngineError> {
        if written.is_empty() {
            return Ok(());
        }
        let batches: Vec<_> = written
            .iter()
            .map(|flush| {
                (
                    flush.origin.as_str(),
                    flush.window_position,
                    &flush.segment.tables,
                )
            })
            .collect();
        let progress = self.windows.feed_many(&batches)?;
        self.health.windowed(progress.closed, progress.late_events);
        for flush in written {
            self.commits
                .durable_up_to(flush.key.clone(), flush.position);
        }
        Ok(())
    }

    pub fn windows(&self) -> &WindowStage {
        &self.windows
    }

    pub fn windows_mut(&mut self) -> &mut WindowStage {
        &mut self.windows
    }

    pub fn health(&self) -> &PipelineHealth {
        &self.health
    }
}
