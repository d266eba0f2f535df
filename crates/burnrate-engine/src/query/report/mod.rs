//! The cost report of a period (a day, or any range of days): what it computes and how it is
//! written. The numbers come from the SQL in `sql/report_*.sql` over the Parquet dataset;
//! [`CostReport`] is their one structure, serialized as the documented JSON, and rendered as a
//! terminal table, Markdown, or CSV from that same structure, so every format carries the same
//! numbers.

use std::fmt::Write as _;
use std::path::Path;

use burnrate_pricing::{PriceTable, TokenUsage};
use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use comfy_table::{Cell, CellAlignment, Table as Grid, presets::UTF8_FULL_CONDENSED};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use crate::EngineError;
use crate::query::catalog::open_dataset;
use crate::stream::anomalies::Budget;

mod html;

const HEADLINE_SQL: &str = include_str!("../../../../../sql/report_headline.sql");
const TOP_SQL: &str = include_str!("../../../../../sql/report_top.sql");
const BY_HOUR_SQL: &str = include_str!("../../../../../sql/report_spend_by_hour.sql");
const TREND_SQL: &str = include_str!("../../../../../sql/report_trend.sql");
const ANOMALIES_SQL: &str = include_str!("../../../../../sql/report_anomalies.sql");
const BUDGET_SQL: &str = include_str!("../../../../../sql/report_budget.sql");
const COST_SOURCES_SQL: &str = include_str!("../../../../../sql/report_cost_sources.sql");
const LATENCY_SQL: &str = include_str!("../../../../../sql/report_latency.sql");
const PRODUCTIVITY_SQL: &str = include_str!("../../../../../sql/report_productivity.sql");
/// Bumped when a field changes meaning or goes away; new fields do not bump it.
pub const SCHEMA_VERSION: u32 = 1;
const TOP: usize = 10;
/// The name a ranking gives calls without the attribute (see sql/report_top.sql).
const UNKNOWN: &str = "(unknown)";

/// A table of the report as text cells, rendered alike in every text format.
struct DetailTable {
    title: &'static str,
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

/// The report's JSON form (`--format json`): stable, versioned by `schema_version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostReport {
    pub schema_version: u32,
    /// First day, inclusive.
    pub from: NaiveDate,
    /// Last day, inclusive.
    pub to: NaiveDate,
    /// The IANA time zone whose days and hours the report counts in (`UTC` by default).
    #[serde(default = "utc_name")]
    pub time_zone: String,
    pub headline: Headline,
    pub top_users: Vec<Ranked>,
    pub top_teams: Vec<Ranked>,
    pub top_projects: Vec<Ranked>,
    pub top_models: Vec<Ranked>,
    /// Spend per UTC hour of the day, 24 entries (summed over the period's days).
    pub spend_by_hour: Vec<f64>,
    /// Spend per day over the 30 days ending with `to`.
    pub trend: Vec<DaySpend>,
    pub anomalies: Vec<AnomalyLine>,
    /// Each configured budget on the period's last day and in its month.
    #[serde(default)]
    pub budgets: Vec<BudgetLine>,
    /// Spend by where the call came from: `main`, `subagent`, `auxiliary`, `sdk`.
    #[serde(default)]
    pub by_query_source: Vec<Ranked>,
    /// Spend by `speed` (`normal`, `fast`).
    #[serde(default)]
    pub by_speed: Vec<Ranked>,
    /// Spend by reasoning `effort`.
    #[serde(default)]
    pub by_effort: Vec<Ranked>,
    /// Duration and time to first token per model, from the calls themselves.
    #[serde(default)]
    pub latency_by_model: Vec<ModelLatency>,
    /// Calls the price table could not price, and calls where it disagrees with the client.
    #[serde(default)]
    pub cost_sources: CostSources,
    /// Spend next to lines changed, commits and pull requests, by team.
    #[serde(default)]
    pub productivity_by_team: Vec<Productivity>,
    /// The same by user.
    #[serde(default)]
    pub productivity_by_user: Vec<Productivity>,
}

/// How much of the period's spend did not come from the price table, and how far the table is
/// from what the clients reported. All zero on a period the table priced fully.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CostSources {
    /// Calls booked at the cost the client reported (`cost_source = 'reported'`).
    pub reported_calls: i64,
    pub reported_usd: f64,
    /// Calls with neither a table price nor a reported cost (`cost_usd` NULL): spend not counted.
    pub uncosted_calls: i64,
    /// Calls whose table price and reported cost differ by more than 1% and $0.000001.
    pub mismatched_calls: i64,
    /// Table price minus reported cost over those calls.
    pub mismatch_usd: f64,
    /// The same by model, for the models with any of the above.
    pub models: Vec<ModelCostSource>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelCostSource {
    pub model: String,
    pub reported_calls: i64,
    pub reported_usd: f64,
    pub uncosted_calls: i64,
    pub mismatched_calls: i64,
    pub mismatch_table_usd: f64,
    pub mismatch_reported_usd: f64,
}

/// Latency percentiles of one model's calls, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelLatency {
    pub model: String,
    pub requests: i64,
    pub duration_p50_ms: Option<f64>,
    pub duration_p95_ms: Option<f64>,
    /// Time to first token; `null` for clients that do not report it.
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p95_ms: Option<f64>,
}

