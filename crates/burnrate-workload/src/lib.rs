//! Synthetic Claude Code telemetry for a simulated team: who works when, on which model, how
//! many tokens and how fast, with labelled incidents of known start and end. Seeded and
//! deterministic: the same spec gives the same bytes.
//!
//! Owns: the model of a team's usage (daily and weekly rhythm, lunch, weekends, users who join
//! later, each team's model mix, provider errors) and of incidents (runaway loop, switch to a
//! pricier model, error storm, slow provider, budget overrun), and turning calls into OTLP log
//! exports shaped like the real CLI's: the same event names, attribute names and types (strings
//! where Claude Code sends strings), resource attributes and scope.
//!
//! Must not know: files, sockets or Kafka (the binary writes what this returns), or how burnrate
//! decodes and aggregates (the exports must decode with the same code as the real samples).

mod exports;

pub use exports::{Export, Format, Request, Signals, Temporality, exports};

use burnrate_pricing::{PriceTable, TokenUsage};
use chrono::{Datelike, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};

pub(crate) const NANOS_PER_MINUTE: i64 = 60_000_000_000;
const MINUTES_PER_DAY: i64 = 1_440;
const MODELS: [&str; 3] = ["claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-8"];
const TOOLS: [&str; 6] = ["Bash", "Read", "Edit", "Write", "Grep", "Glob"];
pub(crate) const CLIENT_VERSION: &str = "2.1.197";

/// What to simulate.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    pub seed: u64,
    pub start: NaiveDate,
    pub days: u32,
    pub users: usize,
    pub teams: usize,
    pub projects: usize,
    /// Model calls an hour of one user at work (Claude Code calls the model every few seconds
    /// while it works, and sits idle while its user reads).
    pub calls_per_hour: f64,
    /// Multiplies every call's token counts (1.0: a call of Claude Code's usual size).
    pub token_scale: f64,
    /// Share of calls that fail on their own (HTTP 529, overloaded).
    pub error_rate: f64,
    pub incidents: Vec<Incident>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// One user's agent calls the model every few seconds with a huge context.
    RunawayLoop,
    /// A team moves from its usual models to the priciest one.
    ModelSwitch,
    /// The provider fails a large share of everyone's calls.
    ErrorStorm,
    /// One model answers in 35 to 70 seconds.
    SlowProvider,
    /// A team works at three times its pace for a day, past its daily budget.
    BudgetOverrun,
    /// A whole team works at six times its pace for a day (a new agent workflow, say).
    TeamSurge,
}

/// Spend per person and working day of [`WorkloadSpec::team`] as it is (60 calls an hour of
/// Claude Code's usual size, this team's model mix), measured over the evaluation month.
pub const BASE_USD_PER_PERSON_DAY: f64 = 24.0;
/// A runaway loop spends this many times its user's usual rate: five times the tokens per
/// call, eight times the calls.
const LOOP_TOKENS: f64 = 5.0;
const LOOP_CALLS: f64 = 8.0;

/// An injected incident: when, and whom it concerns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub kind: IncidentKind,
    pub start_nanos: i64,
    pub end_nanos: i64,
    pub team: Option<String>,
    pub user: Option<String>,
    pub model: Option<String>,
}

impl Incident {
    fn covers(&self, time: i64) -> bool {
        (self.start_nanos..self.end_nanos).contains(&time)
    }
}

/// One simulated person.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub team: String,
    pub project: String,
    /// Weights of haiku, sonnet, opus.
    pub models: [f64; 3],
    /// Minute of the day the working day starts, UTC.
    pub day_start: i64,
    pub first_day: u32,
    pub works_weekends: bool,
}

/// One model call, as the `api_request` (or `api_error`) event reports it.
#[derive(Debug, Clone)]
pub struct Call {
    pub time_nanos: i64,
    pub user: usize,
    pub session: String,
    pub prompt: String,
    pub model: &'static str,
    pub tokens: TokenUsage,
    pub cost_usd: f64,
    pub duration_ms: u64,
    /// HTTP status of a failed call.
    pub failed: Option<i64>,
    /// A tool the model asked for after this call, if any: (name, success, duration ms).
    pub tool: Option<(&'static str, bool, u64)>,
}

impl WorkloadSpec {
    /// A quiet team of `users` with no incidents.
    pub fn team(seed: u64, start: NaiveDate, days: u32, users: usize) -> Self {
        WorkloadSpec {
            seed,
            start,
            days,
            users,
            teams: 5.min(users.max(1)),
            projects: 6.min(users.max(1)),
            calls_per_hour: 60.0,
            token_scale: 1.0,
            error_rate: 0.01,
            incidents: Vec::new(),
        }
    }

