//! The Kafka writer stage: takes the sink's flushes in the order they were made and takes each
//! through the durability path ([`crate::source::durable`]): its segments written as one step,
//! then, on a thread of its own, fed to the windows as one micro-batch and their offsets
//! reported to the commit coordinator.
//!
//! It runs on a thread of its own, so the sink keeps collecting decoded runs (and the decode
//! workers keep decoding) while a flush is encoded, compressed, fsynced and windowed: a flush
//! took two fifths of a catch-up's time, and the stages before it stood still meanwhile. The
//! windows' feed runs on a second thread (`burnrate-windows`), so the next flush is written
//! while the last one is aggregated: the feed was over a quarter of the writer's time, and the
//! source waited on both. It keeps only the tables the windows read ([`WINDOW_INPUTS`]), so the rest of
//! a flush's memory is given back once it is written. One flush is written and one settled at
//! a time, each in order, so a partition's offsets are reported in order and a replay after a
//! crash finds the same segments.
//!
//! Must not know: how segments are buffered or cut, the consumer, its rebalances or commits.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use datafusion::arrow::array::RecordBatch;

use super::sink::SinkFailure;
use super::{PartitionKey, segment_name, window_origin};
use crate::EngineError;
use crate::budget::Reservation;
use crate::sink::table_buffer::{FlushTotals, TableBuffer};
use crate::source::durable::{DurablePath, SegmentFlush, SegmentWrites, Settlement};
use crate::stream::delta_state::SealedPoints;
use crate::stream::windows::WINDOW_INPUTS;

/// Flushes the writer may hold besides the one it writes: one, so the sink waits (and with it
/// the decode stage) rather than buffering flush after flush while the disk is slow.
pub const WRITER_QUEUE: usize = 1;

