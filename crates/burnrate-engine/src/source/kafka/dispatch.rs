//! Hands consumed messages to the decode stage and the sink, a run at a time.
//!
//! A run is messages of one partition consumed one after another (librdkafka delivers what it
//! fetched of a partition in a row), decoded together onto one set of Arrow builders: a busy
//! topic of small exports then costs a batch per table per run, not per message. A run is cut
//! where the partition changes, at `RUN_MESSAGES` or `RUN_BYTES`, where a replay reaches the
//! windows' position, when it has waited `RUN_LINGER`, and before any step that must come after
//! every message consumed so far (a flush, a revoke, the end).
//!
//! Shared by the consuming task and the rebalance callback (which runs inside the consuming
//! task's `recv`), so a revoke always follows the runs before it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use burnrate_otlp::PayloadHint;
use crossbeam_channel::Sender;

use super::PartitionKey;
use super::sink::Step;
use crate::budget::{MemoryBudget, Reservation};
use crate::decode::DecodePool;

/// The most messages, and message bytes, in one run. Measured both ways in a catch-up
/// (`kafka_throughput`, 360,000 messages, 2026-12-06): runs of 4 MiB and 1,024 messages went
/// 8.5% slower and peaked at 511 MiB instead of 460 (larger builders, less of a run in the
/// cache); runs of 256 KiB went 13% slower (four times the batches, each encoded and windowed
/// with its own fixed cost). See docs/benchmarks.md.
const RUN_MESSAGES: usize = 256;
const RUN_BYTES: usize = 1 << 20;
/// A run waits at most this long for more messages before it is handed on.
pub const RUN_LINGER: Duration = Duration::from_millis(20);

/// The sink is gone: it failed, and the consuming task reports why.
#[derive(Debug)]
pub struct SinkStopped;

struct Run {
    key: PartitionKey,
    hint: PayloadHint,
    first: i64,
    last: i64,
    exports: Vec<(i64, Vec<u8>)>,
    bytes: usize,
    held: Reservation,
    started: Instant,
}

pub struct Dispatcher {
    decode: DecodePool,
    steps: Sender<Step>,
    budget: Arc<MemoryBudget>,
    run: Option<Run>,
    /// Per partition being replayed, the last offset its windows already saw: a run ends
    /// there, so the sink can end a segment there.
    replay_until: BTreeMap<PartitionKey, i64>,
}

impl Dispatcher {
    pub fn new(decode: DecodePool, steps: Sender<Step>, budget: Arc<MemoryBudget>) -> Self {
        Dispatcher {
            decode,
            steps,
            budget,
            run: None,
            replay_until: BTreeMap::new(),
        }
    }

    /// Takes one message. Its bytes are held in the budget whatever it says: they are in
    /// memory already, and the consuming task pauses the partitions if that filled it.
    pub fn take(
        &mut self,
        key: PartitionKey,
        offset: i64,
        payload: Vec<u8>,
        hint: PayloadHint,
    ) -> Result<(), SinkStopped> {
        let replayed_to = self.replay_until.get(&key).copied();
        let cut = self.run.as_ref().is_some_and(|run| {
            run.key != key || replayed_to.is_some_and(|to| run.last <= to && offset > to)
        });
        if cut {
            self.hand_on()?;
        }
        if replayed_to.is_some_and(|to| offset > to) {
            self.replay_until.remove(&key);
        }
        let budget = &self.budget;
        let run = self.run.get_or_insert_with(|| Run {
            key,
            hint,
            first: offset,
            last: offset,
            exports: Vec::new(),
            bytes: 0,
            held: budget.reservation(),
            started: Instant::now(),
        });
        run.last = offset;
        run.bytes += payload.len();
        run.held.force(payload.len());
        run.exports.push((offset, payload));
        if run.exports.len() >= RUN_MESSAGES || run.bytes >= RUN_BYTES {
            self.hand_on()?;
        }
        Ok(())
    }

    /// Whether a run has waited `RUN_LINGER`, or is waiting at all.
    pub fn run_waiting(&self) -> Option<Duration> {
        self.run.as_ref().map(|run| run.started.elapsed())
    }

    /// Hands the run being gathered to the decode stage and the sink.
    pub fn hand_on(&mut self) -> Result<(), SinkStopped> {
        let Some(run) = self.run.take() else {
            return Ok(());
        };
        let decoding = self.decode.submit(run.exports, run.hint, run.held);
        self.steps
            .send(Step::Run {
                key: run.key,
                first: run.first,
                last: run.last,
                decoding,
            })
            .map_err(|_| SinkStopped)
    }

    /// Sends `step` after every message taken so far.
    pub fn send(&mut self, step: Step) -> Result<(), SinkStopped> {
        self.hand_on()?;
        self.steps.send(step).map_err(|_| SinkStopped)
    }

    /// `key` is replayed from before `position`, the last offset its windows saw.
    pub fn replay_until(&mut self, key: PartitionKey, position: i64) {
        self.replay_until.insert(key, position);
    }
}
