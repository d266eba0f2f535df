//! Sources, state and sinks around the decoder, a folder per stage: `source/` → [`decode`] →
//! `sink/` → `stream/` → `publish/`, with `query/` reading the dataset back and [`budget`] the
//! memory all of them share.
//!
//! Owns: reading OTLP exports from their sources (files, Kafka, the embedded OTLP receiver),
//! the decode stage (a worker pool, results in submission order),
//! the pipeline's health endpoints and metrics, the commit ledger, the cumulative-to-delta
//! state and its rebuild after a restart, dead letters, Parquet output (Hive-partitioned,
//! atomic, idempotent on replay, mirrored to object storage), event-time usage windows (the SQL
//! in `sql/`, the latency sketch, watermarks, late corrections, the window checkpoint), the
//! anomaly rules over closed windows, the Pushgateway sink, the cost report, the time profile,
//! the price-table check against a dataset, and the DataFusion catalog the CLI queries (local or `s3://`).
//!
//! Must not know: OTLP wire formats or attribute names (that is `burnrate-otlp`), prices (that
//! is `burnrate-pricing`), or command-line flags and terminals (that is the `burnrate` binary).

pub mod budget;
pub mod decode;
pub mod publish;
pub mod query;
pub mod sink;
pub mod source;
pub mod stream;

use std::path::Path;

pub use budget::MemoryBudget;
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
    KafkaPipeline, KafkaRunSummary, KafkaSourceConfig, KafkaTopic, PartitionEnd,
};
pub use source::receiver::{AuthTokens, OtlpReceiver, ReceiverConfig, ReceiverSummary};
pub use stream::anomalies::{AnomalyConfig, Budget};
pub use stream::delta_state::rebuild_delta_tracker;
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
}

impl EngineError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        EngineError::Io {
            path: path.display().to_string(),
            source,
        }
    }
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
