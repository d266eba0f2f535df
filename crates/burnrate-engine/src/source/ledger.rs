//! The files source's ledger: which inputs are in the dataset, under which segment.
//!
//! A segment's line, numbered, is appended (and fsynced) before its Parquet files are written;
//! the segment counts once the dataset's positions table holds its number (a `txn`, app id
//! [`POSITION_APP_ID`], committed by the commit coordinator after every table has the
//! segment's files and the windows counted them), as the Kafka source's offsets and the
//! receiver's logs do. A crash before that commit leaves a line the positions table does not
//! hold, and maybe files: opening the ledger drops the line and deletes the files, so the
//! inputs behind them are simply processed again, and the cumulative-metric state is rebuilt
//! only from what was committed.
//!
//! A dataset written without logs (`table_logs = false`) has no positions table: there the
//! line is appended after the files, unnumbered, and is the commit itself, as lines written
//! before the positions table are.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::EngineError;
use crate::sink::parquet_sink::remove_segments;
use crate::source::commit::CommitCoordinator;

pub const STATE_DIR: &str = "_burnrate";
const LEDGER_FILE: &str = "files-ledger.jsonl";
/// The ledger's app id in the positions table; the version is the last committed line's number.
pub const POSITION_APP_ID: &str = "files/ledger";
/// Segment names of the files source start with this; other sources own other prefixes.
pub const FILES_SEGMENT_PREFIX: &str = "files-";

/// One input file as the ledger knows it: its path under the input root and a hash of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InputId {
    pub path: String,
    pub xxh3: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    segment: String,
    /// When the line was written.
    committed_at: String,
    inputs: Vec<InputId>,
    /// The line's number, 1 for the first, which the positions table holds once the segment
    /// is committed. None for a line that is the commit itself (see the module doc).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
}

#[derive(Debug)]
pub struct FileLedger {
    path: PathBuf,
    /// Whether the dataset has logs, and so a positions table.
    logged: bool,
    /// Committed lines, the number the next one gets less one.
    lines: u64,
    segments: HashSet<String>,
    inputs: HashMap<InputId, String>,
}

/// A line the ledger holds for a segment whose files are being written: committed by
/// [`FileLedger::commit`].
#[derive(Debug)]
pub struct Intent {
    entry: Entry,
}

impl Intent {
    /// The line's number: the segment's position, as the windows count it.
    pub fn seq(&self) -> u64 {
        self.entry.seq.unwrap_or(0)
    }
}

/// The commit coordinator of the ledger's position: the number of its last committed line.
pub fn position_commits(data_dir: &Path) -> CommitCoordinator<()> {
    CommitCoordinator::new(data_dir, |_: &()| POSITION_APP_ID.to_string())
}

impl FileLedger {
    /// Opens (or starts) the ledger under `data_dir` and removes uncommitted output: lines the
    /// positions table does not hold, and files no committed line names. Returns the ledger and
    /// how many orphaned files it removed.
    pub fn open(data_dir: &Path) -> Result<(FileLedger, usize), EngineError> {
        let dir = data_dir.join(STATE_DIR);
        fs::create_dir_all(&dir).map_err(|e| EngineError::io(&dir, e))?;
        let path = dir.join(LEDGER_FILE);
        let entries = read_entries(&path)?;
        let total = entries.len();
        let (committed, through) = committed_entries(data_dir, entries)?;
        if committed.len() < total {
            rewrite(&path, &committed)?;
            tracing::info!(ledger = %path.display(), dropped = total - committed.len(), "dropped ledger lines the positions table does not hold: their inputs are read again");
        }
        let lines = committed.len() as u64;
        if through.is_some_and(|through| through > lines) {
            // The ledger lost lines the positions table holds (restored from a backup, say):
            // their files are orphans now, and their numbers are given out again, which the
            // windows have counted already. The positions table goes back to the ledger, or a
            // line given one of those numbers would count before its commit.
            let version = i64::try_from(lines).unwrap_or(i64::MAX);
            crate::sink::table_log::commit_positions(
                data_dir,
                &[(POSITION_APP_ID.to_string(), version)],
            )?;
            tracing::warn!(ledger = %path.display(), lines, positions = through, "the files ledger holds fewer lines than the positions table: its position goes back to the ledger's");
        }
        let mut ledger = FileLedger {
            path,
            logged: !crate::sink::table_log::without_logs(data_dir),
            lines,
            segments: HashSet::new(),
            inputs: HashMap::new(),
        };
        for entry in committed {
            for input in entry.inputs {
                ledger.inputs.insert(input, entry.segment.clone());
            }
            ledger.segments.insert(entry.segment);
        }
        let removed = ledger.remove_orphans(data_dir)?;
        Ok((ledger, removed))
    }

