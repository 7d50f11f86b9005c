//! A load run on a page: its figures in a one-row table, its latency percentiles as bars,
//! and its timeline (requests, hits, misses, stale, coalesced and Postgres reads per
//! interval) as lines. A lab's `load()` / `stampede()` and a `cachelab load` run get the
//! same section; only the names of their JSON fields differ, so each has its own list.

use std::fmt::Write;

use serde_json::Value;

use super::page::{cell_text, chart, escape};
use super::ChartSpec;

/// A figure of the table: its JSON key (also the cell's `data-key`, so the page can be
/// read back against the JSON report) and the heading shown.
type Column = (&'static str, &'static str);

const LAB_COLUMNS: [Column; 13] = [
    ("requests", "requests"),
    ("ok", "ok"),
    ("errors", "errors"),
    ("rps", "req/s"),
    ("p50", "p50 ms"),
    ("p90", "p90 ms"),
    ("p99", "p99 ms"),
    ("p999", "p99.9 ms"),
    ("max", "max ms"),
    ("hits", "hits"),
    ("misses", "misses"),
    ("db_reads", "Postgres reads"),
    ("seed", "seed"),
];

const LAB_PERCENTILES: [Column; 5] = [
    ("p50", "p50"),
    ("p90", "p90"),
    ("p99", "p99"),
    ("p999", "p99.9"),
    ("max", "max"),
];

const CLI_COLUMNS: [Column; 13] = [
    ("requests", "requests"),
    ("ok", "ok"),
    ("errors", "errors"),
    ("rps", "req/s"),
    ("total_s", "total s"),
    ("fastest_ms", "fastest ms"),
    ("average_ms", "average ms"),
    ("p50_ms", "p50 ms"),
    ("p90_ms", "p90 ms"),
    ("p99_ms", "p99 ms"),
    ("p999_ms", "p99.9 ms"),
    ("slowest_ms", "slowest ms"),
    ("seed", "seed"),
];

const CLI_PERCENTILES: [Column; 9] = [
    ("p10_ms", "p10"),
    ("p25_ms", "p25"),
    ("p50_ms", "p50"),
    ("p75_ms", "p75"),
    ("p90_ms", "p90"),
    ("p95_ms", "p95"),
    ("p99_ms", "p99"),
    ("p999_ms", "p99.9"),
    ("slowest_ms", "max"),
];

/// Chart sizes before CSS fits them to their columns: a lab's load has two charts side by
/// side (2 : 3, the grid's split); `cachelab load`'s page has two over one wide timeline.
const PERCENTILES_SIZE: (u32, u32) = (440, 300);
const TIMELINE_SIZE: (u32, u32) = (660, 300);
const HALF_SIZE: (u32, u32) = (560, 300);
const WIDE_TIMELINE_SIZE: (u32, u32) = (1130, 340);

/// The section for one `load()` or `stampede()` of a lab, from the figures it returned.
pub fn lab_load(label: &str, figures: &Value) -> String {
    let timeline = Timeline::new(figures, |entry, name| entry[name].as_f64().unwrap_or(0.0));
    let series = [
        timeline.series("requests", "requests", true),
        timeline.series("hits", "hits", true),
        timeline.series("misses", "misses", true),
        timeline.series("stale", "stale", false),
        timeline.series("coalesced", "coalesced", false),
        timeline.series("Postgres reads", "db_reads", true),
    ];
    let mut html = heading(label, figures, &LAB_COLUMNS);
    html.push_str("<div class=\"charts\">\n");
    html.push_str(&chart(
        &percentiles(figures, &LAB_PERCENTILES),
        PERCENTILES_SIZE,
    ));
    html.push_str(&timeline.chart(series, TIMELINE_SIZE));
    html.push_str("</div>\n</div>\n");
    html
}