    /// Thirty days of a 20-person team from Monday 2026-10-05 with two runaway loops, a model
    /// switch, an error storm, a slow provider and a budget overrun: the labelled set the
    /// anomaly evaluation runs on.
    pub fn evaluation(seed: u64) -> Self {
        let start = NaiveDate::from_ymd_opt(2026, 10, 5).unwrap_or_default();
        let mut spec = WorkloadSpec::team(seed, start, 30, 20);
        let users = spec.people();
        let at = |day: i64, hour: i64, minute: i64| {
            spec.day_nanos(day) + (hour * 60 + minute) * NANOS_PER_MINUTE
        };
        let team_of = |user: usize| users[user].team.clone();
        let incident =
            |kind, start, end, user: Option<usize>, team: Option<String>, model: Option<&str>| {
                Incident {
                    kind,
                    start_nanos: start,
                    end_nanos: end,
                    team: team.or_else(|| user.map(team_of)),
                    user: user.map(|u| users[u].id.clone()),
                    model: model.map(str::to_string),
                }
            };
        spec.incidents = vec![
            incident(
                IncidentKind::RunawayLoop,
                at(9, 10, 20),
                at(9, 11, 30),
                Some(7),
                None,
                Some(MODELS[2]),
            ),
            incident(
                IncidentKind::RunawayLoop,
                at(22, 14, 5),
                at(22, 14, 50),
                Some(15),
                None,
                Some(MODELS[2]),
            ),
            incident(
                IncidentKind::ModelSwitch,
                at(15, 9, 0),
                at(15, 17, 0),
                None,
                Some("team-2".into()),
                Some(MODELS[2]),
            ),
            incident(
                IncidentKind::ErrorStorm,
                at(10, 13, 0),
                at(10, 13, 25),
                None,
                None,
                None,
            ),
            incident(
                IncidentKind::SlowProvider,
                at(18, 15, 0),
                at(18, 15, 40),
                None,
                None,
                Some(MODELS[1]),
            ),
            incident(
                IncidentKind::BudgetOverrun,
                at(25, 9, 0),
                at(25, 18, 0),
                None,
                Some("team-4".into()),
                None,
            ),
            incident(
                IncidentKind::TeamSurge,
                at(17, 9, 0),
                at(17, 18, 0),
                None,
                Some("team-1".into()),
                None,
            ),
        ];
        spec
    }

    /// The same people and incidents at an organisation that spends about `usd` per person and
    /// working day: more calls and larger contexts for a heavier user, fewer and smaller for a
    /// lighter one (the calls scale with the 0.4th power of the factor, the tokens with the
    /// 0.6th, as both grow with how much an organisation leans on its agents).
    pub fn at_spend(mut self, usd_per_person_day: f64) -> Self {
        let factor = (usd_per_person_day / BASE_USD_PER_PERSON_DAY).clamp(1e-3, 1e3);
        self.calls_per_hour *= factor.powf(0.4);
        self.token_scale *= factor.powf(0.6);
        self
    }

    /// Midnight UTC of day `day` of the simulation, in nanoseconds since the epoch.
    pub fn day_nanos(&self, day: i64) -> i64 {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
        ((self.start - epoch).num_days() + day) * MINUTES_PER_DAY * NANOS_PER_MINUTE
    }

    /// The simulated people, in a fixed order.
    pub fn people(&self) -> Vec<User> {
        let mut rng = Rng::new(self.seed ^ 0x7573_6572);
        let late_joiners = [8u32, 16, 23];
        (0..self.users)
            .map(|i| {
                let team = i % self.teams.max(1);
                let models = match team {
                    0 => [0.1, 0.7, 0.2],
                    1 => [0.0, 0.4, 0.6],
                    2 => [0.85, 0.15, 0.0],
                    3 => [0.05, 0.9, 0.05],
                    _ => [0.4, 0.6, 0.0],
                };
                // Three people join after the start (the last ones listed).
                let first_day = if i + late_joiners.len() >= self.users && self.users > 6 {
                    late_joiners[i + late_joiners.len() - self.users]
                } else {
                    0
                };
                User {
                    id: hex_id(self.seed, i as u64),
                    team: format!("team-{team}"),
                    project: format!("project-{}", (i * 7 + team) % self.projects.max(1)),
                    models,
                    day_start: 7 * 60 + 30 + (rng.uniform() * 150.0) as i64,
                    first_day: first_day.min(self.days.saturating_sub(1)),
                    works_weekends: rng.uniform() < 0.2,
                }
            })
            .collect()
    }

