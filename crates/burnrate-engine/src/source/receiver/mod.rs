//! The embedded OTLP receiver, the zero-setup source: OTLP/HTTP (`/v1/logs`, `/v1/metrics`,
//! `/v1/traces`, protobuf or JSON, optionally gzip) and OTLP/gRPC, answered as the OTLP
//! specification says.
//!
//! Three parts, in the order a request meets them:
//! - **The gate** (`connections.rs`, `auth.rs`, `tls.rs`): TLS, bearer tokens, the connection
//!   limit, header/body/idle timeouts, and the memory budget for bodies being read.
//! - **The writer thread** (the acknowledging path): request handlers pass each export to it
//!   through a bounded queue (a full queue answers 503, which OTLP clients retry). It appends
//!   the raw bytes to a write-ahead log, hands them to the decode stage ([`crate::decode`], one
//!   worker per core) in runs of one signal, encoding and team, and fsyncs once for every
//!   request waiting while they decode. It takes the decoded rows in the order the requests
//!   were logged (a client's requests keep theirs) and only then answers each request as it
//!   would be answered alone: its own partial-success count or dead letter. A log write that
//!   fails (a full disk) is cut back and its requests answered 503, so 503 always means "not
//!   stored"; the receiver stays up, reports not-ready with the reason, and takes requests
//!   again once a write succeeds.
//! - **The flusher thread**: the writer hands it each segment's decoded rows with the number
//!   of its log. It takes them down the durability path every source shares
//!   ([`crate::source::durable`]): written to Parquet as `receiver-<replica>-<log seq>`, fed to
//!   the window stage, the log's number committed to the dataset's positions table (a `txn`,
//!   app id `receiver/<replica>`, as Kafka commits its offsets there). Then it deletes the
//!   logs that number covers. A write that fails is retried (the sink is idempotent) while the
//!   log keeps the requests safe; a commit that fails keeps the logs for the next one; a slow
//!   flush never holds up acknowledgements.
//!
//! On start, the receiver resumes from what the tables say they hold: a log left behind whose
//! number the positions table holds, and that the windows counted, is in the tables already
//! and is deleted unread (a crash between the commit and the delete). Every other log left by
//! a crash is replayed under the same segment names, so nothing is lost and nothing doubled.

mod auth;
mod connections;
mod grpc;
mod http;
mod tls;
mod wal;

pub use auth::{AuthTokens, Grant};
pub use grpc::RawBytes;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver as QueueReceiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
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
use burnrate_otlp::{DecodeError, Decoder, Encoding, PayloadHint, Signal};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tower::ServiceExt;

use crate::EngineError;
use crate::budget::{MemoryBudget, Reservation};
use crate::decode::{DecodePool, Pending, Undecodable};
use crate::publish::health::PipelineHealth;
use crate::sink::dead_letters::DeadLetter;
use crate::sink::parquet_sink::{ParquetSink, remove_segments};
use crate::sink::table_buffer::{FlushTotals, TableBuffer};
use crate::source::commit::CommitCoordinator;
use crate::source::durable::{DurablePath, SegmentFlush};
use crate::source::ledger::STATE_DIR;
use crate::stream::delta_state::{DEFAULT_STALENESS, DeltaState, SealedPoints};
use crate::stream::windows::WindowStage;
use connections::{ConnectionLimits, Gate, Protocol};
use wal::{Wal, WalFrame, list_wals, read_wal, wal_path};