/// The section for a `cachelab load` run, from its `--json` figures and hey's histogram
/// (bucket start in ms → responses).
pub fn cli_load(label: &str, figures: &Value, histogram: &[(f64, u64)]) -> String {
    // The X-Cache values sit in a map per interval; a server that sends none leaves
    // only the requests line.
    let timeline = Timeline::new(figures, |entry, name| match name {
        "requests" | "errors" => entry[name].as_f64().unwrap_or(0.0),
        value => entry["cache"][value].as_f64().unwrap_or(0.0),
    });
    let mut series = vec![
        timeline.series("requests", "requests", true),
        timeline.series("errors", "errors", false),
        timeline.series("hits", "HIT", false),
        timeline.series("misses", "MISS", false),
        timeline.series("stale", "STALE", false),
        timeline.series("coalesced", "COALESCED", false),
    ];
    if let Some(cache) = figures["cache"].as_object() {
        for value in cache.keys() {
            if !["HIT", "MISS", "STALE", "COALESCED"].contains(&value.as_str()) {
                series.push(timeline.series(&format!("X-Cache {value}"), value, false));
            }
        }
    }
    let mut html = heading(label, figures, &CLI_COLUMNS);
    html.push_str("<div class=\"charts three\">\n");
    let buckets = ChartSpec {
        title: "Response time histogram".into(),
        x: "latency from (ms)".into(),
        y: "responses".into(),
        kind: "bar".into(),
        series: vec![(
            "responses".into(),
            (0..histogram.len())
                .map(|i| (i as f64, histogram[i].1 as f64))
                .collect(),
        )],
        categories: histogram.iter().map(|(ms, _)| ms_label(*ms)).collect(),
    };
    html.push_str(&chart(&buckets, HALF_SIZE));
    html.push_str(&chart(&percentiles(figures, &CLI_PERCENTILES), HALF_SIZE));
    html.push_str(&timeline.chart(series, WIDE_TIMELINE_SIZE));
    html.push_str("</div>\n</div>\n");
    html
}

/// The section's opening: its title, the figures table, and one line for the status
/// codes, X-Cache values and errors by kind. Leaves the section's `<div>` open.
fn heading(label: &str, figures: &Value, columns: &[Column]) -> String {
    let mut html = String::from("<div class=\"block load\">\n");
    let (kind, target) = label.split_once(' ').unwrap_or((label, ""));
    let _ = writeln!(
        html,
        "<h3><span class=\"kind\">{}</span> {}</h3>",
        escape(kind),
        escape(target)
    );
    html.push_str("<div class=\"scroll\">\n<table class=\"figures\">\n<thead><tr>");
    let shown: Vec<&Column> = columns
        .iter()
        .filter(|(key, _)| !figures[key].is_null())
        .collect();
    for (_, heading) in &shown {
        let _ = write!(html, "<th class=\"num\">{}</th>", escape(heading));
    }
    html.push_str("</tr></thead>\n<tbody><tr>");
    for (key, _) in &shown {
        let value = &figures[key];
        let bad = *key == "errors" && value.as_u64().is_some_and(|n| n > 0);
        let class = if bad { "num bad" } else { "num" };
        let _ = write!(
            html,
            "<td class=\"{class}\" data-key=\"{key}\">{}</td>",
            escape(&cell_text(value))
        );
    }
    html.push_str("</tr></tbody>\n</table>\n</div>\n");
    let mut aside = Vec::new();
    for (key, name) in [
        ("status", "status"),
        ("cache", "X-Cache"),
        ("error_kinds", "errors"),
    ] {
        let Some(counts) = figures[key].as_object().filter(|m| !m.is_empty()) else {
            continue;
        };
        let counts: Vec<String> = counts
            .iter()
            .map(|(what, n)| format!("{what} × {}", cell_text(n)))
            .collect();
        aside.push(format!("{name}: {}", counts.join(", ")));
    }
    if !aside.is_empty() {
        let _ = writeln!(
            html,
            "<p class=\"aside\">{}</p>",
            escape(&aside.join(" · "))
        );
    }
    html
}

/// The latency percentiles as bars over named categories.
fn percentiles(figures: &Value, columns: &[Column]) -> ChartSpec {
    let shown: Vec<(&str, f64)> = columns
        .iter()
        .filter_map(|(key, name)| Some((*name, figures[key].as_f64()?)))
        .collect();
    ChartSpec {
        title: "Latency percentiles".into(),
        x: "percentile".into(),
        y: "latency (ms)".into(),
        kind: "bar".into(),
        series: vec![(
            "latency".into(),
            shown
                .iter()
                .enumerate()
                .map(|(i, (_, ms))| (i as f64, *ms))
                .collect(),
        )],
        categories: shown.iter().map(|(name, _)| name.to_string()).collect(),
    }
}

/// A bucket boundary in ms, short enough for an axis label.
fn ms_label(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

/// Timelines with fewer intervals than this are drawn as bars.
const SHORTEST_LINE: usize = 3;

/// A run's timeline entries and how to read a count out of one.
struct Timeline<'a> {
    interval_ms: u64,
    entries: &'a [Value],
    /// A count of an entry by name; 0 when the entry does not have it.
    read: fn(&Value, &str) -> f64,
}