    /// The segments the ledger under `data_dir` holds committed, read without opening it for
    /// writing (and without removing anything): what compaction may merge.
    pub fn committed_at(data_dir: &Path) -> Result<HashSet<String>, EngineError> {
        let path = data_dir.join(STATE_DIR).join(LEDGER_FILE);
        Ok(committed_entries(data_dir, read_entries(&path)?)?
            .0
            .into_iter()
            .map(|e| e.segment)
            .collect())
    }

    pub fn contains(&self, input: &InputId) -> bool {
        self.inputs.contains_key(input)
    }

    /// Numbers the next segment and, where the dataset has logs, appends its line before its
    /// files are written (durable when this returns).
    pub fn intend(&mut self, segment: &str, inputs: &[InputId]) -> Result<Intent, EngineError> {
        let entry = Entry {
            segment: segment.to_string(),
            committed_at: chrono::Utc::now().to_rfc3339(),
            inputs: inputs.to_vec(),
            seq: Some(self.lines + 1),
        };
        if self.logged {
            self.append(&entry)?;
        }
        Ok(Intent { entry })
    }

    /// Counts the segment of `intent`, whose files every table now has, once the commit
    /// coordinator committed its number to the positions table ([`POSITION_APP_ID`]). A
    /// dataset without logs has no positions table: there its line is appended to the ledger
    /// now, which is the commit. Durable when this returns.
    pub fn commit(&mut self, intent: Intent) -> Result<(), EngineError> {
        let mut entry = intent.entry;
        let seq = entry.seq.unwrap_or(self.lines + 1);
        if !self.logged {
            entry.seq = None;
            self.append(&entry)?;
        }
        self.lines = seq;
        self.segments.insert(entry.segment.clone());
        for input in entry.inputs {
            self.inputs.insert(input, entry.segment.clone());
        }
        Ok(())
    }

    fn append(&self, entry: &Entry) -> Result<(), EngineError> {
        let mut line =
            serde_json::to_string(entry).map_err(|e| EngineError::Schema(e.to_string()))?;
        line.push('\n');
        let io = |e| EngineError::io(&self.path, e);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        file.write_all(line.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    fn remove_orphans(&self, data_dir: &Path) -> Result<usize, EngineError> {
        remove_segments(data_dir, |segment, temporary| {
            segment.starts_with(FILES_SEGMENT_PREFIX)
                && (temporary || !self.segments.contains(segment))
        })
    }
}

/// Of `entries`, those committed: unnumbered ones, and numbered ones up to the number the
/// positions table under `data_dir` holds. Of two lines with one number (a segment whose write
/// failed, tried again in the same process), the later one is the segment. With them, the
/// number the positions table holds.
fn committed_entries(
    data_dir: &Path,
    entries: Vec<Entry>,
) -> Result<(Vec<Entry>, Option<u64>), EngineError> {
    let through = position_commits(data_dir)
        .logged(&[()])?
        .get(&())
        .and_then(|&seq| u64::try_from(seq).ok());
    let last: HashMap<u64, usize> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.seq.map(|seq| (seq, i)))
        .collect();
    let committed = entries
        .into_iter()
        .enumerate()
        .filter(|(i, e)| match e.seq {
            None => true,
            Some(seq) => last.get(&seq) == Some(i) && through.is_some_and(|t| seq <= t),
        })
        .map(|(_, e)| e)
        .collect();
    Ok((committed, through))
}

/// Replaces the ledger at `path` with `entries`, all at once (a new file renamed over it).
fn rewrite(path: &Path, entries: &[Entry]) -> Result<(), EngineError> {
    let mut text = String::new();
    for entry in entries {
        text.push_str(
            &serde_json::to_string(entry).map_err(|e| EngineError::Schema(e.to_string()))?,
        );
        text.push('\n');
    }
    let fresh = path.with_extension("jsonl.new");
    let io = |e| EngineError::io(path, e);
    let mut file = File::create(&fresh).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&fresh, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| EngineError::io(dir, e))?;
    }
    Ok(())
}

