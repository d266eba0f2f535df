//! The files source's commit log: which inputs are in the dataset, under which segment.
//!
//! A segment's Parquet files are written first and its ledger line appended (and fsynced)
//! after; a crash between the two leaves files that no ledger line names. Opening the ledger
//! deletes those orphans, so the inputs behind them are simply processed again, and the
//! cumulative-metric state is rebuilt only from what was committed.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::EngineError;
use crate::sink::parquet_sink::remove_segments;

pub const STATE_DIR: &str = "_burnrate";
const LEDGER_FILE: &str = "files-ledger.jsonl";
/// Segment names of the files source start with this; other sources own other prefixes.
pub const FILES_SEGMENT_PREFIX: &str = "files-";

/// One input file as the ledger knows it: its path under the input root and a hash of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InputId {
    pub path: String,
    pub xxh3: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    segment: String,
    committed_at: String,
    inputs: Vec<InputId>,
}

#[derive(Debug)]
pub struct FileLedger {
    path: PathBuf,
    segments: HashSet<String>,
    inputs: HashMap<InputId, String>,
}

impl FileLedger {
    /// Opens (or starts) the ledger under `data_dir` and removes uncommitted output.
    /// Returns the ledger and how many orphaned files it removed.
    pub fn open(data_dir: &Path) -> Result<(FileLedger, usize), EngineError> {
        let dir = data_dir.join(STATE_DIR);
        fs::create_dir_all(&dir).map_err(|e| EngineError::io(&dir, e))?;
        let path = dir.join(LEDGER_FILE);
        let mut ledger = FileLedger {
            path: path.clone(),
            segments: HashSet::new(),
            inputs: HashMap::new(),
        };
        for entry in read_entries(&path)? {
            for input in entry.inputs {
                ledger.inputs.insert(input, entry.segment.clone());
            }
            ledger.segments.insert(entry.segment);
        }
        let removed = ledger.remove_orphans(data_dir)?;
        Ok((ledger, removed))
    }

    /// The segments the ledger under `data_dir` holds, read without opening it for writing (and
    /// without removing anything): what compaction may merge.
    pub fn committed_at(data_dir: &Path) -> Result<HashSet<String>, EngineError> {
        let path = data_dir.join(STATE_DIR).join(LEDGER_FILE);
        Ok(read_entries(&path)?
            .into_iter()
            .map(|e| e.segment)
            .collect())
    }

    pub fn committed_segments(&self) -> usize {
        self.segments.len()
    }

    pub fn contains(&self, input: &InputId) -> bool {
        self.inputs.contains_key(input)
    }

    /// Appends a committed segment; durable when this returns.
    pub fn commit(&mut self, segment: &str, inputs: &[InputId]) -> Result<(), EngineError> {
        let entry = Entry {
            segment: segment.to_string(),
            committed_at: chrono::Utc::now().to_rfc3339(),
            inputs: inputs.to_vec(),
        };
        let mut line =
            serde_json::to_string(&entry).map_err(|e| EngineError::Schema(e.to_string()))?;
        line.push('\n');
        let io = |e| EngineError::io(&self.path, e);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        file.write_all(line.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        self.segments.insert(entry.segment.clone());
        for input in entry.inputs {
            self.inputs.insert(input, entry.segment.clone());
        }
        Ok(())
    }

    fn remove_orphans(&self, data_dir: &Path) -> Result<usize, EngineError> {
        remove_segments(data_dir, |segment, temporary| {
            segment.starts_with(FILES_SEGMENT_PREFIX)
                && (temporary || !self.segments.contains(segment))
        })
    }
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
