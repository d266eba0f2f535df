//! End-to-end Kafka throughput on this machine: messages/s and rows/s from a real broker
//! (Tansu, in memory, on loopback) to durable Parquet with committed offsets, beside the
//! baseline of the same run: a bare rdkafka consumer that reads the same topics and does
//! nothing with the bytes. That consumer has the fetch back-off burnrate sets; one with
//! librdkafka's defaults is printed beside it.
//!
//! `cargo bench -p burnrate --bench kafka_throughput` (needs `BURNRATE_TANSU`, which
//! `scripts/test.sh` sets up) streams 1,000,008 messages (the 36 real sample exports × 27,778,
//! 4.4 GB), each copy a second later than the one before and in sessions of its own, so event
//! time moves on over 7.7 hours as a backlog's does (`support::stream`;
//! `BURNRATE_BENCH_STREAM=identical` replays the samples as they are;
//! `BURNRATE_BENCH_STALENESS` sets `cumulative_staleness_seconds`, `BURNRATE_BENCH_FLUSH_MIB`
//! `flush_bytes`, `BURNRATE_BENCH_FLUSH_INTERVAL_MS` `flush_interval_ms`,
//! `BURNRATE_BENCH_PARTITIONS` the partitions a topic, 3 by default); under
//! `cargo test` it runs once on a small stream as a smoke test.
//! Each side is timed from its first message to its last (for burnrate: to the final commit), so
//! group joins are not counted against either; each round's bare consumer runs just before its
//! burnrate rounds, and each round's own ratio is printed beside the medians' (the machine
//! drifts by up to a quarter within minutes). The median of three rounds is reported, with the CPU
//! its process used meanwhile (200% is both cores of this machine), by stage, and for burnrate its
//! CPU a message, the CPU while consuming (first to last message taken in) and its peak RSS. The
//! whole machine's busy time over the same span is printed beside the process's: what the broker
//! and the kernel took, and what was left idle. Every round runs in a process of its own (see
//! [`RoundSpec`]), as a user's burnrate would. A second burnrate configuration sets librdkafka's
//! own prefetch sizes over burnrate's, so the memory budget pauses the partitions again and again.
//!
//! The cost of the Delta logs is measured against burnrate itself: the same pipeline writing
//! plain Parquet, committed to no log (`table_logs = false`, as burnrate wrote before the logs),
//! its rounds interleaved with the logged ones so that drift on the machine hits both alike,
//! and printed as they are (CPU a message, by stage, its own metrics) to show where that cost lands.

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
use support::stream::COPY_STEP;

const TOPICS: [&str; 3] = ["otlp_logs", "otlp_metrics", "otlp_spans"];
/// Partitions a topic; `BURNRATE_BENCH_PARTITIONS` sets another, to see what a partition's
/// segment costs (every flush writes a file a table for each partition that has rows).
fn partition_count() -> i32 {
    std::env::var("BURNRATE_BENCH_PARTITIONS")
        .ok()
        .and_then(|count| count.parse().ok())
        .filter(|count| *count > 0)
        .unwrap_or(3)
}

/// A round that takes longer has stalled: a full one takes about a minute on this machine.
const STALL: Duration = Duration::from_secs(300);

/// The stage name for CPU time no thread reading accounts for.
const UNREAD: &str = "threads gone between readings";

struct Round {
    /// First message to the end: the final commit for burnrate, the last message for the bare consumer.
    seconds: f64,
    /// CPU time of the whole process over the same span, as a share of one core.
    cpu: f64,
    /// First message to the last one taken in (for burnrate: before the drain's last idle turn
    /// and the final flush).
    consuming: f64,
    /// CPU time of the whole process over `consuming`, as a share of one core: what catching
    /// up uses, the end's idle turn and final flush left out.
    consuming_cpu: f64,
    /// CPU time the whole machine was busy over `seconds`, every process's (the broker's, the
    /// kernel's) with this one's, as a share of one core: how much of the machine was left.
    machine: f64,
    rows: usize,
    /// The pipeline's own account of where time went: flushes, commits, pauses for memory.
    health: Vec<String>,
    /// CPU seconds over the round by stage (thread name), largest first: which stage is busy.
    stages: Vec<(String, f64)>,
    /// The round's process at its largest (`VmHWM`), in bytes.
    peak_rss: u64,
}

