//! The receiver's write-ahead log: every accepted request, appended and fsynced before the
//! client hears 200, until the segment holding it is in Parquet.
//!
//! One file per segment, `wal-<seq>.log`, of frames
//! `[signal u8][encoding u8][length u32 LE][xxh3-64 of body, u64 LE][body]`. The body is the
//! payload, or, when the signal byte has [`TEAM_FLAG`] set (a request sent with a team-bound
//! token), `[team length u8][team][payload]`.
//! A torn or corrupt tail is a write that was never acknowledged, and reading stops there.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use burnrate_otlp::{Encoding, Signal};

use crate::EngineError;

const HEADER: usize = 1 + 1 + 4 + 8;
/// Set in the signal byte of a frame whose body starts with the team its token is bound to.
const TEAM_FLAG: u8 = 0x80;
/// The longest team name a frame carries (the token file refuses longer ones).
pub const MAX_TEAM_BYTES: usize = u8::MAX as usize;

/// One request as it was received.
#[derive(Debug, Clone, PartialEq)]
pub struct WalFrame {
    pub signal: Signal,
    pub encoding: Option<Encoding>,
    /// The team the request's token is bound to, which its rows are booked to.
    pub team: Option<std::sync::Arc<str>>,
    pub payload: Vec<u8>,
}

pub struct Wal {
    path: PathBuf,
    seq: u64,
    file: BufWriter<File>,
    /// Length of the log up to its last synced frame: every request in it was acknowledged.
    synced: u64,
    /// Bytes appended since.
    pending: u64,
}

pub fn wal_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("wal-{seq:020}.log"))
}

/// The sequence numbers of the log files in `dir`, oldest first.
pub fn list_wals(dir: &Path) -> Result<Vec<u64>, EngineError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(EngineError::io(dir, e)),
    };
    let mut seqs: Vec<u64> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("wal-")?
                .strip_suffix(".log")?
                .parse()
                .ok()
        })
        .collect();
    seqs.sort_unstable();
    Ok(seqs)
}

fn signal_code(signal: Signal) -> u8 {
    match signal {
        Signal::Logs => 0,
        Signal::Metrics => 1,
        Signal::Traces => 2,
    }
}

fn encoding_code(encoding: Option<Encoding>) -> u8 {
    match encoding {
        None => 0,
        Some(Encoding::Proto) => 1,
        Some(Encoding::Json) => 2,
    }
}

/// Every intact frame of a log file, and whether a torn tail followed them.
pub fn read_wal(path: &Path) -> Result<(Vec<WalFrame>, bool), EngineError> {
    let bytes = fs::read(path).map_err(|e| EngineError::io(path, e))?;
    let mut frames = Vec::new();
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        let Some(frame) = parse_frame(rest) else {
            return Ok((frames, true));
        };
        rest = rest.get(frame_length(&frame)..).unwrap_or_default();
        frames.push(frame);
    }
    Ok((frames, false))
}

fn parse_frame(bytes: &[u8]) -> Option<WalFrame> {
    let header = bytes.get(..HEADER)?;
    let signal = match header[0] & !TEAM_FLAG {
        0 => Signal::Logs,
        1 => Signal::Metrics,
        2 => Signal::Traces,
        _ => return None,
    };
    let encoding = match header[1] {
        0 => None,
        1 => Some(Encoding::Proto),
        2 => Some(Encoding::Json),
        _ => return None,
    };
    let length = u32::from_le_bytes(header[2..6].try_into().ok()?) as usize;
    let checksum = u64::from_le_bytes(header[6..14].try_into().ok()?);
    let body = bytes.get(HEADER..HEADER + length)?;
    if xxhash_rust::xxh3::xxh3_64(body) != checksum {
        return None;
    }
    let (team, payload) = if header[0] & TEAM_FLAG != 0 {
        let (&team_length, rest) = body.split_first()?;
        let (team, payload) = rest.split_at_checked(usize::from(team_length))?;
        (
            Some(std::sync::Arc::from(std::str::from_utf8(team).ok()?)),
            payload,
        )
    } else {
        (None, body)
    };
    Some(WalFrame {
        signal,
        encoding,
        team,
        payload: payload.to_vec(),
    })
}

/// Bytes a frame takes in the log.
fn frame_length(frame: &WalFrame) -> usize {
    HEADER + frame.payload.len() + frame.team.as_ref().map_or(0, |team| 1 + team.len())
}