pub const RECEIVER_SEGMENT_PREFIX: &str = "receiver-";
/// Most requests one fsync acknowledges.
const GROUP_COMMIT: usize = 256;
/// Most requests, and bytes of them, decoded as one run: a run costs one set of table builders
/// (a request alone spent half its decoding in the allocator), and a group of one kind still
/// spreads over the workers. Runs of up to 256 (a whole group of one kind) measured the same
/// under `receiver_load` (6,951 and 7,843 requests/s against 7,160 and 7,820, 83-84% CPU).
const RUN_REQUESTS: usize = 32;
const RUN_BYTES: usize = 1 << 20;
/// The window stage's name for this source; positions are log sequence numbers.
const RECEIVER_ORIGIN: &str = "receiver";
/// How long a shutdown lets open client connections finish before it closes them.
const CONNECTION_DRAIN: Duration = Duration::from_secs(5);
/// How long a shutdown waits for the last Pushgateway push.
const PUSH_GRACE: Duration = Duration::from_secs(3);
/// How often the writer looks again at a segment the flusher could not take yet.
const HANDOFF_RETRY: Duration = Duration::from_millis(100);
/// The longest wait between two attempts at a segment write that failed.
const FLUSH_RETRY_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReceiverConfig {
    /// OTLP/HTTP listen address. Default: 127.0.0.1:4318.
    pub http_listen: SocketAddr,
    /// OTLP/gRPC listen address. Default: 127.0.0.1:4317.
    pub grpc_listen: SocketAddr,
    /// Largest request body accepted (413 above), and largest export after gunzip, in bytes.
    /// Default: 32 MiB.
    pub max_body_bytes: usize,
    /// Requests waiting for the writer before new ones get 503. Default: 1024.
    pub queue_requests: usize,
    /// Flush the buffered rows to Parquet at least this often, in milliseconds. Default: 10000.
    pub flush_interval_ms: u64,
    /// ... or once this many bytes of decoded exports are buffered (lowered to fit the memory
    /// budget and the free disk space). Default: 32 MiB.
    pub flush_bytes: usize,
    /// Open client connections per listener. At the limit, the connection idle longest is
    /// closed for a new one; lowered to fit the open-file limit. Default: 1024.
    pub max_connections: usize,
    /// Time a client has to send its request headers (and finish a TLS handshake), in
    /// milliseconds. Default: 10000.
    pub header_timeout_ms: u64,
    /// Time a client has to send a request body once its headers are in, in milliseconds
    /// (408 / `DEADLINE_EXCEEDED` after). Default: 60000.
    pub body_timeout_ms: u64,
    /// A connection with no request for this long is closed, in milliseconds. Default: 60000.
    pub idle_timeout_ms: u64,
    /// Bearer tokens clients must send, one per line, each optionally followed by the team it
    /// is bound to; reloaded when the file changes. Default: none (no authentication).
    pub auth_tokens_file: Option<PathBuf>,
    /// PEM certificate chain: serve both listeners over TLS. Default: none (plain TCP).
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`. Default: none.
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA that client certificates must chain to (mutual TLS). Default: none.
    pub tls_client_ca_file: Option<PathBuf>,
    /// Free disk space, in bytes, kept for segments, checkpoints and window output: past it, new
    /// requests are answered 503 before their log write could fill the disk. Default: 64 MiB.
    pub disk_reserve_bytes: u64,
    /// Listen beyond loopback with no authentication (no token file and no client CA).
    /// Default: false, which refuses to start that way.
    pub insecure: bool,
    /// Threads decoding requests; 0 means one per core. Default: 0.
    pub decode_threads: usize,
    /// How long (seconds of event time) a cumulative metric series may go unseen before its
    /// last point leaves memory; one that comes back later is read back from `metric_points`,
    /// a query each time. A series sent within as long of this machine's clock stays too,
    /// whatever its client's clock says. 0 keeps every series, and memory grows with every
    /// session. Default: 3600.
    pub cumulative_staleness_seconds: u64,
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
            max_connections: 1024,
            header_timeout_ms: 10_000,
            body_timeout_ms: 60_000,
            idle_timeout_ms: 60_000,
            auth_tokens_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
            disk_reserve_bytes: 64 << 20,
            insecure: false,
            decode_threads: 0,
            cumulative_staleness_seconds: DEFAULT_STALENESS.as_secs(),
        }
    }
}

impl ReceiverConfig {
    /// Refuses a configuration that would let anyone on the network send: a listener beyond
    /// loopback with neither tokens nor client certificates, unless `insecure` says so.
    pub fn check(&self) -> Result<(), EngineError> {
        let authenticated = self.auth_tokens_file.is_some() || self.tls_client_ca_file.is_some();
        let exposed = [self.http_listen, self.grpc_listen]
            .into_iter()
            .filter(|addr| !addr.ip().is_loopback())
            .collect::<Vec<_>>();
        if let Some(addr) = exposed.first()
            && !authenticated
            && !self.insecure
        {
            return Err(EngineError::Config(format!(
                "the receiver would listen on {addr}, beyond loopback, with no authentication: \
                 give it tokens (--auth-tokens FILE / receiver.auth_tokens_file) or a client CA \
                 (--tls-client-ca FILE), or pass --insecure to accept anyone who can reach it"
            )));
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) | (None, Some(_)) => Err(EngineError::Config(
                "TLS needs both a certificate (tls_cert_file) and its key (tls_key_file)".into(),
            )),
            (None, None) if self.tls_client_ca_file.is_some() => Err(EngineError::Config(
                "a client CA (tls_client_ca_file) needs TLS: set tls_cert_file and tls_key_file"
                    .into(),
            )),
            _ => Ok(()),
        }
    }

    fn limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: self.max_connections,
            header_timeout: Duration::from_millis(self.header_timeout_ms.max(1)),
            body_timeout: Duration::from_millis(self.body_timeout_ms.max(1)),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms.max(1)),
        }
        .within_file_limit(2)
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct ReceiverSummary {
    pub requests: u64,
    pub bytes: u64,
    pub rejected: u64,
    /// Requests answered 503 because the log could not be written (a full disk).
    pub unavailable: u64,
    /// Log files of an interrupted run replayed at start.
    pub logs_replayed: u64,
    /// Log files of an interrupted run found in the tables already (the positions table holds
    /// their number) and deleted unread at start.
    pub logs_settled: u64,
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
        grant: Grant,
        payload: Vec<u8>,
    ) -> Outcome {
        let (reply, answer) = oneshot::channel();
        let team = match grant {
            Grant::Any => None,
            Grant::Team(team) => Some(team),
        };
        let submission = Submission {
            frame: WalFrame {
                signal,
                encoding,
                team,
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

/// Which of the receiver's writes is failing, for readiness: ready again only once both the
/// log and the segments are written.
#[derive(Debug, Default)]
struct DiskTrouble {
    log: Mutex<Option<String>>,
    segments: Mutex<Option<String>>,
}

impl DiskTrouble {
    fn set(&self, slot: &Mutex<Option<String>>, trouble: Option<String>, health: &PipelineHealth) {
        if let Ok(mut slot) = slot.lock() {
            *slot = trouble;
        }
        let reasons: Vec<String> = [&self.log, &self.segments]
            .iter()
            .filter_map(|slot| slot.lock().ok().and_then(|s| s.clone()))
            .collect();
        if reasons.is_empty() {
            if health.not_ready_because(DISK_REASON) {
                health.set_ready();
            }
        } else {
            health.set_not_ready(format!("{DISK_REASON}{}", reasons.join("; ")));
        }
    }
}

/// How `/readyz` starts its reason while a write to the disk fails.
const DISK_REASON: &str = "cannot write to disk: ";

/// The receiver bound to one dataset, ready to listen.
pub struct OtlpReceiver {
    config: ReceiverConfig,
    writer: Writer,
    flusher: Flusher,
    /// Logs an interrupted run left, replayed before any new request is taken.
    pending: Vec<u64>,
    /// Logs an interrupted run left that were in the tables already.
    settled: usize,
    /// The last log number the positions table held at start: new logs are numbered past it.
    committed: Option<u64>,
    auth: Option<Arc<AuthTokens>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl OtlpReceiver {
    /// Opens the dataset and rebuilds metric state; the logs an interrupted run left are
    /// replayed when it runs.
    pub async fn open(
        decoder: Decoder,
        output: &Path,
        config: ReceiverConfig,
        health: Arc<PipelineHealth>,
        windows: WindowStage,
        budget: Arc<MemoryBudget>,
    ) -> Result<Self, EngineError> {
        config.check()?;
        let auth = config
            .auth_tokens_file
            .as_deref()
            .map(AuthTokens::load)
            .transpose()?;
        let tls = match (&config.tls_cert_file, &config.tls_key_file) {
            (Some(cert), Some(key)) => Some(tls::acceptor(&tls::TlsFiles {
                cert,
                key,
                client_ca: config.tls_client_ca_file.as_deref(),
            })?),
            _ => None,
        };
        std::fs::create_dir_all(output).map_err(|e| EngineError::io(output, e))?;
        let wal_dir = wal_dir(output);
        let Resume {
            committed,
            settled,
            pending,
        } = settle_logs(output, &wal_dir, &windows)?;
        // Files of a log being replayed may be half there: they are written again from the log
        // (under whatever replica name the run that wrote them had).
        remove_segments(output, |segment, temporary| {
            segment.starts_with(RECEIVER_SEGMENT_PREFIX)
                && (temporary || receiver_seq(segment).is_some_and(|seq| pending.contains(&seq)))
        })?;
        let replica = windows.replica().to_string();
        let staleness = Duration::from_secs(config.cumulative_staleness_seconds);
        // Clients send as they go: one whose clock runs behind keeps its live series.
        let delta = DeltaState::open(output, staleness, health.clone())
            .await?
            .holding_arrivals_within(staleness);
        let disk = Arc::new(DiskTrouble::default());
        let decode = DecodePool::new(decoder, config.decode_threads).map_err(|e| {
            EngineError::Config(format!("starting the receiver's decode workers: {e}"))
        })?;
        let writer = Writer {
            replica,
            decode,
            delta,
            health: health.clone(),
            wal_dir: wal_dir.clone(),
            output: output.to_path_buf(),
            max_payload_bytes: config.max_body_bytes,
            flush_bytes: config.flush_bytes,
            flush_every: Duration::from_millis(config.flush_interval_ms.max(1)),
            summary: ReceiverSummary::default(),
            budget,
            disk: disk.clone(),
            disk_reserve: config.disk_reserve_bytes,
            rotate: false,
        };
        let flusher = Flusher::new(output, windows, health, disk);
        Ok(OtlpReceiver {
            config,
            writer,
            flusher,
            pending,
            settled,
            committed,
            auth,
            tls,
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
        // Past what the windows were fed and the tables hold, too: a clock stepped back must not
        // make new logs look like ones already counted.
        let fed = self.flusher.durable.windows().position(RECEIVER_ORIGIN);
        let next_seq = next_seq(&self.writer.wal_dir)?
            .max(fed.map_or(0, |p| p as u64 + 1))
            .max(self.committed.map_or(0, |seq| seq + 1));
        // One segment may wait for the flusher while the writer fills the next.
        let (segments, jobs) = std::sync::mpsc::sync_channel::<FlushJob>(1);
        let flushing_stopped = Arc::new(AtomicBool::new(false));
        let flusher = self.flusher;
        let flush_stop = flushing_stopped.clone();
        let flushing = tokio::task::spawn_blocking(move || flusher.run(jobs, &flush_stop));
        let budget = self.writer.budget.clone();
        let writer = self.writer;
        let pending = self.pending.clone();
        let writing =
            tokio::task::spawn_blocking(move || writer.run(requests, next_seq, &pending, segments));

        let limits = self.config.limits();
        let gate = |protocol| {
            Arc::new(Gate {
                protocol,
                limits: limits.clone(),
                tls: self.tls.clone(),
                auth: self.auth.clone(),
                budget: budget.clone(),
                health: health.clone(),
            })
        };
        let (http_gate, grpc_gate) = (gate(Protocol::Http), gate(Protocol::Grpc));
        let token_reload = self.auth.as_ref().map(AuthTokens::watch);
        let (stopping, stopped) = tokio::sync::watch::channel(false);
        let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let http = tokio::spawn(connections::serve(
            http_listener,
            http_gate,
            http::router(intake.clone()),
            wait(stopped.clone()),
        ));
        let grpc_service =
            ServiceExt::<axum::http::Request<connections::GuardedBody>>::map_response(
                grpc::routes(intake.clone()),
                |response| response.map(axum::body::Body::new),
            );
        let grpc = tokio::spawn(connections::serve(
            grpc_listener,
            grpc_gate,
            grpc_service,
            wait(stopped),
        ));
        health.set_ready();
        tracing::info!(
            http = %self.config.http_listen,
            grpc = %self.config.grpc_listen,
            tls = self.tls.is_some(),
            tokens = self.auth.as_ref().map_or(0, |a| a.len()),
            logs_to_replay = self.pending.len(),
            "OTLP receiver listening"
        );
        tokio::pin!(writing);
        // A writer that ends before `stop` has failed: stop answering and exit with its error,
        // so the process is restarted and its log replayed.
        let early = tokio::select! {
            _ = stop => None,
            ended = &mut writing => Some(ended),
        };
        // A segment write still failing (a full disk) gives up from now on and leaves its log
        // to the next start, so that shutdown cannot hang on it.
        flushing_stopped.store(true, Ordering::Relaxed);
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
        if let Some(reload) = token_reload {
            reload.abort();
        }
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
        let written = flushing
            .await
            .map_err(|e| EngineError::Config(format!("receiver flusher: {e}")))?;
        let mut summary =
            ended.map_err(|e| EngineError::Config(format!("receiver writer: {e}")))??;
        summary.written = written?;
        for served in [http, grpc] {
            served.map_err(|e| EngineError::Config(format!("receiver server: {e}")))??;
        }
        summary.logs_replayed = self.pending.len() as u64;
        summary.logs_settled = self.settled as u64;
        Ok(summary)
    }
}

async fn bind(addr: SocketAddr, what: &str) -> Result<tokio::net::TcpListener, EngineError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| EngineError::Config(format!("{what} listener {addr}: {e}")))
}

/// `receiver-<replica>-<seq>`: the replica's name keeps two receivers' files apart where their
/// datasets meet (one bucket prefix, [`crate::sink::mirror`]); each has its own sequence.
fn segment_name(replica: &str, seq: u64) -> String {
    format!("{RECEIVER_SEGMENT_PREFIX}{replica}-{seq:020}")
}

/// The log sequence number a receiver segment was written from: `receiver-<replica>-<seq>`, or
/// `receiver-<seq>` as receivers named them before.
pub(crate) fn receiver_seq(segment: &str) -> Option<u64> {
    let rest = segment.strip_prefix(RECEIVER_SEGMENT_PREFIX)?;
    let seq = rest.rsplit_once('-').map_or(rest, |(_, seq)| seq);
    seq.parse().ok()
}

/// The sequence numbers of the receiver's segments under `data_dir` not committed yet: a
/// segment's write-ahead log is deleted only once its files are in the tables' logs and the
/// windows have counted them.
pub(crate) fn uncommitted_seqs(data_dir: &Path) -> Result<Vec<u64>, EngineError> {
    list_wals(&wal_dir(data_dir))
}

/// Where the receiver's write-ahead logs are kept under `data_dir`.
fn wal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(STATE_DIR).join("receiver")
}

/// The positions table's app id of a receiver replica's logs; the version is a log's number.
pub(crate) fn position_app_id(replica: &str) -> String {
    format!("receiver/{replica}")
}

/// The commit coordinator of `replica`'s position: the number of its last log in the tables.
fn position_commits(output: &Path, replica: &str) -> CommitCoordinator<()> {
    let app_id = position_app_id(replica);
    CommitCoordinator::new(output, move |_: &()| app_id.clone())
}

/// Where a receiver resumes, as [`settle_logs`] found it.
struct Resume {
    /// The last log number the positions table holds for this replica.
    committed: Option<u64>,
    /// Logs left that were in the tables already, deleted unread.
    settled: usize,
    /// Logs left to replay, in order.
    pending: Vec<u64>,
}

/// Sorts the logs a run left under `wal_dir` into those in the tables already, which it deletes
/// and counts, and those to replay. A log is in the tables when the positions table holds its
/// number for this replica and the windows were fed it. The windows count is asked for too: a
/// crash after the tables' commit but before the windows were fed needs the log's rows once
/// more, and its replay (segment files removed first, then rewritten) is what gives them.
fn settle_logs(
    output: &Path,
    wal_dir: &Path,
    windows: &WindowStage,
) -> Result<Resume, EngineError> {
    let committed = position_commits(output, windows.replica())
        .logged(&[()])?
        .get(&())
        .and_then(|&seq| u64::try_from(seq).ok());
    let logs = list_wals(wal_dir)?;
    let fed = windows
        .position(RECEIVER_ORIGIN)
        .and_then(|seq| u64::try_from(seq).ok());
    let through = committed.min(fed);
    let (settled, pending): (Vec<u64>, Vec<u64>) = logs
        .into_iter()
        .partition(|&seq| through.is_some_and(|through| seq <= through));
    for &seq in &settled {
        let log = wal_path(wal_dir, seq);
        match std::fs::remove_file(&log) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(EngineError::io(&log, e)),
        }
        tracing::info!(log = %log.display(), "receiver log already in the tables: deleted unread");
    }
    Ok(Resume {
        committed,
        settled: settled.len(),
        pending,
    })
}

/// Log numbers grow over restarts: microseconds since the epoch, or past the newest log left.
fn next_seq(wal_dir: &Path) -> Result<u64, EngineError> {
    let now = chrono::Utc::now().timestamp_micros().max(0) as u64;
    let newest = list_wals(wal_dir)?.last().copied().unwrap_or(0);
    Ok(now.max(newest + 1))
}

/// Bytes free for this process on the file system holding `path`, if it can tell.
fn free_bytes(path: &Path) -> Option<u64> {
    let stats = rustix::fs::statvfs(path).ok()?;
    Some(stats.f_bavail.saturating_mul(stats.f_frsize))
}

/// One segment's rows on their way to the flusher, with the log that holds their requests and
/// the memory they take.
struct FlushJob {
    buffer: TableBuffer,
    seq: u64,
    /// Its cumulative points, marked written once the segment is.
    sealed: SealedPoints,
    _memory: Reservation,
}

/// Logs, decodes and answers requests; owns the decode stage and the metric state.
struct Writer {
    /// This process's name among replicas: in its segments' names.
    replica: String,
    decode: DecodePool,
    delta: DeltaState,
    health: Arc<PipelineHealth>,
    wal_dir: PathBuf,
    output: PathBuf,
    max_payload_bytes: usize,
    flush_bytes: usize,
    flush_every: Duration,
    summary: ReceiverSummary,
    budget: Arc<MemoryBudget>,
    disk: Arc<DiskTrouble>,
    disk_reserve: u64,
    /// A log write failed: hand the segment over now, so that its log is deleted once written
    /// and the next one starts empty (on a full disk, the Parquet takes less room than the log).
    rotate: bool,
}

/// Requests decoding as one run: their places in the group the writer logged.
struct Run {
    members: Vec<usize>,
    decoding: Pending,
}

/// The segment the writer is filling: its log, rows and memory.
struct OpenSegment {
    wal: Option<Wal>,
    buffer: TableBuffer,
    memory: Reservation,
}

impl Writer {
    fn hint(&self, frame: &WalFrame) -> PayloadHint {
        PayloadHint {
            encoding: frame.encoding,
            signal: Some(frame.signal),
            max_bytes: self.max_payload_bytes,
        }
    }

    /// Hands logged requests' exports to the decode stage in runs, their bytes with them (a
    /// dead letter gets them back). A run holds requests of one signal, encoding and team, in
    /// the order they were logged; runs are in the order of their first request, so a client's
    /// requests keep their order (its cumulative metrics depend on it).
    fn submit(&self, frames: &mut [WalFrame]) -> Vec<Run> {
        struct Forming {
            members: Vec<usize>,
            bytes: usize,
            full: bool,
        }
        fn kind(frame: &WalFrame) -> (Signal, Option<Encoding>, Option<&str>) {
            (frame.signal, frame.encoding, frame.team.as_deref())
        }
        let mut runs: Vec<Forming> = Vec::new();
        for (at, frame) in frames.iter().enumerate() {
            let taking = runs
                .iter()
                .rposition(|run| !run.full && kind(&frames[run.members[0]]) == kind(frame));
            let run = taking.unwrap_or_else(|| {
                runs.push(Forming {
                    members: Vec::new(),
                    bytes: 0,
                    full: false,
                });
                runs.len() - 1
            });
            let run = &mut runs[run];
            run.members.push(at);
            run.bytes += frame.payload.len();
            run.full = run.members.len() >= RUN_REQUESTS || run.bytes >= RUN_BYTES;
        }
        runs.into_iter()
            .map(|Forming { members, bytes, .. }| {
                let hint = self.hint(&frames[members[0]]);
                let exports = members
                    .iter()
                    .map(|&at| (at as i64, std::mem::take(&mut frames[at].payload)))
                    .collect();
                let mut held = self.budget.reservation();
                held.force(bytes);
                let decoding = self.decode.submit(exports, hint, held);
                Run { members, decoding }
            })
            .collect()
    }

    /// Takes a decoded run into `buffer` (runs are taken in the order they were submitted),
    /// setting each of its requests' answer in `answers`, which `frames` index.
    fn collect(
        &mut self,
        buffer: &mut TableBuffer,
        frames: &[WalFrame],
        run: Run,
        seq: u64,
        answers: &mut [Option<Outcome>],
    ) -> Result<(), EngineError> {
        let decoding = run
            .decoding
            .wait()
            .ok_or_else(|| EngineError::Config("the receiver's decode workers stopped".into()))?;
        if let Some(decoded) = decoding.decoded {
            let overrides_before = buffer.team_overrides;
            let origin = self.delta.origin(RECEIVER_ORIGIN);
            let team = frames[run.members[0]].team.as_deref();
            buffer.add_decoded(decoded, &mut self.delta, origin, team)?;
            self.health
                .team_overridden(buffer.team_overrides - overrides_before);
        }
        // An export with no records is accepted too: nothing to keep.
        for (&at, rows_with_errors) in run.members.iter().zip(decoding.rows_with_errors) {
            answers[at] = Some(Outcome::Accepted { rows_with_errors });
        }
        for Undecodable { id, error, bytes } in decoding.undecodable {
            let (at, frame) = usize::try_from(id)
                .ok()
                .and_then(|at| Some((at, frames.get(at)?)))
                .ok_or_else(|| {
                    EngineError::Config(format!("the decode stage named an unknown request {id}"))
                })?;
            let origin = format!(
                "receiver/{}/{}",
                frame.signal.as_str(),
                segment_name(&self.replica, seq)
            );
            let outcome = Outcome::Rejected {
                too_large: matches!(error, DecodeError::TooLarge { .. }),
                message: error.to_string(),
            };
            buffer.add_dead(DeadLetter::now(origin, error.to_string(), bytes));
            answers[at] = Some(outcome);
        }
        Ok(())
    }

    /// A log an interrupted run left: decoded and handed to the flusher under its own number.
    fn replay(&mut self, seq: u64, segments: &SyncSender<FlushJob>) -> Result<(), EngineError> {
        let path = wal_path(&self.wal_dir, seq);
        let (mut frames, torn) = read_wal(&path)?;
        if torn {
            tracing::warn!(log = %path.display(), "torn tail of the receiver log ignored: it was never acknowledged");
        }
        let runs = self.submit(&mut frames);
        let mut buffer = TableBuffer::default();
        let mut answers = vec![None; frames.len()];
        for run in runs {
            self.collect(&mut buffer, &frames, run, seq, &mut answers)?;
        }
        let mut memory = self.budget.reservation();
        memory.force(buffer.memory);
        let job = FlushJob {
            buffer,
            seq,
            sealed: self.delta.seal(),
            _memory: memory,
        };
        segments
            .send(job)
            .map_err(|_| EngineError::Config("the receiver's flusher stopped".into()))
    }

    /// Logs a group of requests, synced once while they decode, then takes them into the open
    /// segment: their answers. A log write that fails leaves none of them in the log, and all
    /// hear 503.
    fn log_group(
        &mut self,
        open: &mut OpenSegment,
        frames: &mut [WalFrame],
        seq: u64,
    ) -> Result<Vec<Outcome>, EngineError> {
        let incoming: u64 = frames
            .iter()
            .map(|frame| frame.payload.len() as u64 + 64)
            .sum();
        if let Some(free) = free_bytes(&self.output)
            && free < incoming + self.disk_reserve
        {
            let full = EngineError::Config(format!(
                "disk nearly full: {free} bytes free, {} kept for segments",
                self.disk_reserve
            ));
            return Ok(self.unavailable(frames.len(), &full));
        }
        let wal = match open.wal.as_mut() {
            Some(wal) => wal,
            None => match Wal::create(&self.wal_dir, seq) {
                Ok(wal) => open.wal.insert(wal),
                Err(error) => return Ok(self.unavailable(frames.len(), &error)),
            },
        };
        let appended = frames.iter().try_for_each(|frame| wal.append(frame));
        if let Err(error) = appended {
            // 503 means "not stored": nothing of the group may stay in the log to be replayed.
            wal.discard_unsynced()?;
            return Ok(self.unavailable(frames.len(), &error));
        }
        let sizes: Vec<usize> = frames.iter().map(|frame| frame.payload.len()).collect();
        // The exports decode on the workers while the log syncs; a request is answered only
        // once both are done.
        let runs = self.submit(frames);
        if let Err(error) = wal.sync() {
            wal.discard_unsynced()?;
            return Ok(self.unavailable(frames.len(), &error));
        }
        self.disk.set(&self.disk.log, None, &self.health);
        let seq = wal.seq();
        for size in sizes {
            self.health.message(size);
            self.summary.requests += 1;
            self.summary.bytes += size as u64;
        }
        let mut answers = vec![None; frames.len()];
        for run in runs {
            self.collect(&mut open.buffer, frames, run, seq, &mut answers)?;
            // Less than before, too, when the buffer concatenated its small batches.
            open.memory.resize(open.buffer.memory);
        }
        let answers: Vec<Outcome> = answers
            .into_iter()
            .map(|answer| {
                answer.ok_or_else(|| {
                    EngineError::Config("the decode stage left a request unanswered".into())
                })
            })
            .collect::<Result<_, _>>()?;
        self.summary.rejected += answers
            .iter()
            .filter(|outcome| matches!(outcome, Outcome::Rejected { .. }))
            .count() as u64;
        Ok(answers)
    }

    fn unavailable(&mut self, requests: usize, error: &EngineError) -> Vec<Outcome> {
        tracing::warn!(error = %error, requests, "receiver log write failed; answered 503");
        self.disk
            .set(&self.disk.log, Some(format!("log: {error}")), &self.health);
        self.summary.unavailable += requests as u64;
        self.rotate = true;
        let message = format!("not stored, retry later: {error}");
        vec![Outcome::Unavailable(message); requests]
    }

    /// Whether a segment is `times` over what makes it due: `flush_bytes` of decoded exports
    /// (lowered to half the free disk space), or a quarter of the memory budget in Arrow
    /// buffers.
    fn over_threshold(&self, buffer: &TableBuffer, times: usize) -> bool {
        let free = free_bytes(&self.output).map_or(usize::MAX, |free| (free / 2) as usize);
        let bytes = self.flush_bytes.min(free).max(1);
        let memory = (self.budget.limit() / 4).max(1);
        buffer.bytes >= bytes.saturating_mul(times) || buffer.memory >= memory.saturating_mul(times)
    }

    fn run(
        mut self,
        requests: QueueReceiver<Submission>,
        mut seq: u64,
        pending: &[u64],
        segments: SyncSender<FlushJob>,
    ) -> Result<ReceiverSummary, EngineError> {
        for log in pending {
            self.replay(*log, &segments)?;
        }
        let mut open = OpenSegment {
            wal: None,
            buffer: TableBuffer::default(),
            memory: self.budget.reservation(),
        };
        let mut deadline = Instant::now() + self.flush_every;
        let mut taking = true;
        // A segment the flusher could not take yet stays open and keeps growing up to this.
        let mut held_back = false;
        while taking {
            let wait = if held_back {
                HANDOFF_RETRY
            } else {
                deadline.saturating_duration_since(Instant::now())
            };
            let mut batch = Vec::new();
            match requests.recv_timeout(wait) {
                Ok(first) => {
                    batch.push(first);
                    while batch.len() < GROUP_COMMIT {
                        let Ok(next) = requests.try_recv() else { break };
                        batch.push(next);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => taking = false,
            }
            if !batch.is_empty() {
                let (mut frames, replies): (Vec<WalFrame>, Vec<_>) =
                    batch.into_iter().map(|s| (s.frame, s.reply)).unzip();
                let answers = if held_back && self.over_threshold(&open.buffer, 2) {
                    let message = "segments are not being written fast enough; retry later";
                    self.summary.unavailable += frames.len() as u64;
                    vec![Outcome::Unavailable(message.into()); frames.len()]
                } else {
                    self.log_group(&mut open, &mut frames, seq)?
                };
                for (reply, outcome) in replies.into_iter().zip(answers) {
                    // A client that hung up still had its export made durable.
                    let _ = reply.send(outcome);
                }
            }
            self.health
                .set_memory(self.budget.used(), self.budget.limit());
            let due = Instant::now() >= deadline
                || self.over_threshold(&open.buffer, 1)
                || held_back
                || self.rotate
                || !taking;
            if !due {
                continue;
            }
            deadline = Instant::now() + self.flush_every;
            let Some(wal) = open.wal.take() else {
                continue;
            };
            if open.buffer.is_empty() {
                open.wal = Some(wal);
                continue;
            }
            let job = FlushJob {
                buffer: std::mem::take(&mut open.buffer),
                seq: wal.seq(),
                // A job the flusher cannot take yet comes back, and is sealed again with
                // what it gathers meanwhile.
                sealed: self.delta.seal(),
                _memory: std::mem::replace(&mut open.memory, self.budget.reservation()),
            };
            // At shutdown the last segment waits for the flusher; before, a busy flusher
            // never holds up acknowledgements.
            let handed = if taking {
                segments.try_send(job)
            } else {
                segments
                    .send(job)
                    .map_err(|e| TrySendError::Disconnected(e.0))
            };
            match handed {
                Ok(()) => {
                    held_back = false;
                    self.rotate = false;
                    drop(wal);
                    // Without a readable log directory, the next log (whose creation will
                    // fail and be answered 503) still gets a new number.
                    seq = next_seq(&self.wal_dir).unwrap_or(seq + 1).max(seq + 1);
                }
                Err(TrySendError::Full(job)) => {
                    held_back = true;
                    open.buffer = job.buffer;
                    open.memory = job._memory;
                    open.wal = Some(wal);
                }
                Err(TrySendError::Disconnected(_)) => {
                    return Err(EngineError::Config("the receiver's flusher stopped".into()));
                }
            }
        }
        // A log with nothing in it goes: nothing is pending.
        if let Some(wal) = open.wal.take() {
            wal.remove()?;
        }
        Ok(self.summary)
    }
}

/// Takes each segment down the durability path, then deletes the logs it came from once their
/// number is committed.
struct Flusher {
    durable: DurablePath<()>,
    wal_dir: PathBuf,
    disk: Arc<DiskTrouble>,
    /// Logs whose segments are written and windowed, kept until the positions table holds
    /// their number: a restart replays them until then.
    uncommitted: Vec<u64>,
}

impl Flusher {
    /// The flusher of the dataset under `output`, for the replica `windows` count for.
    fn new(
        output: &Path,
        windows: WindowStage,
        health: Arc<PipelineHealth>,
        disk: Arc<DiskTrouble>,
    ) -> Self {
        let commits = position_commits(output, windows.replica());
        Flusher {
            durable: DurablePath::new(ParquetSink::new(output), windows, health, commits),
            wal_dir: wal_dir(output),
            disk,
            uncommitted: Vec::new(),
        }
    }

    /// Commits the last log number written to the positions table and deletes the logs it
    /// covers. One that fails keeps the logs: the next flush commits a later number, and a
    /// restart replays them (under the same segment names; the windows skip them).
    fn commit(&mut self) {
        let committed = match self.durable.commit() {
            Ok(committed) => committed,
            Err(error) => {
                self.durable.health().commit_failed();
                tracing::warn!(error = %error, retryable = error.is_retryable(), "the receiver's position was not committed; its logs stay for the next commit");
                return;
            }
        };
        let Some(through) = committed.get(&()).and_then(|&seq| u64::try_from(seq).ok()) else {
            return;
        };
        self.uncommitted.retain(|&seq| {
            if seq > through {
                return true;
            }
            let log = wal_path(&self.wal_dir, seq);
            // A log left behind is harmless: replayed at the next start, it rewrites the same
            // segment and the windows skip it.
            match std::fs::remove_file(&log) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    tracing::warn!(log = %log.display(), error = %error, "written segment's log not deleted; the next start replays it");
                }
            }
            false
        });
    }

    fn run(
        mut self,
        jobs: QueueReceiver<FlushJob>,
        stopping: &AtomicBool,
    ) -> Result<FlushTotals, EngineError> {
        for job in jobs {
            // The job's memory stays reserved until its rows are written and windowed.
            self.flush(job.seq, job.buffer, stopping)?;
            job.sealed.written();
        }
        // Open windows stay open in the checkpoint; the next start carries on with them.
        if !self.durable.windows_mut().finish(PUSH_GRACE) {
            tracing::warn!("the last Pushgateway push did not go through before shutdown");
        }
        Ok(self.durable.take_written())
    }

    /// Takes log `seq`'s rows down the durability path: written (retried while the write
    /// fails, unless `stopping`), windowed, committed, and its log deleted once committed.
    fn flush(
        &mut self,
        seq: u64,
        buffer: TableBuffer,
        stopping: &AtomicBool,
    ) -> Result<(), EngineError> {
        let position = i64::try_from(seq)
            .map_err(|_| EngineError::Config(format!("log number {seq} out of range")))?;
        let flush = SegmentFlush {
            name: segment_name(self.durable.windows().replica(), seq),
            segment: buffer.into_segment()?,
            origin: RECEIVER_ORIGIN.to_string(),
            window_position: position,
            key: (),
            position,
        };
        let mut retry_in = HANDOFF_RETRY;
        while let Err(error) = self.durable.write(std::slice::from_ref(&flush)) {
            let name = &flush.name;
            tracing::warn!(segment = %name, error = %error, retryable = error.is_retryable(), "segment write failed; its log keeps the requests, retrying");
            self.disk.set(
                &self.disk.segments,
                Some(format!("segment {name}: {error}")),
                self.durable.health(),
            );
            if stopping.load(Ordering::Relaxed) {
                return Err(error);
            }
            std::thread::sleep(retry_in);
            retry_in = (retry_in * 2).min(FLUSH_RETRY_MAX);
        }
        self.disk
            .set(&self.disk.segments, None, self.durable.health());
        self.durable.settle(std::slice::from_ref(&flush))?;
        self.uncommitted.push(seq);
        self.commit();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::stream::delta_state::DeltaState;
    use datafusion::arrow::array::{Array, Int64Array};

    use super::*;
    use crate::sink::table_buffer::decoded_log_record;
    use crate::stream::windows::WindowSpec;
    use burnrate_otlp::Table;

    #[test]
    fn listening_beyond_loopback_needs_authentication_or_insecure() {
        let exposed = ReceiverConfig {
            http_listen: SocketAddr::from(([0, 0, 0, 0], 4318)),
            ..ReceiverConfig::default()
        };
        let refused = exposed.check().unwrap_err().to_string();
        assert!(
            refused.contains("0.0.0.0:4318") && refused.contains("--insecure"),
            "{refused}"
        );
        let tokens = ReceiverConfig {
            auth_tokens_file: Some("/etc/burnrate/tokens".into()),
            ..exposed.clone()
        };
        assert!(tokens.check().is_ok());
        let mutual_tls = ReceiverConfig {
            tls_cert_file: Some("tls.crt".into()),
            tls_key_file: Some("tls.key".into()),
            tls_client_ca_file: Some("ca.crt".into()),
            ..exposed.clone()
        };
        assert!(mutual_tls.check().is_ok());
        let insecure = ReceiverConfig {
            insecure: true,
            ..exposed.clone()
        };
        assert!(insecure.check().is_ok());
        assert!(
            ReceiverConfig::default().check().is_ok(),
            "loopback needs nothing"
        );
        let half_tls = ReceiverConfig {
            tls_cert_file: Some("tls.crt".into()),
            ..ReceiverConfig::default()
        };
        assert!(half_tls.check().is_err());
        let ca_without_tls = ReceiverConfig {
            tls_client_ca_file: Some("ca.crt".into()),
            ..ReceiverConfig::default()
        };
        assert!(ca_without_tls.check().is_err());
    }

    const REPLICA: &str = "pod-0";

    fn flusher(root: &Path, health: Arc<PipelineHealth>) -> Flusher {
        let windows = WindowStage::open(root, &WindowSpec::default(), REPLICA, 100).unwrap();
        Flusher::new(root, windows, health, Arc::default())
    }

    /// The rows of one log record, as the writer hands them on.
    fn rows(body: &str) -> TableBuffer {
        let mut buffer = TableBuffer::default();
        let decoded = decoded_log_record(body);
        buffer
            .add_decoded(decoded, &mut DeltaState::in_memory(), 0, None)
            .unwrap();
        buffer
    }

    fn log_records(root: &Path) -> i64 {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let batches = runtime.block_on(async {
            let ctx = crate::query::catalog::open_dataset(root).await.unwrap();
            let frame = ctx.sql("SELECT count(*) FROM log_records").await.unwrap();
            frame.collect().await.unwrap()
        });
        let counts = batches[0].column(0);
        let counts = counts.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(counts.len(), 1);
        counts.value(0)
    }

    fn writer(root: &Path, decoder: Decoder) -> Writer {
        let budget = MemoryBudget::for_memory_limit(1 << 30);
        Writer {
            replica: REPLICA.into(),
            decode: DecodePool::new(decoder, 2).unwrap(),
            delta: DeltaState::in_memory(),
            health: PipelineHealth::new(),
            wal_dir: wal_dir(root),
            output: root.to_path_buf(),
            max_payload_bytes: 4096,
            flush_bytes: 1 << 30,
            flush_every: Duration::from_secs(60),
            summary: ReceiverSummary::default(),
            budget,
            disk: Arc::default(),
            disk_reserve: 0,
            rotate: false,
        }
    }

    /// A Claude Code `api_request` event of `session` as OTLP/JSON, with `tokens` as its input
    /// tokens.
    fn api_request(session: &str, tokens: &str) -> Vec<u8> {
        format!(
            r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"team","value":{{"stringValue":"qa"}}}}]}},
            "scopeLogs":[{{"logRecords":[{{"timeUnixNano":"1795536575568000000","body":{{"stringValue":"claude_code.api_request"}},
            "attributes":[{{"key":"event.name","value":{{"stringValue":"api_request"}}}},
              {{"key":"session.id","value":{{"stringValue":"{session}"}}}},
              {{"key":"model","value":{{"stringValue":"claude-haiku-4-5"}}}},
              {{"key":"input_tokens","value":{{"stringValue":"{tokens}"}}}},
              {{"key":"output_tokens","value":{{"intValue":"12"}}}}]}}]}}]}}]}}"#
        )
        .into_bytes()
    }

    /// A cumulative cost counter at `value` dollars, `value` seconds after a fixed time.
    fn metrics_json(value: u64) -> Vec<u8> {
        let time = 1_795_536_575_000_000_000 + value * 1_000_000_000;
        format!(
            r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{{"name":"claude_code.cost.usage","sum":{{"aggregationTemporality":2,"isMonotonic":true,
            "dataPoints":[{{"startTimeUnixNano":"1795536575000000000","timeUnixNano":"{time}","asDouble":{value},"attributes":[{{"key":"model","value":{{"stringValue":"claude-haiku-4-5"}}}}]}}]}}}}]}}]}}]}}"#
        )
        .into_bytes()
    }

    fn logs_proto(body: &str) -> Vec<u8> {
        use burnrate_otlp::proto::collector::logs::v1::ExportLogsServiceRequest;
        use burnrate_otlp::proto::common::v1::{AnyValue, any_value};
        use burnrate_otlp::proto::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
        use prost::Message;
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        time_unix_nano: 1_795_536_575_568_000_000,
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(body.into())),
                        }),
                        ..LogRecord::default()
                    }],
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        }
        .encode_to_vec()
    }

    #[test]
    fn a_group_decodes_in_runs_and_each_request_hears_what_it_would_alone() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(wal_dir(root)).unwrap();
        let decoder = Decoder::new(Default::default(), burnrate_pricing::PriceTable::embedded());
        let mut writer = writer(root, decoder.clone());
        // Requests of tokens bound to a team (red, blue) and of one that is not (their rows
        // say qa).
        let team_of = |i: usize| ["qa", "qa", "red", "qa", "blue"][i % 5];
        let frame = |signal, encoding, team: Option<&str>, payload| WalFrame {
            signal,
            encoding: Some(encoding),
            team: team.map(Arc::from),
            payload,
        };
        // More requests of one kind than a run holds, other kinds between them, requests
        // that cannot be read and requests whose rows keep unparsable values.
        let mut frames = Vec::new();
        for i in 0..70 {
            let tokens = if i % 9 == 4 { "NaN" } else { "100" };
            let team = Some(team_of(i)).filter(|team| *team != "qa");
            frames.push(frame(
                Signal::Logs,
                Encoding::Json,
                team,
                api_request(&format!("request {i}"), tokens),
            ));
            match i % 10 {
                3 => frames.push(frame(
                    Signal::Logs,
                    Encoding::Json,
                    None,
                    b"{not json".to_vec(),
                )),
                5 => frames.push(frame(
                    Signal::Metrics,
                    Encoding::Json,
                    None,
                    metrics_json(i as u64),
                )),
                6 => frames.push(frame(
                    Signal::Logs,
                    Encoding::Proto,
                    None,
                    logs_proto(&format!("proto {i}")),
                )),
                8 => frames.push(frame(Signal::Logs, Encoding::Json, None, vec![b' '; 5000])),
                _ => {}
            }
        }
        let alone: Vec<Outcome> = frames
            .iter()
            .map(|frame| {
                let hint = writer.hint(frame);
                match decoder.decode(&frame.payload, hint) {
                    Ok(decoded) => Outcome::Accepted {
                        rows_with_errors: decoded.stats.rows_with_errors,
                    },
                    Err(error) => Outcome::Rejected {
                        too_large: matches!(error, DecodeError::TooLarge { .. }),
                        message: error.to_string(),
                    },
                }
            })
            .collect();

        let mut open = OpenSegment {
            wal: None,
            buffer: TableBuffer::default(),
            memory: writer.budget.reservation(),
        };
        let answers = writer.log_group(&mut open, &mut frames, 1).unwrap();
        assert_eq!(answers, alone);
        let partial = |o: &Outcome| matches!(o, Outcome::Accepted { rows_with_errors } if *rows_with_errors > 0);
        assert_eq!(answers.iter().filter(|o| partial(o)).count(), 8);
        let rejected = |too_large: bool| {
            answers
                .iter()
                .filter(|o| matches!(o, Outcome::Rejected { too_large: t, .. } if *t == too_large))
                .count()
        };
        assert_eq!((rejected(false), rejected(true)), (7, 7));
        assert_eq!(writer.summary.requests, frames.len() as u64);
        assert_eq!(writer.summary.rejected, 14);

        // Every rejected request is a dead letter; every row is booked to its own request's
        // team, and one client's requests stay in the order they came.
        assert_eq!(open.buffer.dead_letters(), 14);
        assert_eq!(
            open.buffer.delta.resets, 0,
            "the counter's points in the order sent"
        );
        let tables = std::mem::take(&mut open.buffer).into_tables().unwrap();
        let rows = |table: Table| tables[&table].iter().map(|b| b.num_rows()).sum::<usize>();
        assert_eq!(
            rows(Table::LogRecords),
            70 + 7,
            "api requests and protobuf logs"
        );
        assert_eq!(rows(Table::UsageMetrics), 7);
        let calls = datafusion::arrow::compute::concat_batches(
            &tables[&Table::ApiRequests][0].schema(),
            &tables[&Table::ApiRequests],
        )
        .unwrap();
        let column = |name: &str| {
            calls
                .column_by_name(name)
                .unwrap()
                .as_any()
                .downcast_ref::<datafusion::arrow::array::StringArray>()
                .unwrap()
                .iter()
                .map(|v| v.unwrap().to_string())
                .collect::<Vec<_>>()
        };
        let (sessions, teams) = (column("session_id"), column("team"));
        assert_eq!(sessions.len(), 70);
        for team in ["qa", "red", "blue"] {
            let booked: Vec<usize> = sessions
                .iter()
                .zip(&teams)
                .filter(|(_, t)| *t == team)
                .map(|(session, _)| session["request ".len()..].parse().unwrap())
                .collect();
            let sent: Vec<usize> = (0..70).filter(|i| team_of(*i) == team).collect();
            assert_eq!(
                booked, sent,
                "{team}: each row its request's team, in order"
            );
        }
    }

    #[test]
    fn a_log_stays_until_its_number_is_committed_and_a_restart_replays_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let wal_dir = wal_dir(root);
        std::fs::create_dir_all(&wal_dir).unwrap();
        for seq in [5, 6] {
            std::fs::write(wal_path(&wal_dir, seq), b"").unwrap();
        }
        let health = PipelineHealth::new();
        let stopping = AtomicBool::new(false);

        // Log 5 is written and windowed, but its number cannot be committed: a file stands
        // where the positions table's folder goes.
        let blocked = root.join(crate::sink::table_log::POSITIONS_DIR);
        std::fs::write(&blocked, b"not a folder").unwrap();
        let mut first = flusher(root, health.clone());
        first.flush(5, rows("first"), &stopping).unwrap();
        assert_eq!(first.durable.windows().position(RECEIVER_ORIGIN), Some(5));
        assert!(wal_path(&wal_dir, 5).exists(), "kept until committed");
        assert!(
            health.render().contains("burnrate_commit_failures_total 1"),
            "{}",
            health.render()
        );
        assert_eq!(log_records(root), 1);
        // The process dies here.
        drop(first);

        // The next start replays log 5 (and 6, never flushed): the windows counted it, the
        // positions table does not hold it.
        std::fs::remove_file(&blocked).unwrap();
        let windows = WindowStage::open(root, &WindowSpec::default(), REPLICA, 100).unwrap();
        let resume = settle_logs(root, &wal_dir, &windows).unwrap();
        assert_eq!((resume.committed, resume.settled), (None, 0));
        assert_eq!(resume.pending, vec![5, 6]);
        drop(windows);

        // The replay writes the same files again and commits; log 5 goes, log 6 stays.
        let mut second = flusher(root, health.clone());
        second.flush(5, rows("first"), &stopping).unwrap();
        assert!(!wal_path(&wal_dir, 5).exists());
        assert!(wal_path(&wal_dir, 6).exists());
        assert_eq!(log_records(root), 1, "the replay doubles nothing");
        drop(second);
        let windows = WindowStage::open(root, &WindowSpec::default(), REPLICA, 100).unwrap();
        let resume = settle_logs(root, &wal_dir, &windows).unwrap();
        assert_eq!((resume.committed, resume.settled), (Some(5), 0));
        assert_eq!(resume.pending, vec![6]);
    }
}
