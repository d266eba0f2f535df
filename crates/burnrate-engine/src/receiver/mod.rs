//! The embedded OTLP receiver, the zero-setup source: OTLP/HTTP (`/v1/logs`, `/v1/metrics`,
//! `/v1/traces`, protobuf or JSON, optionally gzip) and OTLP/gRPC, answered as the OTLP
//! specification says.
//!
//! Durable before 200: request handlers pass each export to one writer thread through a
//! bounded queue (a full queue answers 503, which OTLP clients retry). The writer decodes it,
//! appends the raw bytes to a write-ahead log, fsyncs once for every request waiting, and only
//! then answers. Decoded rows wait in memory until the segment is flushed to Parquet under the
//! name `receiver-<log seq>`, after which the log file is deleted. On start, log files left by
//! a crash are replayed under the same segment names, so nothing is lost and nothing doubled.

mod grpc;
mod http;
mod wal;

pub use grpc::RawBytes;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver as QueueReceiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use burnrate_otlp::proto::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use burnrate_otlp::proto::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
};
use burnrate_otlp::proto::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use burnrate_otlp::{DecodeError, Decoder, DeltaTracker, Encoding, PayloadHint, Signal};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::EngineError;
use crate::dead_letters::DeadLetter;
use crate::delta_state::rebuild_delta_tracker;
use crate::health::PipelineHealth;
use crate::ledger::STATE_DIR;
use crate::parquet_sink::{ParquetSink, remove_segments};
use crate::table_buffer::{FlushTotals, TableBuffer};
use crate::windows::WindowStage;
use wal::{Wal, WalFrame, list_wals, read_wal, wal_path};

pub const RECEIVER_SEGMENT_PREFIX: &str = "receiver-";
/// Most requests one fsync acknowledges.
const GROUP_COMMIT: usize = 256;
/// The window stage's name for this source; positions are log sequence numbers.
const RECEIVER_ORIGIN: &str = "receiver";
/// How long a shutdown lets open client connections finish before it closes them.
const CONNECTION_DRAIN: Duration = Duration::from_secs(5);
/// How long a shutdown waits for the last Pushgateway push.
const PUSH_GRACE: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReceiverConfig {
    /// OTLP/HTTP listen address.
    pub http_listen: SocketAddr,
    /// OTLP/gRPC listen address.
    pub grpc_listen: SocketAddr,
    /// Largest request body accepted (413 above), and largest export after gunzip.
    pub max_body_bytes: usize,
    /// Requests waiting for the writer before new ones get 503.
    pub queue_requests: usize,
    /// Flush the buffered rows to Parquet at least this often...
    pub flush_interval_ms: u64,
    /// ... or once this many request bytes are buffered.
    pub flush_bytes: usize,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        ReceiverConfig {
            http_listen: SocketAddr::from(([127, 0, 0, 1], 4318)),
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 4317)),
            max_body_bytes: 32 << 20,
            queue_requests: 1024,
            flush_interval_ms: 10_000,
            flush_bytes: 32 << 20,
        }
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct ReceiverSummary {
    pub requests: u64,
    pub bytes: u64,
    pub rejected: u64,
    /// Log files of an interrupted run replayed at start.
    pub logs_replayed: u64,
    pub written: FlushTotals,
}

/// How the writer answered one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Durable. `rows_with_errors` rows kept an unparsable value (a partial-success warning).
    Accepted { rows_with_errors: u64 },
    /// Not an OTLP export of that signal: never worth retrying.
    Rejected { message: String, too_large: bool },
    /// Queue full or shutting down: try again later.
    Unavailable(String),
}

/// The partial-success warning for an accepted export whose rows kept unparsable values;
/// nothing was rejected, so the rejected counts of the responses below stay 0.
fn partial_success_warning(rows_with_errors: u64) -> Option<String> {
    (rows_with_errors > 0).then(|| {
        format!("{rows_with_errors} rows kept unparsable values; see their parse_error column")
    })
}

fn logs_response(warning: Option<String>) -> ExportLogsServiceResponse {
    ExportLogsServiceResponse {
        partial_success: warning.map(|error_message| ExportLogsPartialSuccess {
            rejected_log_records: 0,
            error_message,
        }),
    }
}

fn metrics_response(warning: Option<String>) -> ExportMetricsServiceResponse {
    ExportMetricsServiceResponse {
        partial_success: warning.map(|error_message| ExportMetricsPartialSuccess {
            rejected_data_points: 0,
            error_message,
        }),
    }
}

