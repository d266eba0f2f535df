//! Sinks: rows made durable.
//!
//! Owns: buffering decoded rows per table, Parquet segments (Hive-partitioned, written to a
//! temporary name, fsynced and renamed, idempotent on replay), dead letters, and the mirror of
//! every file to object storage.
//!
//! Must not know: which source the rows came from or how its positions are committed, windows,
//! or the Pushgateway.

pub mod dead_letters;
pub mod mirror;
pub mod parquet_sink;
pub(crate) mod table_buffer;
