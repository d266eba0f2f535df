//! The commit coordinator: the one place a source's committed position moves, for every source.
//!
//! A position is what a source resumes from: a Kafka partition's next offset, the number of the
//! receiver's last write-ahead log, the number of the files ledger's last line. The durability
//! path ([`super::durable`]) reports a position once every row before it is in files committed
//! to their tables' Delta logs and the windows have counted it. [`CommitCoordinator::commit`]
//! then writes every reported position to the dataset's positions table in one Delta commit
//! (a `txn` per position), and only what it committed may the source act on: Kafka commits
//! the group's offsets, the receiver deletes its logs, the ledger counts its line.
//!
//! A failed commit keeps its positions for the next one. Nothing is lost meanwhile: the files
//! are durable, and a restart from the older position writes them again under the same names,
//! which the windows skip.
//!
//! Must not know: how rows are decoded or written, or what a source does with a committed
//! position.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::EngineError;
use crate::sink::table_log;

/// Positions durable in the tables whose commit has not succeeded yet, keyed by what the
/// source calls them (a partition, or `()` for a source with one position). Shared by the
/// thread that flushes (which reports them) and the one that commits them.
pub struct CommitCoordinator<K> {
    durable: Arc<Mutex<BTreeMap<K, i64>>>,
    /// The dataset's root, whose positions table the positions go to.
    root: PathBuf,
    /// The positions table's app id of a key.
    app_id: Arc<dyn Fn(&K) -> String + Send + Sync>,
}

impl<K> Clone for CommitCoordinator<K> {
    fn clone(&self) -> Self {
        CommitCoordinator {
            durable: self.durable.clone(),
            root: self.root.clone(),
            app_id: self.app_id.clone(),
        }
    }
}

impl<K: Ord + Clone> CommitCoordinator<K> {
    /// A coordinator for the positions table under `root`, where `app_id` names a key's row.
    pub fn new(root: &Path, app_id: impl Fn(&K) -> String + Send + Sync + 'static) -> Self {
        CommitCoordinator {
            durable: Arc::default(),
            root: root.to_path_buf(),
            app_id: Arc::new(app_id),
        }
    }

    /// The position the positions table holds for each of `keys` that has one.
    pub fn logged(&self, keys: &[K]) -> Result<BTreeMap<K, i64>, EngineError> {
        let ids: Vec<String> = keys.iter().map(|key| (self.app_id)(key)).collect();
        let logged = table_log::logged_positions(&self.root, &ids)?;
        Ok(keys
            .iter()
            .zip(&ids)
            .filter_map(|(key, id)| logged.get(id).map(|position| (key.clone(), *position)))
            .collect())
    }

    fn durable(&self) -> MutexGuard<'_, BTreeMap<K, i64>> {
        // The map stays valid if a thread panicked holding the lock.
        self.durable
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Everything of `key` before `position` is durable. A position never moves back.
    pub fn durable_up_to(&self, key: K, position: i64) {
        let mut durable = self.durable();
        let entry = durable.entry(key).or_insert(position);
        *entry = (*entry).max(position);
    }

    /// Whether positions wait to be committed.
    pub fn is_empty(&self) -> bool {
        self.durable().is_empty()
    }

    /// Commits every reported position to the positions table, in one commit, and returns
    /// them. On failure they are kept for the next call. The lock is not held while the table
    /// is written, so the flushing thread can report the next flush meanwhile.
    pub fn commit(&self) -> Result<BTreeMap<K, i64>, EngineError> {
        let positions = std::mem::take(&mut *self.durable());
        if positions.is_empty() {
            return Ok(positions);
        }
        let rows: Vec<(String, i64)> = positions
            .iter()
            .map(|(key, position)| ((self.app_id)(key), *position))
            .collect();
        match table_log::commit_positions(&self.root, &rows) {
            Ok(()) => Ok(positions),
            Err(error) => {
                self.keep(positions);
                Err(error)
            }
        }
    }

    /// Puts back positions whose commit (or whatever the source does after it) failed, for
    /// the next try.
    pub fn keep(&self, positions: BTreeMap<K, i64>) {
        for (key, position) in positions {
            self.durable_up_to(key, position);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_keeps_its_furthest_durable_position() {
        let commits = CommitCoordinator::new(Path::new("/data"), |key: &(String, i32)| {
            format!("{}/{}", key.0, key.1)
        });
        assert!(commits.is_empty());
        commits.durable_up_to(("t".into(), 0), 10);
        commits.durable_up_to(("t".into(), 0), 7);
        commits.durable_up_to(("t".into(), 1), 3);
        let durable = commits.durable().clone();
        assert_eq!(durable.get(&("t".into(), 0)), Some(&10));
        assert_eq!(durable.get(&("t".into(), 1)), Some(&3));
    }

    #[test]
    fn a_failed_commit_keeps_its_positions_and_a_later_one_commits_the_furthest() {
        let root = tempfile::tempdir().unwrap();
        // A file where the positions table's folder would be: every commit fails.
        let blocked = root.path().join(table_log::POSITIONS_DIR);
        std::fs::create_dir_all(blocked.parent().unwrap()).unwrap();
        std::fs::write(&blocked, b"not a folder").unwrap();
        let commits = CommitCoordinator::new(root.path(), |_: &()| "receiver/pod-0".to_string());
        commits.durable_up_to((), 5);
        assert!(commits.commit().is_err());
        assert!(!commits.is_empty(), "kept for the next try");
        commits.durable_up_to((), 6);
        std::fs::remove_file(&blocked).unwrap();
        let committed = commits.commit().unwrap();
        assert_eq!(committed, BTreeMap::from([((), 6)]));
        assert!(commits.is_empty());
        let logged = commits.logged(&[()]).unwrap();
        assert_eq!(logged, BTreeMap::from([((), 6)]));
    }
}
