//! Load runs on a page, all from their typed `LoadRun`: a lab's loads as one compact table
//! (a row each: label, requests, hit ratio, p50, p99, Postgres reads, errors) with each
//! run's detail folded in a `<details>` below it, and `cachelab load`'s page with the same
//! detail open. The detail: every figure, the status / X-Cache / error counts, the events
//! of the run, the latency percentiles, the timeline as per-interval steps (bars for a
//! burst of one or two intervals) with events as markers and the partial last interval
//! shaded, and, with a history, stale reads over time.

use std::fmt::Write;

use super::charts::{Chart, ChartKind, Marker, Series};
use super::page::{chart, escape};
use crate::load::{Interval, LoadRun};
use crate::output::format_float;
use crate::xcache::XCache;

/// Chart sizes before CSS fits them to their columns.
const HALF_SIZE: (u32, u32) = (560, 300);
const WIDE_SIZE: (u32, u32) = (1130, 340);

/// Timelines with fewer intervals than this are drawn as bars named by their interval.
const SHORTEST_STEPS: usize = 3;

/// The id of a load's detail on the page: the compact table's rows link to it.
pub fn anchor(lab: usize, load: usize) -> String {
    format!("lab-{}-load-{}", lab + 1, load + 1)
}

/// One lab's loads: a compact table, then each run's detail, folded.
pub fn lab_loads(lab: usize, runs: &[&LoadRun]) -> String {
    if runs.is_empty() {
        return String::new();
    }
    let mut html = String::from(
        "<div class=\"block loads\">\n<div class=\"scroll\">\n<table class=\"loads\">\n\
         <caption>Loads</caption>\n<thead><tr><th>label</th><th class=\"num\">requests</th>\
         <th class=\"num\">hit ratio</th><th class=\"num\">p50 ms</th><th class=\"num\">p99 ms</th>\
         <th class=\"num\">Postgres reads</th><th class=\"num\">errors</th></tr></thead>\n<tbody>\n",
    );
    let labels: Vec<&str> = runs.iter().map(|r| r.label.as_str()).collect();
    let names = shown_labels(&labels);
    for (index, run) in runs.iter().enumerate() {
        let bad = if run.errors > 0 { " bad" } else { "" };
        let db_reads = run.db_reads().map_or("-".to_string(), |n| n.to_string());
        let _ = writeln!(
            html,
            "<tr><td><a href=\"#{}\">{}</a></td><td class=\"num\" data-key=\"requests\">{}</td>\
             <td class=\"num\" data-key=\"hit_ratio\">{}</td><td class=\"num\" data-key=\"p50_ms\">{}</td>\
             <td class=\"num\" data-key=\"p99_ms\">{}</td><td class=\"num\" data-key=\"db_reads\">{db_reads}</td>\
             <td class=\"num{bad}\" data-key=\"errors\">{}</td></tr>",
            anchor(lab, index),
            escape(&names[index]),
            run.requests,
            run.known_hit_ratio().map_or("-".to_string(), percent),
            format_float(run.p50_ms),
            format_float(run.p99_ms),
            run.errors
        );
    }
    html.push_str("</tbody>\n</table>\n</div>\n");
    for (index, run) in runs.iter().enumerate() {
        let _ = writeln!(
            html,
            "<details class=\"load\" id=\"{}\">\n<summary>{}</summary>",
            anchor(lab, index),
            escape(&names[index])
        );
        html.push_str(&detail(run, false));
        html.push_str("</details>\n");
    }
    html.push_str("</div>\n");
    html
}

/// The runs' labels, numbered where several runs share one (`load /users/{id} #2`), so
/// that rows and details can be told apart; a unique label is kept as it is.
fn shown_labels(labels: &[&str]) -> Vec<String> {
    let mut seen = std::collections::HashMap::new();
    labels
        .iter()
        .map(|&label| {
            let shared = labels.iter().filter(|&&l| l == label).count() > 1;
            let n = seen.entry(label).or_insert(0);
            *n += 1;
            if shared {
                format!("{label} #{n}")
            } else {
                label.to_string()
            }
        })
        .collect()
}

