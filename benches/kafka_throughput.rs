//! End-to-end Kafka throughput on this machine: messages/s and rows/s from a real broker
//! (Tansu, in memory, on loopback) to durable Parquet with committed offsets, beside the
//! baseline of the same run: a bare rdkafka consumer that reads the same topics and does
//! nothing with the bytes. That consumer has the fetch back-off burnrate sets; one with
//! librdkafka's defaults is printed beside it.
//!
//! `cargo bench -p burnrate --bench kafka_throughput` (needs `BURNRATE_TANSU`, which
//! `scripts/test.sh` sets up) streams 1,000,008 messages (the 36 real sample exports × 27,778,
//! 4.4 GB); under `cargo test` it runs once on a small stream as a smoke test.
//! Each side is timed from its first message to its last (for burnrate: to the final commit),
//! so group joins are not counted against either; the median of three rounds is reported, with
//! the CPU the process used meanwhile (200% is both cores of this machine), by stage. A second
//! burnrate configuration sets librdkafka's own prefetch sizes over burnrate's, so the memory
//! budget pauses the partitions again and again.
//!
//! The cost of the Delta logs is measured against burnrate itself: the same pipeline writing
//! plain Parquet, committed to no log (`table_logs = false`, as burnrate wrote before the logs),
//! its rounds interleaved with the logged ones so that drift on the machine hits both alike.

// The binary's allocator and its settings, so the bench measures what runs.
#[path = "../crates/burnrate/src/allocator.rs"]
mod allocator;

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use burnrate_engine::{
    FETCH_QUEUE_BACKOFF_MS, KafkaPipeline, KafkaSourceConfig, KafkaTopic, MemoryBudget,
    PipelineHealth, WindowSpec, WindowStage,
};
use burnrate_otlp::{Decoder, MappingConfig};
use burnrate_pricing::PriceTable;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use support::broker::Broker;
use support::sample_exports;

const TOPICS: [&str; 3] = ["otlp_logs", "otlp_metrics", "otlp_spans"];
const PARTITIONS: i32 = 3;
/// A round that takes longer has stalled: a full one takes about a minute on this machine.
const STALL: Duration = Duration::from_secs(300);

/// The stage name for CPU time no thread reading accounts for.
const UNREAD: &str = "threads gone between readings";

struct Round {
    /// First message to the end: the final commit for burnrate, the last message for the bare consumer.
    seconds: f64,
    /// CPU time of the whole process over the same span, as a share of one core.
    cpu: f64,
    /// First message to the last one taken in (for burnrate: before the drain's quiet second
    /// and the final flush).
    consuming: f64,
    rows: usize,
    /// The pipeline's own account of where time went: flushes, commits, pauses for memory.
    health: Vec<String>,
    /// CPU seconds over the round by stage (thread name), largest first: which stage is busy.
    stages: Vec<(String, f64)>,
}

/// Reads every message once and touches nothing but its length. Every partition is assigned
/// from its start, with no consumer group: the baseline is reading, and a group's coordination
/// is outside it (burnrate's is outside its timing too, which starts at its first message).
/// librdkafka's defaults, but for the properties in `client`.
fn bare_consumer(broker: &Broker, group: &str, messages: usize, client: &[(&str, &str)]) -> Round {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &broker.address)
        .set("group.id", group)
        .set("enable.auto.commit", "false");
    for (key, value) in client {
        config.set(*key, *value);
    }
    let consumer: BaseConsumer = config.create().unwrap();
    let mut partitions = TopicPartitionList::new();
    for topic in TOPICS {
        for partition in 0..PARTITIONS {
            partitions
                .add_partition_offset(topic, partition, Offset::Beginning)
                .unwrap();
        }
    }
    consumer.assign(&partitions).unwrap();
    let mut seen = 0;
    let mut bytes = 0usize;
    let mut first = None;
    let deadline = Instant::now() + STALL;
    while seen < messages {
        assert!(
            Instant::now() < deadline,
            "bare consumer stalled at {seen}/{messages}; at {:?}",
            consumer.position()
        );
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.unwrap();
            first.get_or_insert_with(|| (Instant::now(), support::cpu_seconds("self")));
            bytes += message.payload().map_or(0, <[u8]>::len);
            seen += 1;
        }
    }
    std::hint::black_box(bytes);
    let (seconds, cpu) = first.map_or((0.0, 0.0), |(t, cpu)| {
        let seconds = t.elapsed().as_secs_f64();
        (seconds, (support::cpu_seconds("self") - cpu) / seconds)
    });
    Round {
        seconds,
        cpu,
        consuming: seconds,
        rows: 0,
        health: Vec::new(),
        stages: Vec::new(),
    }
}

