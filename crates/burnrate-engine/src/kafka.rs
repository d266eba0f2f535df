//! The Kafka source: OTLP exports from the topics the OpenTelemetry Collector's kafka exporter
//! writes, read in a consumer group, with offsets committed only after the Parquet files that
//! hold them are durable.
//!
//! Each partition buffers its own segment. A segment is named
//! `kafka-<topic>-<partition>-<first offset>-<last offset>` and, once written, its offset
//! `last + 1` is committed. A crash between the two leaves files past the committed offset; when
//! a partition is assigned, files of that partition starting at or after its committed offset
//! are deleted before anything is consumed, so the replay writes them again exactly once.
//! Revoked partitions are flushed and committed inside the rebalance callback, before another
//! member can be given them.

//!
//! Memory stays bounded whatever the lag: decoding and flushing run on the consuming task, so
//! while a segment is written nothing more is taken from librdkafka, whose own prefetch queue
//! is capped by `queued.max.messages.kbytes` (default 64 MiB here). Broker outages are retried
//! by librdkafka; the loop reports itself unready meanwhile and resumes by itself.
//!
//! Cumulative metrics need every point of a series in one consumer: configure the Collector's
//! kafka exporter to partition metrics by resource attributes when running several replicas.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use burnrate_otlp::{Decoder, DeltaTracker, Encoding, PayloadHint, Signal};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::EngineError;
use crate::dead_letters::DeadLetter;
use crate::delta_state::rebuild_delta_tracker;
use crate::health::PipelineHealth;
use crate::parquet_sink::{ParquetSink, remove_segments};
use crate::table_buffer::{FlushTotals, TableBuffer};
use crate::windows::WindowStage;

pub const KAFKA_SEGMENT_PREFIX: &str = "kafka-";
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a draining run waits to be given partitions before it gives up.
const ASSIGNMENT_TIMEOUT: Duration = Duration::from_secs(60);
/// A draining run past every partition's end still waits this long without a message before it
/// stops: some brokers (Tansu 0.6) report the end of a partition as the base offset of its last
/// batch plus one, so records of that batch arrive after "the end" was reached.
const DRAIN_SETTLE: Duration = Duration::from_secs(1);
/// Longest pause between retries while the broker is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

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
    /// Flush every partition's segment at least this often.
    pub flush_interval_ms: u64,
    /// Flush once this many message bytes are buffered over all partitions.
    pub flush_bytes: usize,
    pub max_payload_bytes: usize,
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
}

struct PartitionSegment {
    first: i64,
    last: i64,
    buffer: TableBuffer,
}

type PartitionKey = (String, i32);

/// What the consumer loop and the rebalance callbacks share.
struct Shared {
    sink: ParquetSink,
    windows: WindowStage,
    health: Arc<PipelineHealth>,
    segments: BTreeMap<PartitionKey, PartitionSegment>,
    /// Offsets durable in Parquet whose commit has not succeeded yet.
    uncommitted: BTreeMap<PartitionKey, i64>,
    /// Partitions assigned since the loop last looked: their orphans must go first.
    newly_assigned: Vec<PartitionKey>,
    revoked: Vec<PartitionKey>,
    /// A flush that failed inside a callback, reported by the loop.
    callback_error: Option<String>,
    summary: KafkaRunSummary,
}

impl Shared {
    fn buffered_bytes(&self) -> usize {
        self.segments.values().map(|s| s.buffer.bytes).sum()
    }

    /// Writes the segments of `keys` (all when `None`) and commits their offsets. A failed
    /// commit is kept and retried with the next flush: the files are durable either way, and a
    /// replay from the older offset rewrites them under the same names.
    fn flush<C: ConsumerContext>(
        &mut self,
        consumer: &impl Consumer<C>,
        keys: Option<&[PartitionKey]>,
    ) -> Result<(), EngineError> {
        let keys: Vec<PartitionKey> = match keys {
            Some(keys) => keys.to_vec(),
            None => self.segments.keys().cloned().collect(),
        };
        self.flush_segments(&keys)?;
        self.commit(consumer)
    }

