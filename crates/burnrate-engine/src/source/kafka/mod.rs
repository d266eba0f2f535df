//! The Kafka source: OTLP exports from the topics the OpenTelemetry Collector's kafka exporter
//! writes, read in a consumer group, with offsets committed only after the Parquet files that
//! hold them are durable.
//!
//! Five stages, with bounded queues between them:
//! - the consuming task (this file) takes messages from librdkafka, reserves their bytes in the
//!   memory budget and hands them to the decode stage, in consumption order;
//! - the decode stage ([`crate::decode`]) turns them into Arrow on every core;
//! - the sink ([`sink`]) collects the results in that order, buffers a segment per partition,
//!   and hands the segments, flush by flush, to
//! - the writer ([`writer`]), which writes each flush as one durable step while the sink
//!   buffers the next, and hands it to
//! - the windows' thread, which feeds it to the windows while the writer writes the next, and
//!   then tells the commit coordinator ([`commit`]), whose offsets the consuming task commits.
//!   The writer and the windows' thread are the two steps of the durability path every source
//!   shares ([`crate::source::durable`]).
//!
//! A segment is named `kafka-<topic>-<partition>-<first offset>-<last offset>`, and once written
//! its offset `last + 1` is committed. A crash between the two leaves files past the committed
//! offset; when a partition is assigned, its committed offset is read once, the partition is
//! consumed from exactly there, and its files starting at or after it are deleted before
//! anything is consumed, so the replay writes them again exactly once.
//! A revoked partition's messages already handed on are decoded, written and committed inside
//! the rebalance callback, before another member can be given the partition; a message of it
//! that arrives after that is dropped undecoded.
//!
//! Memory stays within the budget whatever the lag: librdkafka's prefetch is sized from the
//! budget and reserved in it (more with each partition assigned, or what its queue holds if
//! that is more), every message is reserved until its rows are written, and when the budget is
//! full (or the process nears `memory_limit`; looked at once a turn of the consuming loop,
//! which takes up to [`BURST_BYTES`] of what librdkafka holds) the source stops taking messages
//! and the sink flushes, which brings it down. What librdkafka prefetched meanwhile waits in its
//! queue, so taking messages again is immediate; a hold that lasts [`HOLD_BEFORE_PAUSE`] pauses
//! the assigned partitions, so that the loop polls again. Broker outages are retried by librdkafka;
//! the loop reports itself unready meanwhile and resumes by itself.
//!
//! Cumulative metrics need every point of a series in one consumer: configure the Collector's
//! kafka exporter to partition metrics by resource attributes when running several replicas.
//! Each flush says whether the source has caught up with its partitions' ends (what is left to
//! read is at most [`CAUGHT_UP_WITHIN`] at the pace since the last flush, or at most
//! [`CAUGHT_UP_MESSAGES`]): only then does the metric state hold the series sent within the
//! staleness by when they arrived, as the receiver does, so that a client whose clock runs
//! behind the others of its partition keeps its series between exports; a backlog is held by
//! event time alone ([`crate::stream::delta_state`]).

mod commit;
mod dispatch;
mod sink;
mod writer;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use burnrate_otlp::{Decoder, Encoding, PayloadHint, Signal};
use futures::FutureExt;
use rdkafka::client::Client;
use rdkafka::consumer::{
    BaseConsumer, Consumer, ConsumerContext, Rebalance, RebalanceProtocol, StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use self::commit::{OffsetCommits, commit_offsets, offset_commits};
use self::dispatch::{Dispatcher, RUN_LINGER};
use self::sink::{KafkaSink, SinkFailure, SinkSetup, Step, WriterHandle};
use self::writer::{WRITER_QUEUE, Writer};
use crate::EngineError;
use crate::budget::{MemoryBudget, Reservation};
use crate::decode::DecodePool;
use crate::publish::health::PipelineHealth;
use crate::sink::parquet_sink::{ParquetSink, remove_segments};
use crate::sink::table_buffer::FlushTotals;
use crate::source::durable::DurablePath;
use crate::stream::delta_state::{DEFAULT_STALENESS, DeltaState};
use crate::stream::windows::WindowStage;

pub const KAFKA_SEGMENT_PREFIX: &str = "kafka-";
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// A draining run given no partition by then checks that its topics exist.
const ASSIGNMENT_CHECK: Duration = Duration::from_secs(10);
/// How long a draining run past the end of a partition no fetch has reported yet waits without
/// a message before it trusts the ends it has. The end a broker lists is not enough: Tansu 0.6
/// lists the base offset of a partition's last batch plus one, short of the batch's other
/// records, and a drain that trusted it stopped early whenever a fetch took longer than this
/// wait. A partition whose end a fetch since its assignment reported needs no wait (see
/// [`DrainTarget::fetched`]): when every drain waited this long, the Kafka bench's
/// million-message round spent 1.1 s of its 19.9 s between its last message and its end, and
/// 0.06 to 0.10 s since (2026-12-05, four runs, docs/benchmarks.md).
const DRAIN_SETTLE: Duration = Duration::from_secs(1);
/// Longest pause between retries while the broker is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Bytes of messages librdkafka already holds that one turn of the consuming loop takes.
const BURST_BYTES: usize = 1 << 20;
/// The source has caught up when what is left to read of its partitions would take at most
/// this long at the pace since the last flush, or is at most [`CAUGHT_UP_MESSAGES`].
const CAUGHT_UP_WITHIN: Duration = Duration::from_secs(1);
/// Messages left that count as caught up whatever the pace: a live stream's flush may look
/// between a fetch and the turn that takes it, and a backlog is far more.
const CAUGHT_UP_MESSAGES: u128 = 1_000;

/// One topic, and what its messages hold when known; what is not given is read from each
/// payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaTopic {
    pub name: String,
    #[serde(default)]
    pub signal: Option<Signal>,
    #[serde(default)]
    pub encoding: Option<Encoding>,
}