/// What a team's or user's spend produced (Claude Code's usage metrics) and what each unit cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Productivity {
    pub name: String,
    pub cost_usd: f64,
    /// Lines added plus lines removed.
    pub lines_changed: f64,
    pub commits: f64,
    pub pull_requests: f64,
    pub cost_per_1k_lines_usd: Option<f64>,
    pub cost_per_commit_usd: Option<f64>,
    pub cost_per_pull_request_usd: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Headline {
    pub spend_usd: f64,
    /// The same number of days just before `from`.
    pub previous_spend_usd: f64,
    /// Percent change against the previous period; `null` when it spent nothing.
    pub change_vs_previous_pct: Option<f64>,
    /// The same days one week earlier.
    pub last_week_spend_usd: f64,
    pub change_vs_last_week_pct: Option<f64>,
    pub active_users: i64,
    pub sessions: i64,
    pub requests: i64,
    pub errors: i64,
    pub error_rate: Option<f64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// Time to first token; `null` when no call reported one.
    #[serde(default)]
    pub ttft_p50_ms: Option<f64>,
    #[serde(default)]
    pub ttft_p95_ms: Option<f64>,
    pub tokens: Tokens,
    /// Cache read tokens over all input tokens (input + cache read + cache creation).
    pub cache_hit_ratio: Option<f64>,
    /// What the cache read tokens would have cost at the input price, minus what they cost.
    pub cache_savings_usd: f64,
    pub cost_per_session_usd: Option<f64>,
    pub cost_per_request_usd: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Tokens {
    pub input: i64,
    pub output: i64,
    pub cache_read: i64,
    pub cache_creation: i64,
}

/// One row of a top-10 list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ranked {
    pub name: String,
    pub cost_usd: f64,
    /// Of the period's spend, 0 to 1.
    pub share: f64,
    pub requests: i64,
    pub sessions: i64,
    pub tokens: Tokens,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaySpend {
    pub date: NaiveDate,
    pub cost_usd: f64,
    pub requests: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyLine {
    pub rule: String,
    pub severity: String,
    pub dimension: String,
    pub value: String,
    pub first_seen: String,
    pub resolved_at: Option<String>,
    pub observed: f64,
    pub baseline: f64,
    pub score: f64,
}

/// Where one configured budget stands on the report's last day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetLine {
    pub dimension: String,
    pub value: String,
    pub daily_limit_usd: Option<f64>,
    /// Spend on the report's last day.
    pub day_spend_usd: f64,
    pub monthly_limit_usd: Option<f64>,
    /// Spend from the first of the month through the report's last day.
    pub month_to_date_usd: f64,
    /// Month-to-date spend at its daily rate, carried to the month's last day.
    pub month_forecast_usd: f64,
    /// `ok`; `warning` at 80% of a limit or a month-end forecast over it; `exceeded` at 100%.
    pub status: String,
}

impl CostReport {
    /// The report of the days `from..=to` over the dataset in `data_dir`, with where each of
    /// `budgets` stands on `to`.
    pub async fn build(
        data_dir: &Path,
        from: NaiveDate,
        to: NaiveDate,
        prices: &PriceTable,
        budgets: &[Budget],
        time_zone: Tz,
    ) -> Result<Self, EngineError> {
        if to < from {
            return Err(EngineError::Config(format!(
                "the period ends ({to}) before it starts ({from})"
            )));
        }
        let queries = Queries {
            ctx: open_dataset(data_dir).await?,
            time_zone,
        };
        let ctx = &queries;
        let days = (to - from).num_days() + 1;
        let end = to + chrono::Days::new(1);
        let headline_rows = ctx.run(HEADLINE_SQL, from, end, &[]).await?;
        let spend = |a: NaiveDate, b: NaiveDate| async move {
            let rows = ctx.run(HEADLINE_SQL, a, b, &[]).await?;
            Ok::<f64, EngineError>(float(&rows, "spend_usd", 0).unwrap_or(0.0))
        };
        let previous = spend(from - chrono::Days::new(days as u64), from).await?;
        let last_week = spend(from - chrono::Days::new(7), end - chrono::Days::new(7)).await?;

        let mut tops = Vec::new();
        for dimension in [
            "user_id",
            "team",
            "project",
            "model",
            "query_source",
            "speed",
            "effort",
        ] {
            tops.push(
                ctx.run(TOP_SQL, from, end, &[("${dimension}", dimension)])
                    .await?,
            );
        }
        let by_model = &tops[3];
        let tokens = Tokens {
            input: int(&headline_rows, "input_tokens", 0).unwrap_or(0),
            output: int(&headline_rows, "output_tokens", 0).unwrap_or(0),
            cache_read: int(&headline_rows, "cache_read_tokens", 0).unwrap_or(0),
            cache_creation: int(&headline_rows, "cache_creation_tokens", 0).unwrap_or(0),
        };
        let spend_usd = float(&headline_rows, "spend_usd", 0).unwrap_or(0.0);
        let requests = int(&headline_rows, "requests", 0).unwrap_or(0);
        let errors = int(&headline_rows, "errors", 0).unwrap_or(0);
        let sessions = int(&headline_rows, "sessions", 0).unwrap_or(0);
        let all_input = tokens.input + tokens.cache_read + tokens.cache_creation;
        // Percentiles from the windows' sketches when they hold every call of the period,
        // otherwise (windows still open, a live day) from the calls themselves.
        let windowed = int(&headline_rows, "windowed_requests", 0).unwrap_or(0) == requests;
        let sketched = |name: &str| windowed.then(|| float(&headline_rows, name, 0)).flatten();
        let percentiles = [
            ("latency_p50_ms", "duration_p50_ms"),
            ("latency_p95_ms", "duration_p95_ms"),
            ("latency_p99_ms", "duration_p99_ms"),
            ("ttft_p50_ms", "ttft_p50_ms"),
            ("ttft_p95_ms", "ttft_p95_ms"),
        ];
        let overall = if requests > 0 && percentiles.iter().any(|(s, _)| sketched(s).is_none()) {
            ctx.run(LATENCY_SQL, from, end, &[("${dimension}", "'all'")])
                .await?
        } else {
            Vec::new()
        };
        let percentile =
            |sketch: &str, raw: &str| sketched(sketch).or_else(|| float(&overall, raw, 0));
        let headline = Headline {
            spend_usd,
            previous_spend_usd: previous,
            change_vs_previous_pct: change(spend_usd, previous),
            last_week_spend_usd: last_week,
            change_vs_last_week_pct: change(spend_usd, last_week),
            active_users: int(&headline_rows, "active_users", 0).unwrap_or(0),
            sessions,
            requests,
            errors,
            error_rate: ratio(errors as f64, requests as f64),
            latency_p50_ms: percentile("latency_p50_ms", "duration_p50_ms"),
            latency_p95_ms: percentile("latency_p95_ms", "duration_p95_ms"),
            latency_p99_ms: percentile("latency_p99_ms", "duration_p99_ms"),
            ttft_p50_ms: percentile("ttft_p50_ms", "ttft_p50_ms"),
            ttft_p95_ms: percentile("ttft_p95_ms", "ttft_p95_ms"),
            tokens,
            cache_hit_ratio: ratio(tokens.cache_read as f64, all_input as f64),
            cache_savings_usd: cache_savings(by_model, prices),
            cost_per_session_usd: ratio(spend_usd, sessions as f64),
            cost_per_request_usd: ratio(spend_usd, requests as f64),
        };
        let ranked = |rows: &[RecordBatch]| ranked(rows, spend_usd);
        let mut spend_by_hour = vec![0.0; 24];
        for batch in ctx.run(BY_HOUR_SQL, from, end, &[]).await? {
            for row in 0..batch.num_rows() {
                let hour = int(std::slice::from_ref(&batch), "hour", row).unwrap_or(0);
                if let Some(slot) = spend_by_hour.get_mut(hour as usize) {
                    *slot = float(std::slice::from_ref(&batch), "cost_usd", row).unwrap_or(0.0);
                }
            }
        }
        let trend_rows = ctx
            .run(TREND_SQL, end - chrono::Days::new(30), end, &[])
            .await?;
        let mut trend: Vec<DaySpend> = (0..30)
            .map(|i| DaySpend {
                date: end - chrono::Days::new(30 - i),
                cost_usd: 0.0,
                requests: 0,
            })
            .collect();
        for (row, day) in rows_of(&trend_rows, "day")?.into_iter().enumerate() {
            if let Some(slot) = trend.iter_mut().find(|d| Some(d.date) == day) {
                slot.cost_usd = float(&trend_rows, "cost_usd", row).unwrap_or(0.0);
                slot.requests = int(&trend_rows, "requests", row).unwrap_or(0);
            }
        }
        let anomaly_rows = ctx.run(ANOMALIES_SQL, from, end, &[]).await?;
        let anomalies = (0..count(&anomaly_rows))
            .map(|row| AnomalyLine {
                rule: text(&anomaly_rows, "rule", row).unwrap_or_default(),
                severity: text(&anomaly_rows, "severity", row).unwrap_or_default(),
                dimension: text(&anomaly_rows, "dimension", row).unwrap_or_default(),
                value: text(&anomaly_rows, "value", row).unwrap_or_default(),
                first_seen: text(&anomaly_rows, "first_seen", row).unwrap_or_default(),
                resolved_at: text(&anomaly_rows, "resolved_at", row),
                observed: float(&anomaly_rows, "observed", row).unwrap_or(0.0),
                baseline: float(&anomaly_rows, "baseline", row).unwrap_or(0.0),
                score: float(&anomaly_rows, "score", row).unwrap_or(0.0),
            })
            .collect();
        let mut budget_lines = Vec::with_capacity(budgets.len());
        for budget in budgets {
            budget_lines.push(budget_line(ctx, budget, to).await?);
        }
        let latency_rows = ctx
            .run(LATENCY_SQL, from, end, &[("${dimension}", "model")])
            .await?;
        let latency_by_model = (0..count(&latency_rows))
            .map(|row| ModelLatency {
                model: text(&latency_rows, "name", row).unwrap_or_default(),
                requests: int(&latency_rows, "requests", row).unwrap_or(0),
                duration_p50_ms: float(&latency_rows, "duration_p50_ms", row),
                duration_p95_ms: float(&latency_rows, "duration_p95_ms", row),
                ttft_p50_ms: float(&latency_rows, "ttft_p50_ms", row),
                ttft_p95_ms: float(&latency_rows, "ttft_p95_ms", row),
            })
            .collect();
        let cost_sources = cost_sources(&ctx.run(COST_SOURCES_SQL, from, end, &[]).await?);
        let mut productivity = Vec::new();
        for dimension in ["team", "user_id"] {
            let rows = ctx
                .run(PRODUCTIVITY_SQL, from, end, &[("${dimension}", dimension)])
                .await?;
            productivity.push(productivity_rows(&rows));
        }
        let productivity_by_user = productivity.pop().unwrap_or_default();
        let productivity_by_team = productivity.pop().unwrap_or_default();
        Ok(CostReport {
            schema_version: SCHEMA_VERSION,
            from,
            to,
            time_zone: time_zone.name().to_string(),
            headline,
            top_users: ranked(&tops[0]),
            top_teams: ranked(&tops[1]),
            top_projects: ranked(&tops[2]),
            top_models: ranked(&tops[3]),
            spend_by_hour,
            trend,
            anomalies,
            budgets: budget_lines,
            by_query_source: ranked(&tops[4]),
            by_speed: ranked(&tops[5]),
            by_effort: ranked(&tops[6]),
            latency_by_model,
            cost_sources,
            productivity_by_team,
            productivity_by_user,
        })
    }

    fn title(&self) -> String {
        let zone = if self.time_zone == "UTC" {
            String::new()
        } else {
            format!(", {}", self.time_zone)
        };
        if self.from == self.to {
            format!(
                "burnrate daily cost report, {} ({}{zone})",
                self.from,
                self.from.weekday()
            )
        } else {
            format!("burnrate cost report, {} to {}{zone}", self.from, self.to)
        }
    }

    /// The report for a terminal.
    pub fn to_text(&self) -> String {
        let mut out = format!("{}\n\n", self.title());
        let mut grid = new_grid(&["", ""]);
        for (label, value) in self.headline_lines() {
            grid.add_row(vec![
                Cell::new(label),
                Cell::new(value).set_alignment(CellAlignment::Right),
            ]);
        }
        let _ = writeln!(out, "{grid}\n");
        for (title, list) in self.lists() {
            let mut grid = new_grid(&[title, "cost", "share", "requests", "sessions"]);
            for r in list {
                grid.add_row(vec![
                    Cell::new(short(&r.name)),
                    Cell::new(usd(r.cost_usd)).set_alignment(CellAlignment::Right),
                    Cell::new(pct(r.share)).set_alignment(CellAlignment::Right),
                    Cell::new(r.requests).set_alignment(CellAlignment::Right),
                    Cell::new(r.sessions).set_alignment(CellAlignment::Right),
                ]);
            }
            let _ = writeln!(out, "{grid}\n");
        }
        for table in self.detail_tables() {
            let mut grid = new_grid(&table.header);
            for row in table.rows {
                let mut cells = row.into_iter();
                let mut line = vec![Cell::new(cells.next().unwrap_or_default())];
                line.extend(cells.map(|v| Cell::new(v).set_alignment(CellAlignment::Right)));
                grid.add_row(line);
            }
            let _ = writeln!(out, "{}\n{grid}\n", table.title);
        }
        if !self.budgets.is_empty() {
            let mut grid = new_grid(&[
                "budget",
                "day",
                "daily limit",
                "month to date",
                "forecast",
                "monthly limit",
                "status",
            ]);
            for b in &self.budgets {
                let mut row = vec![Cell::new(format!("{}={}", b.dimension, short(&b.value)))];
                row.extend(
                    budget_cells(b)
                        .into_iter()
                        .map(|v| Cell::new(v).set_alignment(CellAlignment::Right)),
                );
                grid.add_row(row);
            }
            let _ = writeln!(out, "{grid}\n");
        }
        let _ = writeln!(out, "{}", self.anomaly_text());
        out
    }

    /// The report as Markdown: short enough for a chat message or a pull-request comment.
    pub fn to_markdown(&self) -> String {
        let mut out = format!("### {}\n\n", self.title());
        out.push_str("| | |\n|---|---:|\n");
        for (label, value) in self.headline_lines() {
            let _ = writeln!(out, "| {label} | {value} |");
        }
        for (title, list) in self.lists() {
            let _ = writeln!(
                out,
                "\n| {title} | cost | share | requests |\n|---|---:|---:|---:|"
            );
            for r in list.iter().take(5) {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} |",
                    short(&r.name).replace('|', "\\|"),
                    usd(r.cost_usd),
                    pct(r.share),
                    r.requests
                );
            }
        }
        for table in self.detail_tables() {
            let _ = writeln!(
                out,
                "\n**{}**\n\n| {} |\n|---|{}",
                table.title,
                table.header.join(" | "),
                "---:|".repeat(table.header.len() - 1)
            );
            for row in &table.rows {
                let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
                let _ = writeln!(out, "| {} |", cells.join(" | "));
            }
        }
        if !self.budgets.is_empty() {
            out.push_str("\n| budget | day | daily limit | month to date | forecast | monthly limit | status |\n|---|---:|---:|---:|---:|---:|---|\n");
            for b in &self.budgets {
                let _ = writeln!(
                    out,
                    "| {}={} | {} |",
                    b.dimension,
                    short(&b.value).replace('|', "\\|"),
                    budget_cells(b).join(" | ")
                );
            }
        }
        let _ = write!(out, "\n{}", self.anomaly_text());
        out
    }

    /// The same numbers as CSV rows `section,name,metric,value`, for spreadsheets.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("section,name,metric,value\n");
        let mut row = |section: &str, name: &str, metric: &str, value: String| {
            let quote = |s: &str| {
                if s.contains([',', '"', '\n']) {
                    format!("\"{}\"", s.replace('"', "\"\""))
                } else {
                    s.to_string()
                }
            };
            let _ = writeln!(
                out,
                "{},{},{},{}",
                quote(section),
                quote(name),
                quote(metric),
                value
            );
        };
        let h = &self.headline;
        let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        for (metric, value) in [
            ("spend_usd", h.spend_usd.to_string()),
            ("previous_spend_usd", h.previous_spend_usd.to_string()),
            ("change_vs_previous_pct", opt(h.change_vs_previous_pct)),
            ("last_week_spend_usd", h.last_week_spend_usd.to_string()),
            ("change_vs_last_week_pct", opt(h.change_vs_last_week_pct)),
            ("active_users", h.active_users.to_string()),
            ("sessions", h.sessions.to_string()),
            ("requests", h.requests.to_string()),
            ("errors", h.errors.to_string()),
            ("error_rate", opt(h.error_rate)),
            ("latency_p50_ms", opt(h.latency_p50_ms)),
            ("latency_p95_ms", opt(h.latency_p95_ms)),
            ("latency_p99_ms", opt(h.latency_p99_ms)),
            ("ttft_p50_ms", opt(h.ttft_p50_ms)),
            ("ttft_p95_ms", opt(h.ttft_p95_ms)),
            ("input_tokens", h.tokens.input.to_string()),
            ("output_tokens", h.tokens.output.to_string()),
            ("cache_read_tokens", h.tokens.cache_read.to_string()),
            ("cache_creation_tokens", h.tokens.cache_creation.to_string()),
            ("cache_hit_ratio", opt(h.cache_hit_ratio)),
            ("cache_savings_usd", h.cache_savings_usd.to_string()),
            ("cost_per_session_usd", opt(h.cost_per_session_usd)),
            ("cost_per_request_usd", opt(h.cost_per_request_usd)),
            (
                "reported_cost_calls",
                self.cost_sources.reported_calls.to_string(),
            ),
            (
                "reported_cost_usd",
                self.cost_sources.reported_usd.to_string(),
            ),
            (
                "uncosted_calls",
                self.cost_sources.uncosted_calls.to_string(),
            ),
            (
                "cost_mismatch_calls",
                self.cost_sources.mismatched_calls.to_string(),
            ),
            (
                "cost_mismatch_usd",
                self.cost_sources.mismatch_usd.to_string(),
            ),
        ] {
            row("headline", "", metric, value);
        }
        for m in &self.cost_sources.models {
            for (metric, value) in [
                ("reported_calls", m.reported_calls.to_string()),
                ("reported_usd", m.reported_usd.to_string()),
                ("uncosted_calls", m.uncosted_calls.to_string()),
                ("mismatched_calls", m.mismatched_calls.to_string()),
                ("mismatch_table_usd", m.mismatch_table_usd.to_string()),
                ("mismatch_reported_usd", m.mismatch_reported_usd.to_string()),
            ] {
                row("cost_source", &m.model, metric, value);
            }
        }
        for m in &self.latency_by_model {
            for (metric, value) in [
                ("requests", m.requests.to_string()),
                ("duration_p50_ms", opt(m.duration_p50_ms)),
                ("duration_p95_ms", opt(m.duration_p95_ms)),
                ("ttft_p50_ms", opt(m.ttft_p50_ms)),
                ("ttft_p95_ms", opt(m.ttft_p95_ms)),
            ] {
                row("latency", &m.model, metric, value);
            }
        }
        for (section, list) in [
            ("productivity_team", &self.productivity_by_team),
            ("productivity_user", &self.productivity_by_user),
        ] {
            for p in list {
                for (metric, value) in [
                    ("cost_usd", p.cost_usd.to_string()),
                    ("lines_changed", p.lines_changed.to_string()),
                    ("commits", p.commits.to_string()),
                    ("pull_requests", p.pull_requests.to_string()),
                    ("cost_per_1k_lines_usd", opt(p.cost_per_1k_lines_usd)),
                    ("cost_per_commit_usd", opt(p.cost_per_commit_usd)),
                    (
                        "cost_per_pull_request_usd",
                        opt(p.cost_per_pull_request_usd),
                    ),
                ] {
                    row(section, &p.name, metric, value);
                }
            }
        }
        for (section, list) in [
            ("user", &self.top_users),
            ("team", &self.top_teams),
            ("project", &self.top_projects),
            ("model", &self.top_models),
            ("query_source", &self.by_query_source),
            ("speed", &self.by_speed),
            ("effort", &self.by_effort),
        ] {
            for r in list {
                row(section, &r.name, "cost_usd", r.cost_usd.to_string());
                row(section, &r.name, "share", r.share.to_string());
                row(section, &r.name, "requests", r.requests.to_string());
                row(section, &r.name, "sessions", r.sessions.to_string());
            }
        }
        for (hour, cost) in self.spend_by_hour.iter().enumerate() {
            row(
                "spend_by_hour",
                &format!("{hour:02}"),
                "cost_usd",
                cost.to_string(),
            );
        }
        for day in &self.trend {
            row(
                "trend",
                &day.date.to_string(),
                "cost_usd",
                day.cost_usd.to_string(),
            );
        }
        for b in &self.budgets {
            let name = format!("{}={}", b.dimension, b.value);
            let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
            row(
                "budget",
                &name,
                "day_spend_usd",
                b.day_spend_usd.to_string(),
            );
            row("budget", &name, "daily_limit_usd", opt(b.daily_limit_usd));
            row(
                "budget",
                &name,
                "month_to_date_usd",
                b.month_to_date_usd.to_string(),
            );
            row(
                "budget",
                &name,
                "month_forecast_usd",
                b.month_forecast_usd.to_string(),
            );
            row(
                "budget",
                &name,
                "monthly_limit_usd",
                opt(b.monthly_limit_usd),
            );
            row("budget", &name, "status", b.status.clone());
        }
        for a in &self.anomalies {
            let name = format!("{}={}", a.dimension, a.value);
            row(
                &format!("anomaly:{}", a.rule),
                &name,
                "score",
                a.score.to_string(),
            );
        }
        out
    }

    /// The ranked lists, each cut to the top ten. A breakdown whose every call is
    /// `(unknown)` (a client that does not send the attribute) says nothing and is left out.
    fn lists(&self) -> Vec<(&'static str, &[Ranked])> {
        [
            ("user", &self.top_users),
            ("team", &self.top_teams),
            ("project", &self.top_projects),
            ("model", &self.top_models),
            ("query source", &self.by_query_source),
            ("speed", &self.by_speed),
            ("effort", &self.by_effort),
        ]
        .into_iter()
        .filter(|(title, list)| {
            matches!(*title, "user" | "team" | "project" | "model")
                || list.iter().any(|r| r.name != UNKNOWN)
        })
        .map(|(title, list)| (title, &list[..list.len().min(TOP)]))
        .collect()
    }

    /// The tables after the rankings, as text: latency by model, where costs came from, and
    /// what the spend produced. Empty tables are left out.
    fn detail_tables(&self) -> Vec<DetailTable> {
        let ms = |v: Option<f64>| v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "–".into());
        let opt_usd = |v: Option<f64>| v.map(usd).unwrap_or_else(|| "–".into());
        let mut tables = Vec::new();
        if !self.latency_by_model.is_empty() {
            tables.push(DetailTable {
                title: "latency by model",
                header: vec![
                    "model",
                    "requests",
                    "duration p50 ms",
                    "p95 ms",
                    "TTFT p50 ms",
                    "p95 ms",
                ],
                rows: self
                    .latency_by_model
                    .iter()
                    .map(|m| {
                        vec![
                            m.model.clone(),
                            m.requests.to_string(),
                            ms(m.duration_p50_ms),
                            ms(m.duration_p95_ms),
                            ms(m.ttft_p50_ms),
                            ms(m.ttft_p95_ms),
                        ]
                    })
                    .collect(),
            });
        }
        if !self.cost_sources.models.is_empty() {
            tables.push(DetailTable {
                title: "cost not from the price table",
                header: vec![
                    "model",
                    "calls at reported cost",
                    "their spend",
                    "calls with no cost",
                    "calls table ≠ reported",
                    "table",
                    "reported",
                ],
                rows: self
                    .cost_sources
                    .models
                    .iter()
                    .map(|m| {
                        vec![
                            m.model.clone(),
                            m.reported_calls.to_string(),
                            usd(m.reported_usd),
                            m.uncosted_calls.to_string(),
                            m.mismatched_calls.to_string(),
                            usd(m.mismatch_table_usd),
                            usd(m.mismatch_reported_usd),
                        ]
                    })
                    .collect(),
            });
        }
        for (title, list) in [
            ("productivity by team", &self.productivity_by_team),
            ("productivity by user", &self.productivity_by_user),
        ] {
            if !list
                .iter()
                .any(|p| p.lines_changed + p.commits + p.pull_requests > 0.0)
            {
                continue;
            }
            tables.push(DetailTable {
                title,
                header: vec![
                    "name",
                    "spend",
                    "lines changed",
                    "per 1k lines",
                    "commits",
                    "per commit",
                    "pull requests",
                    "per PR",
                ],
                rows: list
                    .iter()
                    .take(TOP)
                    .map(|p| {
                        vec![
                            short(&p.name),
                            usd(p.cost_usd),
                            p.lines_changed.to_string(),
                            opt_usd(p.cost_per_1k_lines_usd),
                            p.commits.to_string(),
                            opt_usd(p.cost_per_commit_usd),
                            p.pull_requests.to_string(),
                            opt_usd(p.cost_per_pull_request_usd),
                        ]
                    })
                    .collect(),
            });
        }
        tables
    }

    fn anomaly_text(&self) -> String {
        if self.anomalies.is_empty() {
            return "No anomalies.\n".into();
        }
        let mut out = format!("Anomalies ({}):\n", self.anomalies.len());
        for a in &self.anomalies {
            let _ = writeln!(
                out,
                "- {} {} on {} {} since {}{} (observed {:.2}, baseline {:.2})",
                a.severity,
                a.rule,
                a.dimension,
                short(&a.value),
                a.first_seen,
                a.resolved_at
                    .as_ref()
                    .map(|r| format!(", resolved {r}"))
                    .unwrap_or_default(),
                a.observed,
                a.baseline
            );
        }
        out
    }
}

