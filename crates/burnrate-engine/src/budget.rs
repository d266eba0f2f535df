//! The process's memory budget: one count of the bytes that data in flight holds (request
//! bodies being read, exports waiting for the writer, rows buffered until their flush), against
//! one limit derived from `memory_limit`.
//!
//! Stages reserve before they hold, and a reservation that does not fit is refused: the receiver
//! answers 503 and stops reading the body. A stage that already holds data it must keep (the
//! writer turning an acknowledged request into rows) reserves with [`Reservation::force`], which
//! may pass the limit; the next refusals bring it back.
//!
//! The limit is a share of what `memory_limit` leaves beyond the process's fixed part, and the
//! largest fixed part is the code, whose size depends on the build. So it is measured: a
//! sampler reads how much of the binary is resident, and the limit shrinks as the code pages in.
//! It reads the whole resident size too, for a source to hold back on what the budget does not
//! count ([`MemoryBudget::resident_share`]).
//!
//! Must not know: where the bytes come from or what they are.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The least the process holds however little data it has: its code, mapped from the binary and
/// nearly all resident once the pipeline has run a while (`RssFile`: 81 MiB of the release
/// build), and the runtime, DataFusion's session and librdkafka's client before the first
/// message ([`RUNTIME_BASE`]). Measured 2026-12-01, draining Kafka under a 192 MiB limit. A
/// share of the whole limit left that fixed part out: there, data in flight was allowed 77 MiB,
/// and the peak passed the limit by more than 10% in 2 of 13 runs (up to 217 MiB); with this
/// base, 167-180 MiB in four runs. A bigger build (the tests' binary, with some dependencies
/// unoptimised: 91-101 MiB of code) is measured, see [`MemoryBudget::for_memory_limit`].
const PROCESS_BASE: u64 = RELEASE_CODE + RUNTIME_BASE;

/// The release build's resident code (`RssFile`), measured 2026-12-01.
const RELEASE_CODE: u64 = 81 << 20;

/// Anonymous memory the process holds whatever its data: the runtime, DataFusion's session,
/// librdkafka's client (17 MiB, measured with [`PROCESS_BASE`]), and since the tables have
/// Delta logs, their writer (delta-rs and its I/O runtime): 12 MiB more at idle after one
/// backfill (28-29 against 40-42 MiB), and 16-24 MiB more at the Kafka memory-limit test's peak
/// (83 against 99-107 MiB), which then peaked at 201-208 MiB under its 192 MiB limit with 17
/// here and at 190-204 MiB with 37, in six runs (2026-12-02, the test build).
const RUNTIME_BASE: u64 = 37 << 20;

/// How often the sampler reads how much of the process is resident: its code pages in over
/// seconds, and its whole size is what a source holds back on when the budget undercounts.
const SAMPLE_EVERY: Duration = Duration::from_millis(25);

/// The share of what `memory_limit` leaves beyond [`PROCESS_BASE`] that data in flight may hold.
/// The rest grows with the data too: DataFusion's window state, Parquet encoding of a flush,
/// builders while a run decodes, socket buffers, and the allocator's slack (the binary has
/// mimalloc keep freed memory for 100 ms; returning it at once cost the decoder 35-60%). At
/// 0.5 of the whole limit, 100 stalled 30 MiB uploads peaked at 526 MiB of RSS under a 512 MiB
/// limit (`tests/receiver_gate.rs`); at 0.4 they stayed under it.
const IN_FLIGHT_SHARE: f64 = 0.4;

/// Bytes reserved against a limit, shared by every stage that holds data.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: AtomicUsize,
    used: AtomicUsize,
    refusals: AtomicUsize,
    /// The `memory_limit` the budget was derived from, in bytes (0 if none).
    memory_limit: u64,
    /// The process's resident size at the last reading, in bytes (0 before one).
    resident: AtomicU64,
}

impl MemoryBudget {
    /// A budget for a process that must stay under `memory_limit` bytes of RSS: 0.4 of what
    /// is left after the process's fixed part, 157 MiB of the default 512 MiB (see
    /// [`in_flight_limit`]). Where the system tells (Linux), the fixed part is measured while
    /// the process runs: its resident code plus [`RUNTIME_BASE`], when that is more than
    /// [`PROCESS_BASE`]. The limit only shrinks: code pages the kernel reclaims come back.
    pub fn for_memory_limit(memory_limit: u64) -> Arc<Self> {
        let budget = Arc::new(MemoryBudget {
            memory_limit,
            ..Self::unsampled(in_flight_limit(memory_limit, PROCESS_BASE))
        });
        if Residency::read().is_some() {
            let weak = Arc::downgrade(&budget);
            let sampler = std::thread::Builder::new()
                .name("memory-sampler".into())
                .spawn(move || follow_residency(weak, memory_limit));
            if let Err(error) = sampler {
                tracing::warn!(error = %error, "could not start the memory sampler; the budget assumes the release build's code size");
            }
        }
        budget
    }