/// Written flushes the windows' thread may hold besides the one it feeds: one, so the writer
/// waits for the windows rather than run ahead of them.
const SETTLE_QUEUE: usize = 1;

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
    /// Write these segments as one flush; `held` is their rows' memory, given back once they
    /// are written but for the windows' share, which is given back once the windows have it.
    Flush {
        segments: Vec<BufferedSegment>,
        held: Reservation,
        /// The cumulative points taken up to this flush, when it holds all of them: marked
        /// written once it is.
        sealed: Option<SealedPoints>,
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

/// What the writer sends the windows' thread, in order.
enum Settle {
    /// Written segments (only their [`WINDOW_INPUTS`] left) and those tables' memory.
    Flush {
        flushes: Vec<SegmentFlush<PartitionKey>>,
        held: Reservation,
    },
    Sync {
        done: Sender<Synced>,
    },
    Finish {
        close_windows: bool,
        written: FlushTotals,
        done: Sender<Result<FlushTotals, String>>,
    },
}

pub struct Writer {
    writes: SegmentWrites,
    settle: Sender<Settle>,
    windows: JoinHandle<Settlement<PartitionKey>>,
    /// Shared with the sink, the windows' thread and the consuming task, which stop on it.
    failure: Arc<OnceLock<SinkFailure>>,
    /// The first error: every flush after it is dropped (not committed), and replayed on
    /// restart.
    failed: Option<String>,
}

impl Writer {
    /// The writer, with its windows' thread started.
    pub fn new(
        durable: DurablePath<PartitionKey>,
        failure: Arc<OnceLock<SinkFailure>>,
    ) -> Result<Self, EngineError> {
        let (writes, settlement) = durable.into_stages();
        let (settle, queue) = crossbeam_channel::bounded(SETTLE_QUEUE);
        let windows = WindowFeed {
            settlement,
            failure: failure.clone(),
            failed: None,
        };
        let windows = std::thread::Builder::new()
            .name("burnrate-windows".into())
            .spawn(move || windows.run(queue))
            .map_err(|e| EngineError::Kafka(format!("cannot start the windows' thread: {e}")))?;
        Ok(Writer {
            writes,
            settle,
            windows,
            failure,
            failed: None,
        })
    }

    /// Takes jobs until the sink hangs up, then hands the durability path back, once the
    /// windows' thread is done with it.
    pub fn run(mut self, jobs: Receiver<Job>) -> DurablePath<PartitionKey> {
        for job in jobs {
            match job {
                Job::Flush {
                    segments,
                    held,
                    sealed,
                } => {
                    // The windows' thread failed: nothing after it will be committed.
                    if self.failed.is_none()
                        && let Some(failure) = self.failure.get()
                    {
                        self.failed = Some(failure.message.clone());
                    }
                    if self.failed.is_none()
                        && let Err(error) = self.flush(segments, held)
                    {
                        self.fail(error);
                    }
                    if let (None, Some(sealed)) = (&self.failed, sealed) {
                        sealed.written();
                    }
                }
                Job::Sync { done } => match &self.failed {
                    Some(error) => {
                        let _ = done.send(Err(error.clone()));
                    }
                    None => self.hand_over(Settle::Sync { done }),
                },
                Job::Finish {
                    close_windows,
                    done,
                } => match &self.failed {
                    Some(error) => {
                        let _ = done.send(Err(error.clone()));
                    }
                    None => {
                        let written = self.writes.take_written();
                        self.hand_over(Settle::Finish {
                            close_windows,
                            written,
                            done,
                        });
                    }
                },
            }
        }
        drop(self.settle);
        let settlement = match self.windows.join() {
            Ok(settlement) => settlement,
            // The sink reads a panic of this thread as the end of the windows.
            Err(panic) => std::panic::resume_unwind(panic),
        };
        DurablePath::from_stages(self.writes, settlement)
    }

    /// Sends `job` to the windows' thread. If that is gone (it panicked: a failure keeps it
    /// taking jobs), the job's sender hears so by its answer channel closing, and the writer
    /// fails.
    fn hand_over(&mut self, job: Settle) {
        if self.settle.send(job).is_err() {
            self.fail(EngineError::Sink {
                message: "the windows' thread stopped".into(),
                // It panicked, which the same input would make it do again.
                retryable: false,
            });
        }
    }

    fn fail(&mut self, error: EngineError) {
        self.failed = Some(leave_failure(&self.failure, &error, "writer"));
    }

    /// Writes every segment as one durable step (each table's files of every partition in
    /// one log commit), then hands what the windows read to the windows' thread, which feeds
    /// them as one micro-batch (one aggregation and one checkpoint however many partitions
    /// flush) and reports their offsets as durable.
    fn flush(
        &mut self,
        segments: Vec<BufferedSegment>,
        mut held: Reservation,
    ) -> Result<(), EngineError> {
        let mut flushes = Vec::with_capacity(segments.len());
        let mut firsts = Vec::with_capacity(segments.len());
        for segment in segments {
            let (topic, partition) = &segment.key;
            firsts.push(segment.first);
            flushes.push(SegmentFlush {
                name: segment_name(topic, *partition, segment.first, segment.last),
                segment: segment.buffer.into_segment()?,
                origin: window_origin(topic, *partition),
                window_position: segment.last,
                key: segment.key.clone(),
                position: segment.last + 1,
            });
        }
        self.writes.write(&flushes)?;
        for (flush, first) in flushes.iter().zip(firsts) {
            let (topic, partition) = &flush.key;
            tracing::info!(topic = %topic, partition, first, last = flush.window_position, "segment written");
        }
        // The rest is on disk: its memory goes back now, the windows' share once they have it.
        let mut windowed = 0;
        for flush in &mut flushes {
            flush
                .segment
                .tables
                .retain(|table, _| WINDOW_INPUTS.contains(table));
            windowed += flush
                .segment
                .tables
                .values()
                .flatten()
                .map(RecordBatch::get_array_memory_size)
                .sum::<usize>();
        }
        held.resize(windowed.min(held.bytes()));
        self.hand_over(Settle::Flush { flushes, held });
        Ok(())
    }
}

/// The windows' thread: feeds written flushes to the windows and reports their offsets, in the
/// order they were written.
struct WindowFeed {
    settlement: Settlement<PartitionKey>,
    failure: Arc<OnceLock<SinkFailure>>,
    failed: Option<String>,
}

impl WindowFeed {
    fn run(mut self, jobs: Receiver<Settle>) -> Settlement<PartitionKey> {
        for job in jobs {
            match job {
                Settle::Flush { flushes, held } => {
                    if self.failed.is_none()
                        && let Err(error) = self.settlement.settle(&flushes)
                    {
                        self.fail(error);
                    }
                    // The windows' share, after the windows have it: released at the write, the
                    // source took that much more while the aggregation still held it.
                    drop(held);
                }
                Settle::Sync { done } => {
                    let answer = self
                        .answer()
                        .map(|()| self.settlement.windows().positions());
                    let _ = done.send(answer);
                }
                Settle::Finish {
                    close_windows,
                    written,
                    done,
                } => {
                    if close_windows
                        && self.failed.is_none()
                        && let Err(error) = self.close_windows()
                    {
                        self.fail(error);
                    }
                    let _ = done.send(self.answer().map(|()| written));
                }
            }
        }
        self.settlement
    }

    fn answer(&self) -> Result<(), String> {
        match &self.failed {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    fn fail(&mut self, error: EngineError) {
        self.failed = Some(leave_failure(&self.failure, &error, "windows"));
    }

    fn close_windows(&mut self) -> Result<(), EngineError> {
        // The end of the input: no event can still arrive on time for the open windows.
        let closed = self.settlement.windows_mut().close_all()?;
        self.settlement.health().windowed(closed, 0);
        Ok(())
    }
}

/// Logs `error` as the `stage` thread's and leaves it for the sink and the consuming task (the
/// first error stays); its message, which the thread answers with from then on.
fn leave_failure(failure: &OnceLock<SinkFailure>, error: &EngineError, stage: &str) -> String {
    tracing::error!(stage, error = %error, retryable = error.is_retryable(), "kafka writer failed; nothing after this is committed");
    let _ = failure.set(SinkFailure {
        message: error.to_string(),
        retryable: error.is_retryable(),
    });
    error.to_string()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::stream::delta_state::DeltaState;

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
        let mut delta = DeltaState::in_memory();
        for offset in first..=last {
            let decoded = decoded_log_record(&format!("message {offset}"));
            buffer.add_decoded(decoded, &mut delta, 0, None).unwrap();
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
        let durable = Writer::new(durable, failure.clone()).unwrap().run(queue);
        (durable, commits, failure)
    }

    fn flush(budget: &Arc<MemoryBudget>, first: i64, last: i64) -> Job {
        let segment = segment(first, last);
        let mut held = budget.reservation();
        held.force(segment.buffer.memory);
        Job::Flush {
            segments: vec![segment],
            held,
            sealed: None,
        }
    }

    fn sync() -> (Job, Receiver<Synced>) {
        let (done, answer) = crossbeam_channel::bounded(1);
        (Job::Sync { done }, answer)
    }

    /// Two flushes, a sync between them and the end: where the first fails, the sync's and the
    /// end's answers.
    fn a_failing_run(
        budget: &Arc<MemoryBudget>,
    ) -> (
        Vec<Job>,
        Receiver<Synced>,
        Receiver<Result<FlushTotals, String>>,
    ) {
        let (first_sync, first) = sync();
        let (finish, finished) = crossbeam_channel::bounded(1);
        let jobs = vec![
            flush(budget, 0, 2),
            first_sync,
            flush(budget, 3, 3),
            Job::Finish {
                close_windows: true,
                done: finish,
            },
        ];
        (jobs, first, finished)
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
        let (jobs, first, finished) = a_failing_run(&budget);
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

    #[test]
    fn a_window_feed_that_fails_commits_nothing_after_it() {
        let dir = tempfile::tempdir().unwrap();
        // The windows' checkpoint cannot be written: a directory holds its temporary name.
        std::fs::create_dir_all(dir.path().join("_burnrate/windows/test.parquet.tmp")).unwrap();
        let budget = MemoryBudget::for_memory_limit(512 << 20);
        let (jobs, first, finished) = a_failing_run(&budget);
        let (_, commits, failure) = write(dir.path(), dir.path(), jobs);
        let error = first.recv().unwrap().unwrap_err();
        assert!(
            error.contains("test.parquet"),
            "the error names where: {error}"
        );
        assert_eq!(
            failure.get().map(|f| f.message.clone()),
            Some(error),
            "the failure is left for the consuming task"
        );
        assert!(finished.recv().unwrap().is_err());
        assert!(commits.is_empty(), "no offset is reported durable");
        assert_eq!(budget.used(), 0, "every flush's memory is given back");
    }
}
