//! Publishing: what operators and Prometheus see of a running pipeline.
//!
//! Owns: the Pushgateway sink for closed windows and anomalies, and the health endpoints
//! (`/livez`, `/readyz`, `/metrics`) with the pipeline's counters and gauges.
//!
//! Must not know: how rows are decoded, written or windowed.

pub mod health;
pub mod pushgateway;
