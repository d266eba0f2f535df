//! Sources, state and sinks around the decoder, a folder per stage: `source/` → [`decode`] →
//! `sink/` → `stream/` → `publish/`, with `query/` reading the dataset back and [`budget`] the
//! memory all of them share.
//!
//! Owns: reading OTLP exports from their sources (files, Kafka, the embedded OTLP receiver),
//! the decode stage (a worker pool, results in submission order),
//! the pipeline's health endpoints and metrics, the commit ledger, the cumulative-to-delta
//! state and its rebuild after a restart, dead letters, Parquet output (Hive-partitioned,
//! atomic, idempotent on replay, committed to each table's Delta log, mirrored to object
//! storage), event-time usage windows (the SQL
//! in `sql/`, the latency sketch, watermarks, late corrections, the window checkpoint), the
//! anomaly rules over closed windows, the Pushgateway sink, the cost report, the time profile,
//! the price-table check against a dataset, and the DataFusion catalog the CLI queries (local or `s3://`).
//!
//! Must not know: OTLP wire formats or attribute names (that is `burnrate-otlp`), prices (that
//! is `burnrate-pricing`), or command-line flags and terminals (that is the `burnrate` binary).

pub mod budget;
pub mod compaction;
pub mod decode;
pub mod publish;
pub mod query;
pub mod sink;
pub mod source;
pub mod stream;

use std::path::Path;

pub use budget::MemoryBudget;
pub use compaction::erasure::{Erasure, TableErasure, forget};
pub use compaction::{CompactionConfig, InProcessCompaction, TableCompaction, compact};
pub use publish::exposition::WindowPublisher;
pub use publish::health::{PipelineHealth, serve_health};
pub use publish::pushgateway::{Pushgateway, PushgatewayConfig};
pub use query::catalog::open_dataset;
pub use query::output::{ResultFormat, write_results};
pub use query::profile::{ProfileBy, ProfileLine};
pub use query::report::CostReport;
pub use query::trace::export_trace;
pub use sink::mirror::{ObjectMirror, ObjectStoreConfig};
pub use sink::parquet_sink::ParquetSink;
pub use sink::table_buffer::FlushTotals;
pub use source::files::{FilePipeline, FileRunSummary, FileSourceConfig, Progress};
pub use source::kafka::{
    FETCH_QUEUE_BACKOFF_MS, KafkaPipeline, KafkaRunSummary, KafkaSourceConfig, KafkaTopic,
    PartitionEnd,
};
pub use source::receiver::{AuthTokens, OtlpReceiver, ReceiverConfig, ReceiverSummary};
pub use stream::anomalies::{AnomalyConfig, Budget};
pub use stream::totals::PushTotals;
pub use stream::windows::{WindowProgress, WindowSpec, WindowSql, WindowStage};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("input directory {0} does not exist")]
    NoInput(String),
    #[error("data directory {0} does not exist (write one with `burnrate run`)")]
    NoDataset(String),
    #[error("{0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("{0}")]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
    /// Kept without `#[source]`: DataFusion's message already carries its causes, and a CLI
    /// printing the chain would repeat them.
    #[error("{}", one_line(.0))]
    DataFusion(datafusion::error::DataFusionError),
    #[error("kafka: {0}")]
    Kafka(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("{0}")]
    NotFound(String),
    #[error("schema: {0}")]
    Schema(String),
    #[error("writing output: {0}")]
    Output(#[source] std::io::Error),
    /// The Kafka source's sink could not make a segment durable; nothing after it was committed.
    #[error("writing segments: {message}")]
    Sink { message: String, retryable: bool },
    /// A table's Delta log could not be read or committed to.
    #[error("{table}: Delta log: {message}")]
    TableLog {
        table: String,
        message: String,
        /// The log could not be reached or another writer kept winning: the same commit can
        /// succeed later.
        retryable: bool,
    },
    /// An object store (S3 or S3-compatible) call that failed, on one line.
    #[error("object store: {message}")]
    ObjectStore {
        message: String,
        /// The store could not be reached or failed on its side (network, 5xx, throttling),
        /// as opposed to refusing the request (missing object, denied, misconfigured).
        retryable: bool,
    },
}

