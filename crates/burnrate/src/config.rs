//! The one typed configuration: a TOML file, each key overridable by an environment variable
//! or a command-line flag (flag > environment > file > default).

use std::path::{Path, PathBuf};

use anyhow::Context;
use std::net::SocketAddr;

use burnrate_engine::{
    AnomalyConfig, CompactionConfig, FileSourceConfig, KafkaSourceConfig, ObjectStoreConfig,
    PushgatewayConfig, ReceiverConfig, WindowSpec,
};
use burnrate_otlp::MappingConfig;
use burnrate_pricing::PriceTable;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the Parquet dataset lives (written by `run`, read by `query`).
    pub data_dir: PathBuf,
    /// A price file laid over the embedded table: TOML, JSON of the same shape, or LiteLLM's
    /// `model_prices_and_context_window.json`. Default: none.
    pub prices: Option<PathBuf>,
    /// Whether the embedded price table is used under `prices`. `false` prices only from the
    /// file (a table a team maintains in full). Default: true.
    pub prices_embedded: bool,
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
    /// Where the Parquet dataset is mirrored (S3 or S3-compatible), if anywhere.
    pub object_store: ObjectStoreConfig,
    /// How reports count days.
    pub report: ReportConfig,
    /// How `burnrate compact` merges closed days and how long merged-away files stay.
    pub compaction: CompactionConfig,
    /// The memory the process must stay under, in bytes, or with a unit (`"512MiB"`,
    /// `"1GiB"`). 40% of what it leaves beyond the process's own part (its resident code,
    /// measured, and 37 MiB of runtime; at least 118 MiB) is the budget for data in flight
    /// (request bodies, buffered rows); the rest is what grows with the data outside it.
    /// Default: 512 MiB (a budget of 157 MiB with the release build's code).
    #[serde(deserialize_with = "byte_size")]
    pub memory_limit: u64,
    /// Whether `run` commits every file to its table's Delta log (and the sources' positions to
    /// the positions table). `false` writes plain Hive-partitioned Parquet, as burnrate did
    /// before the logs: read by listing, with no compaction, `forget` or object-store logs; kept
    /// as the baseline the ingest benches measure the logs against. Refused for a dataset that
    /// has logs. Default: true.
    pub table_logs: bool,
}

/// `memory_limit`: bytes, or a string with a unit (B, KiB, MiB, GiB; KB, MB, GB).
fn byte_size<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(deserializer)? {
        Size::Bytes(bytes) => Ok(bytes),
        // A custom error carries no key path: name the key here.
        Size::Text(text) => parse_byte_size(&text)
            .map_err(|e| serde::de::Error::custom(format!("memory_limit: {e}"))),
    }
}

pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (such as 512MiB)"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "ki" => 1 << 10,
        "mib" | "mi" => 1 << 20,
        "gib" | "gi" => 1 << 30,
        "kb" | "k" => 1_000,
        "mb" | "m" => 1_000_000,
        "gb" | "g" => 1_000_000_000,
        other => {
            return Err(format!(
                "{other:?} is not a size unit (B, KiB, MiB, GiB, KB, MB, GB)"
            ));
        }
    };
    Ok((number * scale as f64) as u64)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportConfig {
    /// The IANA time zone of the report's days and hours (`Europe/Paris`, `America/New_York`).
    pub time_zone: String,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            time_zone: "UTC".into(),
        }
    }
}

impl ReportConfig {
    pub fn zone(&self) -> anyhow::Result<chrono_tz::Tz> {
        self.time_zone.parse().map_err(|_| {
            anyhow::anyhow!(
                "report.time_zone: {:?} is not an IANA time zone (such as Europe/Paris)",
                self.time_zone
            )
        })
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./burnrate-data"),
            prices: None,
            prices_embedded: true,
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
            object_store: ObjectStoreConfig::default(),
            report: ReportConfig::default(),
            compaction: CompactionConfig::default(),
            memory_limit: 512 << 20,
            table_logs: true,
        }
    }
}

/// Environment variables that set any key: `BURNRATE__KAFKA__FLUSH_INTERVAL_MS=1000` is
/// `[kafka] flush_interval_ms = 1000`. Double underscores separate the sections, so the named
/// variables (`BURNRATE_DATA_DIR`, ...) never collide with these.
pub const ENV_KEY_PREFIX: &str = "BURNRATE__";