fn traces_response(warning: Option<String>) -> ExportTraceServiceResponse {
    ExportTraceServiceResponse {
        partial_success: warning.map(|error_message| ExportTracePartialSuccess {
            rejected_spans: 0,
            error_message,
        }),
    }
}

struct Submission {
    frame: WalFrame,
    reply: oneshot::Sender<Outcome>,
}

/// What the HTTP and gRPC handlers share: the way to the writer.
pub(crate) struct Intake {
    /// `None` once the receiver stops: the writer drains what it has and ends, whatever
    /// connections are still open.
    queue: std::sync::RwLock<Option<SyncSender<Submission>>>,
    health: Arc<PipelineHealth>,
    max_body_bytes: usize,
}

impl Intake {
    pub(crate) async fn submit(
        &self,
        signal: Signal,
        encoding: Option<Encoding>,
        payload: Vec<u8>,
    ) -> Outcome {
        let (reply, answer) = oneshot::channel();
        let submission = Submission {
            frame: WalFrame {
                signal,
                encoding,
                payload,
            },
            reply,
        };
        let queue = self.queue.read().ok().and_then(|queue| queue.clone());
        let sent = match queue {
            Some(queue) => queue.try_send(submission),
            None => Err(TrySendError::Disconnected(submission)),
        };
        let outcome = match sent {
            Ok(()) => answer
                .await
                .unwrap_or_else(|_| Outcome::Unavailable("the writer stopped".into())),
            Err(TrySendError::Full(_)) => {
                Outcome::Unavailable("too many requests waiting to be written".into())
            }
            Err(TrySendError::Disconnected(_)) => Outcome::Unavailable("shutting down".into()),
        };
        let status = match &outcome {
            Outcome::Accepted { .. } => "accepted",
            Outcome::Rejected {
                too_large: true, ..
            } => "too_large",
            Outcome::Rejected { .. } => "rejected",
            Outcome::Unavailable(_) => "unavailable",
        };
        self.health.request(status);
        outcome
    }
}

/// The receiver bound to one dataset, recovered and ready to listen.
pub struct OtlpReceiver {
    config: ReceiverConfig,
    writer: Writer,
    logs_replayed: u64,
}

impl OtlpReceiver {
    /// Opens the dataset: replays the logs an interrupted run left, then rebuilds metric state.
    pub async fn open(
        decoder: Decoder,
        output: &Path,
        config: ReceiverConfig,
        health: Arc<PipelineHealth>,
        windows: WindowStage,
    ) -> Result<Self, EngineError> {
        std::fs::create_dir_all(output).map_err(|e| EngineError::io(output, e))?;
        let wal_dir = output.join(STATE_DIR).join("receiver");
        let pending = list_wals(&wal_dir)?;
        let segments: Vec<String> = pending.iter().map(|seq| segment_name(*seq)).collect();
        // Files of a log being replayed may be half there: they are written again from the log.
        remove_segments(output, |segment, temporary| {
            segment.starts_with(RECEIVER_SEGMENT_PREFIX)
                && (temporary || segments.iter().any(|s| s == segment))
        })?;
        let tracker = rebuild_delta_tracker(output).await?;
        let mut writer = Writer {
            decoder,
            tracker,
            sink: ParquetSink::new(output),
            health,
            wal_dir,
            max_payload_bytes: config.max_body_bytes,
            flush_bytes: config.flush_bytes,
            flush_every: Duration::from_millis(config.flush_interval_ms.max(1)),
            summary: ReceiverSummary::default(),
            windows,
        };
        for seq in &pending {
            writer.replay(*seq)?;
        }
        let logs_replayed = pending.len() as u64;
        Ok(OtlpReceiver {
            config,
            writer,
            logs_replayed,
        })
    }

