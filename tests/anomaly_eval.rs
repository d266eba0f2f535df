//! The labelled evaluation of the anomaly rules, at three organisation scales with the default
//! settings: `burnrate generate --spend-per-person-day` writes 30 days of a 20-person team
//! spending about $2, $25 or $200 a person and working day, with seven injected incidents of known
//! start and end; `burnrate run --source files --drain` takes them through the real pipeline, and
//! the `anomalies` table is scored against the labels: recall and detection delay per incident,
//! precision, and false alerts per simulated team-week (team, user and project series) and per
//! week (model series). The tables it prints are those in docs/windows-and-anomalies.md.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::support::*;
use burnrate_workload::{Incident, IncidentKind, WorkloadSpec};

const NANOS_PER_MINUTE: i64 = 60_000_000_000;
/// An alert within this long after an incident ends still belongs to it (a rule over the last
/// hour keeps seeing it for a while).
const AFTERGLOW_MINUTES: i64 = 60;

struct Alert {
    rule: String,
    dimension: String,
    value: String,
    first_seen: i64,
}

/// Whether `alert` is about `incident`: the right family of rule, at the right time, about the
/// people, team or model concerned.
fn explains(incident: &Incident, alert: &Alert, teams: &BTreeMap<String, String>) -> bool {
    let during = (incident.start_nanos..incident.end_nanos + AFTERGLOW_MINUTES * NANOS_PER_MINUTE)
        .contains(&alert.first_seen);
    let cost = matches!(
        alert.rule.as_str(),
        "cost_spike" | "cost_rate" | "cost_runaway"
    );
    let whom = |a: &Alert| match a.dimension.as_str() {
        "user_id" => {
            incident.user.as_ref() == Some(&a.value)
                || (incident.user.is_none() && teams.get(&a.value) == incident.team.as_ref())
        }
        "team" => incident.team.as_ref() == Some(&a.value),
        // A project or model total moves with the people in it.
        "project" | "model" => true,
        _ => false,
    };
    during
        && match incident.kind {
            IncidentKind::RunawayLoop | IncidentKind::ModelSwitch | IncidentKind::TeamSurge => {
                cost && whom(alert)
            }
            IncidentKind::BudgetOverrun => (alert.rule == "budget_daily" || cost) && whom(alert),
            IncidentKind::ErrorStorm => alert.rule == "error_rate",
            IncidentKind::SlowProvider => alert.rule == "slow_p95",
        }
}

fn alerts(data: &Path) -> Vec<Alert> {
    query(
        data,
        "SELECT rule, dimension, value, CAST(first_seen AS BIGINT) AS first_seen \
         FROM anomalies WHERE status = 'firing' ORDER BY first_seen",
    )
    .into_iter()
    .map(|row| Alert {
        rule: row["rule"].as_str().unwrap().to_string(),
        dimension: row["dimension"].as_str().unwrap().to_string(),
        value: row["value"].as_str().unwrap().to_string(),
        first_seen: row["first_seen"].as_i64().unwrap(),
    })
    // A severity rising is the same anomaly.
    .fold(Vec::new(), |mut all: Vec<Alert>, alert| {
        if !all.iter().any(|a| {
            a.rule == alert.rule
                && a.dimension == alert.dimension
                && a.value == alert.value
                && a.first_seen == alert.first_seen
        }) {
            all.push(alert);
        }
        all
    })
}

fn kind_name(kind: IncidentKind) -> &'static str {
    match kind {
        IncidentKind::RunawayLoop => "runaway loop",
        IncidentKind::ModelSwitch => "switch to a pricier model",
        IncidentKind::ErrorStorm => "error storm",
        IncidentKind::SlowProvider => "slow provider",
        IncidentKind::BudgetOverrun => "budget overrun",
        IncidentKind::TeamSurge => "team surge",
    }
}

#[test]
fn a_small_organisation_at_2_usd_a_person_day() {
    evaluate_at(2.0);
}