impl KafkaTopic {
    /// A topic whose signal and encoding are detected per message.
    pub fn named(name: &str) -> Self {
        KafkaTopic {
            name: name.to_string(),
            signal: None,
            encoding: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSourceConfig {
    pub brokers: String,
    pub group_id: String,
    pub topics: Vec<KafkaTopic>,
    /// Extra librdkafka properties (`security.protocol`, `sasl.mechanism`, `ssl.ca.location`,
    /// ...). A value `env:NAME` is read from the environment, `file:PATH` from a file, so
    /// secrets never sit in the configuration; values are never logged.
    pub client: BTreeMap<String, String>,
    /// Flush every partition's segment at least this often, in milliseconds (default 5000).
    pub flush_interval_ms: u64,
    /// Flush once this many message bytes (as decoded) are buffered over all partitions
    /// (default 32 MiB); a quarter of the memory budget in buffered rows flushes too.
    pub flush_bytes: usize,
    /// Largest message taken, in bytes once inflated (default 64 MiB); a larger one is a dead
    /// letter.
    pub max_payload_bytes: usize,
    /// Threads decoding messages; 0 (the default) means one per core.
    pub decode_threads: usize,
    /// How long (seconds of event time) a cumulative metric series may go unseen before its
    /// last point leaves memory; one that comes back later is read back from `metric_points`,
    /// a query each time. 0 keeps every series, and memory grows with every session. Default:
    /// 3600.
    pub cumulative_staleness_seconds: u64,
}

impl Default for KafkaSourceConfig {
    fn default() -> Self {
        // The Collector's topic names tell the signal; the encoding is read from each payload
        // (`otlp_json` starts with `{`, `otlp_proto` never does), so either exporter setting works.
        let topic = |name: &str, signal| KafkaTopic {
            name: name.into(),
            signal: Some(signal),
            encoding: None,
        };
        KafkaSourceConfig {
            brokers: "127.0.0.1:9092".into(),
            group_id: "burnrate".into(),
            topics: vec![
                topic("otlp_logs", Signal::Logs),
                topic("otlp_metrics", Signal::Metrics),
                topic("otlp_spans", Signal::Traces),
            ],
            client: BTreeMap::new(),
            flush_interval_ms: 5_000,
            flush_bytes: 32 << 20,
            max_payload_bytes: burnrate_otlp::DEFAULT_MAX_PAYLOAD_BYTES,
            decode_threads: 0,
            cumulative_staleness_seconds: DEFAULT_STALENESS.as_secs(),
        }
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct KafkaRunSummary {
    pub messages: u64,
    pub bytes: u64,
    /// Uncommitted files of an earlier, interrupted run that were removed before replaying.
    pub orphans_removed: u64,
    pub written: FlushTotals,
    /// With `--drain`: every partition held at the end, with the end it was read to (see
    /// [`DrainTarget`]); empty for a run that was stopped.
    pub drained: Vec<PartitionEnd>,
}

/// How far a draining run read one partition: every offset below `end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionEnd {
    pub topic: String,
    pub partition: i32,
    pub end: i64,
}

/// Attempts at a run's last offset commit, the first included, and the wait before the
/// second (doubling after): up to 1.5 s in all, well within the shutdown grace.
const FINAL_COMMIT_ATTEMPTS: u32 = 5;
const FINAL_COMMIT_BACKOFF: Duration = Duration::from_millis(100);

pub(crate) type PartitionKey = (String, i32);

fn kafka(e: rdkafka::error::KafkaError) -> EngineError {
    EngineError::Kafka(e.to_string())
}

/// The window stage's name for a partition; positions are offsets.
fn window_origin(topic: &str, partition: i32) -> String {
    format!("kafka/{topic}/{partition}")
}

pub fn segment_name(topic: &str, partition: i32, first: i64, last: i64) -> String {
    format!("{KAFKA_SEGMENT_PREFIX}{topic}-{partition:05}-{first:020}-{last:020}")
}

/// `(first, last)` of a segment of `topic`/`partition`, if `segment` is one.
fn parse_segment(segment: &str, topic: &str, partition: i32) -> Option<(i64, i64)> {
    let prefix = format!("{KAFKA_SEGMENT_PREFIX}{topic}-{partition:05}-");
    let (first, last) = segment.strip_prefix(&prefix)?.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?))
}

/// A partition's app id in the positions table (`sink::table_log::POSITIONS_DIR`).
pub(crate) fn position_app_id(group: &str, topic: &str, partition: i32) -> String {
    format!("kafka/{group}/{topic}/{partition}")
}

/// `(topic, partition, last)` of any Kafka segment (topic names may hold `-`).
pub(crate) fn segment_position(segment: &str) -> Option<(String, i32, i64)> {
    let rest = segment.strip_prefix(KAFKA_SEGMENT_PREFIX)?;
    let mut fields = rest.rsplitn(4, '-');
    let last = fields.next()?.parse().ok()?;
    let _first: i64 = fields.next()?.parse().ok()?;
    let partition = fields.next()?.parse().ok()?;
    let topic = fields.next()?;
    Some((topic.to_string(), partition, last))
}

/// Deletes this partition's files that start at or after `resume_at`: written, never committed.
fn remove_orphans(
    root: &Path,
    topic: &str,
    partition: i32,
    resume_at: i64,
) -> Result<usize, EngineError> {
    remove_segments(root, |segment, temporary| {
        parse_segment(segment, topic, partition)
            .is_some_and(|(first, _)| temporary || first >= resume_at)
    })
}

/// A partition assigned since the consuming task last looked.
struct NewlyAssigned {
    key: PartitionKey,
    /// The offset it was assigned at (`None`: nothing committed, so from the start).
    committed: Option<i64>,
    /// The high watermark librdkafka held for it before the assignment, read before any fetch
    /// of this one (see [`DrainTarget::assigned_high`]).
    assigned_high: Option<i64>,
}

/// What the rebalance callbacks leave for the consuming task.
#[derive(Default)]
struct Rebalances {
    /// Partitions assigned since the loop last looked: their orphans must go first.
    newly_assigned: Vec<NewlyAssigned>,
    revoked: Vec<PartitionKey>,
    /// The partitions this member holds now, with the offset each was assigned at: a message
    /// of any other is not decoded.
    assigned: BTreeMap<PartitionKey, Option<i64>>,
    /// A flush that failed inside a callback, reported by the loop.
    error: Option<String>,
}

struct SourceContext {
    rebalances: Arc<Mutex<Rebalances>>,
    dispatch: Arc<Mutex<Dispatcher>>,
    commits: OffsetCommits,
    health: Arc<PipelineHealth>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock is a bug elsewhere; the data behind it is still valid.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ClientContext for SourceContext {
    fn stats(&self, statistics: Statistics) {
        // An idle consumer gets no message to prove the broker is back; its connection does.
        // (librdkafka's internal and logical brokers are always "UP"; only real ones count.)
        let connected = statistics
            .brokers
            .values()
            .any(|b| b.state == "UP" && matches!(b.source.as_str(), "learned" | "configured"));
        if connected && !self.health.is_ready() {
            self.health.set_ready();
        }
        let assigned = lock(&self.rebalances).assigned.clone();
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                let key = (topic.clone(), *partition);
                if let Some(lag) = consumer_lag(p, assigned.get(&key).copied().flatten()) {
                    self.health.set_lag(topic, *partition, lag);
                }
            }
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.health.source_error();
        self.health.set_not_ready(format!("kafka: {reason}"));
        tracing::warn!(error = %error, reason, "kafka client error; retrying");
    }
}

/// Messages between a partition's committed offset and its end. librdkafka knows the committed
/// offset once this member committed the partition; until then (burnrate positions an assigned
/// partition itself, so librdkafka never read it) it is the offset the partition was assigned
/// at. librdkafka reports -1 for partitions it does not consume, and an internal partition -1.
fn consumer_lag(
    partition: &rdkafka::statistics::Partition,
    assigned_at: Option<i64>,
) -> Option<i64> {
    if partition.partition < 0 {
        return None;
    }
    if partition.consumer_lag >= 0 {
        return Some(partition.consumer_lag);
    }
    let assigned_at = assigned_at?;
    (partition.hi_offset >= assigned_at).then(|| partition.hi_offset - assigned_at)
}

impl SourceContext {
    /// Sets each partition of `assignment` to its committed offset, read once here (the later of
    /// the group's offset in Kafka and the positions table's), and returns those offsets
    /// (`None`: nothing committed, so from the start). Left to librdkafka, the
    /// assignment would read the committed offsets again on its own: if the partition's last
    /// owner commits between the two reads (a coordinator may hand a partition on before its
    /// revoke has committed), the files removed as orphans and the offset consumed from
    /// disagree, and a range is lost.
    fn position(
        &self,
        consumer: &BaseConsumer<Self>,
        assignment: &mut TopicPartitionList,
    ) -> Result<Vec<(PartitionKey, Option<i64>)>, String> {
        let committed = consumer
            .committed_offsets(assignment.clone(), METADATA_TIMEOUT)
            .map_err(|e| format!("reading the committed offsets of assigned partitions: {e}"))?;
        let keys: Vec<PartitionKey> = committed
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let logged = self
            .commits
            .logged(&keys)
            .map_err(|e| format!("reading the positions table: {e}"))?;
        let mut positions = Vec::new();
        for element in committed.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            let in_kafka = match element.offset() {
                Offset::Offset(n) => Some(n),
                _ => None,
            };
            let in_log = logged.get(&(topic.to_string(), partition)).copied();
            // The log is committed first, so it is never behind the group's offsets unless
            // they were reset or expired (`offsets.retention.minutes`), or a commit to Kafka
            // failed before a crash: then the log knows better, and nothing is read twice.
            let offset = in_kafka.max(in_log);
            if in_log > in_kafka {
                tracing::info!(
                    topic,
                    partition,
                    kafka = in_kafka.unwrap_or(-1),
                    log = in_log.unwrap_or(-1),
                    "resuming from the positions table, ahead of the group's committed offset"
                );
            }
            assignment
                .set_partition_offset(
                    topic,
                    partition,
                    offset.map_or(Offset::Beginning, Offset::Offset),
                )
                .map_err(|e| format!("positioning {topic}/{partition}: {e}"))?;
            positions.push(((topic.to_string(), partition), offset));
        }
        Ok(positions)
    }
}

impl ConsumerContext for SourceContext {
    /// librdkafka's own handling ([`ConsumerContext`]'s default), except that an assignment
    /// is positioned at the committed offsets burnrate read itself (see [`Self::position`]).
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        assignment: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let positions = match self.position(consumer, assignment) {
                    Ok(positions) => positions,
                    Err(error) => {
                        // The loop stops on this before it hands on a message; a restart
                        // retries.
                        lock(&self.rebalances).error = Some(error);
                        return;
                    }
                };
                // Before the assignment starts librdkafka fetching them.
                let highs: Vec<Option<i64>> = positions
                    .iter()
                    .map(|((topic, partition), _)| {
                        fetched_high_watermark(consumer.client(), topic, *partition)
                    })
                    .collect();
                let assigned = if cooperative {
                    consumer.incremental_assign(assignment)
                } else {
                    consumer.assign(assignment)
                };
                let mut rebalances = lock(&self.rebalances);
                for (((topic, partition), committed), assigned_high) in
                    positions.into_iter().zip(highs)
                {
                    tracing::info!(topic = %topic, partition, "partition assigned");
                    let key = (topic, partition);
                    rebalances.assigned.insert(key.clone(), committed);
                    rebalances.newly_assigned.push(NewlyAssigned {
                        key,
                        committed,
                        assigned_high,
                    });
                }
                assigned
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.pre_rebalance(consumer, &Rebalance::Revoke(assignment));
                if cooperative {
                    consumer.incremental_unassign(assignment)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                // As librdkafka's own handling does: give up what is held, the group retries.
                tracing::error!(error = ?other, "kafka rebalance failed; unassigning");
                consumer.unassign()
            }
        };
        if let Err(error) = result {
            lock(&self.rebalances).error = Some(format!("applying a rebalance: {error}"));
        }
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let keys: Vec<PartitionKey> = revoked
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        {
            let mut rebalances = lock(&self.rebalances);
            for key in &keys {
                rebalances.assigned.remove(key);
            }
        }
        // Everything consumed of these partitions is queued ahead of this step: once it is
        // answered, their rows are durable and their offsets reported.
        let (done, answer) = crossbeam_channel::bounded(1);
        let flushed = match lock(&self.dispatch).send(Step::Revoke {
            keys: keys.clone(),
            done,
        }) {
            Ok(()) => answer
                .recv()
                .unwrap_or_else(|_| Err("the sink stopped".into())),
            Err(_) => Err("the sink stopped".into()),
        };
        let committed = flushed.and_then(|()| {
            commit_offsets(&self.commits, consumer, &self.health).map_err(|e| e.to_string())
        });
        let mut rebalances = lock(&self.rebalances);
        if let Err(error) = committed {
            rebalances.error = Some(format!("flushing revoked partitions: {error}"));
        }
        for (topic, partition) in &keys {
            self.health.forget_partition(topic, *partition);
            tracing::info!(topic = %topic, partition, "partition revoked");
        }
        rebalances.revoked.extend(keys);
    }
}