    /// Writes the segments of `keys`, then feeds them to the windows as one micro-batch (one
    /// aggregation and one checkpoint however many partitions flush); their offsets wait in
    /// `uncommitted` for the next commit.
    fn flush_segments(&mut self, keys: &[PartitionKey]) -> Result<(), EngineError> {
        let mut written = Vec::new();
        for key in keys {
            let Some(segment) = self.segments.remove(key) else {
                continue;
            };
            let (topic, partition) = key;
            let name = segment_name(topic, *partition, segment.first, segment.last);
            let tables =
                segment
                    .buffer
                    .write(&self.sink, &name, &self.health, &mut self.summary.written)?;
            tracing::info!(topic = %topic, partition, first = segment.first, last = segment.last, "segment written");
            written.push((key.clone(), segment.last, tables));
        }
        if written.is_empty() {
            return Ok(());
        }
        let origins: Vec<String> = written
            .iter()
            .map(|((topic, partition), _, _)| window_origin(topic, *partition))
            .collect();
        let batches: Vec<_> = written
            .iter()
            .zip(&origins)
            .map(|((_, last, tables), origin)| (origin.as_str(), *last, tables))
            .collect();
        let progress = self.windows.feed_many(&batches)?;
        self.health.windowed(progress.closed, progress.late_events);
        for (key, last, _) in written {
            self.uncommitted.insert(key, last + 1);
        }
        Ok(())
    }

    fn commit<C: ConsumerContext>(
        &mut self,
        consumer: &impl Consumer<C>,
    ) -> Result<(), EngineError> {
        if self.uncommitted.is_empty() {
            return Ok(());
        }
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), next) in &self.uncommitted {
            offsets
                .add_partition_offset(topic, *partition, Offset::Offset(*next))
                .map_err(kafka)?;
        }
        let started = Instant::now();
        match consumer.commit(&offsets, CommitMode::Sync) {
            Ok(()) => {
                self.health.committed(started.elapsed());
                self.uncommitted.clear();
            }
            Err(e) => {
                self.health.commit_failed();
                tracing::warn!(error = %e, "offset commit failed; retried with the next flush");
            }
        }
        Ok(())
    }
}

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

struct SinkContext {
    shared: Arc<Mutex<Shared>>,
    health: Arc<PipelineHealth>,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic while holding the lock is a bug elsewhere; the data behind it is still valid.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ClientContext for SinkContext {
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
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                // librdkafka reports -1 for partitions it does not consume, and an internal
                // partition -1 of its own.
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.health.set_lag(topic, *partition, p.consumer_lag);
                }
            }
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.health.source_error();
        self.health.set_not_ready(format!("kafka: {reason}"));
        tracing::warn!(%error, reason, "kafka client error; retrying");
    }
}

impl ConsumerContext for SinkContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let keys: Vec<PartitionKey> = revoked
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let mut shared = lock(&self.shared);
        if let Err(e) = shared.flush(consumer, Some(&keys)) {
            shared.callback_error = Some(format!("flushing revoked partitions: {e}"));
        }
        for (topic, partition) in &keys {
            self.health.forget_partition(topic, *partition);
        }
        shared.revoked.extend(keys);
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assigned) = rebalance {
            let mut shared = lock(&self.shared);
            for e in assigned.elements() {
                shared
                    .newly_assigned
                    .push((e.topic().to_string(), e.partition()));
            }
        }
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

/// Where a draining run stands on one partition: the next offset to read and the end to reach.
#[derive(Debug, Clone, Copy)]
struct DrainTarget {
    next: i64,
    end: i64,
}

/// The consumer loop over one dataset.
pub struct KafkaPipeline {
    consumer: StreamConsumer<SinkContext>,
    ingest: Ingest,
}

/// Everything but the consumer, so a message borrowed from the consumer can be decoded
/// without copying it.
struct Ingest {
    shared: Arc<Mutex<Shared>>,
    health: Arc<PipelineHealth>,
    decoder: Decoder,
    tracker: DeltaTracker,
    tracker_loaded: bool,
    config: KafkaSourceConfig,
    output: PathBuf,
}