async fn budget_line(
    ctx: &Queries,
    budget: &Budget,
    day: NaiveDate,
) -> Result<BudgetLine, EngineError> {
    // The dimension was checked against the window dimensions when the configuration loaded;
    // checked again here because it is spliced into SQL.
    if !burnrate_otlp::WINDOW_DIMENSIONS.contains(&budget.dimension.as_str()) {
        return Err(EngineError::Config(format!(
            "anomalies.budgets: unknown dimension {:?}",
            budget.dimension
        )));
    }
    let value = format!("'{}'", budget.value.replace('\'', "''"));
    let spend = |from: NaiveDate, to: NaiveDate| {
        let value = value.as_str();
        async move {
            let extra = [
                ("${dimension}", budget.dimension.as_str()),
                ("${value}", value),
            ];
            let rows = ctx.run(BUDGET_SQL, from, to, &extra).await?;
            Ok::<f64, EngineError>(float(&rows, "spend_usd", 0).unwrap_or(0.0))
        }
    };
    let next_day = day + chrono::Days::new(1);
    let month_start = day.with_day(1).unwrap_or(day);
    let day_spend = spend(day, next_day).await?;
    let month_to_date = spend(month_start, next_day).await?;
    let days_in_month = month_start
        .checked_add_months(chrono::Months::new(1))
        .map_or(30, |next| (next - month_start).num_days());
    let forecast = month_to_date / f64::from(day.day()) * days_in_month as f64;
    let used = |spent: f64, limit: Option<f64>| limit.map_or(0.0, |limit| spent / limit);
    let highest = used(day_spend, budget.daily_usd).max(used(month_to_date, budget.monthly_usd));
    let forecast_over = used(forecast, budget.monthly_usd) >= 1.0;
    let status = if highest >= 1.0 {
        "exceeded"
    } else if highest >= 0.8 || forecast_over {
        "warning"
    } else {
        "ok"
    };
    Ok(BudgetLine {
        dimension: budget.dimension.clone(),
        value: budget.value.clone(),
        daily_limit_usd: budget.daily_usd,
        day_spend_usd: day_spend,
        monthly_limit_usd: budget.monthly_usd,
        month_to_date_usd: month_to_date,
        month_forecast_usd: forecast,
        status: status.into(),
    })
}