/// `cachelab load`'s run: its label, then its detail, open.
pub fn cli_load(run: &LoadRun) -> String {
    let mut html = String::from("<div class=\"block load\">\n");
    let _ = writeln!(html, "<h2>{}</h2>", escape(&run.label));
    html.push_str(&detail(run, true));
    html.push_str("</div>\n");
    html
}

fn percent(ratio: f64) -> String {
    format!("{:.1}%", ratio * 100.0)
}

/// Every figure, the counts, the events and the charts of a run.
fn detail(run: &LoadRun, cli: bool) -> String {
    let mut html = figures_table(run);
    html.push_str(&counts(run));
    html.push_str(&consistency(run));
    html.push_str(&events(run));
    html.push_str("<div class=\"charts\">\n");
    if cli && !run.histogram.is_empty() {
        html.push_str(&chart(&histogram(run), HALF_SIZE));
    }
    html.push_str(&chart(&percentiles(run, cli), HALF_SIZE));
    html.push_str("</div>\n");
    html.push_str(&timeline(run));
    if let Some(stale) = stale_reads(run) {
        html.push_str(&chart(&stale, WIDE_SIZE));
    }
    html
}

/// One row of figures, each cell naming its JSON key.
fn figures_table(run: &LoadRun) -> String {
    let mut cells: Vec<(&str, &str, String)> = vec![
        ("requests", "requests", run.requests.to_string()),
        ("ok", "ok", run.ok.to_string()),
        ("errors", "errors", run.errors.to_string()),
        ("rps", "req/s", format_float(run.rps)),
        ("duration_s", "time s", format_float(run.duration_s)),
        ("fastest_ms", "fastest ms", format_float(run.fastest_ms)),
        ("average_ms", "average ms", format_float(run.average_ms)),
        ("p50_ms", "p50 ms", format_float(run.p50_ms)),
        ("p90_ms", "p90 ms", format_float(run.p90_ms)),
        ("p99_ms", "p99 ms", format_float(run.p99_ms)),
        ("p999_ms", "p99.9 ms", format_float(run.p999_ms)),
        ("max_ms", "max ms", format_float(run.max_ms)),
    ];
    if let Some(ratio) = run.known_hit_ratio() {
        cells.push(("hit_ratio", "hit ratio", percent(ratio)));
    }
    if let Some(n) = run.db_reads() {
        cells.push(("db_reads", "Postgres reads", n.to_string()));
    }
    if run.keyed {
        cells.push(("seed", "seed", run.seed.to_string()));
    }
    let mut html = String::from("<div class=\"scroll\">\n<table class=\"figures\">\n<thead><tr>");
    for (_, heading, _) in &cells {
        let _ = write!(html, "<th class=\"num\">{}</th>", escape(heading));
    }
    html.push_str("</tr></thead>\n<tbody><tr>");
    for (key, _, value) in &cells {
        let bad = *key == "errors" && run.errors > 0;
        let class = if bad { "num bad" } else { "num" };
        let _ = write!(
            html,
            "<td class=\"{class}\" data-key=\"{key}\">{}</td>",
            escape(value)
        );
    }
    html.push_str("</tr></tbody>\n</table>\n</div>\n");
    html
}