impl KafkaPipeline {
    pub fn open(
        decoder: Decoder,
        output: &Path,
        config: KafkaSourceConfig,
        health: Arc<PipelineHealth>,
        windows: WindowStage,
    ) -> Result<Self, EngineError> {
        std::fs::create_dir_all(output).map_err(|e| EngineError::io(output, e))?;
        if config.topics.is_empty() {
            return Err(EngineError::Config("kafka: no topics to consume".into()));
        }
        let shared = Arc::new(Mutex::new(Shared {
            sink: ParquetSink::new(output),
            windows,
            health: health.clone(),
            segments: BTreeMap::new(),
            uncommitted: BTreeMap::new(),
            newly_assigned: Vec::new(),
            revoked: Vec::new(),
            callback_error: None,
            summary: KafkaRunSummary::default(),
        }));
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("session.timeout.ms", "10000")
            .set("queued.max.messages.kbytes", "65536")
            .set("statistics.interval.ms", "5000");
        for (key, value) in &config.client {
            client.set(key, resolve_client_value(key, value)?);
        }
        let consumer: StreamConsumer<SinkContext> = client
            .create_with_context(SinkContext {
                shared: shared.clone(),
                health: health.clone(),
            })
            .map_err(kafka)?;
        let topics: Vec<&str> = config.topics.iter().map(|t| t.name.as_str()).collect();
        consumer.subscribe(&topics).map_err(kafka)?;
        Ok(KafkaPipeline {
            consumer,
            ingest: Ingest {
                shared,
                health,
                decoder,
                tracker: DeltaTracker::new(),
                tracker_loaded: false,
                config,
                output: output.to_path_buf(),
            },
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
        let flush_every = Duration::from_millis(self.ingest.config.flush_interval_ms.max(1));
        let mut last_flush = Instant::now();
        let mut targets: BTreeMap<PartitionKey, DrainTarget> = BTreeMap::new();
        let mut backoff = Duration::from_millis(100);
        let started = Instant::now();
        let mut last_message = Instant::now();
        loop {
            // Assignments are taken before any message of theirs is buffered: the rebalance
            // callback runs inside `recv`, before it returns the new partitions' messages.
            self.ingest
                .take_assignments(&self.consumer, &mut targets)
                .await?;
            if let Some(error) = lock(&self.ingest.shared).callback_error.take() {
                return Err(EngineError::Kafka(error));
            }
            if drain
                && self.ingest.tracker_loaded
                && targets.values().all(|t| t.next >= t.end)
                && last_message.elapsed() >= DRAIN_SETTLE
            {
                break;
            }
            if drain && !self.ingest.tracker_loaded && started.elapsed() > ASSIGNMENT_TIMEOUT {
                return Err(EngineError::Kafka(format!(
                    "no partition of {} was assigned within {}s: do the topics exist?",
                    self.ingest.topic_names(),
                    ASSIGNMENT_TIMEOUT.as_secs()
                )));
            }
            let received = tokio::select! {
                message = self.consumer.recv() => Some(message),
                _ = tokio::time::sleep(flush_every.min(Duration::from_millis(200))) => None,
                _ = &mut stop => break,
            };
            match received {
                Some(Ok(message)) => {
                    backoff = Duration::from_millis(100);
                    last_message = Instant::now();
                    if !self.ingest.health.is_ready() {
                        self.ingest.health.set_ready();
                    }
                    let key = (message.topic().to_string(), message.partition());
                    let offset = message.offset();
                    let payload = message.payload().unwrap_or_default();
                    self.ingest
                        .take_assignments(&self.consumer, &mut targets)
                        .await?;
                    self.ingest.add(&key, offset, payload)?;
                    if let Some(target) = targets.get_mut(&key) {
                        target.next = target.next.max(offset + 1);
                    }
                }
                Some(Err(e)) => {
                    // Broker gone, fetch failed, coordinator moving: librdkafka retries; we
                    // wait a little longer each time and keep what we have.
                    self.ingest.health.source_error();
                    self.ingest.health.set_not_ready(format!("kafka: {e}"));
                    tracing::warn!(error = %e, "kafka consume error; retrying in {backoff:?}");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = &mut stop => break,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                None if drain => catch_up_positions(&self.consumer, &mut targets),
                None => {}
            }
            let full = lock(&self.ingest.shared).buffered_bytes() >= self.ingest.config.flush_bytes;
            if full || last_flush.elapsed() >= flush_every {
                lock(&self.ingest.shared).flush(&self.consumer, None)?;
                last_flush = Instant::now();
            }
        }
        let mut shared = lock(&self.ingest.shared);
        shared.flush(&self.consumer, None)?;
        if drain {
            // The end of the input: no event can still arrive on time for the open windows.
            let closed = shared.windows.close_all()?;
            self.ingest.health.windowed(closed, 0);
        }
        if !shared.uncommitted.is_empty() {
            return Err(EngineError::Kafka(
                "offsets could not be committed; the data is written and a restart replays it idempotently".into(),
            ));
        }
        Ok(shared.summary.clone())
    }
}

impl KafkaPipeline {
    /// Delivers the last Pushgateway push, waiting up to `grace`; whether it went through.
    pub fn finish_windows(&self, grace: Duration) -> bool {
        lock(&self.ingest.shared).windows.finish(grace)
    }
}

impl Ingest {
    fn topic_names(&self) -> String {
        let names: Vec<&str> = self.config.topics.iter().map(|t| t.name.as_str()).collect();
        names.join(", ")
    }

    fn add(&mut self, key: &PartitionKey, offset: i64, payload: &[u8]) -> Result<(), EngineError> {
        let topic = self.config.topics.iter().find(|t| t.name == key.0);
        let hint = PayloadHint {
            encoding: topic.and_then(|t| t.encoding),
            signal: topic.and_then(|t| t.signal),
            max_bytes: self.config.max_payload_bytes,
        };
        self.health.message(payload.len());
        let mut shared = lock(&self.shared);
        shared.summary.messages += 1;
        shared.summary.bytes += payload.len() as u64;
        // A replay of messages the windows already saw (written, windowed, then a crash before
        // the commit) must end its segment where they end, so the segment is skipped by the
        // windows as a whole and the next one is fed as a whole.
        let fed = shared.windows.position(&window_origin(&key.0, key.1));
        if let (Some(fed), Some(segment)) = (fed, shared.segments.get(key))
            && segment.last <= fed
            && offset > fed
        {
            let keys = [key.clone()];
            shared.flush_segments(&keys)?;
        }
        let segment = shared
            .segments
            .entry(key.clone())
            .or_insert_with(|| PartitionSegment {
                first: offset,
                last: offset,
                buffer: TableBuffer::default(),
            });
        segment.last = offset;
        let dead = |error| DeadLetter {
            topic: Some(key.0.clone()),
            partition: Some(key.1),
            offset: Some(offset),
            ..DeadLetter::now(
                format!("{}/{}@{}", key.0, key.1, offset),
                error,
                payload.to_vec(),
            )
        };
        if let Some(error) =
            segment
                .buffer
                .add(&self.decoder, &mut self.tracker, payload, hint, None, dead)?
        {
            tracing::warn!(topic = %key.0, partition = key.1, offset, %error, "dead letter");
        }
        Ok(())
    }

    /// Handles partitions assigned since the last call: removes their uncommitted files,
    /// reloads the cumulative-metric state, and records where they start and end.
    async fn take_assignments(
        &mut self,
        consumer: &StreamConsumer<SinkContext>,
        targets: &mut BTreeMap<PartitionKey, DrainTarget>,
    ) -> Result<(), EngineError> {
        let (assigned, revoked) = {
            let mut shared = lock(&self.shared);
            (
                std::mem::take(&mut shared.newly_assigned),
                std::mem::take(&mut shared.revoked),
            )
        };
        for key in revoked {
            targets.remove(&key);
        }
        if assigned.is_empty() {
            return Ok(());
        }
        let mut list = TopicPartitionList::new();
        for (topic, partition) in &assigned {
            list.add_partition(topic, *partition);
        }
        let committed = consumer
            .committed_offsets(list, METADATA_TIMEOUT)
            .map_err(kafka)?;
        // What other partitions buffered must be on disk before the metric state is rebuilt
        // from disk, or their cumulative points would be converted twice.
        lock(&self.shared).flush(consumer, None)?;
        let mut removed = 0;
        for element in committed.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, METADATA_TIMEOUT)
                .map_err(kafka)?;
            let resume_at = match element.offset() {
                Offset::Offset(n) => n,
                _ => low,
            };
            removed += remove_orphans(&self.output, topic, partition, resume_at)?;
            targets.insert(
                (topic.to_string(), partition),
                DrainTarget {
                    next: resume_at,
                    end: high,
                },
            );
        }
        lock(&self.shared).summary.orphans_removed += removed as u64;
        if removed > 0 || !self.tracker_loaded {
            self.tracker = rebuild_delta_tracker(&self.output).await?;
            self.tracker_loaded = true;
        }
        self.health.set_ready();
        Ok(())
    }
}

/// Control records (transaction markers) take offsets no message carries; the consumer's
/// position moves past them, so an idle draining run asks it where each partition stands.
fn catch_up_positions(
    consumer: &StreamConsumer<SinkContext>,
    targets: &mut BTreeMap<PartitionKey, DrainTarget>,
) {
    let Ok(positions) = consumer.position() else {
        return;
    };
    for element in positions.elements() {
        let key = (element.topic().to_string(), element.partition());
        if let (Some(target), Offset::Offset(position)) = (targets.get_mut(&key), element.offset())
        {
            target.next = target.next.max(position);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_and_sort_by_offset() {
        let name = segment_name("otlp_logs", 3, 120, 4500);
        assert_eq!(parse_segment(&name, "otlp_logs", 3), Some((120, 4500)));
        assert_eq!(parse_segment(&name, "otlp_logs", 4), None);
        assert_eq!(parse_segment(&name, "otlp", 3), None);
        assert!(segment_name("t", 0, 9, 9) < segment_name("t", 0, 10, 10));
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
