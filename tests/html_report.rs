//! The HTML pages as a reader gets them: `cachelab run --html` and `cachelab load --html`
//! write one well-formed page that needs nothing from the network, with one SVG per chart
//! naming its series, events in the order the lab made them, and the same numbers as the
//! JSON report of the same run.

mod common;

use common::{run, Labs};

use common::{answering_server, cachelab};
use roxmltree::{Document, Node, ParsingOptions};
use serde_json::Value;

/// The page parsed strictly as XML: it must be well-formed to get past here.
fn parse(page: &str) -> Document<'_> {
    let options = ParsingOptions {
        allow_dtd: true,
        ..ParsingOptions::default()
    };
    Document::parse_with_options(page, options)
        .unwrap_or_else(|e| panic!("the page is not well-formed: {e}"))
}

fn has_class(node: &Node, class: &str) -> bool {
    node.attribute("class")
        .is_some_and(|c| c.split_whitespace().any(|c| c == class))
}

/// All the text under `node`, as a reader sees it.
fn text(node: &Node) -> String {
    node.descendants()
        .filter(Node::is_text)
        .filter_map(|n| n.text())
        .collect()
}

/// The `<text>` of an SVG: its title, axis names, legend and ticks.
fn svg_texts(svg: &Node) -> Vec<String> {
    svg.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| text(&n).trim().to_string())
        .collect()
}

/// Nothing in the page points outside it: the only URL is the SVG namespace name, and
/// nothing loads a script, a style sheet, a font or an image.
fn assert_self_contained(page: &str) {
    let outside = page.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    for needle in [
        "http://",
        "https://",
        "//cdn",
        "src=",
        "url(",
        "@import",
        "@font-face",
        "<link",
        "<script",
        "<img",
        "<image",
        "<iframe",
    ] {
        assert!(
            !outside.contains(needle),
            "{needle:?} in the page at {:?}",
            outside
                .find(needle)
                .map(|at| &outside[at.saturating_sub(80)..(at + 80).min(outside.len())])
        );
    }
    // Links only jump within the page.
    for href in outside.split("href=\"").skip(1) {
        assert!(href.starts_with('#'), "a link out of the page: {href:.60}");
    }
}

/// The value a load's figures table shows under `key`.
fn figure(load: &Node, key: &str) -> f64 {
    let cell = load
        .descendants()
        .find(|n| n.attribute("data-key") == Some(key))
        .unwrap_or_else(|| panic!("no figure {key:?} in the load's table"));
    text(&cell)
        .parse()
        .unwrap_or_else(|_| panic!("figure {key:?} is not a number: {:?}", text(&cell)))
}

const LAB: &str = r#"// Everything on one page <with markup> & "quotes"
//
// What it shows: a lab's checks, notes, tables and charts,
// in the order it made them.
//
// And a second paragraph.