impl CostReport {
    /// The headline as label/value lines, with a line for every call the price table could not
    /// price and for every disagreement with the clients, whenever there are any: spend is never
    /// undercounted in silence.
    fn headline_lines(&self) -> Vec<(&'static str, String)> {
        let h = &self.headline;
        let change = |c: Option<f64>| c.map(|c| format!(" ({c:+.1}%)")).unwrap_or_default();
        let ms = |v: Option<f64>| {
            v.map(|v| format!("{v:.0} ms"))
                .unwrap_or_else(|| "–".into())
        };
        let mut lines = vec![
            ("spend", usd(h.spend_usd)),
            (
                "previous period",
                format!(
                    "{}{}",
                    usd(h.previous_spend_usd),
                    change(h.change_vs_previous_pct)
                ),
            ),
            (
                "same days last week",
                format!(
                    "{}{}",
                    usd(h.last_week_spend_usd),
                    change(h.change_vs_last_week_pct)
                ),
            ),
            ("active users", h.active_users.to_string()),
            ("sessions", h.sessions.to_string()),
            ("requests", h.requests.to_string()),
            (
                "error rate",
                h.error_rate.map(pct).unwrap_or_else(|| "–".into()),
            ),
            (
                "latency p50 / p95 / p99",
                format!(
                    "{} / {} / {}",
                    ms(h.latency_p50_ms),
                    ms(h.latency_p95_ms),
                    ms(h.latency_p99_ms)
                ),
            ),
        ];
        if h.ttft_p50_ms.is_some() {
            lines.push((
                "time to first token p50 / p95",
                format!("{} / {}", ms(h.ttft_p50_ms), ms(h.ttft_p95_ms)),
            ));
        }
        lines.extend([
            (
                "cache hit ratio",
                h.cache_hit_ratio.map(pct).unwrap_or_else(|| "–".into()),
            ),
            ("saved by the cache", usd(h.cache_savings_usd)),
            (
                "cost per session",
                h.cost_per_session_usd
                    .map(usd)
                    .unwrap_or_else(|| "–".into()),
            ),
            (
                "cost per request",
                h.cost_per_request_usd
                    .map(usd)
                    .unwrap_or_else(|| "–".into()),
            ),
            (
                "tokens in / out / cache read / cache write",
                format!(
                    "{} / {} / {} / {}",
                    h.tokens.input, h.tokens.output, h.tokens.cache_read, h.tokens.cache_creation
                ),
            ),
        ]);
        let c = &self.cost_sources;
        if c.reported_calls > 0 {
            lines.push((
                "unpriced calls (cost as reported)",
                format!(
                    "{} calls, {} ({})",
                    c.reported_calls,
                    usd(c.reported_usd),
                    models_of(&c.models, |m| m.reported_calls > 0)
                ),
            ));
        }
        if c.uncosted_calls > 0 {
            lines.push((
                "calls with no cost at all",
                format!(
                    "{} calls, spend unknown ({})",
                    c.uncosted_calls,
                    models_of(&c.models, |m| m.uncosted_calls > 0)
                ),
            ));
        }
        if c.mismatched_calls > 0 {
            lines.push((
                "price table vs reported cost",
                format!(
                    "{} calls differ by {}{} ({}): is the price table stale?",
                    c.mismatched_calls,
                    if c.mismatch_usd >= 0.0 { "+" } else { "-" },
                    usd(c.mismatch_usd.abs()),
                    models_of(&c.models, |m| m.mismatched_calls > 0)
                ),
            ));
        }
        lines
    }
}

