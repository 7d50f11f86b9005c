//! The look shared by cachelab's HTML pages (a lab run's report, a single load run): one
//! document with its CSS inline, escaped text, tables, and charts inlined as SVG. A page is
//! opened offline and passed around, so it names no URL and fetches nothing; it is also
//! well-formed XML, so that a test (or any XML tool) can read it back whole.

use std::fmt::Write;

use serde_json::Value;

use super::charts::{self, Chart, ChartKind, Series};
use super::ChartSpec;
use crate::output::format_float;

/// `text` made safe as element content or a quoted attribute value. Characters XML does
/// not allow at all (most control characters) become U+FFFD, so a stray byte in a lab's
/// note cannot make the page unreadable.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if allowed_in_xml(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
    out
}

fn allowed_in_xml(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// Text for a chart, which plotters escapes for markup but not for characters XML forbids.
fn chart_text(text: &str) -> String {
    text.chars()
        .map(|c| if allowed_in_xml(c) { c } else { '\u{FFFD}' })
        .collect()
}

/// The whole page: `title` in the browser's tab, `body` (already HTML) inside `<main>`.
pub fn document(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n{body}</main>\n</body>\n</html>\n",
        escape(title)
    )
}

/// A chart drawn as inline SVG of `width` × `height` (CSS scales it down to the column it
/// sits in). A chart that cannot be drawn says so in its place instead of costing the page.
pub fn chart(spec: &ChartSpec, (width, height): (u32, u32)) -> String {
    let chart = Chart {
        title: chart_text(&spec.title),
        x_label: chart_text(&spec.x),
        y_label: chart_text(&spec.y),
        kind: if spec.kind == "bar" {
            ChartKind::Bar
        } else {
            ChartKind::Line
        },
        series: spec
            .series
            .iter()
            .map(|(name, points)| Series {
                name: chart_text(name),
                points: points.clone(),
            })
            .collect(),
        x_categories: spec.categories.iter().map(|c| chart_text(c)).collect(),
        y_log: false,
    };
    match charts::render_svg(&chart, width, height) {
        Ok(svg) => format!("<figure class=\"chart\">\n{svg}</figure>\n"),
        Err(e) => format!(
            "<p class=\"problem\">The chart “{}” could not be drawn: {}</p>\n",
            escape(&spec.title),
            escape(&format!("{e:#}"))
        ),
    }
}

/// A value as the text report prints it in a table cell: integers as they are, floats
/// with at most three decimals, nothing (null) as a dash.
pub fn cell_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (None, Some(u), _) => u.to_string(),
            (None, None, Some(f)) => format_float(f),
            _ => n.to_string(),
        },
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

