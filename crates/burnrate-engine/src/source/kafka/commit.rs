//! Kafka's side of the commit coordinator ([`crate::source::commit`]): a partition's position
//! is its next offset, under app id `kafka/<group>/<topic>/<partition>`.
//!
//! The sink reports a partition's next offset once every message before it is durable and
//! windowed (segments are written in offset order, one partition at a time, so a report is
//! never ahead of a gap). The consuming task commits what was reported, after a flush and
//! inside a rebalance before partitions are given up: first to the dataset's positions table,
//! which is what a partition resumes from, then to the group's offsets in Kafka, which stay for
//! lag monitoring. A failed commit keeps its offsets for the next try.
//!
//! Must not know: how rows are decoded or written.

use std::path::Path;
use std::time::Instant;

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

use super::PartitionKey;
use crate::EngineError;
use crate::publish::health::PipelineHealth;
use crate::source::commit::CommitCoordinator;

/// The commit coordinator of a consumer group's partitions.
pub type OffsetCommits = CommitCoordinator<PartitionKey>;

/// The coordinator of `group`'s partitions, for the dataset under `root`.
pub fn offset_commits(root: &Path, group: &str) -> OffsetCommits {
    let group = group.to_string();
    CommitCoordinator::new(root, move |(topic, partition): &PartitionKey| {
        super::position_app_id(&group, topic, *partition)
    })
}

/// Commits every reported offset: to the positions table, then to the group in Kafka. A
/// failure of either is counted and logged, and the offsets are kept for the next call.
pub fn commit_offsets<C: ConsumerContext>(
    commits: &OffsetCommits,
    consumer: &impl Consumer<C>,
    health: &PipelineHealth,
) -> Result<(), EngineError> {
    let offsets = match commits.commit() {
        Ok(offsets) => offsets,
        Err(error) => {
            health.commit_failed();
            tracing::warn!(error = %error, "committing offsets to the positions table failed; retried with the next flush");
            return Ok(());
        }
    };
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
            commits.keep(offsets);
        }
    }
    Ok(())
}
