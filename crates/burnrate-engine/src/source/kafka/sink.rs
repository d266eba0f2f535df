//! The Kafka sink stage: collects decoded exports in the order they were consumed, converts
//! cumulative metrics, buffers one segment per partition, and hands the segments, flush by
//! flush, to the writer stage ([`super::writer`]), which takes them through the durability path
//! every source shares.
//!
//! It runs on a thread of its own, so the consuming task keeps fetching and the decode workers
//! keep decoding while it buffers. Everything it is sent arrives in one queue in consumption
//! order, so a partition's messages are buffered in offset order and a rebalance's flush comes
//! after every message consumed before it; a rebalance, a barrier and the end wait until the
//! writer has made everything before them durable.
//!
//! Must not know: the consumer, its rebalances or its commits; how segments are written.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use super::writer::{BufferedSegment, Job, Synced};
use super::{KafkaRunSummary, PartitionKey, window_origin};
use crate::EngineError;
use crate::budget::{MemoryBudget, Reservation};
use crate::decode::{Pending, Undecodable};
use crate::sink::dead_letters::DeadLetter;
use crate::sink::table_buffer::TableBuffer;
use crate::source::durable::DurablePath;
use crate::stream::delta_state::DeltaState;
use crate::stream::windows::WindowStage;

/// What the consuming task sends the sink, in consumption order.
pub enum Step {
    /// Messages `first..=last` of one partition, consumed in a row, decoding on the pool.
    Run {
        key: PartitionKey,
        first: i64,
        last: i64,
        decoding: Pending,
    },
    /// The flush interval passed (or the source is held for memory): write every segment.
    /// `caught_up`: whether the source had caught up with its partitions' ends (see
    /// `caught_up` in the source), which decides how the metric state holds what was taken
    /// since the last flush.
    Flush { caught_up: bool },
    /// Write these partitions' segments (they are being revoked), then answer.
    Revoke {
        keys: Vec<PartitionKey>,
        done: Sender<Result<(), String>>,
    },
    /// Write every segment, then answer with the windows' positions (origin → last offset
    /// fed): the metric state is about to be rebuilt from disk, and partitions assigned again
    /// must cut their runs where the windows stopped.
    Barrier {
        done: Sender<Result<BTreeMap<String, i64>, String>>,
    },
    /// The cumulative-metric state rebuilt from disk, for the messages that follow.
    DeltaState(DeltaState),
    /// Write everything, close the windows if the input ended, answer with the run's totals,
    /// and stop.
    Finish {
        close_windows: bool,
        done: Sender<Result<KafkaRunSummary, String>>,
    },
}

/// The sink's first error, as the consuming task reports it.
#[derive(Debug, Clone)]
pub struct SinkFailure {
    pub message: String,
    /// See [`EngineError::is_retryable`].
    pub retryable: bool,
}

impl From<&SinkFailure> for EngineError {
    fn from(failure: &SinkFailure) -> Self {
        EngineError::Sink {
            message: failure.message.clone(),
            retryable: failure.retryable,
        }
    }
}

struct PartitionSegment {
    first: i64,
    last: i64,
    buffer: TableBuffer,
}

/// The writer stage as the sink sees it: where flushes go, and the thread to join at the end.
pub struct WriterHandle {
    pub jobs: Sender<Job>,
    pub thread: JoinHandle<DurablePath<PartitionKey>>,
}

/// Where segments go, and when they are due.
pub struct SinkSetup {
    /// Writes segments, feeds the windows and reports offsets to the consuming task's
    /// coordinator.
    pub writer: WriterHandle,
    /// The windows' positions (origin → last offset fed) when the sink starts.
    pub windows_fed: BTreeMap<String, i64>,
    pub budget: Arc<MemoryBudget>,
    /// Flush once this many message bytes (as decoded) are buffered over all partitions.
    pub flush_bytes: usize,
    /// Where the sink's (or the writer's) first error is left for the consuming task, which
    /// stops on it.
    pub failure: Arc<OnceLock<SinkFailure>>,
}

pub struct KafkaSink {
    jobs: Sender<Job>,
    writer: JoinHandle<DurablePath<PartitionKey>>,
    budget: Arc<MemoryBudget>,
    flush_bytes: usize,
    failure: Arc<OnceLock<SinkFailure>>,
    /// The windows' position for each origin once the writer has the flushes handed to it:
    /// the windows are fed by this sink alone, through the writer, in order.
    windows_fed: BTreeMap<String, i64>,
    delta: DeltaState,
    segments: BTreeMap<PartitionKey, PartitionSegment>,
    /// The buffered rows' memory, held against the budget.
    buffered: Reservation,
    /// Flush once the buffered rows take this much memory: a quarter of the budget, so the
    /// rest is free for messages in flight and for the flushes being written.
    flush_memory: usize,
    summary: KafkaRunSummary,
    /// Whether the source had caught up with its partitions' ends at its last word: a flush
    /// then seals what it took as sent within the arrival window, not as a backlog's.
    caught_up: bool,
    /// The first error: everything after it is dropped (not committed), and replayed on restart.
    failed: Option<String>,
}