    #[cfg(test)]
    fn with_limit(limit: usize) -> Arc<Self> {
        Arc::new(Self::unsampled(limit))
    }

    fn unsampled(limit: usize) -> Self {
        MemoryBudget {
            limit: AtomicUsize::new(limit),
            used: AtomicUsize::new(0),
            refusals: AtomicUsize::new(0),
            memory_limit: 0,
            resident: AtomicU64::new(0),
        }
    }

    /// The process's resident size as a share of `memory_limit`, at the last reading (every
    /// 25 ms); `None` where the system does not tell. Memory the budget does not count (a
    /// broker's answers larger than the fetch sizes asked for, the allocator's slack, encoding
    /// buffers) shows here.
    pub fn resident_share(&self) -> Option<f64> {
        let resident = self.resident.load(Ordering::Relaxed);
        (self.memory_limit > 0 && resident > 0).then(|| resident as f64 / self.memory_limit as f64)
    }

    /// Bytes that data in flight may hold.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Takes a reading of the resident code into the limit.
    fn observe_code(&self, memory_limit: u64, resident_code: u64) {
        let base = resident_code.saturating_add(RUNTIME_BASE).max(PROCESS_BASE);
        self.limit
            .fetch_min(in_flight_limit(memory_limit, base), Ordering::Relaxed);
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether at least `share` (0.0 to 1.0) of the limit is held: a source that paused at the
    /// limit resumes below a lower share, so it does not pause and resume message by message.
    pub fn is_full(&self, share: f64) -> bool {
        self.used() as f64 >= self.limit() as f64 * share
    }

    /// Reservations refused since start.
    pub fn refusals(&self) -> usize {
        self.refusals.load(Ordering::Relaxed)
    }

    /// An empty reservation, to grow as data arrives.
    pub fn reservation(self: &Arc<Self>) -> Reservation {
        Reservation {
            budget: self.clone(),
            bytes: 0,
        }
    }

    fn try_take(&self, bytes: usize) -> bool {
        let limit = self.limit();
        let taken = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                let after = used.checked_add(bytes)?;
                (after <= limit).then_some(after)
            })
            .is_ok();
        if !taken {
            self.refusals.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }
}

/// What data in flight may hold in a process limited to `memory_limit` whose fixed part is
/// `base`: 0.4 of what is left. A limit that leaves less than a quarter of itself gets 0.4 of
/// that quarter.
fn in_flight_limit(memory_limit: u64, base: u64) -> usize {
    let left = memory_limit.saturating_sub(base).max(memory_limit / 4);
    (left as f64 * IN_FLIGHT_SHARE) as usize
}

/// Keeps `budget`'s limit in step with the resident code, and its reading of the resident
/// size current, until the budget is dropped.
fn follow_residency(budget: Weak<MemoryBudget>, memory_limit: u64) {
    while let Some(budget) = budget.upgrade() {
        let Some(residency) = Residency::read() else {
            return;
        };
        budget.resident.store(residency.total, Ordering::Relaxed);
        budget.observe_code(memory_limit, residency.code);
        drop(budget);
        std::thread::sleep(SAMPLE_EVERY);
    }
}

/// How much of the process is resident, in bytes.
struct Residency {
    /// All of it (`VmRSS`).
    total: u64,
    /// File-backed memory (`RssFile`): its code, mapped from the binary (the Parquet files are
    /// written, not mapped).
    code: u64,
}

impl Residency {
    /// `None` where the system does not tell.
    fn read() -> Option<Self> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let field = |name: &str| -> Option<u64> {
            let kib = status
                .lines()
                .find_map(|line| line.strip_prefix(name))?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse::<u64>()
                .ok()?;
            Some(kib * 1024)
        };
        Some(Residency {
            total: field("VmRSS:")?,
            code: field("RssFile:")?,
        })
    }
}

/// Bytes held against a [`MemoryBudget`], given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    bytes: usize,
}

impl Reservation {
    /// Reserves `bytes` more, or nothing if the budget cannot hold them.
    pub fn try_grow(&mut self, bytes: usize) -> bool {
        let taken = self.budget.try_take(bytes);
        if taken {
            self.bytes += bytes;
        }
        taken
    }

