//! The real Prometheus Pushgateway for tests, on a free loopback port, with no persistence.
//!
//! `scripts/test.sh` installs Debian's `prometheus-pushgateway` and names it in
//! `BURNRATE_PUSHGATEWAY_BIN`; a test that needs one and finds none fails.

use std::process::{Child, Command, Stdio};

use super::{free_port, wait_for_port};

pub struct Pushgateway {
    child: Child,
    pub url: String,
}

impl Pushgateway {
    pub fn start() -> Pushgateway {
        let binary = std::env::var("BURNRATE_PUSHGATEWAY_BIN")
            .unwrap_or_else(|_| "/usr/bin/prometheus-pushgateway".into());
        let port = free_port();
        let child = Command::new(&binary)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary}: {e}; run the tests through scripts/test.sh")
            });
        wait_for_port(port, "pushgateway");
        Pushgateway {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// What `GET /metrics` shows now.
    pub fn metrics(&self) -> String {
        ureq::get(&format!("{}/metrics", self.url))
            .call()
            .expect("pushgateway answers")
            .body_mut()
            .read_to_string()
            .unwrap()
    }

    /// The sum of every sample of `name` whose labels contain all of `labels` (`key="value"`).
    pub fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        sum_samples(&self.metrics(), name, labels)
    }
}

pub fn sum_samples(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && labels.iter().all(|l| label_text.contains(l)))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
