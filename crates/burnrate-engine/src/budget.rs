//! The process's memory budget: one count of the bytes that data in flight holds (request
//! bodies being read, exports waiting for the writer, rows buffered until their flush), against
//! one limit derived from `memory_limit`.
//!
//! Stages reserve before they hold, and a reservation that does not fit is refused: the receiver
//! answers 503 and stops reading the body. A stage that already holds data it must keep (the
//! writer turning an acknowledged request into rows) reserves with [`Reservation::force`], which
//! may pass the limit; the next refusals bring it back.
//!
//! Must not know: where the bytes come from or what they are.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What the process holds however little data it has: its code, mapped from the binary and all
/// resident once the pipeline has run a while (`RssFile`: 77 MiB of the test build, 81 MiB of
/// the release build), and the runtime, DataFusion's session and librdkafka's client before the
/// first message (17 MiB of anonymous memory). Measured 2026-12-01, draining Kafka under a
/// 192 MiB limit. A share of the whole limit left that fixed part out: there, data in flight
/// was allowed 77 MiB, and the peak passed the limit by more than 10% in 2 of 13 runs (up to
/// 217 MiB); with this base, 167-180 MiB in four runs.
const PROCESS_BASE: u64 = 96 << 20;

/// The share of what `memory_limit` leaves beyond [`PROCESS_BASE`] that data in flight may hold.
/// The rest grows with the data too: DataFusion's window state, Parquet encoding of a flush,
/// builders while a run decodes, socket buffers, and the allocator's slack (mimalloc keeps
/// freed memory for a second; returning it at once cost the decoder 35-60%). At 0.5 of the
/// whole limit, 100 stalled 30 MiB uploads peaked at 526 MiB of RSS under a 512 MiB limit
/// (`tests/receiver_gate.rs`); at 0.4 they stayed under it.
const IN_FLIGHT_SHARE: f64 = 0.4;

/// Bytes reserved against a limit, shared by every stage that holds data.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
    refusals: AtomicUsize,
}

impl MemoryBudget {
    /// A budget for a process that must stay under `memory_limit` bytes of RSS: 0.4 of what
    /// is left after the process's fixed part, 166 MiB of the default 512 MiB. A limit that
    /// leaves less than a quarter of itself (under 128 MiB) gets 0.4 of that quarter.
    pub fn for_memory_limit(memory_limit: u64) -> Arc<Self> {
        let left = memory_limit
            .saturating_sub(PROCESS_BASE)
            .max(memory_limit / 4);
        Self::with_limit((left as f64 * IN_FLIGHT_SHARE) as usize)
    }

    fn with_limit(limit: usize) -> Arc<Self> {
        Arc::new(MemoryBudget {
            limit,
            used: AtomicUsize::new(0),
            refusals: AtomicUsize::new(0),
        })
    }

    /// Bytes that data in flight may hold.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether at least `share` (0.0 to 1.0) of the limit is held: a source that paused at the
    /// limit resumes below a lower share, so it does not pause and resume message by message.
    pub fn is_full(&self, share: f64) -> bool {
        self.used() as f64 >= self.limit as f64 * share
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
        let taken = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                let after = used.checked_add(bytes)?;
                (after <= self.limit).then_some(after)
            })
            .is_ok();
        if !taken {
            self.refusals.fetch_add(1, Ordering::Relaxed);
        }
        taken
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

    #[test]
    fn the_budget_is_a_share_of_what_the_process_leaves() {
        const MIB: u64 = 1 << 20;
        let limit = |memory_limit: u64| MemoryBudget::for_memory_limit(memory_limit).limit();
        assert_eq!(limit(512 * MIB), (416.0 * MIB as f64 * 0.4) as usize);
        assert_eq!(limit(192 * MIB), (96.0 * MIB as f64 * 0.4) as usize);
        // Below 128 MiB a quarter is left, not nothing.
        assert_eq!(limit(100 * MIB), (25.0 * MIB as f64 * 0.4) as usize);
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