    /// Reserves `bytes` more whatever the budget holds: for data already in memory that must
    /// be kept.
    pub fn force(&mut self, bytes: usize) {
        self.budget.used.fetch_add(bytes, Ordering::AcqRel);
        self.bytes += bytes;
    }

    /// Holds exactly `bytes` from now on, growing whatever the budget holds (like
    /// [`Self::force`]) or giving back what is no longer held.
    pub fn resize(&mut self, bytes: usize) {
        if bytes >= self.bytes {
            self.force(bytes - self.bytes);
        } else {
            self.budget
                .used
                .fetch_sub(self.bytes - bytes, Ordering::AcqRel);
            self.bytes = bytes;
        }
    }

    /// Bytes this reservation holds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Moves everything `other` holds into this reservation.
    pub fn absorb(&mut self, mut other: Reservation) {
        self.bytes += std::mem::take(&mut other.bytes);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn the_budget_is_a_share_of_what_the_process_leaves() {
        let limit = |memory_limit: u64| in_flight_limit(memory_limit, PROCESS_BASE);
        assert_eq!(limit(512 * MIB), (394.0 * MIB as f64 * 0.4) as usize);
        assert_eq!(limit(192 * MIB), (74.0 * MIB as f64 * 0.4) as usize);
        // Below 128 MiB a quarter is left, not nothing.
        assert_eq!(limit(100 * MIB), (25.0 * MIB as f64 * 0.4) as usize);
    }

    #[test]
    fn more_resident_code_leaves_less_for_data_and_the_limit_never_grows_back() {
        let budget = MemoryBudget::with_limit(in_flight_limit(192 * MIB, PROCESS_BASE));
        // The release build's code: the fixed base holds.
        budget.observe_code(192 * MIB, 70 * MIB);
        assert_eq!(budget.limit(), (74.0 * MIB as f64 * 0.4) as usize);
        // 101 MiB of code and 37 of runtime leave 54 MiB.
        budget.observe_code(192 * MIB, 101 * MIB);
        assert_eq!(budget.limit(), (54.0 * MIB as f64 * 0.4) as usize);
        // Code pages reclaimed by the kernel come back when used: the limit stays.
        budget.observe_code(192 * MIB, 50 * MIB);
        assert_eq!(budget.limit(), (54.0 * MIB as f64 * 0.4) as usize);
    }

    #[test]
    fn the_sampler_measures_the_code_and_the_size_of_this_process() {
        let residency = Residency::read().expect("Linux tells a process what of it is resident");
        let code = residency.code;
        assert!(code > 0 && residency.total >= code);
        assert_eq!(MemoryBudget::with_limit(1000).resident_share(), None);
        let budget = MemoryBudget::for_memory_limit(1 << 40);
        // Taken away from under the sampler: its next reading brings the limit back down.
        budget.limit.store(usize::MAX, Ordering::Relaxed);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while budget.limit() == usize::MAX {
            assert!(std::time::Instant::now() < deadline, "no reading in 5 s");
            std::thread::sleep(SAMPLE_EVERY);
        }
        let base = (code + RUNTIME_BASE).max(PROCESS_BASE);
        assert!(budget.limit() <= in_flight_limit(1 << 40, base));
        let share = budget
            .resident_share()
            .expect("a reading of the resident size");
        let resident = share * (1u64 << 40) as f64;
        assert!(
            resident >= code as f64,
            "{resident} bytes resident, {code} of them code"
        );
    }

    #[test]
    fn a_reservation_past_the_limit_is_refused_and_dropping_gives_back() {
        let budget = MemoryBudget::with_limit(1000);
        let mut first = budget.reservation();
        assert!(first.try_grow(600));
        let mut second = budget.reservation();
        assert!(!second.try_grow(600), "600 + 600 is over 1000");
        assert_eq!(budget.refusals(), 1);
        assert!(second.try_grow(400));
        assert_eq!(budget.used(), 1000);
        second.force(100);
        assert_eq!(budget.used(), 1100);
        first.absorb(second);
        assert_eq!(first.bytes(), 1100);
        assert_eq!(budget.used(), 1100, "moving a reservation keeps its bytes");
        first.resize(300);
        assert_eq!((first.bytes(), budget.used()), (300, 300));
        first.resize(1200);
        assert_eq!((first.bytes(), budget.used()), (1200, 1200));
        drop(first);
        assert_eq!(budget.used(), 0);
    }
}