/// Status codes, X-Cache values, errors by kind, and the GET/PUT split, on one line.
fn counts(run: &LoadRun) -> String {
    let mut aside = Vec::new();
    let list = |pairs: Vec<(String, u64)>| {
        pairs
            .iter()
            .map(|(what, n)| format!("{what} × {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(mix) = run.mix {
        aside.push(format!("GET × {}, PUT × {}", mix.gets, mix.puts));
    }
    if !run.status.is_empty() {
        let pairs = run.status.iter().map(|(k, n)| (k.clone(), *n)).collect();
        aside.push(format!("status: {}", list(pairs)));
    }
    let seen = run.cache.seen();
    if !seen.is_empty() {
        let pairs = seen.iter().map(|(k, n)| (k.to_string(), *n)).collect();
        aside.push(format!("X-Cache: {}", list(pairs)));
    }
    if !run.error_kinds.is_empty() {
        let pairs = run
            .error_kinds
            .iter()
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        aside.push(format!("errors: {}", list(pairs)));
    }
    if run.cancelled {
        aside.push("stopped early, before the planned end".into());
    }
    if aside.is_empty() {
        return String::new();
    }
    format!("<p class=\"aside\">{}</p>\n", escape(&aside.join(" · ")))
}

/// The history checker's verdict in words.
fn consistency(run: &LoadRun) -> String {
    let Some(v) = &run.consistency else {
        return String::new();
    };
    let class = if v.stale_reads > 0 { "bad" } else { "good" };
    let mut text = if v.stale_reads > 0 {
        format!(
            "Stale reads: {} of {} reads judged returned a value already overwritten (stalest by {} ms).",
            v.stale_reads,
            v.reads,
            format_float(v.max_stale_ms)
        )
    } else {
        format!(
            "No stale reads: none of the {} reads judged returned an overwritten value.",
            v.reads
        )
    };
    if v.unexplained > 0 {
        let _ = write!(
            text,
            " {} read values written before the run (not by its own writes).",
            v.unexplained
        );
    }
    format!("<p class=\"verdict {class}\">{}</p>\n", escape(&text))
}

/// What the lab did while the run went on.
fn events(run: &LoadRun) -> String {
    if run.events.is_empty() {
        return String::new();
    }
    let mut html = String::from("<ul class=\"events\">\n");
    for event in &run.events {
        let _ = writeln!(
            html,
            "<li><span class=\"mono\">{} ms</span> {}</li>",
            format_float(event.at_ms),
            escape(&event.title())
        );
    }
    html.push_str("</ul>\n");
    html
}

/// hey's histogram: a bar per bucket, named by its upper bound as hey prints it.
fn histogram(run: &LoadRun) -> Chart {
    let mut c = Chart::new(
        ChartKind::Bar,
        "Response time histogram",
        "latency up to (ms)",
        "responses",
    );
    c.series.push(Series {
        name: "responses".into(),
        points: (0..run.histogram.len())
            .map(|i| (i as f64, run.histogram[i].responses as f64))
            .collect(),
    });
    c.x_categories = run
        .histogram
        .iter()
        .map(|b| format!("≤ {}", ms_label(b.upto_ms)))
        .collect();
    c
}

/// The latency percentiles as bars (a log axis when the tail is 100× the median).
fn percentiles(run: &LoadRun, all: bool) -> Chart {
    let shown: Vec<(&str, f64)> = run
        .percentiles()
        .into_iter()
        .filter(|(name, _)| all || ["p50", "p90", "p99", "p99.9", "max"].contains(name))
        .collect();
    let mut c = Chart::new(
        ChartKind::Bar,
        "Latency percentiles",
        "percentile",
        "latency (ms)",
    );
    c.series.push(Series {
        name: "latency".into(),
        points: shown
            .iter()
            .enumerate()
            .map(|(i, (_, ms))| (i as f64, *ms))
            .collect(),
    });
    c.x_categories = shown.iter().map(|(name, _)| name.to_string()).collect();
    c
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

/// One series of the timeline: its name and its count in an interval.
type Count = (String, Box<dyn Fn(&Interval) -> f64>);

/// The series a timeline can show; those zero throughout are named under the chart
/// instead of drawn, except requests.
fn timeline_series(run: &LoadRun) -> Vec<Count> {
    let mut series: Vec<Count> = vec![
        ("requests".into(), Box::new(|i| i.requests as f64)),
        ("errors".into(), Box::new(|i| i.errors as f64)),
    ];
    for x in XCache::ALL {
        let name = x.counter().name().replace('_', " ");
        series.push((name, Box::new(move |i| i.cache.get(x) as f64)));
    }
    for other in run.cache.other().keys() {
        let value = other.clone();
        series.push((
            format!("X-Cache {other}"),
            Box::new(move |i| i.cache.other().get(&value).copied().unwrap_or(0) as f64),
        ));
    }
    if run.timeline.iter().any(|i| i.db_reads.is_some()) {
        series.push((
            "Postgres reads".into(),
            Box::new(|i| i.db_reads.unwrap_or(0) as f64),
        ));
    }
    series
}

/// The timeline: steps per interval (bars for a burst), events as markers, the partial
/// last interval shaded.
fn timeline(run: &LoadRun) -> String {
    let entries = &run.timeline;
    let mut drawn = Vec::new();
    let mut zero = Vec::new();
    for (index, (name, count)) in timeline_series(run).into_iter().enumerate() {
        let values: Vec<f64> = entries.iter().map(&count).collect();
        if index == 0 || values.iter().any(|&v| v != 0.0) {
            drawn.push((name, values));
        } else {
            zero.push(name);
        }
    }
    let title = format!("Per {} ms interval", run.interval_ms);
    let mut c;
    if entries.len() < SHORTEST_STEPS {
        c = Chart::new(ChartKind::Bar, &title, "interval", "per interval");
        c.x_categories = entries
            .iter()
            .map(|i| {
                let partial = if i.partial { " (partial)" } else { "" };
                format!("{}–{} ms{partial}", i.start_ms, i.end_ms)
            })
            .collect();
        for (name, values) in drawn {
            let points = values.iter().enumerate().map(|(x, &y)| (x as f64, y));
            c.series.push(Series {
                name,
                points: points.collect(),
            });
        }
    } else {
        c = Chart::new(
            ChartKind::Steps,
            &title,
            "time since the start (ms)",
            "per interval",
        );
        let end = entries.last().map_or(0, |i| i.end_ms) as f64;
        for (name, values) in drawn {
            let mut points: Vec<(f64, f64)> = entries
                .iter()
                .zip(&values)
                .map(|(i, &y)| (i.start_ms as f64, y))
                .collect();
            if let Some(&last) = values.last() {
                points.push((end, last));
            }
            c.series.push(Series { name, points });
        }
        c.partial_from = entries
            .last()
            .filter(|i| i.partial)
            .map(|i| i.start_ms as f64);
        c.markers = run
            .events
            .iter()
            .map(|e| Marker {
                x: e.at_ms,
                label: e.title(),
            })
            .collect();
    }
    let mut html = String::from("<div class=\"timeline\">\n");
    html.push_str(&chart(&c, WIDE_SIZE));
    let partial = entries.last().filter(|i| i.partial);
    if let Some(last) = partial {
        let _ = writeln!(
            html,
            "<p class=\"aside partial\">The last interval ({}–{} ms) is partial: the run ended inside it, so its counts are not comparable with the others.</p>",
            last.start_ms, last.end_ms
        );
    }
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

/// Stale reads over time, per interval: how many, and the stalest one's age.
fn stale_reads(run: &LoadRun) -> Option<Chart> {
    let verdict = run.consistency.as_ref()?;
    let width = run.interval_ms.max(1) as f64;
    let end = run.timeline.last().map_or(0, |i| i.end_ms) as f64;
    let buckets = ((end / width).ceil() as usize).max(1);
    let mut count = vec![0.0; buckets];
    let mut worst = vec![0.0f64; buckets];
    for &(at_ms, stale_ms) in &verdict.stale_at {
        let i = ((at_ms / width) as usize).min(buckets - 1);
        count[i] += 1.0;
        worst[i] = worst[i].max(stale_ms);
    }
    let mut c = Chart::new(
        ChartKind::Steps,
        "Stale reads over time (history checker)",
        "time since the start (ms)",
        "stale reads; staleness (ms)",
    );
    for (name, values) in [
        ("stale reads", count),
        ("stalest read's staleness (ms)", worst),
    ] {
        let mut points: Vec<(f64, f64)> = values
            .iter()
            .enumerate()
            .map(|(i, &y)| (i as f64 * width, y))
            .collect();
        points.push((
            end.max(buckets as f64 * width),
            *values.last().unwrap_or(&0.0),
        ));
        c.series.push(Series {
            name: name.into(),
            points,
        });
    }
    c.markers = run
        .events
        .iter()
        .map(|e| Marker {
            x: e.at_ms,
            label: e.title(),
        })
        .collect();
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::shown_labels;

    #[test]
    fn loads_sharing_a_label_are_numbered_and_a_unique_one_is_kept() {
        let names = shown_labels(&["load /users/{id}", "warm", "load /users/{id}"]);
        assert_eq!(
            names,
            ["load /users/{id} #1", "warm", "load /users/{id} #2"]
        );
    }
}