impl Round {
    /// The round as its process prints it for the bench: one `name value` line a field.
    fn print(&self) {
        println!("seconds {}", self.seconds);
        println!("cpu {}", self.cpu);
        println!("consuming {}", self.consuming);
        println!("consuming_cpu {}", self.consuming_cpu);
        println!("machine {}", self.machine);
        println!("rows {}", self.rows);
        println!("peak_rss {}", self.peak_rss);
        for line in &self.health {
            println!("health {line}");
        }
        for (stage, seconds) in &self.stages {
            println!("stage {seconds} {stage}");
        }
    }

    /// The round a process printed with [`Round::print`]; `Err` with the reason a round was
    /// refused (`refused <reason>`).
    fn parse(printed: &str) -> Result<Round, String> {
        let mut round = Round {
            seconds: 0.0,
            cpu: 0.0,
            consuming: 0.0,
            consuming_cpu: 0.0,
            machine: 0.0,
            rows: 0,
            health: Vec::new(),
            stages: Vec::new(),
            peak_rss: 0,
        };
        for line in printed.lines() {
            let (name, value) = line.split_once(' ').unwrap_or((line, ""));
            let number = || -> f64 {
                value
                    .parse()
                    .unwrap_or_else(|_| panic!("a round printed {line:?}"))
            };
            match name {
                "refused" => return Err(value.to_string()),
                "seconds" => round.seconds = number(),
                "cpu" => round.cpu = number(),
                "consuming" => round.consuming = number(),
                "consuming_cpu" => round.consuming_cpu = number(),
                "machine" => round.machine = number(),
                "rows" => round.rows = number() as usize,
                "peak_rss" => round.peak_rss = number() as u64,
                "health" => round.health.push(value.to_string()),
                "stage" => {
                    let (seconds, stage) = value.split_once(' ').unwrap_or((value, ""));
                    let seconds = seconds
                        .parse()
                        .unwrap_or_else(|_| panic!("a round printed {line:?}"));
                    round.stages.push((stage.to_string(), seconds));
                }
                _ => {}
            }
        }
        Ok(round)
    }
}

/// Which pipeline a round runs.
#[derive(Debug, Clone, Copy)]
enum Side {
    /// The bare consumer: the baseline.
    Bare,
    /// burnrate, committing to the Delta logs or writing plain Parquet.
    Burnrate { logs: bool },
}

/// One round, run in a process of its own: the bench runs its own binary again with
/// `--round <bare|logged|plain> <broker> <group> <messages> [key=value ...]` and reads what
/// that process prints. burnrate's source holds while the process's resident size is over 0.8
/// of `memory_limit`, and a round run inside the bench's process counted the bench's memory
/// too (it had produced the stream and run the earlier rounds): at the 2,981 holds of a
/// full-size run, every one of them the resident rule's, the process stood at 1.20 of the 512
/// MiB limit on average (2026-12-05), so the source was held whenever its data passed a quarter
/// of its room. A user's burnrate runs alone in its process; so does each round, the
/// baseline's too.
struct RoundSpec {
    side: Side,
    broker: String,
    group: String,
    messages: usize,
    client: Vec<(String, String)>,
}

