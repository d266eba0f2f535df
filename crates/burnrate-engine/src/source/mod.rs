//! Sources: where exports come from, and where each one sits in its source.
//!
//! Owns: the embedded OTLP receiver (HTTP and gRPC, its gate, WAL and flusher), the Kafka
//! consumer (consuming task, runs, ordered sink, offset commits), the files source with its
//! ledger of what was written, and the one durability path the three share ([`durable`]:
//! write, window, report the position, which the [`commit`] coordinator commits). A source
//! hands bytes and their position on; its position is committed only once the rows before it
//! are durable and windowed.
//!
//! Must not know: how exports decode (that is `burnrate-otlp` through [`crate::decode`]), the
//! window SQL, or the command line.

pub mod commit;
pub mod durable;
pub mod files;
pub mod kafka;
pub(crate) mod ledger;
pub mod receiver;