    /// Listens until `stop` resolves, then stops taking requests, flushes what is buffered
    /// and returns.
    pub async fn run(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<ReceiverSummary, EngineError> {
        let http_listener = bind(self.config.http_listen, "OTLP/HTTP").await?;
        let grpc_listener = bind(self.config.grpc_listen, "OTLP/gRPC").await?;
        let (queue, requests) = std::sync::mpsc::sync_channel(self.config.queue_requests.max(1));
        let health = self.writer.health.clone();
        let intake = Arc::new(Intake {
            queue: std::sync::RwLock::new(Some(queue)),
            health: health.clone(),
            max_body_bytes: self.config.max_body_bytes,
        });
        // Past what the windows were fed, too: a clock stepped back must not make new logs look
        // like ones already counted.
        let fed = self.writer.windows.position(RECEIVER_ORIGIN);
        let next_seq = next_seq(&self.writer.wal_dir)?.max(fed.map_or(0, |p| p as u64 + 1));
        let writer = self.writer;
        let writing = tokio::task::spawn_blocking(move || writer.run(requests, next_seq));

        let (stopping, stopped) = tokio::sync::watch::channel(false);
        let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let http = tokio::spawn(http::serve(
            http_listener,
            intake.clone(),
            wait(stopped.clone()),
        ));
        let grpc = tokio::spawn(grpc::serve(grpc_listener, intake.clone(), wait(stopped)));
        health.set_ready();
        tracing::info!(
            http = %self.config.http_listen,
            grpc = %self.config.grpc_listen,
            "OTLP receiver listening"
        );
        tokio::pin!(writing);
        // A writer that ends before `stop` has failed (a full disk, say): stop answering and
        // exit with its error, so the process is restarted and its log replayed.
        let early = tokio::select! {
            _ = stop => None,
            ended = &mut writing => Some(ended),
        };
        health.set_not_ready("shutting down");
        let _ = stopping.send(true);
        // Once the servers are done and the intake closed, the writer drains and stops.
        // A graceful stop waits for open connections, and an idle keep-alive connection (a
        // gRPC client that stays connected) would hold it until the grace period is gone: past
        // CONNECTION_DRAIN the servers are stopped with their connections.
        let aborts = [http.abort_handle(), grpc.abort_handle()];
        let servers = async { (http.await, grpc.await) };
        tokio::pin!(servers);
        let (http, grpc) = match tokio::time::timeout(CONNECTION_DRAIN, &mut servers).await {
            Ok(done) => done,
            Err(_) => {
                tracing::warn!(
                    seconds = CONNECTION_DRAIN.as_secs(),
                    "closing connections still open after the drain period"
                );
                aborts.iter().for_each(tokio::task::AbortHandle::abort);
                servers.await
            }
        };
        // Requests on connections that outlived the drain are answered 503: the client retries.
        if let Ok(mut queue) = intake.queue.write() {
            queue.take();
        }
        let stopped_server =
            |served: Result<Result<(), EngineError>, tokio::task::JoinError>| match served {
                Err(e) if e.is_cancelled() => Ok(Ok(())),
                other => other,
            };
        let (http, grpc) = (stopped_server(http), stopped_server(grpc));
        let ended = match early {
            Some(ended) => ended,
            None => writing.await,
        };
        let mut summary =
            ended.map_err(|e| EngineError::Config(format!("receiver writer: {e}")))??;
        for served in [http, grpc] {
            served.map_err(|e| EngineError::Config(format!("receiver server: {e}")))??;
        }
        summary.logs_replayed = self.logs_replayed;
        Ok(summary)
    }
}

async fn bind(addr: SocketAddr, what: &str) -> Result<tokio::net::TcpListener, EngineError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| EngineError::Config(format!("{what} listener {addr}: {e}")))
}

fn segment_name(seq: u64) -> String {
    format!("{RECEIVER_SEGMENT_PREFIX}{seq:020}")
}

/// Log numbers grow over restarts: microseconds since the epoch, or past the newest log left.
fn next_seq(wal_dir: &Path) -> Result<u64, EngineError> {
    let now = chrono::Utc::now().timestamp_micros().max(0) as u64;
    let newest = list_wals(wal_dir)?.last().copied().unwrap_or(0);
    Ok(now.max(newest + 1))
}

/// Decodes, logs and flushes; owns everything the receiver writes.
struct Writer {
    decoder: Decoder,
    tracker: DeltaTracker,
    sink: ParquetSink,
    health: Arc<PipelineHealth>,
    wal_dir: PathBuf,
    max_payload_bytes: usize,
    flush_bytes: usize,
    flush_every: Duration,
    summary: ReceiverSummary,
    windows: WindowStage,
}

impl Writer {
    fn hint(&self, frame: &WalFrame) -> PayloadHint {
        PayloadHint {
            encoding: frame.encoding,
            signal: Some(frame.signal),
            max_bytes: self.max_payload_bytes,
        }
    }