    /// Every model call of the simulation, in time order.
    pub fn calls(&self) -> Vec<Call> {
        let users = self.people();
        let prices = PriceTable::embedded();
        let mut rng = Rng::new(self.seed);
        let mut calls = Vec::new();
        for day in 0..i64::from(self.days) {
            let date = self.start + chrono::Days::new(day as u64);
            let weekend = matches!(date.weekday(), Weekday::Sat | Weekday::Sun);
            for (u, user) in users.iter().enumerate() {
                if day < i64::from(user.first_day) {
                    continue;
                }
                let (works, hours) = if weekend {
                    (
                        user.works_weekends && rng.uniform() < 0.5,
                        2.0 + rng.uniform() * 2.0,
                    )
                } else {
                    (rng.uniform() < 0.95, 8.0 + rng.uniform() * 1.5)
                };
                if !works {
                    continue;
                }
                let start =
                    user.day_start + (rng.normal() * 15.0) as i64 + if weekend { 120 } else { 0 };
                let end = start + (hours * 60.0) as i64;
                let pace = (rng.normal() * 0.25).exp();
                let session = format!("{}-{day}", &user.id[..8]);
                let mut minute = start as f64;
                while (minute as i64) < end {
                    let t = self.day_nanos(day) + (minute * NANOS_PER_MINUTE as f64) as i64;
                    let lunch = (12 * 60..13 * 60).contains(&(minute as i64));
                    let mut rate =
                        self.calls_per_hour / 60.0 * pace * if lunch { 0.3 } else { 1.0 };
                    if self
                        .incident_at(IncidentKind::BudgetOverrun, t, user)
                        .is_some()
                    {
                        rate *= 3.0;
                    }
                    if self.incident_at(IncidentKind::TeamSurge, t, user).is_some() {
                        rate *= 6.0;
                    }
                    minute += rng.exponential(rate.max(1e-6));
                    if (minute as i64) >= end {
                        break;
                    }
                    let t = self.day_nanos(day) + (minute * NANOS_PER_MINUTE as f64) as i64;
                    calls.push(self.call(&mut rng, &prices, &users, u, t, &session, false));
                }
            }
        }
        for incident in self
            .incidents
            .iter()
            .filter(|i| i.kind == IncidentKind::RunawayLoop)
        {
            let Some(u) = users
                .iter()
                .position(|p| Some(&p.id) == incident.user.as_ref())
            else {
                continue;
            };
            let mut t = incident.start_nanos;
            let session = format!("{}-loop", &users[u].id[..8]);
            let calls_per_second = self.calls_per_hour * LOOP_CALLS / 3600.0;
            while t < incident.end_nanos {
                calls.push(self.call(&mut rng, &prices, &users, u, t, &session, true));
                t += (rng.exponential(calls_per_second) * 1e9) as i64;
            }
        }
        calls.sort_by_key(|c| (c.time_nanos, c.user));
        calls
    }

