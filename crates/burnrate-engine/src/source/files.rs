//! The files source: every OTLP export under a directory, decoded, converted and committed to
//! the Parquet dataset in segments.
//!
//! A segment is a run of input files (in path order) flushed together. Its name is a hash of
//! the inputs' identities, so processing the same inputs again writes the same file names; the
//! ledger remembers committed inputs, so a second run over a grown directory only adds the new
//! files.
//!
//! Files are read in order and decoded on the decode stage ([`crate::decode`], one worker per
//! core), a few ahead of the one being collected; their rows are collected in path order, so
//! segments, cumulative metrics and the ledger see the files in the same order as before.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use burnrate_otlp::{Decoder, Encoding, PayloadHint};
use serde::{Deserialize, Serialize};

use crate::EngineError;
use crate::budget::MemoryBudget;
use crate::decode::{DecodePool, Pending, Undecodable};
use crate::publish::health::PipelineHealth;
use crate::sink::dead_letters::DeadLetter;
use crate::sink::parquet_sink::ParquetSink;
use crate::sink::table_buffer::{FlushTotals, TableBuffer};
use crate::source::durable::{DurablePath, SegmentFlush};
use crate::source::ledger::{
    FILES_SEGMENT_PREFIX, FileLedger, InputId, STATE_DIR, position_commits,
};
use crate::stream::delta_state::{DEFAULT_STALENESS, DeltaState};
use crate::stream::windows::WindowStage;

/// The files source's origin in the window stage.
const FILES_ORIGIN: &str = "files";
/// File endings read as OTLP exports; anything else under the input directory is skipped.
const EXTENSIONS: [&str; 6] = [".pb", ".binpb", ".json", ".pb.gz", ".binpb.gz", ".json.gz"];
/// Files decoding ahead of the one being collected, per decode worker.
const AHEAD_PER_WORKER: usize = 4;
/// ... unless what they hold reaches this share of the memory budget.
const AHEAD_MEMORY_SHARE: f64 = 0.5;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileSourceConfig {
    /// Flush a segment once this many input bytes are decoded.
    pub segment_bytes: usize,
    /// Flush a segment once this many input files are decoded.
    pub segment_files: usize,
    /// Largest export accepted (after gunzip); larger ones are dead letters.
    pub max_payload_bytes: usize,
    /// Threads decoding files; 0 means one per core. Default: 0.
    pub decode_threads: usize,
    /// How long (seconds of event time) a cumulative metric series may go unseen before its
    /// last point leaves memory; one that comes back later is read back from `metric_points`,
    /// a query each time. 0 keeps every series, and memory grows with every session. Default:
    /// 3600.
    pub cumulative_staleness_seconds: u64,
}

impl Default for FileSourceConfig {
    fn default() -> Self {
        FileSourceConfig {
            segment_bytes: 64 << 20,
            segment_files: 2_000,
            max_payload_bytes: burnrate_otlp::DEFAULT_MAX_PAYLOAD_BYTES,
            decode_threads: 0,
            cumulative_staleness_seconds: DEFAULT_STALENESS.as_secs(),
        }
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct FileRunSummary {
    pub files_found: usize,
    /// Files already committed by an earlier run and skipped.
    pub files_skipped: usize,
    pub files_decoded: usize,
    pub bytes_read: u64,

    /// Output files of segments a crashed run wrote but never committed, removed at start.
    pub orphans_removed: usize,
    pub written: FlushTotals,
    pub cumulative_points_converted: u64,
    pub cumulative_resets: u64,
    pub stale_points_dropped: u64,
}

/// What the caller may show while a run goes on.
#[derive(Debug, Clone)]
pub enum Progress<'a> {
    Started { files: usize, bytes: u64 },
    File { path: &'a Path, bytes: u64 },
    DeadLetter { path: &'a Path, error: &'a str },
}

#[derive(Debug, Clone)]
struct InputFile {
    path: PathBuf,
    relative: String,
    size: u64,
    modified: Option<SystemTime>,
}

impl InputFile {
    fn key(&self) -> (PathBuf, u64, Option<SystemTime>) {
        (self.path.clone(), self.size, self.modified)
    }
}

/// Every export file under `root`, in path order.
fn list_inputs(root: &Path) -> Result<Vec<InputFile>, EngineError> {
    if !root.is_dir() {
        return Err(EngineError::NoInput(root.display().to_string()));
    }
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| EngineError::io(&dir, e))? {
            let entry = entry.map_err(|e| EngineError::io(&dir, e))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == STATE_DIR {
                continue;
            }
            let kind = entry.file_type().map_err(|e| EngineError::io(&path, e))?;
            if kind.is_dir() {
                pending.push(path);
            } else if EXTENSIONS.iter().any(|ext| name.ends_with(ext)) {
                let metadata = entry.metadata().map_err(|e| EngineError::io(&path, e))?;
                let (size, modified) = (metadata.len(), metadata.modified().ok());
                let relative = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .into_owned();
                found.push(InputFile {
                    path,
                    relative,
                    size,
                    modified,
                });
            }
        }
    }
    found.sort_by(|a, b| a.relative.cmp(&b.relative));
    Ok(found)
}

