//! Publishing: what operators and Prometheus see of a running pipeline.
//!
//! Owns: the Prometheus text exposition of the window stage's state (totals, anomaly and
//! budget gauges), the Pushgateway client that delivers it, and the health endpoints
//! (`/livez`, `/readyz`, `/metrics`) with the pipeline's counters and gauges.
//!
//! Must not know: how rows are decoded, written or windowed; it reads the state the window
//! stage hands to its [`crate::stream::windows::WindowOutput`].

pub mod exposition;
pub mod health;
pub mod pushgateway;