/// One line of the timeline chart, or why it was left out.
enum Line {
    Drawn(String, Vec<(f64, f64)>),
    /// Zero in every interval and not one of the lines always drawn.
    AllZero(String),
}

impl<'a> Timeline<'a> {
    fn new(figures: &'a Value, read: fn(&Value, &str) -> f64) -> Self {
        Self {
            interval_ms: figures["interval_ms"].as_u64().unwrap_or(100),
            entries: figures["timeline"].as_array().map_or(&[], Vec::as_slice),
            read,
        }
    }

    /// The line `name` drawn from field `field` of each entry; one that is zero
    /// throughout is drawn only when `always`.
    fn series(&self, name: &str, field: &str, always: bool) -> Line {
        let points: Vec<(f64, f64)> = self
            .entries
            .iter()
            .filter_map(|entry| {
                let start = entry["start_ms"].as_f64()?;
                Some((start, (self.read)(entry, field)))
            })
            .collect();
        if always || points.iter().any(|&(_, y)| y != 0.0) {
            Line::Drawn(name.to_string(), points)
        } else {
            Line::AllZero(name.to_string())
        }
    }

    /// The chart of the drawn lines, with a line under it naming those left out.
    fn chart(&self, lines: impl IntoIterator<Item = Line>, size: (u32, u32)) -> String {
        let mut series = Vec::new();
        let mut zero = Vec::new();
        for line in lines {
            match line {
                Line::Drawn(name, points) => series.push((name, points)),
                Line::AllZero(name) => zero.push(name),
            }
        }
        let mut spec = ChartSpec {
            title: format!("Per {} ms interval", self.interval_ms),
            x: "time since the start (ms)".into(),
            y: "per interval".into(),
            kind: "line".into(),
            series,
            categories: Vec::new(),
        };
        // A burst over in an interval or two makes lines of one or two points, drawn on
        // top of each other: bars side by side show the same counts readably.
        if self.entries.len() < SHORTEST_LINE {
            spec.kind = "bar".into();
            spec.x = "interval".into();
            for (_, points) in &mut spec.series {
                for (index, point) in points.iter_mut().enumerate() {
                    point.0 = index as f64;
                }
            }
            spec.categories = self
                .entries
                .iter()
                .filter_map(|entry| entry["start_ms"].as_u64())
                .map(|start| format!("{start}–{} ms", start + self.interval_ms))
                .collect();
        }
        let mut html = String::from("<div>\n");
        html.push_str(&chart(&spec, size));
        if !zero.is_empty() {
            let _ = writeln!(
                html,
                "<p class=\"aside\">Not drawn, 0 in every interval: {}.</p>",
                escape(&zero.join(", "))
            );
        }
        html.push_str("</div>\n");
        html
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn figures(intervals: usize) -> Value {
        let timeline: Vec<Value> = (0..intervals)
            .map(|i| {
                json!({"start_ms": i * 100, "requests": 10, "ok": 9, "errors": 1, "hits": 6,
                       "misses": 4, "stale": 0, "coalesced": 0, "db_reads": 4, "p50": 1.0, "p99": 2.0})
            })
            .collect();
        json!({"requests": 10 * intervals, "ok": 9 * intervals, "errors": intervals, "rps": 100.0,
               "p50": 1.5, "p90": 2.0, "p99": 3.25, "p999": 4.0, "max": 4.0, "seed": 7,
               "interval_ms": 100, "timeline": timeline, "status": {"200": 9 * intervals},
               "error_kinds": {"connection refused": intervals}})
    }

    #[test]
    fn a_long_timeline_is_lines_and_a_burst_of_one_interval_is_bars_named_by_interval() {
        let long = lab_load("load /users/{id}", &figures(12));
        assert_eq!(long.matches("<svg").count(), 2);
        assert!(!long.contains("0–100 ms"), "a line chart has a time axis");

        let burst = lab_load("stampede /users/42 × 50", &figures(1));
        assert!(
            burst.contains("0–100 ms"),
            "the interval names its bar group"
        );
    }

    #[test]
    fn lines_zero_throughout_are_named_instead_of_drawn_and_errors_stand_out() {
        let html = lab_load("load /users/{id}", &figures(5));
        assert!(
            html.contains("Not drawn, 0 in every interval: stale, coalesced."),
            "{html}"
        );
        assert!(html.contains("<td class=\"num bad\" data-key=\"errors\">5</td>"));
        assert!(html.contains("errors: connection refused × 5"));
        assert!(html.contains("<td class=\"num\" data-key=\"p99\">3.25</td>"));
    }
}