check("one is one", 1 == 1);
note("a note with <b>markup</b> & \"quotes\"\nand a second line");
let run = load(#{path: "/users/{id}", n: 300, c: 3});
check("the load answered every request", run.ok == 300);
table("Latency of the run", ["what", "ms"], [["p50", run.p50], ["p99", run.p99], ["count", 3]]);
chart("Made by the lab", #{x: "step", y: "value", series: #{"rising <fast>": [[0, 1.0], [1, 4.0], [2, 9.0]], "flat": [[0, 2.0], [2, 2.0]]}});
chart("Bars by the lab", #{kind: "bar", categories: ["a", "b"], series: #{"only": [[0, 3.0], [1, 5.0]]}});
check("two is three", 2 == 3);
"#;

#[test]
fn the_run_page_is_one_well_formed_page_with_the_json_reports_numbers_and_a_chart_per_chart() {
    let labs = Labs::new();
    let lab = labs.add("everything.rhai", LAB);
    let passing = labs.add("passing.rhai", "// Passing\ncheck(\"fine\", true);\n");
    let html_path = labs.dir.path().join("report.html");
    let json_path = labs.dir.path().join("report.json");
    let r = run(
        &[
            "--html",
            html_path.to_str().unwrap(),
            "--json",
            json_path.to_str().unwrap(),
        ],
        &[&lab, &passing],
    );
    assert_eq!(r.code, 1, "one check fails: {}\n{}", r.stdout, r.stderr);
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let page = std::fs::read_to_string(&html_path).expect("the page was written");
    assert_self_contained(&page);
    let doc = parse(&page);

    // The summary reads exactly like the text report's last line, and as the JSON counts.
    let summary = doc
        .descendants()
        .find(|n| n.attribute("id") == Some("summary"))
        .expect("a summary at the top");
    let last_line = r.stdout.lines().last().unwrap();
    assert_eq!(text(&summary), last_line);
    let (labs_sum, checks_sum) = (&report["labs_summary"], &report["checks_summary"]);
    assert_eq!(
        last_line,
        format!(
            "{} labs: {} passed, {} failed · {} checks: {} passed, {} failed",
            labs_sum["total"],
            labs_sum["passed"],
            labs_sum["failed"],
            checks_sum["total"],
            checks_sum["passed"],
            checks_sum["failed"]
        )
    );
    assert!(
        has_class(&summary, "fail"),
        "a failed run is shown as failed"
    );
    let failed_line = report["labs"][0]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "check" && e["pass"] == false)
        .and_then(|e| e["line"].as_u64())
        .expect("the failed check's line");
    assert_eq!(failed_line, 15);
    let failures = doc
        .descendants()
        .find(|n| has_class(n, "failures"))
        .expect("failed checks listed at the top");
    assert!(
        text(&failures).contains(&format!("✗ two is three (line {failed_line})")),
        "{}",
        text(&failures)
    );
    // The item links to the failing check itself.
    let link = failures
        .descendants()
        .find(|n| n.has_tag_name("a"))
        .and_then(|a| a.attribute("href"))
        .expect("a link to the failure");
    let target = doc
        .descendants()
        .find(|n| n.attribute("id") == link.strip_prefix('#'))
        .expect("the link's target is on the page");
    assert!(target.has_tag_name("li") && has_class(&target, "fail"));
    assert!(text(&target).contains("two is three"));

    let sections: Vec<Node> = doc
        .descendants()
        .filter(|n| n.has_tag_name("section") && has_class(n, "lab"))
        .collect();
    assert_eq!(sections.len(), 2);
    let (section, json) = (&sections[0], &report["labs"][0]);
    assert!(has_class(section, "fail") && has_class(&sections[1], "pass"));
    assert_eq!(
        text(
            &section
                .descendants()
                .find(|n| n.has_tag_name("h2"))
                .unwrap()
        ),
        format!("FAILED {}", json["title"].as_str().unwrap()),
        "the title, markup and all, reads back as written"
    );
    let description: Vec<String> = section
        .descendants()
        .filter(|n| n.has_tag_name("p") && n.parent().is_some_and(|p| has_class(&p, "description")))
        .map(|p| text(&p))
        .collect();
    assert_eq!(
        description,
        [
            "What it shows: a lab's checks, notes, tables and charts, in the order it made them.",
            "And a second paragraph."
        ]
    );

    // The lab's story first: its own tables and charts, then its checks and notes in the
    // order it made them, and its loads last, folded.
    let drawn: Vec<&str> = section
        .descendants()
        .filter_map(|n| match n.tag_name().name() {
            "li" if n.parent().is_some_and(|p| has_class(&p, "checks")) => Some("check"),
            "p" if has_class(&n, "note") => Some("note"),
            "table" if has_class(&n, "data") => Some("table"),
            "div" if has_class(&n, "lab-chart") => Some("chart"),
            "details" if has_class(&n, "load") => Some("load"),
            _ => None,
        })
        .collect();
    let made: Vec<&str> = json["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    let in_kinds = |kinds: &[&str]| -> Vec<&str> {
        made.iter().copied().filter(|k| kinds.contains(k)).collect()
    };
    let story: Vec<&str> = [
        in_kinds(&["table", "chart"]),
        in_kinds(&["check", "note"]),
        in_kinds(&["load"]),
    ]
    .concat();
    assert_eq!(drawn, story);
    let at = |needle: &str| page.find(needle).unwrap_or_else(|| panic!("{needle:?}"));
    assert!(
        at("Made by the lab") < at("<table class=\"loads\">"),
        "the lab's own chart comes before the loads table"
    );
    let row: Vec<String> = section
        .descendants()
        .find(|n| n.has_tag_name("table") && has_class(n, "loads"))
        .expect("the compact loads table")
        .descendants()
        .filter(|n| n.has_tag_name("td"))
        .map(|n| text(&n))
        .collect();
    assert_eq!(row[0], "load /users/{id}");
    assert_eq!(row[1], "300");

    // Checks: the same passes and failures as the JSON, the failure with its line.
    let checks: Vec<Node> = section
        .descendants()
        .filter(|n| n.has_tag_name("li") && n.parent().is_some_and(|p| has_class(&p, "checks")))
        .collect();
    let count = |class: &str| checks.iter().filter(|n| has_class(n, class)).count();
    assert_eq!(
        count("pass") as u64,
        json["checks"]["passed"].as_u64().unwrap()
    );
    assert_eq!(
        count("fail") as u64,
        json["checks"]["failed"].as_u64().unwrap()
    );
    let failed = checks.iter().find(|n| has_class(n, "fail")).unwrap();
    assert_eq!(text(failed), format!("✗ two is three line {failed_line}"));

    // The note's markup is text, not elements.
    let note = section
        .descendants()
        .find(|n| has_class(n, "note"))
        .unwrap();
    assert_eq!(
        text(&note),
        "a note with <b>markup</b> & \"quotes\"\nand a second line"
    );
    assert!(!doc.descendants().any(|n| n.has_tag_name("b")));

    // The table: its title, columns and numbers as in the JSON.
    let table = section
        .descendants()
        .find(|n| n.has_tag_name("table") && has_class(n, "data"))
        .unwrap();
    let table_json = json["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "table")
        .unwrap();
    let caption = table
        .descendants()
        .find(|n| n.has_tag_name("caption"))
        .unwrap();
    assert_eq!(text(&caption), "Latency of the run");
    let headers: Vec<String> = table
        .descendants()
        .filter(|n| n.has_tag_name("th"))
        .map(|n| text(&n))
        .collect();
    assert_eq!(headers, ["what", "ms"]);
    let cells: Vec<String> = table
        .descendants()
        .filter(|n| n.has_tag_name("td"))
        .map(|n| text(&n))
        .collect();
    let rows = table_json["rows"].as_array().unwrap();
    assert_eq!(cells.len(), rows.len() * 2);
    for (row, pair) in rows.iter().zip(cells.chunks(2)) {
        assert_eq!(pair[0], row[0].as_str().unwrap());
        assert_eq!(pair[1].parse::<f64>().unwrap(), row[1].as_f64().unwrap());
    }

    // One SVG per chart: the lab's two, and two per load; each names its series.
    let svgs: Vec<Node> = doc
        .descendants()
        .filter(|n| n.has_tag_name("svg"))
        .collect();
    assert_eq!(svgs.len(), 2 + 2);
    let texts: Vec<Vec<String>> = svgs.iter().map(svg_texts).collect();
    let chart_with = |title: &str| {
        texts
            .iter()
            .find(|t| t.iter().any(|s| s == title))
            .unwrap_or_else(|| panic!("no chart titled {title:?}: {texts:?}"))
    };
    for (title, series) in [
        (
            "Made by the lab",
            &["rising <fast>", "flat", "step", "value"][..],
        ),
        ("Bars by the lab", &["only", "a", "b"]),
        (
            "Latency percentiles",
            &["latency", "p50", "p99", "p99.9", "max"],
        ),
        (
            "Per 100 ms interval",
            &["requests", "hits", "misses", "Postgres reads"],
        ),
    ] {
        let texts = chart_with(title);
        for name in series {
            assert!(
                texts.iter().any(|t| t == name),
                "{name:?} missing from {texts:?}"
            );
        }
    }

    // The load's figures are the JSON report's.
    let load = section
        .descendants()
        .find(|n| n.has_tag_name("details") && has_class(n, "load"))
        .unwrap();
    let figures = json["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "load")
        .unwrap();
    assert_eq!(figures["requests"], 300);
    for key in [
        "requests", "ok", "errors", "rps", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms",
    ] {
        assert_eq!(
            figure(&load, key),
            figures[key].as_f64().unwrap(),
            "figure {key:?}"
        );
    }
    assert_eq!(
        figure(&load, "db_reads"),
        figures["counters"]["db_reads"].as_f64().unwrap()
    );
    let seed = load
        .descendants()
        .find(|n| n.attribute("data-key") == Some("seed"))
        .unwrap();
    assert_eq!(text(&seed), figures["seed"].to_string());
    // The run ended inside its last interval, and the page says so.
    let timeline = figures["timeline"].as_array().unwrap();
    assert_eq!(timeline.last().unwrap()["partial"], true);
    assert!(
        load.descendants()
            .any(|n| has_class(&n, "partial") && text(&n).contains("is partial")),
        "the partial last interval is marked"
    );
}

#[test]
fn a_fault_during_a_load_is_an_event_in_the_json_the_text_and_a_marker_on_the_page() {
    let labs = Labs::new();
    let lab = labs.add(
        "outage.rhai",
        r#"// Redis goes down under load
let h = load_async(#{path: "/users/{id}", duration_ms: 900, c: 2, label: "through the outage"});
sleep(300);
fault("redis", "down");
sleep(300);
heal("redis");
let r = load_wait(h);
check("the load ran", r.requests > 0);
"#,
    );
    let html_path = labs.dir.path().join("report.html");
    let json_path = labs.dir.path().join("report.json");
    let r = run(
        &[
            "--html",
            html_path.to_str().unwrap(),
            "--json",
            json_path.to_str().unwrap(),
        ],
        &[&lab],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("fault redis down"), "{}", r.stdout);
    assert!(r.stdout.contains("heal redis"), "{}", r.stdout);
    assert!(
        r.stdout.contains("▸ through the outage: "),
        "the text names the load by its label: {}",
        r.stdout
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let load = report["labs"][0]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "load")
        .unwrap();
    assert_eq!(load["label"], "through the outage");
    let events = load["events"].as_array().unwrap();
    let fault = events
        .iter()
        .find(|e| e["kind"] == "fault")
        .unwrap_or_else(|| panic!("{events:?}"));
    assert_eq!(fault["what"], "redis down");
    let at = fault["at_ms"].as_f64().unwrap();
    assert!((250.0..900.0).contains(&at), "{at}");

    let page = std::fs::read_to_string(&html_path).unwrap();
    let doc = parse(&page);
    let labels: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("svg"))
        .flat_map(|svg| svg_texts(&svg))
        .collect();
    assert!(
        labels.iter().any(|t| t == "fault redis down"),
        "a labelled marker: {labels:?}"
    );
    let summary = doc
        .descendants()
        .find(|n| n.has_tag_name("summary"))
        .unwrap();
    assert_eq!(text(&summary), "through the outage");
}

#[test]
fn the_load_page_shows_the_histogram_percentiles_and_timeline_with_the_json_numbers() {
    let url = answering_server();
    let dir = tempfile::tempdir().unwrap();
    let html_path = dir.path().join("load.html");
    let out = cachelab()
        .args([
            "load",
            &format!("{url}/users/{{id}}"),
            "-n",
            "60",
            "-c",
            "3",
        ])
        .args(["--json", "--html", html_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figures: Value = serde_json::from_slice(&out.stdout).unwrap();
    let page = std::fs::read_to_string(&html_path).expect("the page was written");
    assert_self_contained(&page);
    let doc = parse(&page);

    let load = doc
        .descendants()
        .find(|n| has_class(n, "load"))
        .expect("the run's section");
    let heading = text(&load.descendants().find(|n| n.has_tag_name("h2")).unwrap());
    let target = url.strip_prefix("http://").unwrap();
    assert_eq!(heading, format!("GET {target}/users/{{id}}"));
    assert_eq!(figures["requests"], 60);
    for key in [
        "requests",
        "ok",
        "errors",
        "rps",
        "fastest_ms",
        "average_ms",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "p999_ms",
        "max_ms",
    ] {
        assert_eq!(
            figure(&load, key),
            figures[key].as_f64().unwrap(),
            "figure {key:?}"
        );
    }
    assert!(text(&load).contains("X-Cache: HIT × 60"), "{}", text(&load));

    let svgs: Vec<Node> = doc
        .descendants()
        .filter(|n| n.has_tag_name("svg"))
        .collect();
    assert_eq!(svgs.len(), 3);
    let texts: Vec<Vec<String>> = svgs.iter().map(svg_texts).collect();
    for (chart, expected) in texts.iter().zip([
        &["Response time histogram", "responses"][..],
        &["Latency percentiles", "latency", "p10", "max"],
        &["Per 100 ms interval", "requests", "hits"],
    ]) {
        for name in expected {
            assert!(
                chart.iter().any(|t| t == name),
                "{name:?} missing from {chart:?}"
            );
        }
    }
    // Only what the server sent is drawn: it never missed.
    assert!(!texts[2].iter().any(|t| t == "misses"), "{:?}", texts[2]);
    // hey labels a histogram bucket by its upper bound.
    assert!(
        texts[0].iter().any(|t| t.starts_with("≤ ")),
        "{:?}",
        texts[0]
    );
}

#[test]
fn a_mixed_load_page_shows_the_get_put_split_and_the_stale_read_verdict() {
    let url = answering_server();
    let dir = tempfile::tempdir().unwrap();
    let html_path = dir.path().join("load.html");
    let history = dir.path().join("history.jsonl");
    let out = cachelab()
        .args([
            "load",
            &format!("{url}/users/{{id}}"),
            "-n",
            "40",
            "-c",
            "2",
        ])
        .args([
            "--mix",
            "get:50,put:50",
            "--history",
            history.to_str().unwrap(),
        ])
        .args(["--html", html_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("GETs / PUTs:"), "{stdout}");
    assert!(
        stdout.contains("Values written before the run:"),
        "{stdout}"
    );
    assert!(!stdout.contains("Unexplained"), "{stdout}");
    let page = std::fs::read_to_string(&html_path).unwrap();
    let doc = parse(&page);
    let all = text(&doc.root_element());
    assert!(all.contains("GET × ") && all.contains("PUT × "), "{all}");
    let verdict = doc
        .descendants()
        .find(|n| has_class(n, "verdict"))
        .expect("the history checker's verdict");
    assert!(
        text(&verdict).contains("reads judged"),
        "{}",
        text(&verdict)
    );
}

#[test]
fn a_url_without_an_id_prints_no_seed() {
    let url = answering_server();
    let out = cachelab()
        .args(["load", &format!("{url}/health"), "-n", "5", "-c", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Summary:") && !stdout.contains("Seed:"),
        "{stdout}"
    );
}

#[test]
fn a_page_that_cannot_be_written_is_an_error_after_the_report() {
    let url = answering_server();
    let dir = tempfile::tempdir().unwrap();
    let nowhere = dir.path().join("missing-folder").join("load.html");
    let out = cachelab()
        .args(["load", &url, "-n", "5", "-c", "1"])
        .args(["--html", nowhere.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Summary:"),
        "the text report still printed: {stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("error: writing {}", nowhere.display())),
        "{stderr}"
    );
}