    /// Decodes one request into `buffer`, returning the answer it deserves.
    fn take(
        &mut self,
        buffer: &mut TableBuffer,
        frame: &WalFrame,
        seq: u64,
    ) -> Result<Outcome, EngineError> {
        let errors_before = buffer.stats.rows_with_errors;
        let hint = self.hint(frame);
        let dead = |error| {
            let origin = format!("receiver/{}/{}", frame.signal.as_str(), segment_name(seq));
            DeadLetter::now(origin, error, frame.payload.clone())
        };
        let failed = buffer.add(&self.decoder, &mut self.tracker, &frame.payload, hint, dead)?;
        Ok(match failed {
            None => Outcome::Accepted {
                rows_with_errors: buffer.stats.rows_with_errors - errors_before,
            },
            Some(error) => Outcome::Rejected {
                too_large: matches!(error, DecodeError::TooLarge { .. }),
                message: error.to_string(),
            },
        })
    }

    /// A log an interrupted run left: decoded and flushed under its own segment name.
    fn replay(&mut self, seq: u64) -> Result<(), EngineError> {
        let path = wal_path(&self.wal_dir, seq);
        let (frames, torn) = read_wal(&path)?;
        if torn {
            tracing::warn!(log = %path.display(), "torn tail of the receiver log ignored: it was never acknowledged");
        }
        let mut buffer = TableBuffer::default();
        for frame in &frames {
            self.take(&mut buffer, frame, seq)?;
        }
        self.flush(buffer, seq)?;
        std::fs::remove_file(&path).map_err(|e| EngineError::io(&path, e))
    }

    fn flush(&mut self, buffer: TableBuffer, seq: u64) -> Result<(), EngineError> {
        if buffer.is_empty() {
            return Ok(());
        }
        buffer.flush(
            &self.sink,
            &segment_name(seq),
            (RECEIVER_ORIGIN, seq as i64),
            &mut self.windows,
            &self.health,
            &mut self.summary.written,
        )
    }

    /// Decodes a group of requests into `buffer` and appends them to the log, synced once:
    /// their answers, or the error that left none of them acknowledged.
    fn log_group(
        &mut self,
        buffer: &mut TableBuffer,
        wal: &mut Wal,
        batch: &[Submission],
    ) -> Result<Vec<Outcome>, EngineError> {
        let mut answers = Vec::with_capacity(batch.len());
        for submission in batch {
            self.health.message(submission.frame.payload.len());
            self.summary.requests += 1;
            self.summary.bytes += submission.frame.payload.len() as u64;
            let outcome = self.take(buffer, &submission.frame, wal.seq())?;
            if matches!(outcome, Outcome::Rejected { .. }) {
                self.summary.rejected += 1;
            }
            wal.append(&submission.frame)?;
            answers.push(outcome);
        }
        wal.sync()?;
        Ok(answers)
    }

    fn run(
        mut self,
        requests: QueueReceiver<Submission>,
        mut seq: u64,
    ) -> Result<ReceiverSummary, EngineError> {
        let mut wal = Wal::create(&self.wal_dir, seq)?;
        let mut buffer = TableBuffer::default();
        let mut deadline = Instant::now() + self.flush_every;
        let mut open = true;
        while open {
            let mut batch = Vec::new();
            match requests.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(first) => {
                    batch.push(first);
                    while batch.len() < GROUP_COMMIT {
                        let Ok(next) = requests.try_recv() else { break };
                        batch.push(next);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
            if !batch.is_empty() {
                let answers = match self.log_group(&mut buffer, &mut wal, &batch) {
                    Ok(answers) => answers,
                    Err(error) => {
                        // The whole group hears 503 ("not stored"), so none of it may stay in
                        // the log to be replayed.
                        if let Err(cut) = wal.discard_unsynced() {
                            tracing::error!(error = %cut, "the receiver log could not be cut back to its last acknowledged request");
                        }
                        return Err(error);
                    }
                };
                for (submission, outcome) in batch.into_iter().zip(answers) {
                    // A client that hung up still had its export made durable.
                    let _ = submission.reply.send(outcome);
                }
            }
            let due = Instant::now() >= deadline || buffer.bytes >= self.flush_bytes || !open;
            if due {
                if !buffer.is_empty() {
                    self.flush(std::mem::take(&mut buffer), wal.seq())?;
                    wal.remove()?;
                    seq = next_seq(&self.wal_dir)?.max(seq + 1);
                    wal = Wal::create(&self.wal_dir, seq)?;
                }
                deadline = Instant::now() + self.flush_every;
            }
        }
        // The last, empty log goes too: nothing is pending.
        wal.remove()?;
        // Open windows stay open in the checkpoint; the next start carries on with them.
        if !self.windows.finish(PUSH_GRACE) {
            tracing::warn!("the last Pushgateway push did not go through before shutdown");
        }
        Ok(self.summary)
    }
}