impl RoundSpec {
    fn new(
        side: Side,
        broker: &str,
        group: &str,
        messages: usize,
        client: &[(&str, &str)],
    ) -> Self {
        RoundSpec {
            side,
            broker: broker.to_string(),
            group: group.to_string(),
            messages,
            client: client
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn args(&self) -> Vec<String> {
        let side = match self.side {
            Side::Bare => "bare",
            Side::Burnrate { logs: true } => "logged",
            Side::Burnrate { logs: false } => "plain",
        };
        let mut args = vec![
            "--round".to_string(),
            side.to_string(),
            self.broker.clone(),
            self.group.clone(),
            self.messages.to_string(),
        ];
        args.extend(self.client.iter().map(|(k, v)| format!("{k}={v}")));
        args
    }

    /// The round this process was started to run, if it was.
    fn from_args() -> Option<Self> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let [flag, side, broker, group, messages, client @ ..] = args.as_slice() else {
            return None;
        };
        if flag != "--round" {
            return None;
        }
        let side = match side.as_str() {
            "bare" => Side::Bare,
            "logged" => Side::Burnrate { logs: true },
            "plain" => Side::Burnrate { logs: false },
            other => panic!("--round {other}: not a side"),
        };
        Some(RoundSpec {
            side,
            broker: broker.clone(),
            group: group.clone(),
            messages: messages.parse().expect("--round's message count"),
            client: client
                .iter()
                .map(|pair| {
                    let (k, v) = pair.split_once('=').expect("--round's key=value");
                    (k.to_string(), v.to_string())
                })
                .collect(),
        })
    }

    /// Runs the round in a new process of this binary and reads what it printed.
    fn run_apart(&self) -> Result<Round, String> {
        let exe = std::env::current_exe().expect("the bench's own binary");
        let output = std::process::Command::new(exe)
            .args(self.args())
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("the bench runs its own binary");
        assert!(
            output.status.success(),
            "round {:?} of group {} failed: {}",
            self.side,
            self.group,
            output.status
        );
        Round::parse(&String::from_utf8_lossy(&output.stdout))
    }

    /// Runs the round in this process, which was started for it, and prints it.
    fn run_here(&self) {
        let client: Vec<(&str, &str)> = self
            .client
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let round = match self.side {
            Side::Bare => Ok(bare_consumer(
                &self.broker,
                &self.group,
                self.messages,
                &client,
            )),
            Side::Burnrate { logs } => {
                // The binary's allocator settings; the bare consumer keeps the C library's
                // own, as a consumer of the user's would.
                allocator::return_freed_memory_promptly();
                burnrate(&self.broker, &self.group, self.messages, &client, logs)
            }
        };
        match round {
            Ok(mut round) => {
                round.peak_rss = peak_rss();
                round.print();
            }
            Err(reason) => println!("refused {}", reason.replace('\n', " ")),
        }
    }
}

/// This process's resident size at its largest (`VmHWM`), in bytes; 0 where not told.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    support::status_peak_kib(&status).map_or(0, |kib| kib * 1024)
}