/// The models of `models` that `pick` keeps, comma-separated.
fn models_of(models: &[ModelCostSource], pick: impl Fn(&ModelCostSource) -> bool) -> String {
    models
        .iter()
        .filter(|m| pick(m))
        .map(|m| m.model.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn cost_sources(rows: &[RecordBatch]) -> CostSources {
    let models: Vec<ModelCostSource> = (0..count(rows))
        .map(|row| ModelCostSource {
            model: text(rows, "model", row).unwrap_or_default(),
            reported_calls: int(rows, "reported_calls", row).unwrap_or(0),
            reported_usd: float(rows, "reported_usd", row).unwrap_or(0.0),
            uncosted_calls: int(rows, "uncosted_calls", row).unwrap_or(0),
            mismatched_calls: int(rows, "mismatched_calls", row).unwrap_or(0),
            mismatch_table_usd: float(rows, "mismatch_table_usd", row).unwrap_or(0.0),
            mismatch_reported_usd: float(rows, "mismatch_reported_usd", row).unwrap_or(0.0),
        })
        .collect();
    let nano = |v: f64| (v * 1e9).round() / 1e9;
    CostSources {
        reported_calls: models.iter().map(|m| m.reported_calls).sum(),
        reported_usd: nano(models.iter().map(|m| m.reported_usd).sum()),
        uncosted_calls: models.iter().map(|m| m.uncosted_calls).sum(),
        mismatched_calls: models.iter().map(|m| m.mismatched_calls).sum(),
        mismatch_usd: nano(
            models
                .iter()
                .map(|m| m.mismatch_table_usd - m.mismatch_reported_usd)
                .sum(),
        ),
        models,
    }
}

fn productivity_rows(rows: &[RecordBatch]) -> Vec<Productivity> {
    (0..count(rows))
        .map(|row| Productivity {
            name: text(rows, "name", row).unwrap_or_default(),
            cost_usd: float(rows, "cost_usd", row).unwrap_or(0.0),
            lines_changed: float(rows, "lines_changed", row).unwrap_or(0.0),
            commits: float(rows, "commits", row).unwrap_or(0.0),
            pull_requests: float(rows, "pull_requests", row).unwrap_or(0.0),
            cost_per_1k_lines_usd: float(rows, "cost_per_1k_lines_usd", row),
            cost_per_commit_usd: float(rows, "cost_per_commit_usd", row),
            cost_per_pull_request_usd: float(rows, "cost_per_pull_request_usd", row),
        })
        .collect()
}

fn utc_name() -> String {
    "UTC".into()
}

/// A budget's numbers after its name, as text and Markdown show them.
fn budget_cells(b: &BudgetLine) -> Vec<String> {
    let limit = |v: Option<f64>| v.map(usd).unwrap_or_else(|| "–".into());
    vec![
        usd(b.day_spend_usd),
        limit(b.daily_limit_usd),
        usd(b.month_to_date_usd),
        usd(b.month_forecast_usd),
        limit(b.monthly_limit_usd),
        b.status.clone(),
    ]
}

fn new_grid(header: &[&str]) -> Grid {
    let mut grid = Grid::new();
    grid.load_style(UTF8_FULL_CONDENSED);
    grid.set_header(header.iter().map(Cell::new));
    grid
}

fn usd(v: f64) -> String {
    if v.abs() < 1.0 {
        format!("${v:.4}")
    } else {
        format!("${v:.2}")
    }
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

/// User ids are 64 hex digits: the first 12 tell them apart in a table.
fn short(name: &str) -> String {
    if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
        format!("{}…", &name[..12])
    } else {
        name.to_string()
    }
}

fn change(now: f64, before: f64) -> Option<f64> {
    (before > 0.0).then(|| (now - before) / before * 100.0)
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// Per model: cache reads at the input price minus at the cache-read price.
fn cache_savings(by_model: &[RecordBatch], prices: &PriceTable) -> f64 {
    (0..count(by_model))
        .map(|row| {
            let model = text(by_model, "name", row).unwrap_or_default();
            let read = int(by_model, "cache_read_tokens", row).unwrap_or(0).max(0) as u64;
            let as_input = TokenUsage {
                input: read,
                ..TokenUsage::default()
            };
            let as_read = TokenUsage {
                cache_read: read,
                ..TokenUsage::default()
            };
            match (
                prices.cost_usd(&model, &as_input),
                prices.cost_usd(&model, &as_read),
            ) {
                (Some(full), Some(cached)) => full - cached,
                _ => 0.0,
            }
        })
        .sum()
}

fn ranked(rows: &[RecordBatch], total: f64) -> Vec<Ranked> {
    (0..count(rows))
        .map(|row| {
            let cost = float(rows, "cost_usd", row).unwrap_or(0.0);
            Ranked {
                name: text(rows, "name", row).unwrap_or_default(),
                cost_usd: cost,
                share: ratio(cost, total).unwrap_or(0.0),
                requests: int(rows, "requests", row).unwrap_or(0),
                sessions: int(rows, "sessions", row).unwrap_or(0),
                tokens: Tokens {
                    input: int(rows, "input_tokens", row).unwrap_or(0),
                    output: int(rows, "output_tokens", row).unwrap_or(0),
                    cache_read: int(rows, "cache_read_tokens", row).unwrap_or(0),
                    cache_creation: int(rows, "cache_creation_tokens", row).unwrap_or(0),
                },
            }
        })
        .collect()
}

/// The dataset and the time zone whose days the report counts in.
struct Queries {
    ctx: SessionContext,
    time_zone: Tz,
}

impl Queries {
    /// The instant local midnight of `day` begins (the earliest, where a clock change repeats
    /// it; the hour after, where a change skips it).
    fn midnight(&self, day: NaiveDate) -> DateTime<Utc> {
        let local = day.and_time(NaiveTime::MIN);
        self.time_zone
            .from_local_datetime(&local)
            .earliest()
            .or_else(|| {
                self.time_zone
                    .from_local_datetime(&(local + chrono::Duration::hours(1)))
                    .earliest()
            })
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| local.and_utc())
    }

    /// Runs one report SQL file for the local days `[from, to)` with `extra` placeholders
    /// filled in. `${offset}` is the zone's UTC offset at `from`, which shifts times onto the
    /// local clock for hours and days.
    async fn run(
        &self,
        sql: &str,
        from: NaiveDate,
        to: NaiveDate,
        extra: &[(&str, &str)],
    ) -> Result<Vec<RecordBatch>, EngineError> {
        let literal = |t: DateTime<Utc>| format!("TIMESTAMP '{}'", t.format("%Y-%m-%dT%H:%M:%SZ"));
        let start = self.midnight(from);
        let offset = self
            .time_zone
            .offset_from_utc_datetime(&start.naive_utc())
            .fix()
            .local_minus_utc();
        let mut sql = sql
            .replace("${from}", &literal(start))
            .replace("${to}", &literal(self.midnight(to)))
            .replace("${offset}", &format!("INTERVAL '{offset} seconds'"));
        for (key, value) in extra {
            sql = sql.replace(key, value);
        }
        let batches = self.ctx.sql(&sql).await?.collect().await?;
        // One batch: rows are addressed by index across the whole result.
        match batches.first() {
            Some(first) => Ok(vec![datafusion::arrow::compute::concat_batches(
                &first.schema(),
                &batches,
            )?]),
            None => Ok(Vec::new()),
        }
    }
}

fn count(rows: &[RecordBatch]) -> usize {
    rows.first().map_or(0, RecordBatch::num_rows)
}

fn column<'a>(rows: &'a [RecordBatch], name: &str, row: usize) -> Option<&'a dyn Array> {
    let column = rows.first()?.column_by_name(name)?;
    (row < column.len() && column.is_valid(row)).then_some(column.as_ref())
}

