//! The Kafka writer stage: takes the sink's flushes in the order they were made and takes each
//! through the durability path ([`crate::source::durable`]): its segments written, fed to the
//! windows as one micro-batch, their offsets reported to the commit coordinator.
//!
//! It runs on a thread of its own, so the sink keeps collecting decoded runs (and the decode
//! workers keep decoding) while a flush is encoded, compressed, fsynced and windowed: a flush
//! took two fifths of a catch-up's time, and the stages before it stood still meanwhile. One
//! flush is written at a time, in order, so a partition's offsets are reported in order and a
//! replay after a crash finds the same segments.
//!
//! Must not know: how segments are buffered or cut, the consumer, its rebalances or commits.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use crossbeam_channel::{Receiver, Sender};

use super::sink::SinkFailure;
use super::{PartitionKey, segment_name, window_origin};
use crate::EngineError;
use crate::budget::Reservation;
use crate::sink::table_buffer::{FlushTotals, TableBuffer};
use crate::source::durable::{DurablePath, SegmentFlush};

/// Flushes the writer may hold besides the one it writes: one, so the sink waits (and with it
/// the decode stage) rather than buffering flush after flush while the disk is slow.
pub const WRITER_QUEUE: usize = 1;

/// The answer to a sync: the windows' positions (origin → last offset fed), or the writer's
/// first error.
pub type Synced = Result<BTreeMap<String, i64>, String>;

/// A partition's buffered messages `first..=last`, to be written as one segment.
pub struct BufferedSegment {
    pub key: PartitionKey,
    pub first: i64,
    pub last: i64,
    pub buffer: TableBuffer,
}

/// What the sink sends the writer, in order.
pub enum Job {
    /// Write these segments as one flush; `held` is their rows' memory, given back once the
    /// windows have them.
    Flush {
        segments: Vec<BufferedSegment>,
        held: Reservation,
    },
    /// Answer once every flush sent before is durable, with the windows' positions (origin →
    /// last offset fed).
    Sync { done: Sender<Synced> },
    /// Close every open window (the end of the input), then answer with what the writes
    /// since the last `Finish` added up to.
    Finish {
        close_windows: bool,
        done: Sender<Result<FlushTotals, String>>,
    },
}

pub struct Writer {
    durable: DurablePath<PartitionKey>,
    /// Shared with the sink and the consuming task, which stop on it.
    failure: Arc<OnceLock<SinkFailure>>,
    /// The first error: every flush after it is dropped (not committed), and replayed on
    /// restart.
    failed: Option<String>,
}

impl Writer {
    pub fn new(durable: DurablePath<PartitionKey>, failure: Arc<OnceLock<SinkFailure>>) -> Self {
        Writer {
            durable,
            failure,
            failed: None,
        }
    }

    /// Takes jobs until the sink hangs up, then hands the durability path back.
    pub fn run(mut self, jobs: Receiver<Job>) -> DurablePath<PartitionKey> {
        for job in jobs {
            match job {
                Job::Flush { segments, held } => {
                    if self.failed.is_none()
                        && let Err(error) = self.flush(segments)
                    {
                        self.fail(error);
                    }
                    // After the windows have the rows: released at the write, the source took
                    // that much more while the aggregation still held them.
                    drop(held);
                }
                Job::Sync { done } => {
                    let answer = self.answer().map(|()| self.durable.windows().positions());
                    let _ = done.send(answer);
                }
                Job::Finish {
                    close_windows,
                    done,
                } => {
                    if close_windows
                        && self.failed.is_none()
                        && let Err(error) = self.close_windows()
                    {
                        self.fail(error);
                    }
                    let answer = self.answer().map(|()| self.durable.take_written());
                    let _ = done.send(answer);
                }
            }
        }
        self.durable
    }