/// Reads every message once and touches nothing but its length. Every partition is assigned
/// from its start, with no consumer group: the baseline is reading, and a group's coordination
/// is outside it (burnrate's is outside its timing too, which starts at its first message).
/// librdkafka's defaults, but for the properties in `client`.
fn bare_consumer(broker: &str, group: &str, messages: usize, client: &[(&str, &str)]) -> Round {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", broker)
        .set("group.id", group)
        .set("enable.auto.commit", "false");
    for (key, value) in client {
        config.set(*key, *value);
    }
    let consumer: BaseConsumer = config.create().unwrap();
    let mut partitions = TopicPartitionList::new();
    for topic in TOPICS {
        for partition in 0..partition_count() {
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
            first.get_or_insert_with(|| {
                let now = (Instant::now(), support::cpu_seconds("self"));
                (now, support::machine_busy_seconds())
            });
            bytes += message.payload().map_or(0, <[u8]>::len);
            seen += 1;
        }
    }
    std::hint::black_box(bytes);
    let (seconds, cpu, machine) = first.map_or((0.0, 0.0, 0.0), |((t, cpu), machine)| {
        let seconds = t.elapsed().as_secs_f64();
        (
            seconds,
            (support::cpu_seconds("self") - cpu) / seconds,
            (support::machine_busy_seconds() - machine) / seconds,
        )
    });
    Round {
        seconds,
        cpu,
        consuming: seconds,
        consuming_cpu: cpu,
        machine,
        rows: 0,
        health: Vec::new(),
        stages: Vec::new(),
        peak_rss: 0,
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

/// burnrate's default `cumulative_staleness_seconds`; `BURNRATE_BENCH_STALENESS` (seconds)
/// sets another, to see what letting series go and reading them back costs.
fn cumulative_staleness() -> u64 {
    std::env::var("BURNRATE_BENCH_STALENESS")
        .ok()
        .and_then(|seconds| seconds.parse().ok())
        .unwrap_or(KafkaSourceConfig::default().cumulative_staleness_seconds)
}

/// burnrate's default `flush_bytes`; `BURNRATE_BENCH_FLUSH_MIB` sets another. Under about 23
/// MiB it cuts the flushes; at the default and over, the budget's quarter in buffered rows
/// does (68 flushes at 32 and at 64 MiB for 360,000 messages, docs/benchmarks.md).
fn flush_bytes() -> usize {
    std::env::var("BURNRATE_BENCH_FLUSH_MIB")
        .ok()
        .and_then(|mib| mib.parse::<usize>().ok())
        .map_or(KafkaSourceConfig::default().flush_bytes, |mib| mib << 20)
}

/// burnrate's default `flush_interval_ms`; `BURNRATE_BENCH_FLUSH_INTERVAL_MS` sets another. A
/// round under valgrind runs fifty times slower, and the default interval would cut it into
/// flushes a native round never makes (`scripts/kafka-instructions.sh` sets it out of reach).
fn flush_interval_ms() -> u64 {
    std::env::var("BURNRATE_BENCH_FLUSH_INTERVAL_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(KafkaSourceConfig::default().flush_interval_ms)
}

/// `burnrate run --source kafka --drain` in-process: decode, Parquet, fsync, commit, with
/// `client` properties set over burnrate's; with the Delta logs, or plain Parquet without.
fn burnrate(
    broker: &str,
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
        brokers: broker.to_string(),
        group_id: group.into(),
        topics: TOPICS.iter().map(|t| KafkaTopic::named(t)).collect(),
        client: client
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        cumulative_staleness_seconds: cumulative_staleness(),
        flush_bytes: flush_bytes(),
        flush_interval_ms: flush_interval_ms(),
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
            let machine = support::machine_busy_seconds();
            while watch.messages() < total {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            (
                first,
                machine,
                (Instant::now(), support::cpu_seconds("self")),
            )
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
        let machine_ended = support::machine_busy_seconds();
        let ((first, cpu), machine, (consumed, consumed_cpu)) = first.await.unwrap();
        let consuming = (consumed - first, consumed_cpu - cpu);
        let machine = machine_ended - machine;
        Ok((summary, ended.0 - first, ended.1 - cpu, machine, consuming))
    });
    let (summary, took, cpu, machine, (consuming, consuming_cpu)) = summary?;
    let stages = sampler.stop();
    assert_eq!(summary.messages as usize, messages);
    Ok(Round {
        seconds: took.as_secs_f64(),
        cpu: cpu / took.as_secs_f64(),
        consuming: consuming.as_secs_f64(),
        consuming_cpu: consuming_cpu / consuming.as_secs_f64(),
        machine: machine / took.as_secs_f64(),
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
                    "burnrate_delta_series",
                    "burnrate_delta_forgotten_total",
                    "burnrate_delta_read_back_total",
                ]
                .iter()
                .any(|w| l.split_whitespace().next().is_some_and(|m| m.ends_with(w)))
            })
            .map(str::to_string)
            .collect(),
        stages,
        peak_rss: 0,
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
    // The pipeline's own log, for a round that goes wrong (a round's process writes it to the
    // same standard error).
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    if let Some(round) = RoundSpec::from_args() {
        round.run_here();
        return;
    }
    let full = std::env::args().any(|a| a == "--bench");
    let (copies, rounds) = if full { (27_778, 3) } else { (3, 1) };
    // Another stream length, for finding where a run goes wrong.
    let copies = std::env::var("BURNRATE_BENCH_COPIES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(copies);
    let broker = Broker::start();
    broker.create_topics(&TOPICS, partition_count());
    let exports = sample_exports();
    let stream = std::env::var("BURNRATE_BENCH_STREAM").unwrap_or_else(|_| "later".into());
    let (messages, stream) = match stream.as_str() {
        "identical" => (
            broker.produce_samples(&exports, copies),
            "every copy the samples as they are".to_string(),
        ),
        "later" => (
            broker.produce_later_copies(&exports, 0..copies, COPY_STEP),
            format!("each copy {COPY_STEP:?} later, in sessions of its own"),
        ),
        other => panic!("BURNRATE_BENCH_STREAM={other}: `later` or `identical`"),
    };
    let bytes: usize = exports.iter().map(|e| e.bytes.len()).sum::<usize>() * copies;

    // The baseline gets the fetch back-off burnrate gives itself. With librdkafka's default
    // (a second), a bare consumer whose queue fills waits out the rest of the second before it
    // fetches that partition again: at 360,000 messages on this machine, 39,377 and 58,080
    // messages/s at 22% and 43% CPU in two runs, against 110,576 at 80% with burnrate's.
    let backoff = FETCH_QUEUE_BACKOFF_MS.to_string();
    let backoff = [("fetch.queue.backoff.ms", backoff.as_str())];
    let address = broker.address.as_str();
    let round = |side, group: String, client: &[(&str, &str)]| {
        RoundSpec::new(side, address, &group, messages, client).run_apart()
    };
    // Each round's bare consumer runs just before its burnrate rounds, so that the machine's
    // drift (up to a quarter within minutes here) falls on the baseline and burnrate alike, and
    // each round's own ratio is printed beside the medians'.
    let (mut bare, mut bare_defaults) = (Vec::new(), Vec::new());
    let (mut logged, mut plain) = (Vec::new(), Vec::new());
    let mut round_times = Vec::new();
    for i in 0..rounds {
        let baseline = |group, client: &[(&str, &str)]| {
            round(Side::Bare, group, client).expect("a bare consumer is never refused")
        };
        let this_bare = baseline(format!("bare-{i}"), &backoff);
        // Which goes first alternates.
        for logs in [i % 2 == 0, i % 2 != 0] {
            let group = format!("burnrate-{}-{i}", if logs { "logged" } else { "plain" });
            let measured = round(Side::Burnrate { logs }, group, &[])
                .expect("burnrate's own prefetch sizes fit its budget");
            if logs {
                round_times.push((this_bare.seconds, measured.seconds));
            }
            if logs { &mut logged } else { &mut plain }.push(measured);
        }
        bare.push(this_bare);
        bare_defaults.push(baseline(format!("bare-defaults-{i}"), &[]));
    }
    let (bare, bare_defaults) = (median(bare), median(bare_defaults));
    let (ours, plain) = (median(logged), median(plain));
    // The same messages each round: the ratio of rates is the inverse of the times'.
    let mut sorted_ratios: Vec<f64> = round_times.iter().map(|(b, o)| b / o).collect();
    sorted_ratios.sort_by(f64::total_cmp);
    let (paced, refused): (Vec<_>, Vec<_>) = (0..rounds)
        .map(|i| {
            let group = format!("burnrate-prefetch-{i}");
            round(Side::Burnrate { logs: true }, group, &LIBRDKAFKA_PREFETCH)
        })
        .partition(Result::is_ok);
    let paced: Vec<Round> = paced.into_iter().flatten().collect();
    let refused: Vec<String> = refused.into_iter().filter_map(Result::err).collect();
    let rate = |r: &Round| messages as f64 / r.seconds;
    // What the machine's busy time is out of: 100% a core.
    let all_cores = std::thread::available_parallelism().map_or(1, |n| n.get()) * 100;
    let mib = |r: &Round| bytes as f64 / r.seconds / (1 << 20) as f64;
    let cpu_a_message = |r: &Round| r.cpu * r.seconds / messages as f64 * 1e6;
    println!(
        "kafka_throughput: {messages} messages, {bytes} bytes, 3 topics x {} partitions, median of {rounds}; {stream}; cumulative staleness {} s",
        partition_count(),
        cumulative_staleness()
    );
    println!(
        "  bare rdkafka consumer, fetch back-off {FETCH_QUEUE_BACKOFF_MS} ms as burnrate: {:>10.0} messages/s {:>8.1} MiB/s {:>4.0}% CPU (the machine {:.0}% of {all_cores}%)",
        rate(&bare),
        mib(&bare),
        bare.cpu * 100.0,
        bare.machine * 100.0
    );
    println!(
        "  the same, librdkafka's default fetch back-off (1 s): {:>7.0} messages/s {:>4.0}% CPU",
        rate(&bare_defaults),
        bare_defaults.cpu * 100.0
    );
    println!(
        "  burnrate to Parquet:   {:>10.0} messages/s {:>8.1} MiB/s {:>4.0}% CPU (the machine {:.0}% of {all_cores}%, {:.1} µs of CPU a message) {:>10.0} rows/s, peak RSS {:.0} MiB",
        rate(&ours),
        mib(&ours),
        ours.cpu * 100.0,
        ours.machine * 100.0,
        // The figure docs/benchmarks.md compares builds by, worked out by hand before.
        cpu_a_message(&ours),
        ours.rows as f64 / ours.seconds,
        ours.peak_rss as f64 / (1 << 20) as f64
    );
    let stages = |r: &Round| {
        let stages: Vec<String> = r
            .stages
            .iter()
            .map(|(stage, seconds)| format!("{stage} {:.0}%", seconds / r.seconds * 100.0))
            .collect();
        stages.join(", ")
    };
    println!("  burnrate CPU by thread: {}", stages(&ours));
    println!("  burnrate's own metrics: {}", ours.health.join(", "));
    // Side by side with the logged round's lines above: where the logs' cost lands.
    println!(
        "  burnrate, plain Parquet (no Delta logs): {:>7.0} messages/s {:>4.0}% CPU ({:.1} µs of CPU a message), peak RSS {:.0} MiB; with the logs {:.3}x its throughput",
        rate(&plain),
        plain.cpu * 100.0,
        cpu_a_message(&plain),
        plain.peak_rss as f64 / (1 << 20) as f64,
        rate(&ours) / rate(&plain)
    );
    println!("  plain Parquet CPU by thread: {}", stages(&plain));
    println!("  plain Parquet's own metrics: {}", plain.health.join(", "));
    let consuming = messages as f64 / ours.consuming;
    println!(
        "  burnrate while consuming: {consuming:>7.0} messages/s {:>4.0}% CPU (without the drain's last idle turn and final flush)",
        ours.consuming_cpu * 100.0
    );
    println!(
        "  ratio: {:.4}x the bare consumer end to end, {:.4}x while consuming (medians); each round against its own bare consumer: {:.4}x median ({})",
        rate(&ours) / rate(&bare),
        consuming / rate(&bare),
        sorted_ratios[sorted_ratios.len() / 2],
        round_times
            .iter()
            .map(|(b, o)| format!(
                "{:.4}x: {:.0} against {:.0} messages/s",
                b / o,
                messages as f64 / o,
                messages as f64 / b
            ))
            .collect::<Vec<_>>()
            .join("; ")
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
