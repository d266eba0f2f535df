//! Stream state over durable rows: what needs memory of the past.
//!
//! Owns: event-time usage windows (the SQL in `sql/`, planned once for the stage's life,
//! watermarks, late corrections, the checkpoint), the totals over closed windows, the latency
//! sketch, the anomaly rules over closed windows, and the cumulative-to-delta state rebuilt from
//! the dataset after a restart.
//! The anomaly rules run inside the window stage because their state is in its checkpoint:
//! an anomaly is recorded exactly once with the windows that raised it.
//!
//! Must not know: sources or their positions, or how anything is published: the window stage
//! hands its state to a [`windows::WindowOutput`], which [`crate::publish`] implements.

pub mod anomalies;
pub(crate) mod delta_state;
pub(crate) mod prepared;
pub mod sketch;
pub mod totals;
pub mod windows;
