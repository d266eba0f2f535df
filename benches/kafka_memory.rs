//! Peak RSS of `burnrate run --source kafka --drain` (the release binary, with its default
//! `memory_limit` of 512 MiB) catching up on backlogs of 0.25, 1 and 2 GiB of real Claude Code
//! exports on 9 partitions (3 topics × 3), each copy of the samples a second later than the one
//! before and in sessions of its own (`support::stream`), from two brokers: Tansu (in memory,
//! on loopback), and librdkafka's mock cluster (in this process), which, unlike Tansu, keeps to
//! the fetch sizes the consumer asks for but keeps only the newest 5 MiB (compressed) of each
//! partition, so of the larger backlogs it holds only part. Each backlog is read from the start
//! by a new consumer group, so each run catches up on all the broker holds. RSS is the kernel's
//! high-water mark of the process's own memory (`VmHWM`, see
//! `tests/support::wait_with_peak_rss`).
//!
//! `cargo bench -p burnrate --bench kafka_memory` (needs `BURNRATE_TANSU`); under `cargo test`
//! it runs once on a 10 MiB backlog as a smoke test.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use rdkafka::mocking::MockCluster;
use support::broker::{Broker, listed_messages, produce_later_copies};
use support::stream::COPY_STEP;
use support::{free_port, sample_exports, spawn_burnrate, wait_with_peak_rss};

const TOPICS: [&str; 3] = ["otlp_logs", "otlp_metrics", "otlp_spans"];
const MIB: f64 = (1 << 20) as f64;
const MEMORY_LIMIT: &str = "512MiB";

struct Drained {
    seconds: f64,
    peak_rss: u64,
}

/// Runs the release binary over the whole backlog of the broker at `bootstrap`.
fn drain(bootstrap: &str, group: &str, messages: usize) -> Drained {
    let data = tempfile::tempdir().unwrap();
    let health = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let child = spawn_burnrate(
        &[
            "run",
            "--source",
            "kafka",
            "--drain",
            "--brokers",
            bootstrap,
            "--group",
            group,
            "--output",
            data.path().to_str().unwrap(),
            "--health-listen",
            &health,
            "--memory-limit",
            MEMORY_LIMIT,
        ],
        &[("BURNRATE_LOG", "info")],
    );
    let finished = wait_with_peak_rss(child);
    // What says why a run ended where it did, without every segment's line.
    let why: Vec<&str> = finished
        .stderr
        .lines()
        .filter(|l| !l.contains("segment written"))
        .collect();
    assert!(finished.success, "burnrate failed: {}", why.join("\n"));
    assert!(
        finished.stderr.contains(&format!("{messages} messages")),
        "{}",
        why.join("\n")
    );
    Drained {
        seconds: started.elapsed().as_secs_f64(),
        peak_rss: finished.peak_rss,
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let backlogs_gib: &[f64] = if full {
        &[0.25, 1.0, 2.0]
    } else {
        &[10.0 / 1024.0]
    };
    let tansu = Broker::start();
    tansu.create_topics(&TOPICS, 3);
    let mock = MockCluster::new(1).unwrap();
    for topic in TOPICS {
        mock.create_topic(topic, 3, 1).unwrap();
    }
    let brokers = [
        ("Tansu", tansu.address.clone()),
        ("mock cluster", mock.bootstrap_servers()),
    ];
    let exports = sample_exports();
    let per_copy: usize = exports.iter().map(|e| e.bytes.len()).sum();
    let (mut bytes, mut messages, mut produced) = (0usize, 0usize, 0usize);
    println!(
        "kafka_memory: burnrate run --source kafka --drain, memory_limit {MEMORY_LIMIT}, 9 partitions"
    );
    println!(
        "  {:>12} {:>9} {:>9} {:>8} {:>10} {:>13}",
        "broker", "backlog", "messages", "seconds", "messages/s", "peak RSS"
    );
    for (i, gib) in backlogs_gib.iter().enumerate() {
        let want = (gib * 1024.0 * MIB) as usize;
        let copies = want.saturating_sub(bytes).div_ceil(per_copy);
        // Each backlog continues the last: later copies, in sessions of their own.
        for (_, bootstrap) in &brokers {
            produce_later_copies(bootstrap, &exports, produced..produced + copies, COPY_STEP);
        }
        produced += copies;
        messages += copies * exports.len();
        bytes += copies * per_copy;
        for (name, bootstrap) in &brokers {
            // Tansu holds every message (and lists its ends short, so it is not asked); the
            // mock cluster says what it kept.
            let held = if *name == "Tansu" {
                messages
            } else {
                listed_messages(bootstrap, &TOPICS, 3) as usize
            };
            let drained = drain(bootstrap, &format!("memory-{i}"), held);
            println!(
                "  {:>12} {:>5.0} MiB {:>9} {:>8.1} {:>10.0} {:>9.0} MiB",
                name,
                bytes as f64 / MIB * held as f64 / messages as f64,
                held,
                drained.seconds,
                held as f64 / drained.seconds,
                drained.peak_rss as f64 / MIB
            );
        }
    }
}
