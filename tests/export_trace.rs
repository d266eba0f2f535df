//! `burnrate export-trace` on the real samples and on generated data: every span of the session
//! with the fields `jq` scripts rely on, parents inside the same trace, and model-call spans that
//! agree with `api_requests`.

use std::collections::BTreeSet;
use std::path::Path;

use crate::support::*;
use serde_json::Value;

fn export(data: &Path, session: &str) -> Value {
    let out = burnrate(&[
        "export-trace",
        "--session",
        session,
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn check_spans(document: &Value) -> usize {
    let spans = document["spans"].as_array().unwrap();
    let ids: BTreeSet<(&str, &str)> = spans
        .iter()
        .map(|s| {
            (
                s["trace_id"].as_str().unwrap(),
                s["span_id"].as_str().unwrap(),
            )
        })
        .collect();
    for span in spans {
        for key in [
            "name",
            "trace_id",
            "span_id",
            "parent_span_id",
            "start_time",
            "end_time",
            "duration_ms",
            "attributes",
        ] {
            assert!(span.get(key).is_some(), "span without {key}: {span}");
        }
        assert!(span["duration_ms"].as_f64().unwrap() >= 0.0);
        if let Some(parent) = span["parent_span_id"].as_str() {
            assert!(
                ids.contains(&(span["trace_id"].as_str().unwrap(), parent)),
                "orphan span {span}"
            );
        }
    }
    spans
        .iter()
        .filter(|s| s["name"] == "claude_code.llm_request")
        .count()
}

#[test]
fn sessions_of_the_real_samples_export_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    assert!(run_files(&samples(), &data).status.success());
    let sessions = query(&data, "SELECT DISTINCT session_id FROM spans ORDER BY 1");
    assert_eq!(sessions.len(), 5);
    for row in &sessions {
        let session = row["session_id"].as_str().unwrap();
        let document = export(&data, session);
        let counts = one(
            &data,
            &format!(
                "SELECT count(*) AS calls, count(*) FILTER (WHERE success) AS ok \
                 FROM api_requests WHERE session_id = '{session}'"
            ),
        );
        let llm = check_spans(&document);
        let spans = document["spans"].as_array().unwrap().len();
        // One llm_request span per model call, failed ones included.
        assert_eq!(llm as f64, num(&counts, "calls"), "{session}");
        assert_eq!(
            document["api_requests"].as_array().unwrap().len() as f64,
            num(&counts, "calls")
        );
        // A successful run: interaction, 4 llm_request, 3 each of tool, blocked_on_user and
        // execution (the samples' README); the run whose every call failed used no tool.
        if num(&counts, "ok") > 0.0 {
            assert_eq!(spans, 14, "{session}");
        } else {
            assert_eq!(spans, 2, "{session}: the interaction and its failed call");
        }
        assert!(!document["events"].as_array().unwrap().is_empty());
    }
    let missing = burnrate(&[
        "export-trace",
        "--session",
        "no-such",
        "--data",
        data.to_str().unwrap(),
    ]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(stderr(&missing).trim().lines().count(), 1);
    assert!(stderr(&missing).contains("no-such"), "{}", stderr(&missing));
}

#[test]
fn generated_sessions_export_with_one_span_per_model_call() {
    let tmp = tempfile::tempdir().unwrap();
    let data = generated_dataset(tmp.path(), &["--days", "1", "--users", "2"]);
    let row = one(
        &data,
        "SELECT session_id, count(*) AS calls FROM api_requests GROUP BY 1 ORDER BY 2 DESC LIMIT 1",
    );
    let document = export(&data, row["session_id"].as_str().unwrap());
    assert_eq!(check_spans(&document) as f64, num(&row, "calls"));
}
