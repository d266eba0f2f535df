//! Reading the dataset back: everything a user asks of the tables.
//!
//! Owns: the DataFusion catalog over the dataset (local or `s3://`; each table through its
//! Delta log where it has one), result formats, the cost report, the time profile,
//! `export-trace`, and the price-table check.
//!
//! Must not know: sources, the decoder, or how the tables were written.

pub mod catalog;
pub mod logged_table;
pub mod output;
pub mod price_check;
pub mod profile;
pub mod report;
pub mod trace;
