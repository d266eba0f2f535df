//! The commit coordinator: the one place a partition's committed offset moves.
//!
//! The sink reports a partition's next offset once every message before it is in durable files
//! committed to their tables' Delta logs (segments are written in offset order, one partition
//! at a time, so a report is never ahead of a gap). The consuming task commits what was
//! reported, after a flush and inside a rebalance before partitions are given up: first to the
//! dataset's positions table (one Delta commit of `txn` ids for every partition, app id
//! `kafka/<group>/<topic>/<partition>`), which is what a partition resumes from, then to the
//! group's offsets in Kafka, which stay for lag monitoring. A failed commit keeps its offsets
//! for the next try: the files are durable either way, and a replay from an older offset
//! rewrites them under the same names.
//!
//! Must not know: how rows are decoded or written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

use super::PartitionKey;
use crate::EngineError;
use crate::publish::health::PipelineHealth;
use crate::sink::table_log;

/// Offsets durable in Parquet whose commit has not succeeded yet, shared by the sink (which
/// reports them) and the consuming task (which commits them).
#[derive(Clone)]
pub struct CommitCoordinator {
    durable: Arc<Mutex<BTreeMap<PartitionKey, i64>>>,
    /// The dataset's root, whose positions table the offsets go to.
    root: PathBuf,
    group: String,
}

impl CommitCoordinator {
    pub fn new(root: &Path, group: &str) -> Self {
        CommitCoordinator {
            durable: Arc::default(),
            root: root.to_path_buf(),
            group: group.to_string(),
        }
    }

    /// The positions table's app id of a partition.
    fn app_id(&self, (topic, partition): &PartitionKey) -> String {
        super::position_app_id(&self.group, topic, *partition)
    }

    /// The next offset the positions table holds for each of `keys` that has one.
    pub fn logged(
        &self,
        keys: &[PartitionKey],
    ) -> Result<BTreeMap<PartitionKey, i64>, EngineError> {
        let ids: Vec<String> = keys.iter().map(|key| self.app_id(key)).collect();
        let logged = table_log::logged_positions(&self.root, &ids)?;
        Ok(keys
            .iter()
            .zip(&ids)
            .filter_map(|(key, id)| logged.get(id).map(|next| (key.clone(), *next)))
            .collect())
    }

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
        let positions: Vec<(String, i64)> = offsets
            .iter()
            .map(|(key, next)| (self.app_id(key), *next))
            .collect();
        if let Err(error) = table_log::commit_positions(&self.root, &positions) {
            health.commit_failed();
            tracing::warn!(error = %error, "committing offsets to the positions table failed; retried with the next flush");
            self.keep(offsets);
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
                self.keep(offsets);
            }
        }
        Ok(())
    }

    /// Puts back offsets whose commit failed, for the next try.
    fn keep(&self, offsets: BTreeMap<PartitionKey, i64>) {
        for (key, next) in offsets {
            self.durable_up_to(key, next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_keeps_its_furthest_durable_offset() {
        let commits = CommitCoordinator::new(Path::new("/data"), "g");
        assert!(commits.is_empty());
        commits.durable_up_to(("t".into(), 0), 10);
        commits.durable_up_to(("t".into(), 0), 7);
        commits.durable_up_to(("t".into(), 1), 3);
        let durable = commits.durable().clone();
        assert_eq!(durable.get(&("t".into(), 0)), Some(&10));
        assert_eq!(durable.get(&("t".into(), 1)), Some(&3));
    }
}