    fn incident_at(&self, kind: IncidentKind, time: i64, user: &User) -> Option<&Incident> {
        self.incidents.iter().find(|i| {
            i.kind == kind
                && i.covers(time)
                && i.team.as_ref().is_none_or(|t| t == &user.team)
                && i.user.as_ref().is_none_or(|u| u == &user.id)
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn call(
        &self,
        rng: &mut Rng,
        prices: &PriceTable,
        users: &[User],
        u: usize,
        time_nanos: i64,
        session: &str,
        runaway: bool,
    ) -> Call {
        let user = &users[u];
        let mut model = MODELS[rng.weighted(&user.models)];
        if runaway
            || self
                .incident_at(IncidentKind::ModelSwitch, time_nanos, user)
                .is_some()
        {
            model = MODELS[2];
        }
        let scale = self.token_scale * if runaway { LOOP_TOKENS } else { 1.0 };
        let tokens = TokenUsage {
            input: (rng.lognormal(3_000.0, 0.8) * scale) as u64,
            output: (rng.lognormal(600.0, 0.7) * scale) as u64,
            cache_read: (rng.lognormal(25_000.0, 0.9) * scale) as u64,
            cache_write_5m: if rng.uniform() < 0.3 {
                0
            } else {
                (rng.lognormal(1_500.0, 1.0) * self.token_scale) as u64
            },
            cache_write_1h: 0,
        };
        let median_ms = match model {
            "claude-haiku-4-5" => 1_500.0,
            "claude-sonnet-4-5" => 3_000.0,
            _ => 5_000.0,
        };
        let mut duration_ms = rng.lognormal(median_ms, 0.5);
        if self.incidents.iter().any(|i| {
            i.kind == IncidentKind::SlowProvider
                && i.covers(time_nanos)
                && i.model.as_deref() == Some(model)
        }) {
            duration_ms = 35_000.0 + rng.uniform() * 35_000.0;
        }
        let storm = self
            .incident_at(IncidentKind::ErrorStorm, time_nanos, user)
            .is_some();
        let failed = (rng.uniform() < if storm { 0.45 } else { self.error_rate }).then_some(529);
        let (tokens, cost_usd) = match failed {
            Some(_) => (TokenUsage::default(), 0.0),
            None => (tokens, prices.cost_usd(model, &tokens).unwrap_or(0.0)),
        };
        let tool = (failed.is_none() && rng.uniform() < 0.7).then(|| {
            (
                TOOLS[(rng.uniform() * TOOLS.len() as f64) as usize % TOOLS.len()],
                rng.uniform() > 0.03,
                rng.lognormal(400.0, 1.2) as u64,
            )
        });
        Call {
            time_nanos,
            user: u,
            session: session.to_string(),
            prompt: format!("{session}-{}", time_nanos / (5 * NANOS_PER_MINUTE)),
            model,
            tokens,
            cost_usd,
            duration_ms: if failed.is_some() {
                duration_ms as u64 / 10
            } else {
                duration_ms as u64
            },
            failed,
            tool,
        }
    }
}

/// A user id shaped like Claude Code's: 64 hex digits.
pub(crate) fn hex_id(seed: u64, i: u64) -> String {
    let mut rng = Rng::new(seed ^ (i.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
    (0..4).map(|_| format!("{:016x}", rng.next_u64())).collect()
}

/// splitmix64: small, fast, and the same on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-12);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    pub fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    /// Waiting time for a rate of `rate` per unit.
    pub fn exponential(&mut self, rate: f64) -> f64 {
        -(1.0 - self.uniform()).ln() / rate
    }

    pub fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut pick = self.uniform() * total;
        for (i, w) in weights.iter().enumerate() {
            if pick < *w {
                return i;
            }
            pick -= w;
        }
        weights.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_bytes() {
        let spec = WorkloadSpec::team(7, NaiveDate::from_ymd_opt(2026, 10, 5).unwrap(), 2, 4);
        let a = exports(&spec, &spec.calls(), Signals::default());
        let b = exports(&spec, &spec.calls(), Signals::default());
        assert!(!a.is_empty());
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.encode(Format::Proto), y.encode(Format::Proto));
        }
        let other = WorkloadSpec { seed: 8, ..spec };
        assert_ne!(
            exports(&other, &other.calls(), Signals::default())[0].encode(Format::Proto),
            a[0].encode(Format::Proto)
        );
    }

    #[test]
    fn weekends_are_quiet_and_incidents_leave_their_mark() {
        let spec = WorkloadSpec::evaluation(1);
        let calls = spec.calls();
        let per_day = |day: i64| {
            let (from, to) = (spec.day_nanos(day), spec.day_nanos(day + 1));
            calls
                .iter()
                .filter(|c| (from..to).contains(&c.time_nanos))
                .count()
        };
        // Day 5 is a Saturday, day 7 a Monday.
        assert!(
            per_day(5) * 4 < per_day(7),
            "{} vs {}",
            per_day(5),
            per_day(7)
        );
        let storm = &spec.incidents[3];
        let in_storm: Vec<_> = calls
            .iter()
            .filter(|c| storm.covers(c.time_nanos))
            .collect();
        let failed = in_storm.iter().filter(|c| c.failed.is_some()).count();
        assert!(
            failed * 4 > in_storm.len(),
            "{failed} of {}",
            in_storm.len()
        );
    }
}
