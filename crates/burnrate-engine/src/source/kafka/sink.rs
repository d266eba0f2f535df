//! The Kafka sink stage: collects decoded exports in the order they were consumed, converts
//! cumulative metrics, buffers one segment per partition, and flushes segments through the
//! durability path every source takes ([`crate::source::durable`]): written, fed to the usage
//! windows, their offsets reported to the commit coordinator.
//!
//! It runs on a thread of its own, so the consuming task keeps fetching and the decode workers
//! keep decoding while a segment is encoded and fsynced. Everything it is sent arrives in one
//! queue in consumption order, so a partition's messages are buffered in offset order and a
//! rebalance's flush comes after every message consumed before it.
//!
//! Must not know: the consumer, its rebalances or its commits.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use burnrate_otlp::DeltaTracker;
use crossbeam_channel::{Receiver, Sender};

use super::{KafkaRunSummary, PartitionKey, segment_name, window_origin};
use crate::EngineError;
use crate::budget::{MemoryBudget, Reservation};
use crate::decode::{Pending, Undecodable};
use crate::sink::dead_letters::DeadLetter;
use crate::sink::table_buffer::TableBuffer;
use crate::source::durable::{DurablePath, SegmentFlush};
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
    /// The flush interval passed: write every segment.
    Flush,
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
    Tracker(DeltaTracker),
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

/// Where segments go, and when they are due.
pub struct SinkSetup {
    /// Writes segments, feeds the windows and reports offsets to the consuming task's
    /// coordinator.
    pub durable: DurablePath<PartitionKey>,
    pub budget: Arc<MemoryBudget>,
    /// Flush once this many message bytes (as decoded) are buffered over all partitions.
    pub flush_bytes: usize,
    /// Where the sink's first error is left for the consuming task, which stops on it.
    pub failure: Arc<OnceLock<SinkFailure>>,
}

pub struct KafkaSink {
    setup: SinkSetup,
    tracker: DeltaTracker,
    segments: BTreeMap<PartitionKey, PartitionSegment>,
    /// The buffered rows' memory, held against the budget.
    buffered: Reservation,
    /// Flush once the buffered rows take this much memory: a quarter of the budget, so the
    /// rest is free for messages in flight and for the flush itself.
    flush_memory: usize,
    summary: KafkaRunSummary,
    /// The first error: everything after it is dropped (not committed), and replayed on restart.
    failed: Option<String>,
}

impl KafkaSink {
    pub fn new(setup: SinkSetup) -> Self {
        let flush_memory = setup.budget.limit() / 4;
        KafkaSink {
            buffered: setup.budget.reservation(),
            setup,
            tracker: DeltaTracker::new(),
            segments: BTreeMap::new(),
            flush_memory,
            summary: KafkaRunSummary::default(),
            failed: None,
        }
    }

    /// Takes steps until `Finish` (or until the consuming side is gone), then hands the window
    /// stage back for its last push.
    pub fn run(mut self, steps: Receiver<Step>) -> WindowStage {
        for step in steps {
            if self.step(step) {
                break;
            }
        }
        self.setup.durable.into_parts().0
    }

    /// One step; whether it was the last.
    fn step(&mut self, step: Step) -> bool {
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
            Step::Flush => {
                if self.failed.is_none()
                    && let Err(error) = self.flush(None)
                {
                    self.fail(error);
                }
            }
            Step::Revoke { keys, done } => {
                let _ = done.send(self.answer(|sink| sink.flush(Some(&keys))));
            }
            Step::Barrier { done } => {
                let flushed = self.answer(|sink| sink.flush(None));
                let _ = done.send(flushed.map(|()| self.setup.durable.windows().positions()));
            }
            Step::Tracker(tracker) => self.tracker = tracker,
            Step::Finish {
                close_windows,
                done,
            } => {
                let finished = self.answer(|sink| {
                    sink.flush(None)?;
                    if close_windows {
                        // The end of the input: no event can still arrive on time for the
                        // open windows.
                        let closed = sink.setup.durable.windows_mut().close_all()?;
                        sink.setup.durable.health().windowed(closed, 0);
                    }
                    Ok(())
                });
                let _ = done.send(finished.map(|()| KafkaRunSummary {
                    written: self.setup.durable.take_written(),
                    ..self.summary.clone()
                }));
                return true;
            }
        }
        false
    }

    fn fail(&mut self, error: EngineError) {
        tracing::error!(error = %error, retryable = error.is_retryable(), "kafka sink failed; nothing after this is committed");
        let _ = self.setup.failure.set(SinkFailure {
            message: error.to_string(),
            retryable: error.is_retryable(),
        });
        self.failed = Some(error.to_string());
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
        let fed = self
            .setup
            .durable
            .windows()
            .position(&window_origin(&key.0, key.1));
        if let (Some(fed), Some(segment)) = (fed, self.segments.get(&key))
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
            segment
                .buffer
                .add_decoded(decoded, &mut self.tracker, None)?;
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
        if bytes >= self.setup.flush_bytes || memory >= self.flush_memory {
            self.flush(None)?;
        }
        Ok(())
    }

    fn buffered_size(&self) -> (usize, usize) {
        self.segments.values().fold((0, 0), |(bytes, memory), s| {
            (bytes + s.buffer.bytes, memory + s.buffer.memory)
        })
    }

    /// Writes the segments of `keys` (all when `None`), feeds them to the windows as one
    /// micro-batch (one aggregation and one checkpoint however many partitions flush), and
    /// reports their offsets as durable.
    fn flush(&mut self, keys: Option<&[PartitionKey]>) -> Result<(), EngineError> {
        let keys: Vec<PartitionKey> = match keys {
            Some(keys) => keys.to_vec(),
            None => self.segments.keys().cloned().collect(),
        };
        let mut written = Vec::new();
        for key in keys {
            let Some(segment) = self.segments.remove(&key) else {
                continue;
            };
            let (topic, partition) = &key;
            let flush = SegmentFlush {
                name: segment_name(topic, *partition, segment.first, segment.last),
                segment: segment.buffer.into_segment()?,
                origin: window_origin(topic, *partition),
                window_position: segment.last,
                key: key.clone(),
                position: segment.last + 1,
            };
            self.setup.durable.write(&flush)?;
            tracing::info!(topic = %topic, partition, first = segment.first, last = segment.last, "segment written");
            written.push(flush);
        }
        self.setup.durable.settle(&written)?;
        // The written rows stay reserved until the windows have them: released at the write,
        // the source took that much more while the aggregation still held them.
        self.buffered.resize(self.buffered_size().1);
        Ok(())
    }
}