    fn answer(&self) -> Result<(), String> {
        match &self.failed {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    fn fail(&mut self, error: EngineError) {
        tracing::error!(error = %error, retryable = error.is_retryable(), "kafka writer failed; nothing after this is committed");
        let _ = self.failure.set(SinkFailure {
            message: error.to_string(),
            retryable: error.is_retryable(),
        });
        self.failed = Some(error.to_string());
    }

    /// Writes every segment, then feeds them to the windows as one micro-batch (one
    /// aggregation and one checkpoint however many partitions flush) and reports their offsets
    /// as durable.
    fn flush(&mut self, segments: Vec<BufferedSegment>) -> Result<(), EngineError> {
        let mut written = Vec::with_capacity(segments.len());
        for segment in segments {
            let (topic, partition) = &segment.key;
            let flush = SegmentFlush {
                name: segment_name(topic, *partition, segment.first, segment.last),
                segment: segment.buffer.into_segment()?,
                origin: window_origin(topic, *partition),
                window_position: segment.last,
                key: segment.key.clone(),
                position: segment.last + 1,
            };
            self.durable.write(&flush)?;
            tracing::info!(topic = %topic, partition, first = segment.first, last = segment.last, "segment written");
            written.push(flush);
        }
        self.durable.settle(&written)
    }

    fn close_windows(&mut self) -> Result<(), EngineError> {
        // The end of the input: no event can still arrive on time for the open windows.
        let closed = self.durable.windows_mut().close_all()?;
        self.durable.health().windowed(closed, 0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use burnrate_otlp::DeltaTracker;

    use super::super::commit::{OffsetCommits, offset_commits};
    use super::*;
    use crate::budget::MemoryBudget;
    use crate::publish::health::PipelineHealth;
    use crate::sink::parquet_sink::ParquetSink;
    use crate::sink::table_buffer::decoded_log_record;
    use crate::stream::windows::{WindowSpec, WindowStage};

    const TOPIC: &str = "otlp_logs";

    /// A partition's messages `first..=last`, one log record each.
    fn segment(first: i64, last: i64) -> BufferedSegment {
        let mut buffer = TableBuffer::default();
        let mut tracker = DeltaTracker::new();
        for offset in first..=last {
            let decoded = decoded_log_record(&format!("message {offset}"));
            buffer.add_decoded(decoded, &mut tracker, None).unwrap();
        }
        BufferedSegment {
            key: (TOPIC.to_string(), 0),
            first,
            last,
            buffer,
        }
    }

    /// Runs a writer whose segments go to `output` over `jobs`, sent all at once; the path it
    /// hands back, the offsets it reported and the failure it left.
    fn write(
        output: &Path,
        state: &Path,
        jobs: Vec<Job>,
    ) -> (
        DurablePath<PartitionKey>,
        OffsetCommits,
        Arc<OnceLock<SinkFailure>>,
    ) {
        let windows = WindowStage::open(state, &WindowSpec::default(), "test", 100).unwrap();
        let commits = offset_commits(state, "group");
        let durable = DurablePath::new(
            ParquetSink::new(output),
            windows,
            PipelineHealth::new(),
            commits.clone(),
        );
        let failure = Arc::new(OnceLock::new());
        let (send, queue) = crossbeam_channel::unbounded();
        for job in jobs {
            send.send(job).unwrap();
        }
        drop(send);
        let durable = Writer::new(durable, failure.clone()).run(queue);
        (durable, commits, failure)
    }

    fn flush(budget: &Arc<MemoryBudget>, first: i64, last: i64) -> Job {
        let segment = segment(first, last);
        let mut held = budget.reservation();
        held.force(segment.buffer.memory);
        Job::Flush {
            segments: vec![segment],
            held,
        }
    }

    fn sync() -> (Job, Receiver<Synced>) {
        let (done, answer) = crossbeam_channel::bounded(1);
        (Job::Sync { done }, answer)
    }

    #[test]
    fn flushes_are_made_durable_in_order_and_give_their_memory_back() {
        let dir = tempfile::tempdir().unwrap();
        let budget = MemoryBudget::for_memory_limit(512 << 20);
        let (first_sync, first) = sync();
        let (second_sync, second) = sync();
        let jobs = vec![
            flush(&budget, 0, 2),
            first_sync,
            flush(&budget, 3, 3),
            second_sync,
        ];
        assert!(budget.used() > 0, "the flushes hold their rows' memory");
        let (mut durable, commits, failure) = write(dir.path(), dir.path(), jobs);
        let origin = window_origin(TOPIC, 0);
        assert_eq!(
            first.recv().unwrap(),
            Ok(BTreeMap::from([(origin.clone(), 2)]))
        );
        assert_eq!(second.recv().unwrap(), Ok(BTreeMap::from([(origin, 3)])));
        assert!(failure.get().is_none());
        assert_eq!(budget.used(), 0, "every flush's memory is given back");
        assert_eq!(durable.take_written().segments_written, 2);
        assert_eq!(
            commits.commit().unwrap(),
            BTreeMap::from([((TOPIC.to_string(), 0), 4)]),
            "the offset after the last message written"
        );
    }

    #[test]
    fn a_flush_that_cannot_be_written_reports_nothing_durable_after_it() {
        let dir = tempfile::tempdir().unwrap();
        // The output is a file: every write fails (ENOTDIR), as on a disk gone read-only.
        let output = dir.path().join("data");
        std::fs::write(&output, b"not a directory").unwrap();
        let budget = MemoryBudget::for_memory_limit(512 << 20);
        let (first_sync, first) = sync();
        let (finish, finished) = crossbeam_channel::bounded(1);
        let jobs = vec![
            flush(&budget, 0, 2),
            first_sync,
            flush(&budget, 3, 3),
            Job::Finish {
                close_windows: true,
                done: finish,
            },
        ];
        let (durable, commits, failure) = write(&output, dir.path(), jobs);
        let error = first.recv().unwrap().unwrap_err();
        let failure = failure
            .get()
            .expect("the failure is left for the consuming task");
        assert_eq!(failure.message, error);
        assert!(
            error.contains(&output.display().to_string()),
            "the error names where: {error}"
        );
        assert!(
            finished.recv().unwrap().is_err(),
            "the end reports the failure too"
        );
        assert!(commits.is_empty(), "no offset is reported durable");
        assert!(
            durable.windows().positions().is_empty(),
            "the windows were fed nothing"
        );
        assert_eq!(
            budget.used(),
            0,
            "the dropped flush's memory is given back too"
        );
    }
}