/// Accumulates one segment's decoded batches.
#[derive(Default)]
struct Segment {
    inputs: Vec<InputId>,
    files: Vec<(PathBuf, u64, Option<SystemTime>)>,
    buffer: TableBuffer,
}

impl Segment {
    /// Named by what went in: the same inputs give the same name on every run.
    fn name(&self) -> String {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for input in &self.inputs {
            hasher.update(input.path.as_bytes());
            hasher.update(&[0]);
            hasher.update(input.xxh3.as_bytes());
            hasher.update(&[0]);
        }
        format!("{FILES_SEGMENT_PREFIX}{:032x}", hasher.digest128())
    }
}

/// The files source bound to one input directory and one dataset.
pub struct FilePipeline {
    decode: DecodePool,
    budget: Arc<MemoryBudget>,
    input: PathBuf,
    config: FileSourceConfig,
    ledger: FileLedger,
    delta: DeltaState,
    /// (path, size, mtime) of files this process already handled, so a watching run does not
    /// re-read and re-hash the whole directory on every pass.
    seen: HashSet<(PathBuf, u64, Option<SystemTime>)>,
    orphans_removed: usize,
    /// Segments written, windowed, and their ledger line's number committed.
    durable: DurablePath<()>,
}

impl FilePipeline {
    /// Opens the dataset under `output`: removes uncommitted files, rebuilds metric state.
    pub async fn open(
        decoder: Decoder,
        input: &Path,
        output: &Path,
        config: FileSourceConfig,
        health: Arc<PipelineHealth>,
        windows: WindowStage,
        budget: Arc<MemoryBudget>,
    ) -> Result<FilePipeline, EngineError> {
        if !input.is_dir() {
            return Err(EngineError::NoInput(input.display().to_string()));
        }
        std::fs::create_dir_all(output).map_err(|e| EngineError::io(output, e))?;
        let (ledger, orphans_removed) = FileLedger::open(output)?;
        let delta = DeltaState::open(
            output,
            Duration::from_secs(config.cumulative_staleness_seconds),
            health.clone(),
        )
        .await?;
        let decode = DecodePool::new(decoder, config.decode_threads)
            .map_err(|e| EngineError::Config(format!("starting the decode workers: {e}")))?;
        Ok(FilePipeline {
            decode,
            budget,
            input: input.to_path_buf(),
            config,
            ledger,
            delta,
            seen: HashSet::new(),
            orphans_removed,
            durable: DurablePath::new(
                ParquetSink::new(output),
                windows,
                health,
                position_commits(output),
            ),
        })
    }

    pub fn windows(&mut self) -> &mut WindowStage {
        self.durable.windows_mut()
    }

