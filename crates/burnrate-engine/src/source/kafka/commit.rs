//! The commit coordinator: the one place a partition's committed offset moves.
//!
//! The sink reports a partition's next offset once every message before it is in durable files
//! (segments are written in offset order, one partition at a time, so a report is never ahead
//! of a gap). The consuming task commits what was reported, after a flush and inside a
//! rebalance before partitions are given up. A failed commit keeps its offsets for the next
//! try: the files are durable either way, and a replay from an older offset rewrites them
//! under the same names.
//!
//! Must not know: how rows are decoded or written.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

use super::PartitionKey;
use crate::EngineError;
use crate::publish::health::PipelineHealth;

/// Offsets durable in Parquet whose commit has not succeeded yet, shared by the sink (which
/// reports them) and the consuming task (which commits them).
#[derive(Clone, Default)]
pub struct CommitCoordinator {
    durable: Arc<Mutex<BTreeMap<PartitionKey, i64>>>,
}

impl CommitCoordinator {
    fn durable(&self) -> MutexGuard<'_, BTreeMap<PartitionKey, i64>> {
        // The map stays valid if a thread panicked holding the lock.
        self.durable
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every message of `key` before `next` is durable.
    pub fn durable_up_to(&self, key: PartitionKey, next: i64) {
        let mut durable = self.durable();
        let entry = durable.entry(key).or_insert(next);
        *entry = (*entry).max(next);
    }

    pub fn is_empty(&self) -> bool {
        self.durable().is_empty()
    }

    /// Commits every reported offset. The lock is not held while the broker answers, so the
    /// sink can report the next flush meanwhile.
    pub fn commit<C: ConsumerContext>(
        &self,
        consumer: &impl Consumer<C>,
        health: &PipelineHealth,
    ) -> Result<(), EngineError> {
        let offsets = std::mem::take(&mut *self.durable());
        if offsets.is_empty() {
            return Ok(());
        }
        let mut list = TopicPartitionList::new();
        for ((topic, partition), next) in &offsets {
            list.add_partition_offset(topic, *partition, Offset::Offset(*next))
                .map_err(|e| EngineError::Kafka(e.to_string()))?;
        }
        let started = Instant::now();
        match consumer.commit(&list, CommitMode::Sync) {
            Ok(()) => health.committed(started.elapsed()),
            Err(e) => {
                health.commit_failed();
                tracing::warn!(error = %e, "offset commit failed; retried with the next flush");
                for (key, next) in offsets {
                    self.durable_up_to(key, next);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_keeps_its_furthest_durable_offset() {
        let commits = CommitCoordinator::default();
        assert!(commits.is_empty());
        commits.durable_up_to(("t".into(), 0), 10);
        commits.durable_up_to(("t".into(), 0), 7);
        commits.durable_up_to(("t".into(), 1), 3);
        let durable = commits.durable().clone();
        assert_eq!(durable.get(&("t".into(), 0)), Some(&10));
        assert_eq!(durable.get(&("t".into(), 1)), Some(&3));
    }
}