/// Resolves `env:NAME` and `file:PATH` values of client properties.
fn resolve_client_value(key: &str, value: &str) -> Result<String, EngineError> {
    if let Some(name) = value.strip_prefix("env:") {
        return std::env::var(name).map_err(|_| {
            EngineError::Config(format!(
                "kafka client `{key}`: environment variable {name} is not set"
            ))
        });
    }
    if let Some(path) = value.strip_prefix("file:") {
        return std::fs::read_to_string(path)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| {
                EngineError::Config(format!("kafka client `{key}`: cannot read {path}: {e}"))
            });
    }
    Ok(value.to_string())
}

/// Where a draining run stands on one partition: the next offset to read and the end to reach,
/// the larger of the end listed at assignment and the high watermark of the latest fetch.
#[derive(Debug, Clone, Copy)]
struct DrainTarget {
    next: i64,
    end: i64,
    /// The high watermark librdkafka held for the partition when it was assigned: none, or the
    /// last fetch's of an earlier assignment to this consumer (librdkafka keeps it).
    assigned_high: Option<i64>,
    /// Whether `end` is a fetch's of this assignment: the high watermark differs from
    /// `assigned_high`. Such a fetch came after the drain started, so its high watermark is at
    /// or past the end of the backlog the drain was started for. One the same as before may be
    /// an earlier assignment's; the drain then waits for [`DRAIN_SETTLE`], as it once did for
    /// every partition.
    fetched: bool,
}

impl DrainTarget {
    fn new(next: i64, listed_end: i64, assigned_high: Option<i64>) -> Self {
        DrainTarget {
            next,
            end: listed_end,
            assigned_high,
            fetched: false,
        }
    }

    /// Takes in the high watermark of librdkafka's latest fetch of the partition.
    fn fetched_to(&mut self, high: i64) {
        self.end = self.end.max(high);
        self.fetched |= self.assigned_high != Some(high);
    }

    /// Whether the drain is done with the partition, after `quiet` without a message.
    fn reached(&self, quiet: Duration) -> bool {
        self.next >= self.end && (self.fetched || quiet >= DRAIN_SETTLE)
    }
}

/// librdkafka's prefetch: how much it may hold of messages not yet handed to us.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Prefetch {
    /// `queued.max.messages.kbytes`, in bytes: the consumer queue.
    queue: usize,
    /// `fetch.max.bytes`: one fetch response being read.
    fetch: usize,
    /// `max.partition.fetch.bytes`: by which each partition's fetch may overshoot the queue.
    per_partition: usize,
}

impl Prefetch {
    /// An eighth of the budget for the queue and a sixteenth for a fetch, within librdkafka's
    /// own defaults (64 MiB, 50 MiB); at the default 512 MiB `memory_limit`, 21 MiB and 10 MiB.
    fn for_budget(limit: usize) -> Self {
        Prefetch {
            queue: (limit / 8).clamp(1 << 20, 64 << 20),
            fetch: (limit / 16).clamp(1 << 20, 50 << 20),
            per_partition: 1 << 20,
        }
    }

    /// What the client configuration (the user's `client` properties included) leaves.
    fn of(client: &ClientConfig) -> Self {
        let get = |key: &str| client.get(key).and_then(|v| v.parse::<usize>().ok());
        Prefetch {
            queue: get("queued.max.messages.kbytes").map_or(64 << 20, |k| k << 10),
            fetch: get("fetch.max.bytes").unwrap_or(50 << 20),
            per_partition: get("max.partition.fetch.bytes")
                .or_else(|| get("fetch.message.max.bytes"))
                .unwrap_or(1 << 20),
        }
    }

    fn bytes(&self, partitions: usize) -> usize {
        self.queue + self.fetch + partitions * self.per_partition
    }

    /// Whether the prefetch for `partitions` leaves the data in flight [`DATA_FLOOR`] of the
    /// budget: if it does not, the data gets that much beyond it, past the budget.
    fn leaves_room(&self, partitions: usize, limit: usize) -> bool {
        (self.bytes(partitions) as f64) < limit as f64 * (1.0 - DATA_FLOOR)
    }

    /// Refuses client properties whose prefetch alone would take the budget from the data.
    fn check(&self, limit: usize) -> Result<(), EngineError> {
        if self.leaves_room(0, limit) {
            return Ok(());
        }
        Err(EngineError::Config(format!(
            "kafka: librdkafka's prefetch (queued.max.messages.kbytes and fetch.max.bytes: {} MiB) \
             would hold {:.0}% of the {} MiB memory budget, leaving the data in flight less \
             than {:.0}%: lower them or raise memory_limit",
            self.bytes(0) >> 20,
            self.bytes(0) as f64 / limit as f64 * 100.0,
            limit >> 20,
            DATA_FLOOR * 100.0
        )))
    }
}

