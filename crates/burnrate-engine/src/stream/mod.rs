//! Stream state over durable rows: what needs memory of the past.
//!
//! Owns: event-time usage windows (the SQL in `sql/`, watermarks, late corrections, the
//! checkpoint), the latency sketch, the anomaly rules over closed windows, and the
//! cumulative-to-delta state rebuilt from the dataset after a restart.
//!
//! Must not know: sources or their positions, or how a closed window is published beyond
//! handing its totals to [`crate::publish`].

pub mod anomalies;
pub(crate) mod delta_state;
pub mod sketch;
pub mod windows;