impl EngineError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        EngineError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// Whether the same command, with the same input and configuration, can succeed when run
    /// again once something outside burnrate recovers: a disk with free space, a broker or an
    /// object store back, an interrupted call. Every source resumes from what it committed, so
    /// a retry never counts anything twice. The binary exits 75 (`EX_TEMPFAIL`) for these.
    pub fn is_retryable(&self) -> bool {
        use datafusion::arrow::error::ArrowError;
        use datafusion::error::DataFusionError;
        use datafusion::parquet::errors::ParquetError;
        match self {
            EngineError::Io { source, .. } | EngineError::Output(source) => is_transient_io(source),
            EngineError::Arrow(ArrowError::IoError(_, source)) => is_transient_io(source),
            EngineError::Parquet(ParquetError::External(source)) => source
                .downcast_ref::<std::io::Error>()
                .is_some_and(is_transient_io),
            EngineError::DataFusion(error) => match error.find_root() {
                DataFusionError::IoError(source) => is_transient_io(source),
                DataFusionError::ObjectStore(_) => true,
                _ => false,
            },
            // The broker, the group or the sink thread behind it: a run restarted from its
            // committed offsets replays the rest idempotently.
            EngineError::Kafka(_) => true,
            EngineError::ObjectStore { retryable, .. }
            | EngineError::Sink { retryable, .. }
            | EngineError::TableLog { retryable, .. } => *retryable,
            EngineError::NoInput(_)
            | EngineError::NoDataset(_)
            | EngineError::Arrow(_)
            | EngineError::Parquet(_)
            | EngineError::Config(_)
            | EngineError::NotFound(_)
            | EngineError::Schema(_) => false,
        }
    }
}

/// An I/O failure that can pass by itself: a full disk (space is freed, or the PVC grows),
/// a timeout, an interrupted call, a connection dropped.
pub fn is_transient_io(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::StorageFull
            | ErrorKind::QuotaExceeded
            | ErrorKind::ResourceBusy
            | ErrorKind::Interrupted
            | ErrorKind::TimedOut
            | ErrorKind::WouldBlock
            | ErrorKind::ConnectionRefused
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::NotConnected
            | ErrorKind::HostUnreachable
            | ErrorKind::NetworkUnreachable
            | ErrorKind::NetworkDown
    )
}

impl From<datafusion::error::DataFusionError> for EngineError {
    fn from(error: datafusion::error::DataFusionError) -> Self {
        EngineError::DataFusion(error)
    }
}

/// The root cause of a DataFusion error, on one line, without the layers that wrap it.
fn one_line(error: &datafusion::error::DataFusionError) -> String {
    use datafusion::error::DataFusionError;
    let root = error.find_root();
    let text = match root {
        DataFusionError::SQL(parse, _) => format!("SQL syntax error: {parse}"),
        other => other.strip_backtrace(),
    };
    text.lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error, ErrorKind};

    fn io(kind: ErrorKind) -> EngineError {
        EngineError::io(Path::new("/data/log_records"), Error::from(kind))
    }

    #[test]
    fn what_passes_by_itself_is_retryable_and_what_needs_a_fix_is_not() {
        assert!(io(ErrorKind::StorageFull).is_retryable());
        assert!(io(ErrorKind::TimedOut).is_retryable());
        assert!(!io(ErrorKind::NotFound).is_retryable());
        assert!(!io(ErrorKind::PermissionDenied).is_retryable());
        let full = datafusion::parquet::errors::ParquetError::External(Box::new(Error::from(
            ErrorKind::StorageFull,
        )));
        assert!(EngineError::Parquet(full).is_retryable());
        let general = datafusion::parquet::errors::ParquetError::General("bad page".into());
        assert!(!EngineError::Parquet(general).is_retryable());
        assert!(EngineError::Kafka("broker transport failure".into()).is_retryable());
        assert!(!EngineError::Config("unknown field".into()).is_retryable());
        assert!(!EngineError::NoDataset("./burnrate-data".into()).is_retryable());
        let away = EngineError::ObjectStore {
            message: "connection refused".into(),
            retryable: true,
        };
        let denied = EngineError::ObjectStore {
            message: "access denied".into(),
            retryable: false,
        };
        assert!(away.is_retryable() && !denied.is_retryable());
        let log = |retryable| EngineError::TableLog {
            table: "api_requests".into(),
            message: "version taken".into(),
            retryable,
        };
        assert!(log(true).is_retryable() && !log(false).is_retryable());
        let wrapped = datafusion::error::DataFusionError::Context(
            "listing".into(),
            Box::new(datafusion::error::DataFusionError::IoError(Error::from(
                ErrorKind::StorageFull,
            ))),
        );
        assert!(EngineError::DataFusion(wrapped).is_retryable());
        let plan = datafusion::error::DataFusionError::Plan("no such column".into());
        assert!(!EngineError::DataFusion(plan).is_retryable());
    }
}
