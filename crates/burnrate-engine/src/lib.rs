//! Sources, state and sinks around the decoder.
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

pub mod anomalies;
pub mod budget;
pub mod catalog;
pub mod dead_letters;
pub mod decode;
mod delta_state;
pub mod files;
pub mod health;
pub mod kafka;
mod ledger;
pub mod mirror;
pub mod output;
pub mod parquet_sink;
pub mod price_check;
pub mod profile;
pub mod pushgateway;
pub mod receiver;
pub mod report;
pub mod sketch;
mod table_buffer;
pub mod trace;
pub mod windows;

use std::path::Path;

pub use anomalies::{AnomalyConfig, Budget};
pub use budget::MemoryBudget;
pub use catalog::open_dataset;
pub use delta_state::rebuild_delta_tracker;
pub use files::{FilePipeline, FileRunSummary, FileSourceConfig, Progress};
pub use health::{PipelineHealth, serve_health};
pub use kafka::{KafkaPipeline, KafkaRunSummary, KafkaSourceConfig, KafkaTopic};
pub use mirror::{ObjectMirror, ObjectStoreConfig};
pub use output::{ResultFormat, write_results};
pub use parquet_sink::ParquetSink;
pub use profile::{ProfileBy, ProfileLine};
pub use pushgateway::{PushTotals, Pushgateway, PushgatewayConfig};
pub use receiver::{AuthTokens, OtlpReceiver, ReceiverConfig, ReceiverSummary};
pub use report::CostReport;
pub use table_buffer::FlushTotals;
pub use trace::export_trace;
pub use windows::{WindowProgress, WindowSpec, WindowSql, WindowStage};

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
