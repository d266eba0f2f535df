//! A backfill through the files source: `burnrate run --source files --drain` over a directory
//! of generated Claude Code exports (`burnrate generate --out`, one export per person, hour and
//! signal), with one decode worker and with one per core, alternating, in the same run. Each
//! run writes a fresh dataset; both must write the same rows. Reported per setting: files/s,
//! MiB/s of exports, the process's CPU (200% is both cores of this machine) and its peak RSS.
//!
//! The files source decodes on the decode stage, so even one worker overlaps decoding with
//! writing; the ratio is what the workers beyond the first add.
//!
//! `cargo bench -p burnrate --bench files_backfill` generates 10 days of 40 people (about 8,000
//! files, 340 MB) and runs each setting 3 times; under `cargo test` it runs 1 day of 4 people
//! once as a smoke test.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::Instant;

use support::{spawn_burnrate, wait_with_peak_rss};

struct Round {
    seconds: f64,
    cpu: f64,
    peak_rss: u64,
    /// The rows the run wrote, per table, as its summary line says.
    summary: String,
}

fn backfill(input: &Path, scratch: &Path, threads: &str) -> Round {
    let output = tempfile::tempdir_in(scratch).unwrap();
    let started = Instant::now();
    let child = spawn_burnrate(
        &[
            "run",
            "--source",
            "files",
            "--drain",
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.path().to_str().unwrap(),
        ],
        &[("BURNRATE__FILES__DECODE_THREADS", threads)],
    );
    let finished = wait_with_peak_rss(child);
    let seconds = started.elapsed().as_secs_f64();
    assert!(finished.success, "backfill failed: {}", finished.stderr);
    // "burnrate: N files (0 already ingested), B bytes → DIR [table rows, ...]": the rows.
    let summary = finished
        .stderr
        .lines()
        .find(|l| l.contains(" files ("))
        .and_then(|l| l.rsplit_once('['))
        .map(|(_, rows)| rows.trim_end_matches(']').to_string())
        .unwrap_or_else(|| panic!("no summary in: {}", finished.stderr));
    Round {
        seconds,
        cpu: finished.cpu_seconds / seconds,
        peak_rss: finished.peak_rss,
        summary,
    }
}

fn median(mut rounds: Vec<Round>) -> Round {
    rounds.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    rounds.swap_remove(rounds.len() / 2)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (days, users, rounds) = if full { ("10", "40", 3) } else { ("1", "4", 1) };
    let scratch = tempfile::tempdir().unwrap();
    let input = scratch.path().join("exports");
    let generate = spawn_burnrate(
        &[
            "generate",
            "--out",
            input.to_str().unwrap(),
            "--days",
            days,
            "--users",
            users,
        ],
        &[],
    );
    let generated = wait_with_peak_rss(generate);
    assert!(generated.success, "generate failed: {}", generated.stderr);
    let files: Vec<u64> = walk(&input);
    let bytes: u64 = files.iter().sum();

    let (mut one, mut per_core) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        one.push(backfill(&input, scratch.path(), "1"));
        per_core.push(backfill(&input, scratch.path(), "0"));
    }
    let (one, per_core) = (median(one), median(per_core));
    assert_eq!(
        one.summary, per_core.summary,
        "both settings write the same rows"
    );
    println!(
        "files_backfill: {} files, {:.0} MiB of exports ({days} days × {users} people), median of {rounds}",
        files.len(),
        bytes as f64 / (1 << 20) as f64
    );
    for (name, r) in [("one decode worker", &one), ("one per core", &per_core)] {
        println!(
            "  {name:>17}: {:>6.2} s  {:>7.0} files/s  {:>6.1} MiB/s  CPU {:>4.0}%  peak RSS {:>4.0} MiB",
            r.seconds,
            files.len() as f64 / r.seconds,
            bytes as f64 / (1 << 20) as f64 / r.seconds,
            r.cpu * 100.0,
            r.peak_rss as f64 / (1 << 20) as f64
        );
    }
    println!("  ratio: {:.2}x", one.seconds / per_core.seconds);
    println!("  rows: {}", per_core.summary);
}

/// The sizes of the export files under `dir`.
fn walk(dir: &Path) -> Vec<u64> {
    let mut sizes = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "pb") {
                sizes.push(entry.metadata().unwrap().len());
            }
        }
    }
    sizes
}
