//! Which segments their source has committed: only those may be merged. A source that restarts
//! removes the files of segments it never committed and writes them again, by name; had such
//! a file been merged into another, its rows would be there twice.
//!
//! Each source says it its own way, and this reads each without touching it: the Kafka
//! partitions' positions in the dataset's positions table, the receiver's write-ahead logs not
//! deleted yet, the files ledger's lines, the window stage's checkpoint sequence per replica.
//! Files of a merge (`compact-*`) and of a dataset adopted from before the logs belong to no
//! source and are always committed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use crate::EngineError;
use crate::sink::table_log;
use crate::source::kafka::{KAFKA_SEGMENT_PREFIX, position_app_id, segment_position};
use crate::source::ledger::{FILES_SEGMENT_PREFIX, FileLedger};
use crate::source::receiver::{RECEIVER_SEGMENT_PREFIX, receiver_seq, uncommitted_seqs};
use crate::stream::windows::{WINDOW_SEGMENT_PREFIX, checkpointed_seqs};

/// What the sources had committed when it was read. Read it after the tables' files: a
/// segment in a table's log whose source had not committed it then is not committed here
/// either, since every source commits after the tables.
#[derive(Debug, Default)]
pub struct CommittedSegments {
    /// Next offset by (topic, partition), for the configured consumer group.
    kafka: HashMap<(String, i32), i64>,
    /// The receiver's write-ahead logs not deleted yet, by sequence number.
    receiver_pending: HashSet<u64>,
    files: HashSet<String>,
    windows: BTreeMap<String, u64>,
}

impl CommittedSegments {
    /// Reads every source's committed position under `root`. `segments` are the segment names
    /// that will be asked about (the Kafka positions are looked up for their partitions);
    /// `kafka_group` is the consumer group whose offsets count.
    pub fn read<'a>(
        root: &Path,
        kafka_group: &str,
        segments: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, EngineError> {
        let partitions: HashSet<(String, i32)> = segments
            .into_iter()
            .filter_map(segment_position)
            .map(|(topic, partition, _)| (topic, partition))
            .collect();
        let partitions: Vec<(String, i32)> = partitions.into_iter().collect();
        let app_ids: Vec<String> = partitions
            .iter()
            .map(|(topic, partition)| position_app_id(kafka_group, topic, *partition))
            .collect();
        let logged = table_log::logged_positions(root, &app_ids)?;
        let kafka = partitions
            .into_iter()
            .zip(&app_ids)
            .filter_map(|(key, id)| logged.get(id).map(|next| (key, *next)))
            .collect();
        Ok(CommittedSegments {
            kafka,
            receiver_pending: uncommitted_seqs(root)?.into_iter().collect(),
            files: FileLedger::committed_at(root)?,
            windows: checkpointed_seqs(root)?,
        })
    }

    /// Whether `segment`'s source has committed it, so that no restart will write it again.
    pub fn contains(&self, segment: &str) -> bool {
        if segment.starts_with(KAFKA_SEGMENT_PREFIX) {
            return segment_position(segment).is_some_and(|(topic, partition, last)| {
                self.kafka
                    .get(&(topic, partition))
                    .is_some_and(|next| last < *next)
            });
        }
        if segment.starts_with(RECEIVER_SEGMENT_PREFIX) {
            return receiver_seq(segment).is_none_or(|seq| !self.receiver_pending.contains(&seq));
        }
        if segment.starts_with(FILES_SEGMENT_PREFIX) {
            return self.files.contains(segment);
        }
        if let Some(rest) = segment.strip_prefix(WINDOW_SEGMENT_PREFIX) {
            return rest.rsplit_once('-').is_some_and(|(replica, seq)| {
                let seq: Option<u64> = seq.parse().ok();
                seq.zip(self.windows.get(replica))
                    .is_some_and(|(seq, checkpointed)| seq <= *checkpointed)
            });
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_says_what_it_committed() {
        let committed = CommittedSegments {
            kafka: HashMap::from([(("otlp-logs".to_string(), 2), 100)]),
            receiver_pending: HashSet::from([9, 12]),
            files: HashSet::from(["files-aa".to_string()]),
            windows: BTreeMap::from([("pod-0".to_string(), 7)]),
        };
        let kafka = crate::source::kafka::segment_name;
        assert!(committed.contains(&kafka("otlp-logs", 2, 50, 99)));
        assert!(!committed.contains(&kafka("otlp-logs", 2, 50, 100)));
        assert!(
            !committed.contains(&kafka("otlp-logs", 3, 0, 1)),
            "no position"
        );
        assert!(committed.contains("receiver-00000000000000000008"));
        assert!(!committed.contains("receiver-00000000000000000009"));
        assert!(committed.contains("receiver-pod-0-00000000000000000011"));
        assert!(!committed.contains("receiver-pod-0-00000000000000000012"));
        assert!(committed.contains("files-aa"));
        assert!(!committed.contains("files-bb"));
        assert!(committed.contains("windows-pod-0-000000000007"));
        assert!(!committed.contains("windows-pod-0-000000000008"));
        assert!(!committed.contains("windows-pod-1-000000000001"));
        assert!(committed.contains("compact-6f1c"), "a merge's own file");
    }
}