/// A number of the result, to the nano (dollar, millisecond): floating-point sums come out of
/// a parallel plan in any order, and their last bits with them; reports must not.
pub(crate) fn float(rows: &[RecordBatch], name: &str, row: usize) -> Option<f64> {
    let column = column(rows, name, row)?;
    let values = cast(&column.slice(row, 1), &DataType::Float64).ok()?;
    let value = values.as_primitive::<Float64Type>().value(0);
    Some((value * 1e9).round() / 1e9)
}

pub(crate) fn int(rows: &[RecordBatch], name: &str, row: usize) -> Option<i64> {
    let column = column(rows, name, row)?;
    let values = cast(&column.slice(row, 1), &DataType::Int64).ok()?;
    Some(values.as_primitive::<Int64Type>().value(0))
}

pub(crate) fn text(rows: &[RecordBatch], name: &str, row: usize) -> Option<String> {
    let column = column(rows, name, row)?;
    let values = cast(&column.slice(row, 1), &DataType::Utf8).ok()?;
    Some(values.as_string::<i32>().value(0).to_string())
}

/// The UTC date of each row's `column` (a timestamp).
fn rows_of(rows: &[RecordBatch], name: &str) -> Result<Vec<Option<NaiveDate>>, EngineError> {
    Ok((0..count(rows))
        .map(|row| {
            text(rows, name, row)
                .and_then(|t| NaiveDate::parse_from_str(&t[..10.min(t.len())], "%Y-%m-%d").ok())
        })
        .collect())
}