impl Wal {
    pub fn create(dir: &Path, seq: u64) -> Result<Wal, EngineError> {
        fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
        let path = wal_path(dir, seq);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| EngineError::io(&path, e))?;
        crate::sink::parquet_sink::sync_dir(dir)?;
        let synced = file
            .metadata()
            .map_err(|e| EngineError::io(&path, e))?
            .len();
        Ok(Wal {
            path,
            seq,
            file: BufWriter::new(file),
            synced,
            pending: 0,
        })
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn append(&mut self, frame: &WalFrame) -> Result<(), EngineError> {
        let body_length = frame_length(frame) - HEADER;
        let length = u32::try_from(body_length).map_err(|_| {
            EngineError::Config(format!(
                "request of {} bytes is too large for the log",
                frame.payload.len()
            ))
        })?;
        let team = match &frame.team {
            None => None,
            Some(team) => Some(u8::try_from(team.len()).map_err(|_| {
                EngineError::Config(format!("team name {team:?} is over {MAX_TEAM_BYTES} bytes"))
            })?),
        };
        let mut checksum = xxhash_rust::xxh3::Xxh3Default::new();
        let mut header = [0u8; HEADER];
        header[0] = signal_code(frame.signal);
        if let (Some(length), Some(team)) = (team, &frame.team) {
            header[0] |= TEAM_FLAG;
            checksum.update(&[length]);
            checksum.update(team.as_bytes());
        }
        checksum.update(&frame.payload);
        header[1] = encoding_code(frame.encoding);
        header[2..6].copy_from_slice(&length.to_le_bytes());
        header[6..14].copy_from_slice(&checksum.digest().to_le_bytes());
        let io = |e| EngineError::io(&self.path, e);
        self.file.write_all(&header).map_err(io)?;
        if let (Some(length), Some(team)) = (team, &frame.team) {
            self.file.write_all(&[length]).map_err(io)?;
            self.file.write_all(team.as_bytes()).map_err(io)?;
        }
        self.file.write_all(&frame.payload).map_err(io)?;
        self.pending += frame_length(frame) as u64;
        Ok(())
    }

    /// Makes every appended frame durable.
    pub fn sync(&mut self) -> Result<(), EngineError> {
        let io = |e| EngineError::io(&self.path, e);
        self.file.flush().map_err(io)?;
        self.file.get_ref().sync_data().map_err(io)?;
        self.synced += std::mem::take(&mut self.pending);
        Ok(())
    }

    /// Cuts the log back to its last synced frame: what a failed group appended is gone, so a
    /// request answered 503 is not in the log to be replayed (and stored twice when its client
    /// retries). The bytes still buffered are dropped unwritten.
    pub fn discard_unsynced(&mut self) -> Result<(), EngineError> {
        let io = |e| EngineError::io(&self.path, e);
        let reopened = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        let failed = std::mem::replace(&mut self.file, BufWriter::new(reopened));
        let (file, _unwritten) = failed.into_parts();
        file.set_len(self.synced).map_err(io)?;
        file.sync_all().map_err(io)?;
        self.pending = 0;
        Ok(())
    }

    /// Deletes the log once its segment is in Parquet.
    pub fn remove(self) -> Result<(), EngineError> {
        drop(self.file);
        fs::remove_file(&self.path).map_err(|e| EngineError::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let frames = [
            WalFrame {
                signal: Signal::Logs,
                encoding: Some(Encoding::Proto),
                team: None,
                payload: vec![1, 2, 3],
            },
            WalFrame {
                signal: Signal::Traces,
                encoding: None,
                team: None,
                payload: b"{}".to_vec(),
            },
            WalFrame {
                signal: Signal::Metrics,
                encoding: Some(Encoding::Json),
                team: Some("payments".into()),
                payload: b"{\"resourceMetrics\":[]}".to_vec(),
            },
        ];
        let mut wal = Wal::create(dir.path(), 7).unwrap();
        for frame in &frames {
            wal.append(frame).unwrap();
        }
        wal.sync().unwrap();
        let path = wal_path(dir.path(), 7);
        assert_eq!(read_wal(&path).unwrap(), (frames.to_vec(), false));
        assert_eq!(list_wals(dir.path()).unwrap(), [7]);

        // A crash mid-append leaves part of a frame: the intact ones still count.
        let mut bytes = fs::read(&path).unwrap();
        bytes.extend_from_slice(&[0, 1, 200, 0]);
        fs::write(&path, &bytes).unwrap();
        assert_eq!(read_wal(&path).unwrap(), (frames.to_vec(), true));

        // A flipped payload byte fails its checksum.
        bytes[HEADER] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        assert_eq!(read_wal(&path).unwrap(), (Vec::new(), true));
        wal.remove().unwrap();
        assert!(list_wals(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn a_failed_group_is_cut_back_to_the_last_synced_frame() {
        let dir = tempfile::tempdir().unwrap();
        let frame = |byte: u8| WalFrame {
            signal: Signal::Logs,
            encoding: Some(Encoding::Proto),
            team: None,
            payload: vec![byte; 100],
        };
        let mut wal = Wal::create(dir.path(), 1).unwrap();
        wal.append(&frame(1)).unwrap();
        wal.sync().unwrap();
        // A group half written: one frame flushed to the file, one still buffered.
        wal.append(&frame(2)).unwrap();
        wal.file.flush().unwrap();
        wal.append(&frame(3)).unwrap();
        wal.discard_unsynced().unwrap();
        let path = wal_path(dir.path(), 1);
        assert_eq!(read_wal(&path).unwrap(), (vec![frame(1)], false));
        // The log goes on from there.
        wal.append(&frame(4)).unwrap();
        wal.sync().unwrap();
        assert_eq!(read_wal(&path).unwrap(), (vec![frame(1), frame(4)], false));
    }
}
