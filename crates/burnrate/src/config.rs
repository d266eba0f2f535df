//! The one typed configuration: a TOML file, each key overridable by an environment variable
//! or a command-line flag (flag > environment > file > default).

use std::path::{Path, PathBuf};

use anyhow::Context;
use std::net::SocketAddr;

use burnrate_engine::{
    AnomalyConfig, FileSourceConfig, KafkaSourceConfig, PushgatewayConfig, ReceiverConfig,
    WindowSpec,
};
use burnrate_otlp::MappingConfig;
use burnrate_pricing::PriceTable;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the Parquet dataset lives (written by `run`, read by `query`).
    pub data_dir: PathBuf,
    /// A TOML or JSON price file laid over the embedded table.
    pub prices: Option<PathBuf>,
    /// Which attributes, events and spans feed the canonical tables.
    pub mapping: MappingConfig,
    /// Segmenting and limits of the files source.
    pub files: FileSourceConfig,
    /// The Kafka source: brokers, group, topics, client properties (SASL, TLS), flushing.
    pub kafka: KafkaSourceConfig,
    /// The embedded OTLP receiver: listen addresses, limits, flushing.
    pub receiver: ReceiverConfig,
    /// Where `/healthz`, `/readyz` and `/metrics` are served while `run` runs.
    pub health_listen: SocketAddr,
    /// How long SIGTERM or SIGINT may take to flush and commit before the process exits anyway
    /// (under Kubernetes' default 30 s termination grace period).
    pub shutdown_grace_seconds: f64,
    /// This process's name among replicas: names its window checkpoint and output files and is
    /// its Pushgateway grouping key. A StatefulSet's pod name is a good one.
    pub replica: String,
    /// Event-time windows: width, allowed lateness, dimensions, the SQL files.
    pub windows: WindowSpec,
    /// Where the window totals are pushed (nowhere unless `url` is set).
    pub pushgateway: PushgatewayConfig,
    /// Anomaly rules, their thresholds, and spend budgets.
    pub anomalies: AnomalyConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./burnrate-data"),
            prices: None,
            mapping: MappingConfig::default(),
            files: FileSourceConfig::default(),
            kafka: KafkaSourceConfig::default(),
            receiver: ReceiverConfig::default(),
            health_listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            shutdown_grace_seconds: 25.0,
            replica: "local".into(),
            windows: WindowSpec::default(),
            pushgateway: PushgatewayConfig::default(),
            anomalies: AnomalyConfig::default(),
        }
    }
}

impl Config {
    /// The file at `path`, or the defaults when there is none.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).map_err(|e| {
            // toml's message names the key; its multi-line snippet is left out.
            anyhow::anyhow!("config file {}: {}", path.display(), e.message())
        })
    }

    pub fn price_table(&self) -> anyhow::Result<PriceTable> {
        let Some(path) = &self.prices else {
            return Ok(PriceTable::embedded());
        };
        let table = PriceTable::embedded_with_file(path)?;
        burnrate_pricing::check_aliases(&table, &path.display().to_string())?;
        Ok(table)
    }
}