/// How long the group may take to hand a new member its partitions: the coordinator waits for
/// a member that left without saying so until its session times out, then for the others to
/// rejoin, each within its `max.poll.interval.ms` (10 s and 300 s unless the client properties
/// say otherwise).
fn rebalance_bound(client: &ClientConfig) -> Duration {
    let millis = |key: &str, default: u64| {
        client
            .get(key)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(default)
    };
    Duration::from_millis(
        millis("session.timeout.ms", 45_000) + millis("max.poll.interval.ms", 300_000),
    )
}

/// A draining run waiting for its first partitions. The wait is not a guess at the cause: after
/// `ASSIGNMENT_CHECK` it asks the brokers whether the topics exist, fails at once if none does,
/// and otherwise waits out the longest a rebalance may take, saying so.
struct AssignmentWait {
    rebalance_bound: Duration,
    topics_checked: bool,
}

impl AssignmentWait {
    fn new(rebalance_bound: Duration) -> Self {
        AssignmentWait {
            rebalance_bound,
            topics_checked: false,
        }
    }

    fn check(
        &mut self,
        consumer: &StreamConsumer<SourceContext>,
        config: &KafkaSourceConfig,
        waited: Duration,
    ) -> Result<(), EngineError> {
        if waited < ASSIGNMENT_CHECK {
            return Ok(());
        }
        // Only for the errors: this runs on every turn of the loop until partitions come.
        let names = || {
            let names: Vec<&str> = config.topics.iter().map(|t| t.name.as_str()).collect();
            names.join(", ")
        };
        if !self.topics_checked {
            // Every topic, not the wanted ones by name: a request naming a topic may create it.
            let metadata = consumer
                .fetch_metadata(None, METADATA_TIMEOUT)
                .map_err(kafka)?;
            let existing: BTreeSet<&str> = metadata
                .topics()
                .iter()
                .filter(|t| t.error().is_none() && !t.partitions().is_empty())
                .map(|t| t.name())
                .collect();
            if !config
                .topics
                .iter()
                .any(|t| existing.contains(t.name.as_str()))
            {
                return Err(EngineError::Config(format!(
                    "kafka: none of the topics {} exists on {}: create them, or name the ones the \
                     Collector writes with --topics",
                    names(),
                    config.brokers
                )));
            }
            self.topics_checked = true;
            tracing::info!(
                group = %config.group_id,
                waited_s = waited.as_secs(),
                bound_s = self.rebalance_bound.as_secs(),
                "the topics exist, the group has handed out no partition yet: waiting for its rebalance"
            );
        }
        if waited > self.rebalance_bound {
            return Err(EngineError::Kafka(format!(
                "group {} handed out no partition of {} within {}s, the longest its rebalance may \
                 take (session.timeout.ms plus max.poll.interval.ms): a member of the group may be \
                 stuck",
                config.group_id,
                names(),
                self.rebalance_bound.as_secs()
            )));
        }
        Ok(())
    }
}

/// Stop taking messages once the data's room in the budget is this full, take them again below
/// the second share.
const PAUSE_AT: f64 = 1.0;
const RESUME_AT: f64 = 0.75;
/// The share of the budget the data in flight keeps however much librdkafka's prefetch holds.
const DATA_FLOOR: f64 = 0.25;
/// Stop taking messages once the process's resident size is this share of `memory_limit`
/// (while the data in flight holds at least [`DATA_FLOOR`] of its room, so that writing it
/// frees something), take them again below the second share. The budget counts what the
/// stages hold, not what the allocator keeps or what librdkafka holds beyond its queue
/// (Tansu answers 10 MiB fetches with 70 MB): draining 1 and 2 GiB from Tansu under the 512
/// MiB default peaked at 520 and 528 MiB with the budget alone, 468 and 470 with 0.8 (0.9
/// left 513 and 525: the process grows by tens of MiB between readings and after a hold).
/// Tried and dropped: pausing as soon as the process passed 0.9, which gave back the whole
/// gain of holding and left the peaks at 508-513 MiB. As the decoder and encoders got faster,
/// 0.8 came to peak at 508 MiB (`kafka_memory`, 1 GiB) and 501-520 (`kafka_throughput`, full
/// size); 0.75 at 452-491 and 487-496, a catch-up losing nothing measurable (2026-12-07).
const RESIDENT_HOLD_AT: f64 = 0.75;
const RESIDENT_RESUME_AT: f64 = 0.7;

/// What the budget and the process's size say at one moment.
struct MemoryReading {
    /// Bytes held in the budget, `prefetch` of them by librdkafka.
    used: usize,
    prefetch: usize,
    /// The budget's limit.
    limit: usize,
    /// The resident size's share of `memory_limit`, where known.
    resident: Option<f64>,
}

/// Whether the source should hold off taking messages, given whether it `held` already. The
/// data gets what the prefetch leaves, and never less than [`DATA_FLOOR`] of the budget: no
/// flush frees what librdkafka may hold, so with a prefetch that filled the budget (many
/// partitions, or a budget that shrank as the binary's code paged in) a hold would never end.
/// For the same reason the resident size holds the source only while there is data to write.
fn hold_for_memory(held: bool, memory: &MemoryReading) -> bool {
    let data = memory.used.saturating_sub(memory.prefetch) as f64;
    let room =
        (memory.limit.saturating_sub(memory.prefetch) as f64).max(memory.limit as f64 * DATA_FLOOR);
    let budget_full = data >= room * if held { RESUME_AT } else { PAUSE_AT };
    let resident_high = memory.resident.is_some_and(|share| {
        share
            >= if held {
                RESIDENT_RESUME_AT
            } else {
                RESIDENT_HOLD_AT
            }
    }) && data >= room * DATA_FLOOR;
    budget_full || resident_high
}

/// How long the source may stop taking messages for memory before it pauses the assigned
/// partitions. A hold leaves librdkafka's queue as it is; a pause throws it away, and fetching
/// starts over at the resume: librdkafka took 250 ms to fetch again after each resume, and
/// refetched what it had thrown away, so that a catch-up under the 512 MiB default spent a third
/// of its time with nothing to do (docs/benchmarks.md, 2026-12-04). But a held loop does not
/// poll, and rebalance callbacks run inside the poll: past this, a hold becomes a pause, which
/// polls, so a slow disk does not hold a rebalance up.
const HOLD_BEFORE_PAUSE: Duration = Duration::from_secs(1);

/// How long librdkafka waits to fetch a partition again once its queue is full (its
/// `fetch.queue.backoff.ms`, 1000 by default). The queue is sized from the memory budget
/// (`Prefetch::for_budget`, 20 MiB at 512 MiB), which a catch-up drains in well under a
/// second: with the default, the whole pipeline then waited for the rest of the second, and
/// the machine sat half idle (the `kafka_throughput` bench, docs/benchmarks.md, whose bare
/// consumer baseline gets the same back-off).
pub const FETCH_QUEUE_BACKOFF_MS: u32 = 20;

/// Runs queued for the sink (each up to 256 messages or 1 MiB): enough to keep the decode
/// workers busy while the sink waits for the writer; what they hold is in the memory budget.
const SINK_QUEUE: usize = 64;

/// The consumer loop over one dataset.
pub struct KafkaPipeline {
    consumer: StreamConsumer<SourceContext>,
    dispatch: Arc<Mutex<Dispatcher>>,
    sink: Option<std::thread::JoinHandle<Option<WindowStage>>>,
    /// The window stage, back from the sink once it finished.
    windows: Option<WindowStage>,
    rebalances: Arc<Mutex<Rebalances>>,
    commits: OffsetCommits,
    failure: Arc<OnceLock<SinkFailure>>,
    health: Arc<PipelineHealth>,
    budget: Arc<MemoryBudget>,
    prefetch: Prefetch,
    /// librdkafka's prefetch, held against the budget: what its settings allow for the
    /// partitions assigned, or what its queue holds if that is more.
    prefetch_held: Reservation,
    /// Partitions assigned.
    partitions: usize,
    /// Since when the source has taken no messages for memory.
    held_since: Option<Instant>,
    /// Whether the assigned partitions are paused (a hold that lasted [`HOLD_BEFORE_PAUSE`]).
    paused: bool,
    tracker_loaded: bool,
    orphans_removed: u64,
    config: KafkaSourceConfig,
    output: PathBuf,
    /// The longest a rebalance may take before the group hands partitions out.
    rebalance_bound: Duration,
    /// Messages taken since the last flush.
    taken_since_flush: u64,
    /// Whether the last flush found the source caught up with its partitions' ends.
    caught_up: bool,
}

