//! The alert rules in `deploy/prometheus/` against the real promtool: `check rules` and the
//! rule unit tests (every alert firing and not firing), and every burnrate metric they use is
//! one burnrate pushes.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use burnrate_engine::publish::exposition::render_gauges;
use burnrate_engine::stream::anomalies::AnomalyState;
use burnrate_engine::{PipelineHealth, PushTotals};

fn rules_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus")
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(rules_dir())
        .output()
        .expect("promtool runs (Debian package prometheus; scripts/test.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let checked = promtool(&["check", "rules", "alerts.yaml"]);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&["test", "rules", "alerts.test.yaml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
    // Every alert has a test that expects it to fire.
    let rules = std::fs::read_to_string(rules_dir().join("alerts.yaml")).unwrap();
    let tests = std::fs::read_to_string(rules_dir().join("alerts.test.yaml")).unwrap();
    for line in rules.lines() {
        if let Some(name) = line.trim().strip_prefix("- alert: ") {
            assert!(
                tests.contains(&format!(
                    "alertname: {name}\n    exp_alerts:\n    - exp_labels"
                )),
                "no firing test for {name}"
            );
        }
    }
}

#[test]
fn alert_rules_use_only_metrics_burnrate_pushes() {
    let mut exposition = PushTotals::default().render();
    render_gauges(&AnomalyState::default(), &mut exposition);
    exposition.push_str(&PipelineHealth::new().render());
    let pushed: BTreeSet<&str> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let rules = std::fs::read_to_string(rules_dir().join("alerts.yaml")).unwrap();
    let used: BTreeSet<String> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("burnrate_"))
        .map(str::to_string)
        .collect();
    assert!(!used.is_empty());
    for metric in &used {
        let base = metric
            .strip_suffix("_sum")
            .or_else(|| metric.strip_suffix("_count"))
            .unwrap_or(metric);
        assert!(
            pushed.contains(metric.as_str()) || pushed.contains(base),
            "alerts.yaml uses {metric}, which burnrate does not push; it pushes {pushed:?}"
        );
    }
}
