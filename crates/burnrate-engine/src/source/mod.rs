//! Sources: where exports come from, and where each one sits in its source.
//!
//! Owns: the embedded OTLP receiver (HTTP and gRPC, its gate, WAL and flusher), the Kafka
//! consumer (consuming task, runs, ordered sink, commit coordinator) and the files source with its
//! ledger of what was written. A source hands bytes and their position on; it commits a position
//! only once the rows before it are durable.
//!
//! Must not know: how exports decode (that is `burnrate-otlp` through [`crate::decode`]), the
//! window SQL, or the command line.

pub mod files;
pub mod kafka;
pub(crate) mod ledger;
pub mod receiver;
