//! Where the time went: count, average, p95 and total duration per operation, tool, model,
//! query source, speed or effort over a time range, for `burnrate profile`; for model calls, the
//! spend too. The SQL is `sql/profile_*.sql`.

use std::path::Path;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use serde::Serialize;

use crate::EngineError;
use crate::query::catalog::open_dataset;
use crate::query::report::{float, int, text};

const BY_OPERATION_SQL: &str = include_str!("../../../../sql/profile_operation.sql");
const BY_TOOL_SQL: &str = include_str!("../../../../sql/profile_tool.sql");
const BY_CALL_SQL: &str = include_str!("../../../../sql/profile_call.sql");
const LATEST_SQL: &str = "SELECT max(t) AS latest FROM (\
    SELECT max(start_time) AS t FROM spans \
    UNION ALL SELECT max(time) FROM api_requests \
    UNION ALL SELECT max(time) FROM tool_calls)";

/// What a profile line stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileBy {
    /// Span names (tool spans with their tool) and timed events.
    Operation,
    Tool,
    Model,
    /// Where the call came from: main, subagent, auxiliary, sdk.
    QuerySource,
    Speed,
    Effort,
}

/// One line of the profile. Durations in milliseconds; `p95_ms` is interpolated between the
/// two nearest durations (`percentile_cont`), exact, not sketched.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileLine {
    pub operation: String,
    pub count: i64,
    pub avg_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub total_ms: f64,
    /// Spend of the line's model calls; `None` for spans and tools.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

/// The profile of `[from, to)`, largest total first.
pub async fn profile(
    data_dir: &Path,
    by: ProfileBy,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<ProfileLine>, EngineError> {
    let ctx = open_dataset(data_dir).await?;
    let sql = match by {
        ProfileBy::Operation => BY_OPERATION_SQL.to_string(),
        ProfileBy::Tool => BY_TOOL_SQL.to_string(),
        ProfileBy::Model => BY_CALL_SQL.replace("${dimension}", "model"),
        ProfileBy::QuerySource => BY_CALL_SQL.replace("${dimension}", "query_source"),
        ProfileBy::Speed => BY_CALL_SQL.replace("${dimension}", "speed"),
        ProfileBy::Effort => BY_CALL_SQL.replace("${dimension}", "effort"),
    };
    let literal = |t: DateTime<Utc>| format!("TIMESTAMP '{}'", t.format("%Y-%m-%dT%H:%M:%S%.9fZ"));
    let sql = sql
        .replace("${from}", &literal(from))
        .replace("${to}", &literal(to));
    let batches = ctx.sql(&sql).await?.collect().await?;
    let mut lines = Vec::new();
    for batch in &batches {
        let rows = std::slice::from_ref(batch);
        for row in 0..batch.num_rows() {
            lines.push(ProfileLine {
                operation: text(rows, "operation", row).unwrap_or_default(),
                count: int(rows, "count", row).unwrap_or(0),
                avg_ms: float(rows, "avg_ms", row),
                p95_ms: float(rows, "p95_ms", row),
                total_ms: float(rows, "total_ms", row).unwrap_or(0.0),
                cost_usd: float(rows, "cost_usd", row),
            });
        }
    }
    Ok(lines)
}

/// The newest span start or call time in the dataset, for profiling data that is not live.
pub async fn latest_time(data_dir: &Path) -> Result<Option<DateTime<Utc>>, EngineError> {
    let ctx = open_dataset(data_dir).await?;
    let batches = ctx.sql(LATEST_SQL).await?.collect().await?;
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(None);
    };
    let column = cast(batch.column(0), &DataType::Int64)?;
    let nanos = column.as_primitive::<Int64Type>();
    Ok((nanos.is_valid(0)).then(|| DateTime::from_timestamp_nanos(nanos.value(0))))
}

fn has_cost(lines: &[ProfileLine]) -> bool {
    lines.iter().any(|l| l.cost_usd.is_some())
}

/// The profile as a terminal table: Operation, Count, Avg(ms), P95(ms), Total(ms), and Cost for
/// model calls.
pub fn to_table(lines: &[ProfileLine]) -> String {
    use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED);
    let mut header = vec!["Operation", "Count", "Avg(ms)", "P95(ms)", "Total(ms)"];
    if has_cost(lines) {
        header.push("Cost($)");
    }
    table.set_header(header);
    let ms = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |v| format!("{v:.1}"));
    for line in lines {
        let right = |text: String| Cell::new(text).set_alignment(CellAlignment::Right);
        let mut row = vec![
            Cell::new(&line.operation),
            right(line.count.to_string()),
            right(ms(line.avg_ms)),
            right(ms(line.p95_ms)),
            right(format!("{:.1}", line.total_ms)),
        ];
        if let Some(cost) = line.cost_usd {
            row.push(right(format!("{cost:.4}")));
        }
        table.add_row(row);
    }
    format!("{table}\n")
}

/// The profile as CSV with a header: operation, count, avg_ms, p95_ms, total_ms, and cost_usd
/// for model calls.
pub fn to_csv(lines: &[ProfileLine]) -> String {
    let with_cost = has_cost(lines);
    let mut out = String::from("operation,count,avg_ms,p95_ms,total_ms");
    out.push_str(if with_cost { ",cost_usd\n" } else { "\n" });
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    for l in lines {
        let name = if l.operation.contains([',', '"', '\n']) {
            format!("\"{}\"", l.operation.replace('"', "\"\""))
        } else {
            l.operation.clone()
        };
        out.push_str(&format!(
            "{name},{},{},{},{}",
            l.count,
            opt(l.avg_ms),
            opt(l.p95_ms),
            l.total_ms
        ));
        if with_cost {
            out.push_str(&format!(",{}", opt(l.cost_usd)));
        }
        out.push('\n');
    }
    out
}