/// The ledger's entries (none if there is no ledger), a torn last line left out.
fn read_entries(path: &Path) -> Result<Vec<Entry>, EngineError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(EngineError::io(path, e)),
    };
    let mut entries = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| EngineError::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        // A torn last line is a commit that did not happen.
        let Ok(entry) = serde_json::from_str::<Entry>(&line) else {
            tracing::warn!(ledger = %path.display(), line = n + 1, "ignoring torn ledger line");
            continue;
        };
        entries.push(entry);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::table_log::logged_positions;

    fn input(path: &str) -> InputId {
        InputId {
            path: path.into(),
            xxh3: format!("{:016x}", path.len()),
        }
    }

    /// What the files source does once a segment's files are written: its number committed
    /// by the coordinator, then its line counted.
    fn commit(ledger: &mut FileLedger, root: &Path, intent: Intent) {
        let commits = position_commits(root);
        commits.durable_up_to((), i64::try_from(intent.seq()).unwrap());
        commits.commit().unwrap();
        ledger.commit(intent).unwrap();
    }

    fn ledger_text(root: &Path) -> String {
        fs::read_to_string(root.join(STATE_DIR).join(LEDGER_FILE)).unwrap()
    }

    #[test]
    fn a_line_counts_once_the_positions_table_holds_its_number() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let (mut ledger, _) = FileLedger::open(root).unwrap();
        let first = ledger.intend("files-a", &[input("a.json")]).unwrap();
        assert_eq!(first.seq(), 1);
        commit(&mut ledger, root, first);
        // The next segment's line is written, its commit never is: a crash in between.
        let second = ledger.intend("files-b", &[input("b.json")]).unwrap();
        assert_eq!(second.seq(), 2);
        drop(second);
        drop(ledger);
        assert!(ledger_text(root).contains("files-b"));
        let committed = FileLedger::committed_at(root).unwrap();
        assert_eq!(committed, HashSet::from(["files-a".to_string()]));

        // Opening drops the line: its input is read again, and its segment takes number 2.
        let (mut ledger, _) = FileLedger::open(root).unwrap();
        assert!(ledger.contains(&input("a.json")));
        assert!(!ledger.contains(&input("b.json")));
        assert!(!ledger_text(root).contains("files-b"));
        // A write that fails is tried again under the same number: the later line counts.
        let failed = ledger.intend("files-b", &[input("b.json")]).unwrap();
        drop(failed);
        let again = ledger.intend("files-c", &[input("b.json")]).unwrap();
        assert_eq!(again.seq(), 2);
        commit(&mut ledger, root, again);
        let committed = FileLedger::committed_at(root).unwrap();
        assert_eq!(
            committed,
            HashSet::from(["files-a".to_string(), "files-c".to_string()])
        );
        let app_id = POSITION_APP_ID.to_string();
        let positions = logged_positions(root, std::slice::from_ref(&app_id)).unwrap();
        assert_eq!(positions.get(&app_id), Some(&2));
        let (ledger, _) = FileLedger::open(root).unwrap();
        assert!(ledger.contains(&input("b.json")));
        assert_eq!(ledger.lines, 2);
        drop(ledger);

        // The ledger loses its lines: the positions table goes back with it, so a line that
        // gets number 1 again and is never committed does not count.
        fs::write(root.join(STATE_DIR).join(LEDGER_FILE), "").unwrap();
        let (mut ledger, _) = FileLedger::open(root).unwrap();
        let positions = logged_positions(root, std::slice::from_ref(&app_id)).unwrap();
        assert_eq!(positions.get(&app_id), Some(&0));
        let lost = ledger.intend("files-d", &[input("a.json")]).unwrap();
        assert_eq!(lost.seq(), 1);
        drop(lost);
        assert!(FileLedger::committed_at(root).unwrap().is_empty());
    }

    #[test]
    fn without_logs_the_line_is_the_commit() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        crate::sink::table_log::write_without_logs(root).unwrap();
        let (mut ledger, _) = FileLedger::open(root).unwrap();
        let intent = ledger.intend("files-a", &[input("a.json")]).unwrap();
        assert!(!root.join(STATE_DIR).join(LEDGER_FILE).exists());
        commit(&mut ledger, root, intent);
        let text = ledger_text(root);
        assert!(text.contains("files-a") && !text.contains("seq"), "{text}");
        assert!(!root.join(crate::sink::table_log::POSITIONS_DIR).exists());
        let (ledger, _) = FileLedger::open(root).unwrap();
        assert!(ledger.contains(&input("a.json")));
    }

    #[test]
    fn lines_written_before_the_positions_table_are_commits() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join(STATE_DIR)).unwrap();
        let old = |segment: &str, path: &str| Entry {
            segment: segment.into(),
            committed_at: "2026-11-30T00:00:00Z".into(),
            inputs: vec![input(path)],
            seq: None,
        };
        let text: String = [old("files-a", "a.json"), old("files-b", "b.json")]
            .iter()
            .map(|e| serde_json::to_string(e).unwrap() + "\n")
            .collect();
        assert!(!text.contains("seq"), "{text}");
        fs::write(root.join(STATE_DIR).join(LEDGER_FILE), &text).unwrap();
        let (mut ledger, _) = FileLedger::open(root).unwrap();
        assert!(ledger.contains(&input("a.json")) && ledger.contains(&input("b.json")));
        let next = ledger.intend("files-c", &[input("c.json")]).unwrap();
        assert_eq!(next.seq(), 3, "numbered after the lines there");
        commit(&mut ledger, root, next);
        assert_eq!(FileLedger::committed_at(root).unwrap().len(), 3);
    }
}