impl KafkaSink {
    pub fn new(setup: SinkSetup) -> Self {
        let flush_memory = setup.budget.limit() / 4;
        KafkaSink {
            jobs: setup.writer.jobs,
            writer: setup.writer.thread,
            buffered: setup.budget.reservation(),
            budget: setup.budget,
            flush_bytes: setup.flush_bytes,
            failure: setup.failure,
            windows_fed: setup.windows_fed,
            // Replaced by the state rebuilt from disk before the first message.
            delta: DeltaState::in_memory(),
            segments: BTreeMap::new(),
            flush_memory,
            summary: KafkaRunSummary::default(),
            caught_up: false,
            failed: None,
        }
    }

    /// Takes steps until `Finish` (or until the consuming side is gone), then hands the window
    /// stage back for its last push, once the writer is done with it (none if the writer
    /// panicked).
    pub fn run(mut self, steps: Receiver<Step>) -> Option<WindowStage> {
        for step in steps {
            if self.step(step) {
                break;
            }
        }
        drop(self.jobs);
        let durable = self.writer.join().ok()?;
        Some(durable.into_parts().0)
    }

    /// One step; whether it was the last.
    fn step(&mut self, step: Step) -> bool {
        if self.failed.is_none()
            && let Some(failure) = self.failure.get()
        {
            // The writer failed: what is buffered will never be committed.
            let message = failure.message.clone();
            self.drop_everything(message);
        }
        match step {
            Step::Run {
                key,
                first,
                last,
                decoding,
            } => {
                if self.failed.is_none()
                    && let Err(error) = self.run_of_messages(key, first, last, decoding)
                {
                    self.fail(error);
                }
            }
            Step::Flush { caught_up } => {
                self.caught_up = caught_up;
                if self.failed.is_none()
                    && let Err(error) = self.flush(None)
                {
                    self.fail(error);
                }
            }
            Step::Revoke { keys, done } => {
                let flushed = self.answer(|sink| sink.flush(Some(&keys)));
                let _ = done.send(flushed.and_then(|()| self.sync()).map(|_| ()));
            }
            Step::Barrier { done } => {
                let flushed = self.answer(|sink| sink.flush(None));
                let positions = flushed.and_then(|()| self.sync());
                if let Ok(positions) = &positions {
                    self.windows_fed = positions.clone();
                }
                let _ = done.send(positions);
            }
            Step::DeltaState(delta) => self.delta = delta,
            Step::Finish {
                close_windows,
                done,
            } => {
                let flushed = self.answer(|sink| sink.flush(None));
                let finished = flushed.and_then(|()| {
                    let (answer, written) = crossbeam_channel::bounded(1);
                    self.send(Job::Finish {
                        close_windows,
                        done: answer,
                    })?;
                    written.recv().map_err(|_| self.writer_gone())?
                });
                let _ = done.send(finished.map(|written| KafkaRunSummary {
                    written,
                    ..self.summary.clone()
                }));
                return true;
            }
        }
        false
    }

    fn fail(&mut self, error: EngineError) {
        tracing::error!(error = %error, retryable = error.is_retryable(), "kafka sink failed; nothing after this is committed");
        let _ = self.failure.set(SinkFailure {
            message: error.to_string(),
            retryable: error.is_retryable(),
        });
        self.drop_everything(error.to_string());
    }

    fn drop_everything(&mut self, error: String) {
        self.failed = Some(error);
        self.segments.clear();
        self.buffered.resize(0);
    }