/// librdkafka's own prefetch sizes (a 64 MiB queue, 50 MiB fetches) set over the ones burnrate
/// derives from its budget, as a user may: the prefetch then holds more than half the budget,
/// so the partitions pause for memory again and again, and each pause must end quickly.
const LIBRDKAFKA_PREFETCH: [(&str, &str); 2] = [
    ("queued.max.messages.kbytes", "65536"),
    ("fetch.max.bytes", "52428800"),
];

/// burnrate's default `memory_limit`; `BURNRATE_BENCH_MEMORY_LIMIT_MIB` sets another, to see
/// what the budget holds back.
fn memory_limit() -> u64 {
    std::env::var("BURNRATE_BENCH_MEMORY_LIMIT_MIB")
        .ok()
        .and_then(|mib| mib.parse::<u64>().ok())
        .unwrap_or(512)
        << 20
}

/// `burnrate run --source kafka --drain` in-process: decode, Parquet, fsync, commit, with
/// `client` properties set over burnrate's; with the Delta logs, or plain Parquet without.
fn burnrate(
    broker: &Broker,
    group: &str,
    messages: usize,
    client: &[(&str, &str)],
    logs: bool,
) -> Result<Round, String> {
    let data = tempfile::tempdir().unwrap();
    if !logs {
        burnrate_engine::sink::table_log::write_without_logs(data.path()).unwrap();
    }
    let health = PipelineHealth::new();
    let config = KafkaSourceConfig {
        brokers: broker.address.clone(),
        group_id: group.into(),
        topics: TOPICS.iter().map(|t| KafkaTopic::named(t)).collect(),
        client: client
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..KafkaSourceConfig::default()
    };
    let decoder = Decoder::new(MappingConfig::default(), PriceTable::embedded());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sampler = StageSampler::start();
    let summary = runtime.block_on(async {
        let mut pipeline = {
            let windows =
                WindowStage::open(data.path(), &WindowSpec::default(), "bench", 500).unwrap();
            // Refused when `client` makes librdkafka's prefetch alone fill the budget, which
            // shrinks as the code pages in: the later rounds of a run may see it refused.
            match KafkaPipeline::open(
                decoder,
                data.path(),
                config,
                health.clone(),
                windows,
                MemoryBudget::for_memory_limit(memory_limit()),
            ) {
                Ok(pipeline) => pipeline,
                Err(error) => return Err(error.to_string()),
            }
        };
        let watch = health.clone();
        let total = messages as u64;
        let first = tokio::spawn(async move {
            while watch.messages() == 0 {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            let first = (Instant::now(), support::cpu_seconds("self"));
            while watch.messages() < total {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            (first, Instant::now())
        });
        let summary = tokio::time::timeout(STALL, pipeline.run(true, std::future::pending()))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "burnrate stalled at {}/{messages} after {STALL:?}",
                    health.messages()
                )
            })
            .unwrap();
        let ended = (Instant::now(), support::cpu_seconds("self"));
        let ((first, cpu), consumed) = first.await.unwrap();
        Ok((summary, ended.0 - first, ended.1 - cpu, consumed - first))
    });
    let (summary, took, cpu, consuming) = summary?;
    let stages = sampler.stop();
    assert_eq!(summary.messages as usize, messages);
    Ok(Round {
        seconds: took.as_secs_f64(),
        cpu: cpu / took.as_secs_f64(),
        consuming: consuming.as_secs_f64(),
        rows: summary.written.rows.values().sum(),
        health: health
            .render()
            .lines()
            .filter(|l| {
                [
                    "_sum",
                    "_count",
                    "burnrate_source_pauses_total",
                    "burnrate_source_paused_seconds_total",
                ]
                .iter()
                .any(|w| l.split_whitespace().next().is_some_and(|m| m.ends_with(w)))
            })
            .map(str::to_string)
            .collect(),
        stages,
    })
}