impl KafkaPipeline {
    pub fn open(
        decoder: Decoder,
        output: &Path,
        config: KafkaSourceConfig,
        health: Arc<PipelineHealth>,
        windows: WindowStage,
        budget: Arc<MemoryBudget>,
    ) -> Result<Self, EngineError> {
        std::fs::create_dir_all(output).map_err(|e| EngineError::io(output, e))?;
        if config.topics.is_empty() {
            return Err(EngineError::Config("kafka: no topics to consume".into()));
        }
        let sized = Prefetch::for_budget(budget.limit());
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("session.timeout.ms", "10000")
            .set(
                "queued.max.messages.kbytes",
                (sized.queue >> 10).to_string(),
            )
            .set("fetch.max.bytes", sized.fetch.to_string())
            .set("max.partition.fetch.bytes", sized.per_partition.to_string())
            .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS.to_string())
            .set("statistics.interval.ms", "5000");
        for (key, value) in &config.client {
            client.set(key, resolve_client_value(key, value)?);
        }
        let prefetch = Prefetch::of(&client);
        prefetch.check(budget.limit())?;
        let rebalance_bound = rebalance_bound(&client);
        let mut prefetch_held = budget.reservation();
        prefetch_held.force(prefetch.bytes(0));

        let rebalances = Arc::new(Mutex::new(Rebalances::default()));
        let commits = offset_commits(output, &config.group_id);
        let failure = Arc::new(OnceLock::new());
        let (steps, queue) = crossbeam_channel::bounded(SINK_QUEUE);
        let windows_fed = windows.positions();
        let writer = Writer::new(
            DurablePath::new(
                ParquetSink::new(output),
                windows,
                health.clone(),
                commits.clone(),
            ),
            failure.clone(),
        )?;
        let (jobs, job_queue) = crossbeam_channel::bounded(WRITER_QUEUE);
        let writer = std::thread::Builder::new()
            .name("burnrate-writer".into())
            .spawn(move || writer.run(job_queue))
            .map_err(|e| EngineError::io(output, e))?;
        let sink = KafkaSink::new(SinkSetup {
            writer: WriterHandle {
                jobs,
                thread: writer,
            },
            windows_fed,
            budget: budget.clone(),
            flush_bytes: config.flush_bytes,
            failure: failure.clone(),
        });
        let sink = std::thread::Builder::new()
            .name("burnrate-kafka-sink".into())
            .spawn(move || sink.run(queue))
            .map_err(|e| EngineError::io(output, e))?;
        let decode = DecodePool::new(decoder, config.decode_threads)
            .map_err(|e| EngineError::io(output, e))?;
        let decode_threads = decode.threads();
        let dispatch = Arc::new(Mutex::new(Dispatcher::new(decode, steps, budget.clone())));
        let consumer: StreamConsumer<SourceContext> = client
            .create_with_context(SourceContext {
                rebalances: rebalances.clone(),
                dispatch: dispatch.clone(),
                commits: commits.clone(),
                health: health.clone(),
            })
            .map_err(kafka)?;
        let topics: Vec<&str> = config.topics.iter().map(|t| t.name.as_str()).collect();
        consumer.subscribe(&topics).map_err(kafka)?;
        tracing::info!(
            decode_threads,
            budget_bytes = budget.limit(),
            prefetch_queue_bytes = prefetch.queue,
            fetch_bytes = prefetch.fetch,
            "kafka source open"
        );
        Ok(KafkaPipeline {
            consumer,
            dispatch,
            sink: Some(sink),
            windows: None,
            rebalances,
            commits,
            failure,
            health,
            budget,
            prefetch,
            prefetch_held,
            partitions: 0,
            held_since: None,
            paused: false,
            tracker_loaded: false,
            orphans_removed: 0,
            config,
            output: output.to_path_buf(),
            rebalance_bound,
            taken_since_flush: 0,
            caught_up: false,
        })
    }

    /// Consumes until `stop` resolves, or with `drain`, until every assigned partition reached
    /// the end offset it had when it was assigned. Flushes and commits before returning.
    pub async fn run(
        &mut self,
        drain: bool,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<KafkaRunSummary, EngineError> {
        tokio::pin!(stop);
        let flush_every = Duration::from_millis(self.config.flush_interval_ms.max(1));
        let mut last_flush = Instant::now();
        let mut targets: BTreeMap<PartitionKey, DrainTarget> = BTreeMap::new();
        let mut backoff = Duration::from_millis(100);
        let started = Instant::now();
        // Time spent waiting for the broker with nothing to do since the last message: work
        // (a commit, a full sink queue, a barrier) and a pause for the budget are not quiet.
        let mut quiet = Duration::ZERO;
        let mut drained = Vec::new();
        let mut assignment = AssignmentWait::new(self.rebalance_bound);
        loop {
            // Assignments are taken before any message of theirs is handed on: the rebalance
            // callback runs inside `recv`, before it returns the new partitions' messages.
            self.take_assignments(&mut targets).await?;
            self.check_failures()?;
            // Between a revoke and the assignment that follows, no partition is held: that is
            // a rebalance under way, not the end of the input.
            if drain
                && self.tracker_loaded
                && !targets.is_empty()
                && targets.values().all(|t| t.reached(quiet))
            {
                let ends: Vec<String> = targets
                    .iter()
                    .map(|((topic, partition), t)| {
                        format!("{topic}/{partition}: {}/{}", t.next, t.end)
                    })
                    .collect();
                tracing::info!(partitions = %ends.join(", "), "drain reached the end of every partition");
                drained = targets
                    .iter()
                    .map(|((topic, partition), t)| PartitionEnd {
                        topic: topic.clone(),
                        partition: *partition,
                        end: t.end,
                    })
                    .collect();
                break;
            }
            if drain && !self.tracker_loaded {
                assignment.check(&self.consumer, &self.config, started.elapsed())?;
            }
            if self.hold_to_budget()? {
                // What fills the budget is mostly rows waiting for their flush: write them now.
                // Waiting for the interval left the source held for up to that long whenever
                // the prefetch held more than half the budget (many partitions, a larger
                // `queued.max.messages.kbytes`): the sink's own threshold was never reached.
                self.flush(&targets, last_flush.elapsed())?;
                last_flush = Instant::now();
            }
            let waiting = lock(&self.dispatch).run_waiting();
            if waiting.is_some_and(|waited| waited >= RUN_LINGER) {
                lock(&self.dispatch)
                    .hand_on()
                    .map_err(|_| self.sink_stopped())?;
            }
            // While held, look at the budget often: the sink frees it flush by flush.
            let held = self.held_since.is_some();
            let tick = if held || waiting.is_some() {
                RUN_LINGER
            } else {
                flush_every.min(Duration::from_millis(200))
            };
            let received = if held && !self.paused {
                // Not polling: what librdkafka fetched waits in its queue for the hold's end.
                tokio::select! {
                    _ = tokio::time::sleep(tick) => None,
                    _ = &mut stop => break,
                }
            } else {
                tokio::select! {
                    message = self.consumer.recv() => Some(message.map(|m| owned(&m))),
                    _ = tokio::time::sleep(tick) => None,
                    _ = &mut stop => break,
                }
            };
            match received {
                Some(Ok((key, offset, payload))) => {
                    backoff = Duration::from_millis(100);
                    quiet = Duration::ZERO;
                    if !self.health.is_ready() {
                        self.health.set_ready();
                    }
                    let mut burst = payload.len();
                    self.take(&mut targets, key, offset, payload).await?;
                    // What librdkafka already holds is taken in this turn, up to BURST_BYTES:
                    // one timer, budget look and commit look for many messages, not one each.
                    while burst < BURST_BYTES {
                        let next = self.consumer.recv().now_or_never();
                        match next.map(|message| message.map(|m| owned(&m))) {
                            Some(Ok((key, offset, payload))) => {
                                burst += payload.len();
                                self.take(&mut targets, key, offset, payload).await?;
                            }
                            Some(Err(e)) => {
                                // Counted and logged as the loop's own arm does; one that lasts
                                // meets that arm, and its back-off, at the next turn's `recv`.
                                self.health.source_error();
                                tracing::warn!(error = %e, "kafka consume error");
                                break;
                            }
                            None => break,
                        }
                    }
                }
                Some(Err(e)) => {
                    // Broker gone, fetch failed, coordinator moving: librdkafka retries; we
                    // wait a little longer each time and keep what we have.
                    self.health.source_error();
                    self.health.set_not_ready(format!("kafka: {e}"));
                    tracing::warn!(error = %e, "kafka consume error; retrying in {backoff:?}");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = &mut stop => break,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                None if held => {}
                None => {
                    quiet += tick;
                    if drain {
                        catch_up_with_broker(&self.consumer, &mut targets);
                    }
                }
            }
            if last_flush.elapsed() >= flush_every {
                self.flush(&targets, last_flush.elapsed())?;
                last_flush = Instant::now();
            }
            commit_offsets(&self.commits, &self.consumer, &self.health)?;
        }
        let mut summary = self.finish(drain)?;
        summary.drained = drained;
        Ok(summary)
    }

    /// Takes a message received: the assignments its `recv` may have brought first, then the
    /// message itself, and moves its partition's drain target past it.
    async fn take(
        &mut self,
        targets: &mut BTreeMap<PartitionKey, DrainTarget>,
        key: PartitionKey,
        offset: i64,
        payload: Vec<u8>,
    ) -> Result<(), EngineError> {
        self.take_assignments(targets).await?;
        if self.dispatch(key.clone(), offset, payload)? {
            self.taken_since_flush += 1;
            if let Some(target) = targets.get_mut(&key) {
                target.next = target.next.max(offset + 1);
            }
        }
        Ok(())
    }

    /// Asks the sink to write every segment, telling it whether the source has caught up with
    /// its partitions' ends over the `since` since the last flush.
    fn flush(
        &mut self,
        targets: &BTreeMap<PartitionKey, DrainTarget>,
        since: Duration,
    ) -> Result<(), EngineError> {
        let taken = std::mem::take(&mut self.taken_since_flush);
        // With no partition held (before the first assignment, or in a rebalance) there is
        // nothing to be caught up with: the last word stands.
        if !targets.is_empty() {
            let left = messages_left(&self.consumer, targets);
            let caught_up = caught_up(left, taken, since);
            if caught_up != self.caught_up {
                self.caught_up = caught_up;
                tracing::info!(
                    caught_up,
                    messages_left = left,
                    messages_taken = taken,
                    since_ms = since.as_millis() as u64,
                    "kafka source caught up with its partitions' ends, or fell behind them"
                );
            }
        }
        self.send(Step::Flush {
            caught_up: self.caught_up,
        })
    }

    /// Hands a message on to be decoded and written; whether it was taken (a message of a
    /// partition no longer assigned is not).
    fn dispatch(
        &mut self,
        key: PartitionKey,
        offset: i64,
        payload: Vec<u8>,
    ) -> Result<bool, EngineError> {
        if !lock(&self.rebalances).assigned.contains_key(&key) {
            self.health.dropped_after_revoke();
            tracing::debug!(topic = %key.0, partition = key.1, offset, "message of a revoked partition dropped");
            return Ok(false);
        }
        let topic = self.config.topics.iter().find(|t| t.name == key.0);
        let hint = PayloadHint {
            encoding: topic.and_then(|t| t.encoding),
            signal: topic.and_then(|t| t.signal),
            max_bytes: self.config.max_payload_bytes,
        };
        self.health.message(payload.len());
        lock(&self.dispatch)
            .take(key, offset, payload, hint)
            .map_err(|_| self.sink_stopped())?;
        Ok(true)
    }

    /// Sends `step` to the sink after every message taken so far.
    fn send(&self, step: Step) -> Result<(), EngineError> {
        lock(&self.dispatch)
            .send(step)
            .map_err(|_| self.sink_stopped())
    }

    fn sink_stopped(&self) -> EngineError {
        match self.failure.get() {
            Some(failure) => failure.into(),
            None => EngineError::Kafka("the sink stopped".into()),
        }
    }

    fn check_failures(&self) -> Result<(), EngineError> {
        if let Some(error) = lock(&self.rebalances).error.take() {
            return Err(EngineError::Kafka(error));
        }
        if self.failure.get().is_some() {
            return Err(self.sink_stopped());
        }
        Ok(())
    }

    /// Stops taking messages when the budget is full and takes them again once the sink's
    /// flushes gave enough back; pauses the assigned partitions if that takes
    /// [`HOLD_BEFORE_PAUSE`]. Whether the hold began just now.
    fn hold_to_budget(&mut self) -> Result<bool, EngineError> {
        // A broker may send far more than the fetch sizes asked for (Tansu sent 70 MB answers
        // to 10 MiB fetches), and a held source leaves it all in librdkafka's queue.
        // What a message in librdkafka's queue weighs: the average of those taken so far.
        let (messages, bytes) = (self.health.messages(), self.health.bytes());
        let queued =
            queued_messages(&self.consumer) as u64 * bytes.checked_div(messages).unwrap_or(0);
        self.prefetch_held
            .resize(self.prefetch.bytes(self.partitions).max(queued as usize));
        let (used, limit) = (self.budget.used(), self.budget.limit());
        self.health.set_memory(used, limit);
        let memory = MemoryReading {
            used,
            prefetch: self.prefetch_held.bytes(),
            limit,
            resident: self.budget.resident_share(),
        };
        let full = hold_for_memory(self.held_since.is_some(), &memory);
        match (full, self.held_since) {
            (true, None) => {
                self.held_since = Some(Instant::now());
                self.health.source_paused(true);
                tracing::debug!(
                    holding = true,
                    used_bytes = used,
                    budget_bytes = limit,
                    resident_share = memory.resident.unwrap_or(0.0),
                    "memory budget"
                );
                Ok(true)
            }
            (true, Some(since)) => {
                if !self.paused && since.elapsed() >= HOLD_BEFORE_PAUSE {
                    self.set_paused(true)?;
                }
                Ok(false)
            }
            (false, Some(_)) => {
                if self.paused {
                    self.set_paused(false)?;
                }
                self.held_since = None;
                self.health.source_paused(false);
                tracing::debug!(
                    holding = false,
                    used_bytes = used,
                    budget_bytes = limit,
                    "memory budget"
                );
                Ok(false)
            }
            (false, None) => Ok(false),
        }
    }

    fn set_paused(&mut self, pause: bool) -> Result<(), EngineError> {
        let assignment = self.consumer.assignment().map_err(kafka)?;
        if pause {
            self.consumer.pause(&assignment).map_err(kafka)?;
        } else {
            self.consumer.resume(&assignment).map_err(kafka)?;
        }
        tracing::debug!(
            paused = pause,
            used_bytes = self.budget.used(),
            budget_bytes = self.budget.limit(),
            "memory budget"
        );
        self.paused = pause;
        Ok(())
    }

    /// Sends every buffered row to disk and commits what that made durable; the windows'
    /// positions, by origin.
    fn barrier(&self) -> Result<BTreeMap<String, i64>, EngineError> {
        let (done, answer) = crossbeam_channel::bounded(1);
        self.send(Step::Barrier { done })?;
        let positions = answer
            .recv()
            .map_err(|_| self.sink_stopped())?
            .map_err(|_| self.sink_stopped())?;
        commit_offsets(&self.commits, &self.consumer, &self.health)?;
        Ok(positions)
    }

    /// The end of a run: the sink writes what it holds and stops, the last offsets are
    /// committed.
    fn finish(&mut self, drain: bool) -> Result<KafkaRunSummary, EngineError> {
        let (done, answer) = crossbeam_channel::bounded(1);
        self.send(Step::Finish {
            close_windows: drain,
            done,
        })?;
        let finished = answer.recv().map_err(|_| self.sink_stopped())?;
        if let Some(sink) = self.sink.take() {
            self.windows = sink.join().ok().flatten();
        }
        let mut summary = finished.map_err(|_| self.sink_stopped())?;
        // While a run goes on, a failed commit is kept for the next flush's; the end has no
        // next flush, so it tries again here. A drain of a small backlog makes only a few
        // commits, and one broker error at the last would otherwise fail the whole run.
        let mut wait = FINAL_COMMIT_BACKOFF;
        for attempt in 1..=FINAL_COMMIT_ATTEMPTS {
            commit_offsets(&self.commits, &self.consumer, &self.health)?;
            if self.commits.is_empty() || attempt == FINAL_COMMIT_ATTEMPTS {
                break;
            }
            std::thread::sleep(wait);
            wait *= 2;
        }
        if !self.commits.is_empty() {
            return Err(EngineError::Kafka(
                "offsets could not be committed; the data is written and a restart replays it idempotently".into(),
            ));
        }
        summary.orphans_removed = self.orphans_removed;
        Ok(summary)
    }

    /// Delivers the last Pushgateway push, waiting up to `grace`; whether it went through.
    pub fn finish_windows(&mut self, grace: Duration) -> bool {
        self.windows
            .as_mut()
            .is_some_and(|windows| windows.finish(grace))
    }

    /// Handles partitions assigned since the last call: removes their uncommitted files,
    /// reloads the cumulative-metric state, and records where they start and end.
    async fn take_assignments(
        &mut self,
        targets: &mut BTreeMap<PartitionKey, DrainTarget>,
    ) -> Result<(), EngineError> {
        let (assigned, revoked, holding) = {
            let mut rebalances = lock(&self.rebalances);
            (
                std::mem::take(&mut rebalances.newly_assigned),
                std::mem::take(&mut rebalances.revoked),
                rebalances.assigned.len(),
            )
        };
        for key in revoked {
            targets.remove(&key);
        }
        // The prefetch's reservation follows in `hold_to_budget`, with what librdkafka holds.
        self.partitions = holding;
        // Said once per new assignment: this runs on every turn of the consumer loop.
        if !assigned.is_empty() && !self.prefetch.leaves_room(holding, self.budget.limit()) {
            tracing::warn!(
                partitions = holding,
                prefetch_bytes = self.prefetch.bytes(holding),
                budget_bytes = self.budget.limit(),
                "librdkafka's prefetch for these partitions fills the memory budget: the data in flight keeps a quarter of the budget beyond it, and memory may pass memory_limit; lower max.partition.fetch.bytes or raise memory_limit"
            );
        }
        if assigned.is_empty() {
            return Ok(());
        }
        // What other partitions buffered must be on disk before the metric state is rebuilt
        // from disk, or their cumulative points would be converted twice.
        let positions = self.barrier()?;
        let mut removed = 0;
        for NewlyAssigned {
            key: (topic, partition),
            committed,
            assigned_high,
        } in assigned
        {
            let (topic, partition) = (topic.as_str(), partition);
            let (low, high) = self
                .consumer
                .fetch_watermarks(topic, partition, METADATA_TIMEOUT)
                .map_err(kafka)?;
            let resume_at = committed.unwrap_or(low);
            removed += remove_orphans(&self.output, topic, partition, resume_at)?;
            if let Some(&fed) = positions.get(&window_origin(topic, partition))
                && fed >= resume_at
            {
                lock(&self.dispatch).replay_until((topic.to_string(), partition), fed);
            }
            tracing::info!(
                topic,
                partition,
                from = resume_at,
                end = high,
                committed = committed.unwrap_or(-1),
                start = low,
                "partition taken up"
            );
            targets.insert(
                (topic.to_string(), partition),
                DrainTarget::new(resume_at, high, assigned_high),
            );
        }
        self.orphans_removed += removed as u64;
        if removed > 0 || !self.tracker_loaded {
            let staleness = Duration::from_secs(self.config.cumulative_staleness_seconds);
            let delta = DeltaState::open(&self.output, staleness, self.health.clone())
                .await?
                .holding_arrivals_within(staleness);
            self.send(Step::DeltaState(delta))?;
            self.tracker_loaded = true;
        }
        if self.paused {
            // Newly assigned partitions start unpaused.
            self.set_paused(true)?;
        }
        self.health.set_ready();
        Ok(())
    }
}

/// Brings an idle draining run's targets up to date with what librdkafka last heard from the
/// broker: its position (control records, the transaction markers, take offsets no message
/// carries, so `next` alone would never pass them) and each partition's high watermark from the
/// latest fetch response (which can be past the end listed at assignment; see [`DRAIN_SETTLE`]
/// and [`DrainTarget::fetched`]).
fn catch_up_with_broker(
    consumer: &StreamConsumer<SourceContext>,
    targets: &mut BTreeMap<PartitionKey, DrainTarget>,
) {
    if let Ok(positions) = consumer.position() {
        for element in positions.elements() {
            let key = (element.topic().to_string(), element.partition());
            if let (Some(target), Offset::Offset(position)) =
                (targets.get_mut(&key), element.offset())
            {
                target.next = target.next.max(position);
            }
        }
    }
    for ((topic, partition), target) in targets.iter_mut() {
        if let Some(high) = fetched_high_watermark(consumer.client(), topic, *partition) {
            target.fetched_to(high);
        }
    }
}

/// Messages left to read of the partitions held, by what librdkafka knows of them now (see
/// [`catch_up_with_broker`]: its position, and the high watermark of its latest fetch); nothing
/// is asked of the broker, and the targets a drain stops at stay as they are.
fn messages_left(
    consumer: &StreamConsumer<SourceContext>,
    targets: &BTreeMap<PartitionKey, DrainTarget>,
) -> i64 {
    let mut known = targets.clone();
    catch_up_with_broker(consumer, &mut known);
    known.values().map(|t| (t.end - t.next).max(0)).sum()
}

/// Whether `left` messages are at most [`CAUGHT_UP_MESSAGES`], or [`CAUGHT_UP_WITHIN`]'s
/// worth at the pace of `taken` over `since`: a source that took nothing with more left (held
/// for memory, or stalled) is behind.
fn caught_up(left: i64, taken: u64, since: Duration) -> bool {
    let left = u128::try_from(left).unwrap_or(0);
    left <= CAUGHT_UP_MESSAGES
        || left * since.as_millis().max(1) <= u128::from(taken) * CAUGHT_UP_WITHIN.as_millis()
}

/// A message's partition, offset and payload, owned: the payload outlives librdkafka's buffer
/// in the decode stage.
fn owned(message: &BorrowedMessage<'_>) -> (PartitionKey, i64, Vec<u8>) {
    let key = (message.topic().to_string(), message.partition());
    let payload = message.payload().unwrap_or_default().to_vec();
    (key, message.offset(), payload)
}

/// Messages librdkafka holds in the consumer's queue, fetched and not yet taken.
fn queued_messages(consumer: &StreamConsumer<SourceContext>) -> usize {
    // SAFETY: the client handle lives as long as `consumer`, which this borrows; the queue
    // handle librdkafka returns is a new reference to the consumer's queue, released here.
    unsafe {
        let queue = rdkafka::bindings::rd_kafka_queue_get_consumer(consumer.client().native_ptr());
        if queue.is_null() {
            return 0;
        }
        let length = rdkafka::bindings::rd_kafka_queue_length(queue);
        rdkafka::bindings::rd_kafka_queue_destroy(queue);
        length
    }
}

/// The high watermark in the latest fetch response for a partition, as librdkafka keeps it;
/// `None` before the first. rust-rdkafka wraps only the call that asks the broker (a
/// ListOffsets request), which is the listed end this is here to check.
fn fetched_high_watermark<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1_i64, -1_i64);
    // SAFETY: the client handle lives as long as `client`, which this borrows; librdkafka
    // reads the NUL-terminated name and writes the two integers, under its partition lock.
    let error = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            client.native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (error == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some(high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_from_the_assigned_offset_until_librdkafka_knows_a_commit() {
        let partition = |consumer_lag, hi_offset| rdkafka::statistics::Partition {
            partition: 2,
            consumer_lag,
            hi_offset,
            ..Default::default()
        };
        // Assigned at its end by burnrate, nothing consumed or committed since: no lag.
        assert_eq!(consumer_lag(&partition(-1, 910), Some(910)), Some(0));
        // New messages since the assignment.
        assert_eq!(consumer_lag(&partition(-1, 950), Some(910)), Some(40));
        // Once this member committed, librdkafka's own figure counts.
        assert_eq!(consumer_lag(&partition(7, 950), Some(910)), Some(7));
        // Nothing committed by anyone, or the end not fetched yet: unknown, not zero.
        assert_eq!(consumer_lag(&partition(-1, 950), None), None);
        assert_eq!(consumer_lag(&partition(-1, -1001), Some(910)), None);
        // librdkafka's internal partition, whatever figures it carries.
        let internal = |consumer_lag| rdkafka::statistics::Partition {
            partition: -1,
            consumer_lag,
            hi_offset: 5,
            ..Default::default()
        };
        assert_eq!(consumer_lag(&internal(-1), Some(0)), None);
        assert_eq!(consumer_lag(&internal(3), None), None);
    }

    #[test]
    fn a_drain_trusts_an_end_a_fetch_of_this_assignment_reported_and_waits_for_any_other() {
        let quiet = Duration::ZERO;
        // Assigned for the first time: the listed end (short, as Tansu's) is not enough.
        let mut first = DrainTarget::new(0, 40, None);
        first.next = 40;
        assert!(!first.reached(quiet));
        assert!(first.reached(DRAIN_SETTLE));
        // A fetch reports the end past the listed one: read to it, then done at once.
        first.fetched_to(55);
        assert_eq!(first.end, 55);
        assert!(!first.reached(quiet));
        first.next = 55;
        assert!(first.reached(quiet));
        // Assigned again to the consumer that fetched it before: a fetch reporting the same
        // high watermark may be that earlier one's, so the drain waits as it always did.
        let mut again = DrainTarget::new(55, 50, Some(55));
        again.fetched_to(55);
        assert!(!again.reached(quiet));
        assert!(again.reached(DRAIN_SETTLE));
        // A different one is this assignment's.
        again.fetched_to(70);
        again.next = 70;
        assert!(again.reached(quiet));
        // A listed end past the fetches' is still read to.
        let mut listed = DrainTarget::new(0, 90, None);
        listed.fetched_to(80);
        listed.next = 80;
        assert!(!listed.reached(DRAIN_SETTLE));
    }

    #[test]
    fn a_source_is_caught_up_within_a_second_of_its_ends_at_its_own_pace() {
        let five = Duration::from_secs(5);
        assert!(caught_up(0, 0, five), "nothing left, nothing taken");
        assert!(caught_up(1_000, 0, five), "a fetch not yet taken");
        assert!(!caught_up(1_001, 0, five), "held or stalled with more left");
        assert!(
            caught_up(3_000, 15_000, five),
            "a second's worth at 3,000 a second"
        );
        assert!(!caught_up(3_001, 15_000, five));
        assert!(
            caught_up(2_000, 400, Duration::from_millis(200)),
            "2,000 a second"
        );
        assert!(
            !caught_up(900_000, 250_000, five),
            "a backlog at 50,000 a second"
        );
        assert!(
            caught_up(-4, 0, five),
            "librdkafka's position past a stale end"
        );
    }

    #[test]
    fn any_segment_names_its_topic_partition_and_last_offset() {
        let name = segment_name("otlp-logs-eu", 3, 100, 250);
        assert_eq!(
            segment_position(&name),
            Some(("otlp-logs-eu".to_string(), 3, 250))
        );
        assert_eq!(segment_position("receiver-00000000000000000001"), None);
        assert_eq!(segment_position("kafka-t-x-1-2"), None);
    }

    #[test]
    fn segment_names_round_trip_and_sort_by_offset() {
        let name = segment_name("otlp_logs", 3, 120, 4500);
        assert_eq!(parse_segment(&name, "otlp_logs", 3), Some((120, 4500)));
        assert_eq!(parse_segment(&name, "otlp_logs", 4), None);
        assert_eq!(parse_segment(&name, "otlp", 3), None);
        assert!(segment_name("t", 0, 9, 9) < segment_name("t", 0, 10, 10));
    }

    #[test]
    fn a_hold_for_memory_ends_once_the_data_is_written_whatever_the_prefetch_holds() {
        const MIB: usize = 1 << 20;
        let reading = |used, prefetch, limit, resident| MemoryReading {
            used,
            prefetch,
            limit,
            resident,
        };
        // A small prefetch: hold at the limit, take messages again below three quarters of it.
        let pause = |held, used| hold_for_memory(held, &reading(used, 10 * MIB, 100 * MIB, None));
        assert!(!pause(false, 99 * MIB));
        assert!(pause(false, 100 * MIB));
        assert!(pause(true, 78 * MIB));
        assert!(!pause(true, 77 * MIB));
        // A prefetch past the resume share (54 MiB of a budget that shrank to 46): the hold
        // ends once the data is written, and the data keeps a quarter of the budget.
        let (prefetch, limit) = (54 * MIB, 46 * MIB);
        let pause =
            |held, data| hold_for_memory(held, &reading(prefetch + data, prefetch, limit, None));
        assert!(!pause(true, 0));
        assert!(!pause(false, 11 * MIB));
        assert!(pause(false, 12 * MIB));
        assert!(pause(true, 9 * MIB));
        assert!(!pause(true, 8 * MIB));
    }

    #[test]
    fn a_process_near_its_memory_limit_holds_while_it_has_data_to_write() {
        const MIB: usize = 1 << 20;
        // 90 MiB of room for data; a quarter of it is 22.5 MiB.
        let hold = |held, data, resident| {
            let memory = MemoryReading {
                used: 10 * MIB + data,
                prefetch: 10 * MIB,
                limit: 100 * MIB,
                resident: Some(resident),
            };
            hold_for_memory(held, &memory)
        };
        assert!(!hold(false, 40 * MIB, 0.74));
        assert!(
            hold(false, 40 * MIB, 0.75),
            "the budget has room, the process does not"
        );
        assert!(hold(true, 40 * MIB, 0.71));
        assert!(!hold(true, 40 * MIB, 0.69));
        // With nothing to write, holding would free nothing: the hold ends.
        assert!(hold(true, 23 * MIB, 0.99));
        assert!(!hold(true, 22 * MIB, 0.99));
        assert!(!hold(false, 22 * MIB, 0.99));
    }

    #[test]
    fn a_prefetch_that_would_keep_the_source_paused_is_refused() {
        let limit = 204 << 20;
        assert!(Prefetch::for_budget(limit).check(limit).is_ok());
        let mut client = ClientConfig::new();
        client.set("queued.max.messages.kbytes", "131072");
        let error = Prefetch::of(&client).check(limit).unwrap_err().to_string();
        assert!(error.contains("queued.max.messages.kbytes"), "{error}");
        assert!(error.contains("memory_limit"), "{error}");
        // librdkafka's own sizes fit a 512 MiB limit's budget, though each partition adds to them.
        let prefetch = Prefetch::of(&ClientConfig::new());
        assert!(prefetch.leaves_room(0, limit));
        assert!(!prefetch.leaves_room(64, limit));
    }

    #[test]
    fn secrets_come_from_the_environment_or_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "s3cret\n").unwrap();
        let value = resolve_client_value("sasl.password", &format!("file:{}", file.display()));
        assert_eq!(value.unwrap(), "s3cret");
        let missing = resolve_client_value("sasl.password", "env:BURNRATE_TEST_UNSET_VARIABLE");
        assert!(
            missing
                .unwrap_err()
                .to_string()
                .contains("BURNRATE_TEST_UNSET_VARIABLE")
        );
        assert_eq!(resolve_client_value("k", "plain").unwrap(), "plain");
    }
}
