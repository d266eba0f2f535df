//! End-to-end tests of the `burnrate` binary against real services (a Tansu broker, the
//! Prometheus Pushgateway, promtool; the librdkafka mock cluster for outages).
//!
//! One test binary with a module per area: each binary links DataFusion and librdkafka, so
//! one link instead of ten saves minutes and gigabytes in CI.

mod support;

mod anomaly_eval;
mod claude_code;
mod cost;
mod delta;
mod deploy;
mod end_to_end;
mod export_trace;
mod generate;
mod kafka;
mod kafka_outage;
mod profile;
mod prometheus_rules;
mod receiver;
mod receiver_gate;
mod report;