    /// One pass: every export not yet committed is decoded, converted and committed.
    ///
    /// Files are read in path order and decoded on the workers a few ahead of the one whose
    /// rows are taken; a segment is written, windowed and recorded in the ledger here, between
    /// two files, at the same boundaries as when decoding was done here too.
    pub fn ingest(
        &mut self,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<FileRunSummary, EngineError> {
        let inputs: Vec<InputFile> = list_inputs(&self.input)?
            .into_iter()
            .filter(|f| !self.seen.contains(&f.key()))
            .collect();
        let mut summary = FileRunSummary {
            files_found: inputs.len(),
            orphans_removed: std::mem::take(&mut self.orphans_removed),
            ..FileRunSummary::default()
        };
        progress(Progress::Started {
            files: inputs.len(),
            bytes: inputs.iter().map(|f| f.size).sum(),
        });
        let mut segment = Segment::default();
        let mut ahead: VecDeque<(&InputFile, InputId, Pending)> = VecDeque::new();
        let most_ahead = self.decode.threads() * AHEAD_PER_WORKER;
        for file in &inputs {
            let bytes = std::fs::read(&file.path).map_err(|e| EngineError::io(&file.path, e))?;
            let id = InputId {
                path: file.relative.clone(),
                xxh3: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes)),
            };
            progress(Progress::File {
                path: &file.path,
                bytes: bytes.len() as u64,
            });
            if self.ledger.contains(&id) {
                summary.files_skipped += 1;
                self.seen.insert(file.key());
                continue;
            }
            summary.bytes_read += bytes.len() as u64;
            summary.files_decoded += 1;
            let hint = PayloadHint {
                max_bytes: self.config.max_payload_bytes,
                ..PayloadHint::default()
            };
            let mut held = self.budget.reservation();
            held.force(bytes.len());
            let pending = self.decode.submit(split_exports(bytes), hint, held);
            ahead.push_back((file, id, pending));
            while ahead.len() > most_ahead
                || (ahead.len() > 1 && self.budget.is_full(AHEAD_MEMORY_SHARE))
            {
                if let Some((file, id, pending)) = ahead.pop_front() {
                    self.collect(file, id, pending, &mut segment, &mut summary, progress)?;
                }
            }
        }
        while let Some((file, id, pending)) = ahead.pop_front() {
            self.collect(file, id, pending, &mut segment, &mut summary, progress)?;
        }
        if !segment.inputs.is_empty() {
            self.commit(segment, &mut summary)?;
        }
        // A pass reads everything there is, as a drained Kafka run does: its windows close.
        let closed = self.durable.windows_mut().close_all()?;
        self.durable.health().windowed(closed, 0);
        summary.written = self.durable.take_written();
        Ok(summary)
    }

    /// Takes a decoded file into the segment, in path order, and commits the segment once it
    /// is due.
    fn collect(
        &mut self,
        file: &InputFile,
        id: InputId,
        pending: Pending,
        segment: &mut Segment,
        summary: &mut FileRunSummary,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<(), EngineError> {
        let decoding = pending
            .wait()
            .ok_or_else(|| EngineError::Config("the decode workers stopped".into()))?;
        if let Some(decoded) = decoding.decoded {
            let origin = self.delta.origin(FILES_ORIGIN);
            segment
                .buffer
                .add_decoded(decoded, &mut self.delta, origin, None)?;
        }
        for Undecodable { error, bytes, .. } in decoding.undecodable {
            let error = error.to_string();
            progress(Progress::DeadLetter {
                path: &file.path,
                error: &error,
            });
            segment
                .buffer
                .add_dead(DeadLetter::now(file.relative.clone(), error, bytes));
        }
        segment.inputs.push(id);
        segment.files.push(file.key());
        if segment.buffer.bytes >= self.config.segment_bytes
            || segment.inputs.len() >= self.config.segment_files
        {
            self.commit(std::mem::take(segment), summary)?;
        }
        Ok(())
    }

    fn commit(
        &mut self,
        segment: Segment,
        summary: &mut FileRunSummary,
    ) -> Result<(), EngineError> {
        let name = segment.name();
        let buffer = segment.buffer;
        summary.cumulative_points_converted += buffer.delta.converted;
        summary.cumulative_resets += buffer.delta.resets;
        summary.stale_points_dropped += buffer.delta.stale;
        // The ledger's line numbers order segments: a segment replayed after a crash before
        // its commit gets the same number and is not windowed twice.
        let intent = self.ledger.intend(&name, &segment.inputs)?;
        let position = i64::try_from(intent.seq()).unwrap_or(i64::MAX);
        let sealed = self.delta.seal();
        self.durable.flush(&[SegmentFlush {
            name,
            segment: buffer.into_segment()?,
            origin: FILES_ORIGIN.to_string(),
            window_position: position,
            key: (),
            position,
        }])?;
        sealed.written();
        // A failed commit fails the run: the next one drops the line and reads the inputs again.
        self.durable.commit()?;
        self.ledger.commit(intent)?;
        self.seen.extend(segment.files);
        Ok(())
    }
}

/// A file holds one export, or (as the Collector's file exporter writes) one compact OTLP/JSON
/// export per line; each with its number in the file.
fn split_exports(bytes: Vec<u8>) -> Vec<(i64, Vec<u8>)> {
    let lines: Vec<&[u8]> = if Encoding::sniff(&bytes) == Encoding::Json {
        bytes
            .split(|b| *b == b'\n')
            .map(|l| l.trim_ascii())
            .filter(|l| !l.is_empty())
            .collect()
    } else {
        Vec::new()
    };
    let json_lines = lines.len() > 1
        && lines
            .iter()
            .all(|l| l.first() == Some(&b'{') && l.last() == Some(&b'}'));
    if !json_lines {
        return vec![(0, bytes)];
    }
    (0..)
        .zip(lines)
        .map(|(number, line)| (number, line.to_vec()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_split_but_pretty_json_does_not() {
        let lines = b"{\"resourceLogs\":[]}\n{\"resourceLogs\":[1]}\n".to_vec();
        let exports = split_exports(lines);
        assert_eq!(exports.len(), 2);
        assert_eq!(exports[1], (1, b"{\"resourceLogs\":[1]}".to_vec()));
        let pretty = b"{\n  \"resourceLogs\": []\n}\n".to_vec();
        assert_eq!(split_exports(pretty.clone()), vec![(0, pretty)]);
        let proto = b"\x0a\x00\n{".to_vec();
        assert_eq!(split_exports(proto).len(), 1);
    }
}
