//! The report as one self-contained HTML page: inline CSS and SVG charts, no script, no font or
//! image from the network, so it opens the same from a mail attachment or an object store.

use std::fmt::Write as _;

use super::{CostReport, Ranked, pct, short, usd};

/// Chart geometry in SVG user units; the page scales each chart to its column.
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const MARGIN_LEFT: f64 = 64.0;
const MARGIN_BOTTOM: f64 = 28.0;
const MARGIN_TOP: f64 = 12.0;

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:20px 32px}
header h1{margin:0;font-size:20px;font-weight:600}
header p{margin:4px 0 0;color:#b8c0d0}
main{padding:24px 32px;max-width:1280px}
section{margin-bottom:28px}
h2{font-size:16px;margin:0 0 10px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:12px}
.card{background:#fff;border-radius:8px;padding:12px 14px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
.card .label{color:#5b6475;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card .value{font-size:18px;font-weight:600;margin-top:2px;font-variant-numeric:tabular-nums}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:16px}
figure{background:#fff;border-radius:8px;margin:0;padding:12px 14px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
figcaption{font-weight:600;margin-bottom:6px}
svg{width:100%;height:auto;display:block}
svg text{font-size:11px;fill:#5b6475}
.empty{fill:#8a93a5;font-size:13px}
.tables{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:16px}
table{border-collapse:collapse;width:100%;background:#fff;border-radius:8px;overflow:hidden;box-shadow:0 1px 2px rgba(0,0,0,.08)}
th,td{padding:6px 10px;text-align:right;font-variant-numeric:tabular-nums;border-bottom:1px solid #eceef2}
th:first-child,td:first-child{text-align:left}
th{background:#eef0f4;font-weight:600}
.critical,.exceeded{color:#b42318;font-weight:600}
.warning{color:#b54708;font-weight:600}
.ok{color:#067647}
footer{color:#8a93a5;font-size:12px;padding:0 32px 24px}
";

const PALETTE: [&str; 8] = [
    "#3b6fd8", "#e0803a", "#3aa37a", "#c2497a", "#7a5ad1", "#c9a227", "#2d9fbf", "#8a93a5",
];

impl CostReport {
    /// The report as one HTML page with its charts inline.
    pub fn to_html(&self) -> String {
        let title = escape(&self.title());
        let mut out = String::with_capacity(64 * 1024);
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
             <header><h1>{title}</h1><p>{} to {} ({}) · {} requests · {} active users</p></header>\n<main>\n",
            self.from,
            self.to,
            escape(&self.time_zone),
            self.headline.requests,
            self.headline.active_users
        );

        out.push_str("<section id=\"headline\"><h2>Headline</h2><div class=\"cards\">\n");
        for (label, value) in self.headline_lines() {
            let _ = writeln!(
                out,
                "<div class=\"card\"><div class=\"label\">{}</div><div class=\"value\">{}</div></div>",
                escape(label),
                escape(&value)
            );
        }
        out.push_str("</div></section>\n");

        out.push_str("<section id=\"charts\"><h2>Charts</h2><div class=\"charts\">\n");
        let hours: Vec<(String, f64)> = self
            .spend_by_hour
            .iter()
            .enumerate()
            .map(|(hour, cost)| (format!("{hour:02}"), *cost))
            .collect();
        figure(
            &mut out,
            "chart-spend-by-hour",
            &format!("Spend by hour ({})", self.time_zone),
            &column_chart(&hours, 3),
        );
        figure(
            &mut out,
            "chart-spend-by-model",
            "Spend by model",
            &bar_chart(&ranked_bars(&self.top_models)),
        );
        figure(
            &mut out,
            "chart-top-users",
            "Top users by spend",
            &bar_chart(&ranked_bars(&self.top_users)),
        );
        let trend: Vec<(String, f64)> = self
            .trend
            .iter()
            .map(|d| (d.date.format("%m-%d").to_string(), d.cost_usd))
            .collect();
        figure(
            &mut out,
            "chart-trend",
            "Spend per day, last 30 days",
            &line_chart(&trend),
        );
        out.push_str("</div></section>\n");

        out.push_str("<section id=\"top\"><h2>Top spenders</h2><div class=\"tables\">\n");
        for (title, list) in self.lists() {
            ranked_table(&mut out, title, list);
        }
        out.push_str("</div></section>\n");

        for table in self.detail_tables() {
            let id = table.title.replace(' ', "-");
            let _ = write!(
                out,
                "<section id=\"{}\"><h2>{}</h2><table><tr>",
                escape(&id),
                escape(&capitalised(table.title))
            );
            for name in &table.header {
                let _ = write!(out, "<th>{}</th>", escape(name));
            }
            out.push_str("</tr>\n");
            for row in &table.rows {
                out.push_str("<tr>");
                for cell in row {
                    let _ = write!(out, "<td>{}</td>", escape(cell));
                }
                out.push_str("</tr>\n");
            }
            out.push_str("</table></section>\n");
        }

        self.tokens_table(&mut out);
        self.budgets_table(&mut out);
        self.anomalies_table(&mut out);

        let _ = write!(
            out,
            "</main>\n<footer>burnrate · report schema version {} · numbers from sql/report_*.sql</footer>\n</body>\n</html>\n",
            self.schema_version
        );
        out
    }

    fn tokens_table(&self, out: &mut String) {
        out.push_str(
            "<section id=\"tokens\"><h2>Tokens by type</h2><table>\n\
             <tr><th>model</th><th>input</th><th>output</th><th>cache read</th><th>cache write</th><th>cost</th></tr>\n",
        );
        for r in &self.top_models {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&r.name),
                r.tokens.input,
                r.tokens.output,
                r.tokens.cache_read,
                r.tokens.cache_creation,
                usd(r.cost_usd)
            );
        }
        let t = &self.headline.tokens;
        let _ = writeln!(
            out,
            "<tr><th>all</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>\n</table></section>",
            t.input,
            t.output,
            t.cache_read,
            t.cache_creation,
            usd(self.headline.spend_usd)
        );
    }

    fn budgets_table(&self, out: &mut String) {
        out.push_str("<section id=\"budgets\"><h2>Budgets</h2>\n");
        if self.budgets.is_empty() {
            out.push_str("<p>No budgets configured.</p></section>\n");
            return;
        }
        out.push_str(
            "<table><tr><th>budget</th><th>day</th><th>daily limit</th><th>month to date</th>\
             <th>month-end forecast</th><th>monthly limit</th><th>status</th></tr>\n",
        );
        let limit = |v: Option<f64>| v.map(usd).unwrap_or_else(|| "–".into());
        for b in &self.budgets {
            let _ = writeln!(
                out,
                "<tr><td>{}={}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
                escape(&b.dimension),
                escape(&short(&b.value)),
                usd(b.day_spend_usd),
                limit(b.daily_limit_usd),
                usd(b.month_to_date_usd),
                usd(b.month_forecast_usd),
                limit(b.monthly_limit_usd),
                escape(&b.status),
                escape(&b.status)
            );
        }
        out.push_str("</table></section>\n");
    }

    fn anomalies_table(&self, out: &mut String) {
        out.push_str("<section id=\"anomalies\"><h2>Anomalies</h2>\n");
        if self.anomalies.is_empty() {
            out.push_str("<p>No anomalies.</p></section>\n");
            return;
        }
        out.push_str(
            "<table><tr><th>rule</th><th>severity</th><th>on</th><th>since</th><th>resolved</th>\
             <th>observed</th><th>baseline</th><th>score</th></tr>\n",
        );
        for a in &self.anomalies {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}={}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>",
                escape(&a.rule),
                escape(&a.severity),
                escape(&a.severity),
                escape(&a.dimension),
                escape(&short(&a.value)),
                escape(&a.first_seen),
                escape(a.resolved_at.as_deref().unwrap_or("–")),
                a.observed,
                a.baseline,
                a.score
            );
        }
        out.push_str("</table></section>\n");
    }
}

fn capitalised(title: &str) -> String {
    let mut chars = title.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn figure(out: &mut String, id: &str, caption: &str, svg: &str) {
    let _ = writeln!(
        out,
        "<figure id=\"{id}\"><figcaption>{}</figcaption>{svg}</figure>",
        escape(caption)
    );
}

fn ranked_table(out: &mut String, title: &str, list: &[Ranked]) {
    let _ = writeln!(
        out,
        "<table><tr><th>{}</th><th>cost</th><th>share</th><th>requests</th><th>sessions</th></tr>",
        escape(title)
    );
    for r in list {
        let _ = writeln!(
            out,
            "<tr><td title=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.name),
            escape(&short(&r.name)),
            usd(r.cost_usd),
            pct(r.share),
            r.requests,
            r.sessions
        );
    }
    out.push_str("</table>\n");
}

fn ranked_bars(list: &[Ranked]) -> Vec<(String, f64)> {
    list.iter()
        .take(10)
        .map(|r| (short(&r.name), r.cost_usd))
        .collect()
}

fn svg_open(height: f64, label: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"{}\">",
        escape(label)
    )
}

fn no_data(height: f64) -> String {
    format!(
        "{}<text class=\"empty\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">no spend in this period</text></svg>",
        svg_open(height, "no data"),
        WIDTH / 2.0,
        height / 2.0
    )
}

/// A "nice" axis maximum at or above `max`: 1, 2 or 5 times a power of ten.
fn axis_max(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|step| step * power)
        .find(|candidate| *candidate >= max)
        .unwrap_or(10.0 * power)
}

/// Horizontal grid lines with their dollar labels, for charts whose y axis is spend.
fn y_axis(out: &mut String, top: f64, plot_height: f64) {
    for i in 0..=4 {
        let value = top * f64::from(i) / 4.0;
        let y = MARGIN_TOP + plot_height * (1.0 - f64::from(i) / 4.0);
        let _ = write!(
            out,
            "<line x1=\"{MARGIN_LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eceef2\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            WIDTH - 8.0,
            MARGIN_LEFT - 6.0,
            y + 4.0,
            if i == 0 {
                "$0".to_string()
            } else {
                escape(&usd(value))
            }
        );
    }
}

/// Vertical bars, one per label; every `label_every`-th label is written under its bar.
fn column_chart(values: &[(String, f64)], label_every: usize) -> String {
    let max = values.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    if max <= 0.0 {
        return no_data(HEIGHT);
    }
    let top = axis_max(max);
    let plot_height = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let slot = (WIDTH - MARGIN_LEFT - 8.0) / values.len() as f64;
    let mut out = svg_open(HEIGHT, "column chart");
    y_axis(&mut out, top, plot_height);
    for (i, (label, value)) in values.iter().enumerate() {
        let h = plot_height * value.max(0.0) / top;
        let x = MARGIN_LEFT + slot * i as f64 + slot * 0.15;
        let _ = write!(
            out,
            "<rect class=\"bar\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\"><title>{}: {}</title></rect>",
            MARGIN_TOP + plot_height - h,
            slot * 0.7,
            PALETTE[0],
            escape(label),
            escape(&usd(*value))
        );
        if i % label_every.max(1) == 0 {
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                x + slot * 0.35,
                HEIGHT - 10.0,
                escape(label)
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// Horizontal bars, largest first as given, each labelled with its name and value.
fn bar_chart(values: &[(String, f64)]) -> String {
    let max = values.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    if max <= 0.0 {
        return no_data(HEIGHT);
    }
    let row = 22.0;
    let label_width = 150.0;
    let value_width = 80.0;
    let height = MARGIN_TOP * 2.0 + row * values.len() as f64;
    let span = WIDTH - label_width - value_width;
    let mut out = svg_open(height, "bar chart");
    for (i, (label, value)) in values.iter().enumerate() {
        let y = MARGIN_TOP + row * i as f64;
        let w = (span * value.max(0.0) / max).max(1.0);
        let name: String = label.chars().take(22).collect();
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <rect class=\"bar\" x=\"{label_width}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{}: {}</title></rect>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            label_width - 8.0,
            y + row * 0.65,
            escape(&name),
            y + 3.0,
            row - 6.0,
            PALETTE[i % PALETTE.len()],
            escape(label),
            escape(&usd(*value)),
            label_width + w + 6.0,
            y + row * 0.65,
            escape(&usd(*value))
        );
    }
    out.push_str("</svg>");
    out
}

/// A line through the values with a dot on each; every fifth label is written.
fn line_chart(values: &[(String, f64)]) -> String {
    let max = values.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    if max <= 0.0 || values.len() < 2 {
        return no_data(HEIGHT);
    }
    let top = axis_max(max);
    let plot_height = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let step = (WIDTH - MARGIN_LEFT - 16.0) / (values.len() - 1) as f64;
    let point = |i: usize, v: f64| {
        (
            MARGIN_LEFT + 4.0 + step * i as f64,
            MARGIN_TOP + plot_height * (1.0 - v.max(0.0) / top),
        )
    };
    let mut out = svg_open(HEIGHT, "line chart");
    y_axis(&mut out, top, plot_height);
    let path: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, (_, v))| {
            let (x, y) = point(i, *v);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let _ = write!(
        out,
        "<polyline class=\"line\" points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>",
        path.join(" "),
        PALETTE[0]
    );
    for (i, (label, value)) in values.iter().enumerate() {
        let (x, y) = point(i, *value);
        let _ = write!(
            out,
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{}\"><title>{}: {}</title></circle>",
            PALETTE[0],
            escape(label),
            escape(&usd(*value))
        );
        if i % 5 == 0 || i == values.len() - 1 {
            // The last label ends at its point so it stays inside the chart.
            let anchor = if i == values.len() - 1 {
                "end"
            } else {
                "middle"
            };
            let _ = write!(
                out,
                "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>",
                HEIGHT - 10.0,
                escape(label)
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// Text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_in_names() {
        assert_eq!(
            escape("<script>\"x\" & 'y'</script>"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn axis_maximum_is_a_round_number_at_or_above_the_data() {
        assert_eq!(axis_max(0.0), 1.0);
        assert_eq!(axis_max(0.7), 1.0);
        assert_eq!(axis_max(1.0), 1.0);
        assert_eq!(axis_max(1.2), 2.0);
        assert_eq!(axis_max(37.0), 50.0);
        assert_eq!(axis_max(501.0), 1000.0);
    }

    #[test]
    fn charts_have_one_mark_per_value_and_say_when_empty() {
        let values: Vec<(String, f64)> =
            (0..24).map(|h| (format!("{h:02}"), f64::from(h))).collect();
        let svg = column_chart(&values, 3);
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 24);
        assert_eq!(line_chart(&values).matches("<circle").count(), 24);
        assert_eq!(bar_chart(&values[..5]).matches("<rect").count(), 5);
        assert!(column_chart(&[("00".into(), 0.0)], 1).contains("no spend"));
    }
}
