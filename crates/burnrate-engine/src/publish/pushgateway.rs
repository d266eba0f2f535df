//! The Prometheus Pushgateway client: `PUT /metrics/job/<job>/instance/<replica>` (a replica
//! replaces only its own group) of the newest body it was handed.
//!
//! Pushing happens on a thread of its own holding only the newest body: a Pushgateway that is
//! slow or down costs retries there, never time on the ingest path, and the failures are counted.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::publish::health::PipelineHealth;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PushgatewayConfig {
    /// Base URL, e.g. `http://127.0.0.1:9091`; no pushing when unset (the default).
    pub url: Option<String>,
    /// The `job` of the grouping key; default `burnrate`.
    pub job: String,
    /// Label combinations with series of their own; the rest are summed into `other`.
    /// Default 500.
    pub max_series: usize,
    /// How long one push may take, in milliseconds; default 5,000.
    pub timeout_ms: u64,
}

impl Default for PushgatewayConfig {
    fn default() -> Self {
        PushgatewayConfig {
            url: None,
            job: "burnrate".into(),
            max_series: 500,
            timeout_ms: 5_000,
        }
    }
}

/// Delivers the newest body to the Pushgateway from a thread of its own.
pub struct Pushgateway {
    shared: Arc<(Mutex<Outbox>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Outbox {
    body: Option<String>,
    closing: bool,
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Pushgateway {
    /// Starts the pusher for `config.url` with grouping key `instance=<replica>`; `None`
    /// without a URL.
    pub fn start(
        config: &PushgatewayConfig,
        replica: &str,
        health: Arc<PipelineHealth>,
    ) -> Option<Self> {
        let base = config.url.as_ref()?.trim_end_matches('/').to_string();
        let url = format!("{base}/metrics/job/{}/instance/{replica}", config.job);
        let timeout = Duration::from_millis(config.timeout_ms.max(1));
        let shared = Arc::new((Mutex::new(Outbox::default()), Condvar::new()));
        let inner = shared.clone();
        let thread = std::thread::Builder::new()
            .name("pushgateway".into())
            .spawn(move || push_loop(&url, timeout, &inner, &health))
            .ok()?;
        Some(Pushgateway {
            shared,
            thread: Some(thread),
        })
    }

    /// Queues `body`, replacing any body not yet sent. Never waits for the network.
    pub fn push(&self, body: String) {
        let (lock, ready) = &*self.shared;
        let mut outbox = lock.lock().unwrap_or_else(|p| p.into_inner());
        outbox.body = Some(body);
        ready.notify_all();
    }

    /// Waits up to `grace` for the newest body to be delivered, then stops the thread. Returns
    /// whether it was delivered.
    pub fn finish(mut self, grace: Duration) -> bool {
        let (lock, ready) = &*self.shared;
        let deadline = Instant::now() + grace;
        let mut outbox = lock.lock().unwrap_or_else(|p| p.into_inner());
        while outbox.body.is_some() && Instant::now() < deadline {
            let wait = deadline.saturating_duration_since(Instant::now());
            outbox = ready
                .wait_timeout(outbox, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let delivered = outbox.body.is_none();
        outbox.closing = true;
        ready.notify_all();
        drop(outbox);
        if delivered && let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        delivered
    }
}

fn push_loop(
    url: &str,
    timeout: Duration,
    shared: &(Mutex<Outbox>, Condvar),
    health: &PipelineHealth,
) {
    let (lock, ready) = shared;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let mut backoff = Duration::from_millis(200);
    loop {
        let body = {
            let mut outbox = lock.lock().unwrap_or_else(|p| p.into_inner());
            while outbox.body.is_none() && !outbox.closing {
                outbox = ready.wait(outbox).unwrap_or_else(|p| p.into_inner());
            }
            match (&outbox.body, outbox.closing) {
                (Some(body), _) => body.clone(),
                (None, _) => return,
            }
        };
        let result = agent
            .put(url)
            .header("Content-Type", "text/plain; version=0.0.4")
            .send(body.as_bytes());
        let error = match result {
            Ok(response) if response.status().is_success() => None,
            Ok(response) => Some(format!("HTTP {}", response.status())),
            Err(e) => Some(e.to_string()),
        };
        let mut outbox = lock.lock().unwrap_or_else(|p| p.into_inner());
        match error {
            None => {
                health.pushed();
                backoff = Duration::from_millis(200);
                // A newer body may have arrived while this one was in flight.
                if outbox.body.as_deref() == Some(body.as_str()) {
                    outbox.body = None;
                    ready.notify_all();
                }
            }
            Some(error) => {
                health.push_failed();
                tracing::warn!(%error, url, "pushgateway push failed; retrying in {backoff:?}");
                if outbox.closing {
                    return;
                }
                let _ = ready.wait_timeout(outbox, backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