    /// Runs `work` unless an earlier step failed; the error either way, as the consuming task
    /// reports it.
    fn answer(
        &mut self,
        work: impl FnOnce(&mut Self) -> Result<(), EngineError>,
    ) -> Result<(), String> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        if let Err(error) = work(self) {
            self.fail(error);
        }
        match &self.failed {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    /// Waits until the writer has made every flush handed to it durable; the windows'
    /// positions then.
    fn sync(&mut self) -> Synced {
        let (answer, positions) = crossbeam_channel::bounded(1);
        self.send(Job::Sync { done: answer })?;
        let positions = positions.recv().map_err(|_| self.writer_gone())?;
        if let Err(error) = &positions {
            self.drop_everything(error.clone());
        }
        positions
    }

    fn send(&self, job: Job) -> Result<(), String> {
        self.jobs.send(job).map_err(|_| self.writer_gone())
    }

    /// Why the writer hung up: its error if it left one.
    fn writer_gone(&self) -> String {
        match self.failure.get() {
            Some(failure) => failure.message.clone(),
            None => "the kafka writer stopped".into(),
        }
    }

    fn run_of_messages(
        &mut self,
        key: PartitionKey,
        first: i64,
        last: i64,
        decoding: Pending,
    ) -> Result<(), EngineError> {
        let decoding = decoding
            .wait()
            .ok_or_else(|| EngineError::Kafka("the decode workers stopped".into()))?;
        self.summary.messages += decoding.exports as u64;
        self.summary.bytes += decoding.bytes as u64;
        // A replay of messages the windows already saw (written, windowed, then a crash before
        // the commit) must end its segment where they end, so the segment is skipped by the
        // windows as a whole and the next one is fed as a whole. (The consuming task cuts runs
        // there too.)
        let fed = self.windows_fed.get(&window_origin(&key.0, key.1));
        if let (Some(&fed), Some(segment)) = (fed, self.segments.get(&key))
            && segment.last <= fed
            && first > fed
        {
            self.flush(Some(std::slice::from_ref(&key)))?;
        }
        let segment = self
            .segments
            .entry(key.clone())
            .or_insert_with(|| PartitionSegment {
                first,
                last,
                buffer: TableBuffer::default(),
            });
        segment.last = last;
        if let Some(decoded) = decoding.decoded {
            let origin = self.delta.origin(&window_origin(&key.0, key.1));
            segment
                .buffer
                .add_decoded(decoded, &mut self.delta, origin, None)?;
        }
        for Undecodable { id, error, bytes } in decoding.undecodable {
            let offset = id;
            tracing::warn!(topic = %key.0, partition = key.1, offset, error = %error, "dead letter");
            segment.buffer.add_dead(DeadLetter {
                topic: Some(key.0.clone()),
                partition: Some(key.1),
                offset: Some(offset),
                ..DeadLetter::now(
                    format!("{}/{}@{}", key.0, key.1, offset),
                    error.to_string(),
                    bytes,
                )
            });
        }
        // The buffer holds the messages' rows (or their bytes, as dead letters) from now on.
        drop(decoding.held);
        let (bytes, memory) = self.buffered_size();
        self.buffered.resize(memory);
        if bytes >= self.flush_bytes || memory >= self.flush_memory {
            self.flush(None)?;
        }
        Ok(())
    }

    fn buffered_size(&self) -> (usize, usize) {
        self.segments.values().fold((0, 0), |(bytes, memory), s| {
            (bytes + s.buffer.bytes, memory + s.buffer.memory)
        })
    }

    /// Hands the segments of `keys` (all when `None`) to the writer as one flush, their rows'
    /// memory held until the windows have them. Waits only while the writer already holds a
    /// flush besides the one it writes.
    fn flush(&mut self, keys: Option<&[PartitionKey]>) -> Result<(), EngineError> {
        let everything = keys.is_none();
        let keys: Vec<PartitionKey> = match keys {
            Some(keys) => keys.to_vec(),
            None => self.segments.keys().cloned().collect(),
        };
        let mut segments = Vec::with_capacity(keys.len());
        let mut held = self.budget.reservation();
        for key in keys {
            let Some(segment) = self.segments.remove(&key) else {
                continue;
            };
            held.force(segment.buffer.memory);
            let origin = window_origin(&key.0, key.1);
            let fed = self.windows_fed.entry(origin).or_insert(segment.last);
            *fed = (*fed).max(segment.last);
            segments.push(BufferedSegment {
                key,
                first: segment.first,
                last: segment.last,
                buffer: segment.buffer,
            });
        }
        if segments.is_empty() {
            return Ok(());
        }
        // Held by the flush now: the rest stays with the segments still buffered.
        self.buffered.resize(self.buffered_size().1);
        // Only a flush of every segment holds every cumulative point taken so far.
        let sealed = everything.then(|| {
            if self.caught_up {
                self.delta.seal()
            } else {
                self.delta.seal_backlog()
            }
        });
        self.send(Job::Flush {
            segments,
            held,
            sealed,
        })
        .map_err(|message| EngineError::Sink {
            message,
            // The writer is gone: it failed (and the consuming task reports its error,
            // retryable or not), or it panicked, which the same input would do again.
            retryable: false,
        })
    }
}