#[test]
fn a_medium_organisation_at_25_usd_a_person_day() {
    evaluate_at(25.0);
}

#[test]
fn a_large_organisation_at_200_usd_a_person_day() {
    evaluate_at(200.0);
}

/// Generates, ingests and scores the evaluation month at `usd` per person and working day, and
/// asserts the targets: every incident caught, runaway loops within 10 minutes, the team surge
/// within 30, at most one false alert per team-week on team, user and project series and one
/// per week on model series.
fn evaluate_at(usd: f64) {
    let tmp = tempfile::tempdir().unwrap();
    let (input, data) = (tmp.path().join("otlp"), tmp.path().join("data"));
    let spend = usd.to_string();
    let out = burnrate(&[
        "generate",
        "--out",
        input.to_str().unwrap(),
        "--seed",
        "1",
        "--signals",
        "logs",
        "--spend-per-person-day",
        &spend,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    let spec = WorkloadSpec::evaluation(1).at_spend(usd);
    let people = spec.people();
    let teams: BTreeMap<String, String> = people
        .iter()
        .map(|p| (p.id.clone(), p.team.clone()))
        .collect();
    // team-4's budget: half as much again as its busiest ordinary weekday.
    let calls = spec.calls();
    let overrun = spec
        .incidents
        .iter()
        .find(|i| i.kind == IncidentKind::BudgetOverrun)
        .unwrap();
    let mut team4_days: BTreeMap<i64, f64> = BTreeMap::new();
    for call in &calls {
        if teams[&people[call.user].id] == "team-4" {
            *team4_days
                .entry(call.time_nanos.div_euclid(1440 * NANOS_PER_MINUTE))
                .or_default() += call.cost_usd;
        }
    }
    let overrun_day = overrun.start_nanos.div_euclid(1440 * NANOS_PER_MINUTE);
    let busiest = team4_days
        .iter()
        .filter(|(day, _)| **day != overrun_day)
        .map(|(_, c)| *c)
        .fold(0.0, f64::max);
    let budget = (busiest * 1.5).round();
    assert!(
        team4_days[&overrun_day] > budget,
        "the overrun day must exceed the budget"
    );
    let config = tmp.path().join("burnrate.toml");
    std::fs::write(
        &config,
        format!(
            "[[anomalies.budgets]]\ndimension = \"team\"\nvalue = \"team-4\"\ndaily_usd = {budget}\n"
        ),
    )
    .unwrap();

    let run = run_files_with(&input, &data, &["--config", config.to_str().unwrap()]);
    assert!(run.status.success(), "{}", stderr(&run));
    let requests = num(&one(&data, "SELECT count(*) AS n FROM api_requests"), "n");
    assert_eq!(
        requests as usize,
        calls.len(),
        "every generated call is decoded"
    );

    let person_days = one(
        &data,
        "SELECT sum(cost_usd) AS spend, count(DISTINCT concat(user_id, CAST(date_trunc('day', time) AS VARCHAR))) AS person_days \
         FROM api_requests WHERE EXTRACT(DOW FROM time) BETWEEN 1 AND 5",
    );
    let per_person_day = num(&person_days, "spend") / num(&person_days, "person_days");

    let alerts = alerts(&data);
    let mut report = format!(
        "At ${usd} a person-day (measured: ${per_person_day:.2} per person and working day):\n\n\
         | incident | injected | caught | detection delay | first alert | rules that fired |\n|---|---|---|---|---|---|\n",
    );
    let mut delays_cost = Vec::new();
    let mut late = Vec::new();
    let mut missed = Vec::new();
    for incident in &spec.incidents {
        let explained: Vec<&Alert> = alerts
            .iter()
            .filter(|a| explains(incident, a, &teams))
            .collect();
        let first = explained.iter().min_by_key(|a| a.first_seen);
        let rules: BTreeSet<&str> = explained.iter().map(|a| a.rule.as_str()).collect();
        let rules = rules.into_iter().collect::<Vec<_>>().join(", ");
        let start = chrono::DateTime::from_timestamp_nanos(incident.start_nanos);
        let minutes = (incident.end_nanos - incident.start_nanos) / NANOS_PER_MINUTE;
        match first {
            Some(alert) => {
                let delay =
                    (alert.first_seen - incident.start_nanos) as f64 / NANOS_PER_MINUTE as f64;
                if matches!(
                    incident.kind,
                    IncidentKind::RunawayLoop | IncidentKind::ModelSwitch
                ) {
                    delays_cost.push(delay);
                }
                let target = match incident.kind {
                    IncidentKind::RunawayLoop => Some(10.0),
                    IncidentKind::TeamSurge => Some(30.0),
                    _ => None,
                };
                if target.is_some_and(|minutes| delay > minutes) {
                    late.push(kind_name(incident.kind));
                }
                report.push_str(&format!(
                    "| {} | {} ({minutes} min) | yes | {delay:.0} min | {} on {} | {rules} |\n",
                    kind_name(incident.kind),
                    start.format("%a %m-%d %H:%M"),
                    alert.rule,
                    alert.dimension
                ));
            }
            None => {
                missed.push(kind_name(incident.kind));
                report.push_str(&format!(
                    "| {} | {} ({minutes} min) | **no** | – | – | – |\n",
                    kind_name(incident.kind),
                    start.format("%a %m-%d %H:%M")
                ));
            }
        }
    }
    let false_alerts: Vec<&Alert> = alerts
        .iter()
        .filter(|a| !spec.incidents.iter().any(|i| explains(i, a, &teams)))
        .collect();
    let team_count = teams.values().collect::<BTreeSet<_>>().len() as f64;
    let weeks = f64::from(spec.days) / 7.0;
    let team_weeks = team_count * weeks;
    let false_on_models = false_alerts
        .iter()
        .filter(|a| a.dimension == "model")
        .count();
    let false_on_people = false_alerts.len() - false_on_models;
    let precision = 1.0 - false_alerts.len() as f64 / alerts.len().max(1) as f64;
    delays_cost.sort_by(f64::total_cmp);
    let median_cost_delay = delays_cost[delays_cost.len() / 2];
    report.push_str(&format!(
        "\n{} alerts, {} explained by an incident: precision {precision:.2}; recall {}/{}; \
         {false_on_people} false alerts on team, user and project series over {team_weeks:.1} \
         team-weeks ({:.2} per team-week), {false_on_models} on model series over {weeks:.1} \
         weeks ({:.2} per week); median detection delay of cost incidents \
         {median_cost_delay:.0} min.\n",
        alerts.len(),
        alerts.len() - false_alerts.len(),
        spec.incidents.iter().len() - missed.len(),
        spec.incidents.len(),
        false_on_people as f64 / team_weeks,
        false_on_models as f64 / weeks,
    ));
    for alert in &false_alerts {
        report.push_str(&format!(
            "false alert: {} on {}={} at {}\n",
            alert.rule,
            alert.dimension,
            &alert.value[..alert.value.len().min(12)],
            chrono::DateTime::from_timestamp_nanos(alert.first_seen).format("%a %m-%d %H:%M")
        ));
    }
    println!("{report}");
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("anomaly-eval-{usd}.md"));
    std::fs::write(&target, &report).unwrap();

    assert!(
        (0.6..1.6).contains(&(per_person_day / usd)),
        "the generated organisation spends about ${usd} a person-day:\n{report}"
    );
    assert!(
        missed.is_empty(),
        "every injected incident is caught:\n{report}"
    );
    assert!(
        late.is_empty(),
        "runaway loops within 10 minutes, the team surge within 30 ({late:?}):\n{report}"
    );
    assert!(
        false_on_people as f64 <= team_weeks,
        "at most one false alert per team-week on team, user and project:\n{report}"
    );
    assert!(
        false_on_models as f64 <= weeks,
        "at most one false alert per week on model:\n{report}"
    );
}