/// The CPU each stage used over a round, by thread name: `burnrate-decode-0` and
/// `burnrate-decode-1` are the stage `burnrate-decode`, `rdk:broker3` is `rdk:broker`. A
/// thread's time stays readable only while it lives, so every thread is read every 100 ms and
/// its last reading kept (a thread that lives less than that is missed); threads that lived
/// before the round count only what they added. The pipeline's threads live as long as the
/// round, but a flush's Parquet encoders (`burnrate-encode`) live for tens of milliseconds:
/// what the readings miss is reported as [`UNREAD`], the process's time less theirs.
struct StageSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(String, f64)>>,
}

impl StageSampler {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let read = || -> HashMap<String, (String, f64)> {
                let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
                    return HashMap::new();
                };
                tasks
                    .flatten()
                    .filter_map(|task| {
                        let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
                        let name = stat.split_once('(')?.1.rsplit_once(')')?.0;
                        let stage = name.trim_end_matches(|c: char| c.is_ascii_digit());
                        let tid = task.file_name().to_string_lossy().into_owned();
                        Some((tid, (stage.to_string(), support::stat_cpu_seconds(&stat))))
                    })
                    .collect()
            };
            let (before, process_before) = (read(), support::cpu_seconds("self"));
            let mut last = before.clone();
            while !stopped.load(Ordering::Relaxed) {
                last.extend(read());
                std::thread::sleep(Duration::from_millis(100));
            }
            let process = support::cpu_seconds("self") - process_before;
            let mut stages: HashMap<String, f64> = HashMap::new();
            for (tid, (stage, seconds)) in last {
                let earlier = before.get(&tid).map_or(0.0, |(_, s)| *s);
                *stages.entry(stage).or_default() += seconds - earlier;
            }
            // What threads that lived less than a reading used (a flush's encoders live for
            // tens of milliseconds), and what threads used after their last reading: the
            // process's time less the threads read. Left out, it hid a third of the CPU.
            let read_time: f64 = stages.values().sum();
            stages.insert(UNREAD.to_string(), process - read_time);
            let mut stages: Vec<_> = stages.into_iter().filter(|(_, s)| *s >= 0.05).collect();
            stages.sort_by(|a, b| b.1.total_cmp(&a.1));
            stages
        });
        StageSampler { stop, thread }
    }

    fn stop(self) -> Vec<(String, f64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

fn median(mut rounds: Vec<Round>) -> Round {
    rounds.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    rounds.swap_remove(rounds.len() / 2)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    // The pipeline's own log, for a round that goes wrong.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let (copies, rounds) = if full { (27_778, 3) } else { (3, 1) };
    // Another stream length, for finding where a run goes wrong.
    let copies = std::env::var("BURNRATE_BENCH_COPIES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(copies);
    let broker = Broker::start();
    broker.create_topics(&TOPICS, PARTITIONS);
    let exports = sample_exports();
    let messages = broker.produce_samples(&exports, copies);
    let bytes: usize = exports.iter().map(|e| e.bytes.len()).sum::<usize>() * copies;

    // The baseline gets the fetch back-off burnrate gives itself. With librdkafka's default
    // (a second), a bare consumer whose queue fills waits out the rest of the second before it
    // fetches that partition again: at 360,000 messages on this machine, 39,377 and 58,080
    // messages/s at 22% and 43% CPU in two runs, against 110,576 at 80% with burnrate's.
    let backoff = FETCH_QUEUE_BACKOFF_MS.to_string();
    let backoff = [("fetch.queue.backoff.ms", backoff.as_str())];
    let (mut bare, mut bare_defaults) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let group = format!("bare-{i}");
        bare.push(bare_consumer(&broker, &group, messages, &backoff));
        let group = format!("bare-defaults-{i}");
        bare_defaults.push(bare_consumer(&broker, &group, messages, &[]));
    }
    let (bare, bare_defaults) = (median(bare), median(bare_defaults));
    // The binary's allocator settings from here on: the bare consumer ran with the C library's
    // own, as a consumer of the user's would (the thresholds change what its fetch answers
    // cost, and once set they cannot be undone).
    allocator::return_freed_memory_promptly();
    let (mut logged, mut plain) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        // Which goes first alternates.
        for logs in [i % 2 == 0, i % 2 != 0] {
            let group = format!("burnrate-{}-{i}", if logs { "logged" } else { "plain" });
            let round = burnrate(&broker, &group, messages, &[], logs)
                .expect("burnrate's own prefetch sizes fit its budget");
            if logs { &mut logged } else { &mut plain }.push(round);
        }
    }
    let (ours, plain) = (median(logged), median(plain));
    let (paced, refused): (Vec<_>, Vec<_>) = (0..rounds)
        .map(|i| {
            let group = format!("burnrate-prefetch-{i}");
            burnrate(&broker, &group, messages, &LIBRDKAFKA_PREFETCH, true)
        })
        .partition(Result::is_ok);
    let paced: Vec<Round> = paced.into_iter().flatten().collect();
    let refused: Vec<String> = refused.into_iter().filter_map(Result::err).collect();
    let rate = |r: &Round| messages as f64 / r.seconds;
    let mib = |r: &Round| bytes as f64 / r.seconds / (1 << 20) as f64;
    println!(
        "kafka_throughput: {messages} messages, {bytes} bytes, 3 topics x 3 partitions, median of {rounds}"
    );
    println!(
        "  bare rdkafka consumer, fetch back-off {FETCH_QUEUE_BACKOFF_MS} ms as burnrate: {:>10.0} messages/s {:>8.1} MiB/s {:>4.0}% CPU",
        rate(&bare),
        mib(&bare),
        bare.cpu * 100.0
    );
    println!(
        "  the same, librdkafka's default fetch back-off (1 s): {:>7.0} messages/s {:>4.0}% CPU",
        rate(&bare_defaults),
        bare_defaults.cpu * 100.0
    );
    println!(
        "  burnrate to Parquet:   {:>10.0} messages/s {:>8.1} MiB/s {:>4.0}% CPU {:>10.0} rows/s",
        rate(&ours),
        mib(&ours),
        ours.cpu * 100.0,
        ours.rows as f64 / ours.seconds
    );
    let stages: Vec<String> = ours
        .stages
        .iter()
        .map(|(stage, seconds)| format!("{stage} {:.0}%", seconds / ours.seconds * 100.0))
        .collect();
    println!("  burnrate CPU by thread: {}", stages.join(", "));
    println!("  burnrate's own metrics: {}", ours.health.join(", "));
    println!(
        "  burnrate, plain Parquet (no Delta logs): {:>7.0} messages/s {:>4.0}% CPU; with the logs {:.3}x its throughput",
        rate(&plain),
        plain.cpu * 100.0,
        rate(&ours) / rate(&plain)
    );
    let consuming = messages as f64 / ours.consuming;
    println!(
        "  burnrate while consuming: {consuming:>7.0} messages/s (without the drain's quiet second and final flush)"
    );
    println!(
        "  ratio: {:.2}x the bare consumer end to end, {:.2}x while consuming",
        rate(&ours) / rate(&bare),
        consuming / rate(&bare)
    );
    if let Some(refusal) = refused.first() {
        println!(
            "  burnrate, librdkafka's prefetch sizes: refused in {} of {rounds} rounds: {refusal}",
            refused.len()
        );
    }
    if !paced.is_empty() {
        let paced = median(paced);
        println!(
            "  burnrate, librdkafka's prefetch sizes: {:>7.0} messages/s {:>4.0}% CPU, {:.2}x the bare consumer; {}",
            rate(&paced),
            paced.cpu * 100.0,
            rate(&paced) / rate(&bare),
            paced.health.join(", ")
        );
    }
}