/// A titled table: numbers right-aligned, text left-aligned, as in the text report.
pub fn table(title: &str, columns: &[String], rows: &[Vec<Value>]) -> String {
    let mut html = String::from("<div class=\"scroll\">\n<table class=\"data\">\n");
    if !title.is_empty() {
        let _ = writeln!(html, "<caption>{}</caption>", escape(title));
    }
    html.push_str("<thead><tr>");
    for column in columns {
        let _ = write!(html, "<th>{}</th>", escape(column));
    }
    html.push_str("</tr></thead>\n<tbody>\n");
    for row in rows {
        html.push_str("<tr>");
        for value in row {
            let class = if value.is_number() {
                " class=\"num\""
            } else {
                ""
            };
            let _ = write!(html, "<td{class}>{}</td>", escape(&cell_text(value)));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</tbody>\n</table>\n</div>\n");
    html
}

/// Light, print-friendly, readable from a phone to a 1280 px screen; the only fonts are the
/// reader's own. Failures are red and boxed so they are found at a glance.
const STYLE: &str = r#"
:root {
  --text: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa;
  --ok: #1a7f37; --ok-soft: #dafbe1; --bad: #cf222e; --bad-soft: #ffebe9;
  --accent: #0072b2;
}
* { box-sizing: border-box; }
html { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { margin: 0; color: var(--text); background: #fff;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 28px 32px 56px; }
h1 { font-size: 26px; margin: 0 0 2px; }
h2 { font-size: 20px; margin: 0; display: flex; align-items: center; gap: 10px; flex-wrap: wrap; }
h3 { font-size: 15px; margin: 0 0 8px; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
code, .mono { font-family: ui-monospace, "SF Mono", Menlo, Consolas, "Liberation Mono", monospace; font-size: 13px; }
.muted { color: var(--muted); }
.subtitle { color: var(--muted); margin: 0 0 18px; }
.totals { font-size: 17px; font-weight: 600; padding: 12px 16px; border-radius: 8px; margin: 0 0 16px;
  border: 1px solid; }
.totals.pass { background: var(--ok-soft); border-color: #aceebb; color: #116329; }
.totals.fail { background: var(--bad-soft); border-color: #ffcecb; color: #a40e26; }
.failures { border: 1px solid #ffcecb; border-radius: 8px; padding: 10px 16px; margin: 0 0 16px; }
.failures h3 { color: #a40e26; margin: 0 0 4px; }
.failures ul { margin: 0; padding-left: 18px; }
.failures li { color: #82071e; }
.badge { display: inline-block; font-size: 12px; font-weight: 700; letter-spacing: .04em;
  padding: 2px 8px; border-radius: 999px; color: #fff; vertical-align: middle; }
.badge.pass { background: var(--ok); }
.badge.fail { background: var(--bad); }
.badge.skip { background: #777; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 14px; }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
caption { text-align: left; font-weight: 600; padding: 0 0 6px; }
table.labs { width: 100%; margin-bottom: 28px; }
table.labs tr.fail td { background: var(--bad-soft); }
table.labs td.mark { width: 1.5em; font-weight: 700; }
tr.pass td.mark { color: var(--ok); }
tr.fail td.mark { color: var(--bad); }
section.lab { border: 1px solid var(--line); border-left: 6px solid var(--ok); border-radius: 8px;
  padding: 18px 22px 20px; margin: 0 0 24px; }
section.lab.fail { border-left-color: var(--bad); }
section.lab > header { margin-bottom: 10px; }
.meta { color: var(--muted); margin: 2px 0 0; font-size: 14px; }
.description { max-width: 88ch; color: #31373d; }
.description p { margin: 6px 0; }
ul.checks { list-style: none; margin: 12px 0; padding: 0; }
ul.checks li { padding: 3px 8px; border-radius: 4px; }
ul.checks li .mark { display: inline-block; width: 1.1em; font-weight: 700; }
ul.checks li.pass .mark { color: var(--ok); }
ul.checks li.fail { background: var(--bad-soft); color: #82071e; font-weight: 600; }
ul.checks li.fail .mark { color: var(--bad); }
.line-no { color: var(--muted); font-weight: 400; font-size: 13px; margin-left: 2px; }
p.note { white-space: pre-wrap; margin: 10px 0; padding: 6px 12px; background: var(--soft);
  border-left: 3px solid var(--line); border-radius: 0 4px 4px 0; font-size: 14px; }
.outcome { white-space: pre-wrap; margin: 12px 0 0; padding: 10px 14px; border-radius: 6px;
  background: var(--bad-soft); border: 1px solid #ffcecb; color: #82071e; font-weight: 600; }
.problem { color: var(--bad); }
.block { margin: 16px 0; break-inside: avoid; }
.load { border-top: 1px dashed var(--line); padding-top: 14px; }
.load h3 .kind { color: var(--muted); font-weight: 400; }
table.figures { margin: 0 0 8px; width: 100%; font-size: 13px; }
table.figures th, table.figures td { padding: 4px 8px; }
table.figures td.bad { color: var(--bad); font-weight: 700; }
.aside { color: var(--muted); font-size: 13px; margin: 0 0 10px; }
.charts { display: grid; grid-template-columns: 2fr 3fr; gap: 12px; align-items: start; }
.charts.three { grid-template-columns: 1fr 1fr; }
.charts.three > :last-child { grid-column: 1 / -1; }
figure.chart { margin: 0; border: 1px solid var(--line); border-radius: 6px; overflow: hidden;
  background: #fff; break-inside: avoid; }
figure.chart svg { display: block; width: 100%; height: auto; }
.lab-chart figure.chart { max-width: 900px; }
@media (max-width: 900px) { .charts, .charts.three { grid-template-columns: 1fr; } main { padding: 16px; } }
@media print {
  main { max-width: none; padding: 0; }
  .scroll { overflow: visible; }
  table.figures th, table.figures td { padding: 3px 4px; font-size: 10.5px; }
  table.figures th { white-space: normal; }
  table.figures td[data-key="seed"] { white-space: normal; overflow-wrap: anywhere; }
  .charts, .charts.three { display: block; }
  figure.chart { width: fit-content; max-width: 100%; margin: 0 0 8px; }
  figure.chart svg { width: auto; max-width: 100%; }
  section.lab { break-inside: auto; padding: 12px 14px; }
  a { color: inherit; }
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_text_reads_back_unchanged_and_forbidden_characters_are_replaced() {
        let text = "a<b & \"c\" 'd' \u{1} ✓";
        let page = format!("<p title=\"{0}\">{0}</p>", escape(text));
        let doc = roxmltree::Document::parse(&page).expect("well-formed");
        let p = doc.root_element();
        let expected = "a<b & \"c\" 'd' \u{FFFD} ✓";
        assert_eq!(p.text(), Some(expected));
        assert_eq!(p.attribute("title"), Some(expected));
    }

    #[test]
    fn table_cells_read_like_the_text_report() {
        let html = table(
            "t",
            &["a".into(), "b".into(), "c".into(), "d".into()],
            &[vec![
                serde_json::json!(3),
                serde_json::json!(1.0163399999999998),
                serde_json::json!(null),
                serde_json::json!(u64::MAX),
            ]],
        );
        assert!(html.contains("<td class=\"num\">3</td>"), "{html}");
        assert!(html.contains("<td class=\"num\">1.016</td>"), "{html}");
        assert!(html.contains("<td>-</td>"), "{html}");
        assert!(html.contains(&format!(">{}</td>", u64::MAX)), "{html}");
    }

    #[test]
    fn the_page_parses_as_xml_and_fetches_nothing() {
        let spec = ChartSpec {
            title: "bell\u{7}".into(),
            x: "x".into(),
            y: "y".into(),
            kind: "line".into(),
            series: vec![("a\u{0}b".into(), vec![(0.0, 1.0), (1.0, 2.0)])],
            categories: Vec::new(),
        };
        let page = document("t <&>", &chart(&spec, (400, 300)));
        roxmltree::Document::parse_with_options(
            &page,
            roxmltree::ParsingOptions {
                allow_dtd: true,
                ..Default::default()
            },
        )
        .expect("well-formed");
        let outside = page.replace("http://www.w3.org/2000/svg", "");
        assert!(!outside.contains("http://") && !outside.contains("https://"));
        assert!(!outside.contains("url(") && !outside.contains("@import"));
    }
}