impl Config {
    /// The file at `path` (or the defaults when there is none) with every `BURNRATE__...`
    /// variable of the environment laid over it.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        Self::load_with_env(path, std::env::vars())
    }

    pub fn load_with_env(
        path: Option<&Path>,
        vars: impl Iterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let (mut table, origin) = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                let table: toml::Table = toml::from_str(&text).map_err(|e| {
                    // toml's message names the key; its multi-line snippet is left out.
                    anyhow::anyhow!("config file {}: {}", path.display(), e.message())
                })?;
                (table, format!("config file {}", path.display()))
            }
            None => (toml::Table::new(), "configuration".to_string()),
        };
        let mut overridden = Vec::new();
        for (name, raw) in vars {
            let Some(key) = name.strip_prefix(ENV_KEY_PREFIX) else {
                continue;
            };
            let path: Vec<String> = key.split("__").map(str::to_ascii_lowercase).collect();
            anyhow::ensure!(
                path.iter().all(|p| !p.is_empty()),
                "{name}: expected BURNRATE__SECTION__KEY"
            );
            set_key(&mut table, &path, parse_env_value(&raw))
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            overridden.push(name);
        }
        let from = if overridden.is_empty() {
            String::new()
        } else {
            format!(" (with {})", overridden.join(", "))
        };
        let config = Config::deserialize(toml::Value::Table(table))
            .map_err(|e| anyhow::anyhow!("{origin}{from}: {}", e.message()))?;
        config
            .report
            .zone()
            .map_err(|e| anyhow::anyhow!("{origin}{from}: {e}"))?;
        Ok(config)
    }

    pub fn price_table(&self) -> anyhow::Result<PriceTable> {
        let Some(path) = &self.prices else {
            anyhow::ensure!(
                self.prices_embedded,
                "prices_embedded = false needs a price file (prices = \"FILE\" or --prices FILE)"
            );
            return Ok(PriceTable::embedded());
        };
        let table = if self.prices_embedded {
            PriceTable::embedded_with_file(path)?
        } else {
            PriceTable::from_file(path)?
        };
        burnrate_pricing::check_aliases(&table, &path.display().to_string())?;
        Ok(table)
    }
}

/// A variable's value as TOML when it reads as one (`1000`, `true`, `["a", "b"]`), else as
/// a string, so `BURNRATE__KAFKA__BROKERS=kafka:9092` needs no quotes.
fn parse_env_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

fn set_key(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    match path {
        [] => Err("empty key".into()),
        [key] => {
            table.insert(key.clone(), value);
            Ok(())
        }
        [section, rest @ ..] => {
            let entry = table
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(inner) => set_key(inner, rest, value),
                _ => Err(format!("{section} is not a section")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn environment_sets_any_key_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("burnrate.toml");
        std::fs::write(
            &file,
            "[kafka]\nflush_interval_ms = 5000\ngroup_id = \"from-file\"\n",
        )
        .unwrap();
        let config = Config::load_with_env(
            Some(&file),
            vars(&[
                ("BURNRATE__KAFKA__FLUSH_INTERVAL_MS", "250"),
                ("BURNRATE__WINDOWS__DIMENSIONS", "[\"team\", \"model\"]"),
                ("BURNRATE__KAFKA__BROKERS", "kafka-0.kafka:9092"),
                ("BURNRATE__SHUTDOWN_GRACE_SECONDS", "20"),
                ("BURNRATE_DATA_DIR", "not/a/key/override"),
            ]),
        )
        .unwrap();
        assert_eq!(config.kafka.flush_interval_ms, 250);
        assert_eq!(config.kafka.group_id, "from-file");
        assert_eq!(config.kafka.brokers, "kafka-0.kafka:9092");
        assert_eq!(config.windows.dimensions, ["team", "model"]);
        assert_eq!(config.shutdown_grace_seconds, 20.0);
    }

    #[test]
    fn memory_limit_takes_bytes_or_a_unit() {
        let load = |value: &str| {
            Config::load_with_env(None, vars(&[("BURNRATE__MEMORY_LIMIT", value)]))
                .map(|c| c.memory_limit)
        };
        assert_eq!(load("1048576").unwrap(), 1 << 20);
        assert_eq!(load("768MiB").unwrap(), 768 << 20);
        assert_eq!(load("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(load("1GB").unwrap(), 1_000_000_000);
        assert!(
            load("lots")
                .unwrap_err()
                .to_string()
                .contains("memory_limit")
        );
        assert!(load("5 parsecs").is_err());
        assert_eq!(Config::default().memory_limit, 512 << 20);
    }

    #[test]
    fn an_unknown_key_or_a_wrong_type_is_named() {
        let unknown = Config::load_with_env(None, vars(&[("BURNRATE__KAFKA__FLUSH_EVERY", "1")]))
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("flush_every"), "{unknown}");
        assert!(
            unknown.contains("BURNRATE__KAFKA__FLUSH_EVERY"),
            "{unknown}"
        );
        let wrong = Config::load_with_env(
            None,
            vars(&[("BURNRATE__KAFKA__FLUSH_INTERVAL_MS", "soon")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            wrong.contains("flush_interval_ms") || wrong.contains("soon"),
            "{wrong}"
        );
    }
}
