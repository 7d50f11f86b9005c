//! Charts for the HTML report, drawn by plotters' SVG backend into self-contained SVG
//! strings that the page inlines. The page is read offline, so the SVG names no URL and
//! embeds no font: its `<text>` elements ask the viewer for `sans-serif`, and the browser
//! lays them out (plotters' built-in font estimate only sizes the label areas). One model,
//! `Chart`, serves the report's own charts and a lab's `chart()`; `axis` decides the
//! scales, `legend` the words around the plot, `plot` the marks on it.

use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Serialize;

mod axis;
mod legend;
mod plot;

use axis::*;
use legend::*;
use plot::*;

/// How a chart draws its series: steps suit per-interval counts (each interval one flat
/// segment, nothing implied between them), lines suit a lab's own measurements over a
/// variable, bars suit a few named values (latency percentiles) compared across series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChartKind {
    Line,
    /// Each point `(x, y)` holds `y` until the next point's `x`; give a closing point at
    /// the end of the last interval.
    Steps,
    Bar,
}

/// One named set of `(x, y)` points; the name is what the legend shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A labelled vertical line at `x`: something that happened then (`fault redis down`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Marker {
    pub x: f64,
    pub label: String,
}

/// Everything needed to draw one chart, independent of where the numbers came from: the
/// report's charts of a load and a lab's own `chart(title, opts)` are both one of these.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chart {
    pub title: String,
    #[serde(rename = "x")]
    pub x_label: String,
    #[serde(rename = "y")]
    pub y_label: String,
    /// Named `chart_kind` in JSON: a report event's own `kind` tag is "chart".
    #[serde(rename = "chart_kind")]
    pub kind: ChartKind,
    pub series: Vec<Series>,
    /// Names of the x positions 0, 1, 2...: a point's x is then the index of its category
    /// (rounded), and points whose x is not one of them are skipped. Empty for a numeric x
    /// axis; a bar chart then makes one category of each distinct x value.
    #[serde(rename = "categories", skip_serializing_if = "Vec::is_empty")]
    pub x_categories: Vec<String>,
    /// Asks for a logarithmic y axis. Without asking, one is used anyway where every value
    /// is above zero and they span more than `LOG_SPAN` (the y label then says so).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub y_log: bool,
    /// Events drawn as labelled vertical lines.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub markers: Vec<Marker>,
    /// Where the partial last interval begins: shaded and labelled "partial" to the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial_from: Option<f64>,
}

impl Chart {
    /// A chart of `kind` with nothing on it yet.
    pub fn new(kind: ChartKind, title: &str, x_label: &str, y_label: &str) -> Self {
        Chart {
            title: title.to_string(),
            x_label: x_label.to_string(),
            y_label: y_label.to_string(),
            kind,
            series: Vec::new(),
            x_categories: Vec::new(),
            y_log: false,
            markers: Vec::new(),
            partial_from: None,
        }
    }
}

/// Values spanning more than this factor get a log axis on their own.
pub const LOG_SPAN: f64 = 100.0;

/// Bars of odd series are drawn hollow, so neighbours differ in more than colour.
pub(super) fn hollow(index: usize) -> bool {
    index % 2 == 1
}

/// Draws `chart` as an SVG document of `width` × `height` pixels (raised to at least
/// 320 × 200 so that the text fits), ready to inline in an HTML page. Points that are not
/// finite, or beyond ±1e300 (where the axis arithmetic would overflow), are skipped; a chart
/// left without points says "no data" rather than failing, so one odd lab does not cost the
/// whole report.
pub fn render_svg(chart: &Chart, width: u32, height: u32) -> Result<String> {
    let size = (width.max(MIN_WIDTH), height.max(MIN_HEIGHT));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        draw(&root, chart).with_context(|| format!("drawing chart {:?}", chart.title))?;
        root.present()
            .with_context(|| format!("finishing chart {:?}", chart.title))?;
    }
    Ok(svg)
}

const MIN_WIDTH: u32 = 320;
const MIN_HEIGHT: u32 = 200;

/// Okabe–Ito colours, which stay apart for the common kinds of colour blindness. Yellow,
/// the faintest on white, comes last; a ninth series starts the cycle again.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0x00, 0x72, 0xB2), // blue
    RGBColor(0xE6, 0x9F, 0x00), // orange
    RGBColor(0x00, 0x9E, 0x73), // bluish green
    RGBColor(0xD5, 0x5E, 0x00), // vermillion
    RGBColor(0xCC, 0x79, 0xA7), // reddish purple
    RGBColor(0x56, 0xB4, 0xE9), // sky blue
    RGBColor(0x00, 0x00, 0x00), // black
    RGBColor(0xF0, 0xE4, 0x42), // yellow
];
const TEXT: RGBColor = RGBColor(0x33, 0x33, 0x33);
const AXIS: RGBColor = RGBColor(0x88, 0x88, 0x88);
const GRID: RGBColor = RGBColor(0xE6, 0xE6, 0xE6);

/// Font sizes in CSS pixels as the browser draws them (plotters writes size / 1.24).
const TITLE_PX: f64 = 16.0;
const LEGEND_PX: f64 = 12.0;
const TICK_PX: f64 = 11.0;
const DESC_PX: f64 = 12.0;
/// Width of one character as a share of the font size: a little wider than the average
/// sans-serif glyph, so that estimated boxes err on the roomy side.
const CHAR_EM: f64 = 0.56;
/// Series with at most this many points get their marker shape on each point, so a lone
/// point or a short series is visible; longer ones on about a dozen, keeping the SVG small.
const MARKER_MAX_POINTS: usize = 30;
/// Values beyond this size are skipped: spans and paddings of them would overflow f64.
const MAX_MAGNITUDE: f64 = 1e300;
/// Legend names are cut after this many characters so one long name cannot push the rest out.
const LEGEND_MAX_CHARS: usize = 48;
const MARGIN: i32 = 12;

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

fn font(px: f64) -> TextStyle<'static> {
    ("sans-serif", px * 1.24).into_font().color(&TEXT)
}

fn text_width(text: &str, px: f64) -> i32 {
    (text.chars().count() as f64 * px * CHAR_EM).ceil() as i32
}

fn colour(index: usize) -> RGBColor {
    PALETTE[index % PALETTE.len()]
}

fn draw(root: &Area, chart: &Chart) -> Result<()> {
    root.fill(&WHITE)?;
    let body = draw_title(root, &chart.title)?;
    let prepared = Prepared::new(chart);
    let plot = draw_legend(&body, chart, &prepared)?;
    if prepared.is_empty() {
        return draw_no_data(&plot);
    }
    draw_plot(&plot, chart, &prepared)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, points: &[(f64, f64)]) -> Series {
        Series {
            name: name.to_string(),
            points: points.to_vec(),
        }
    }

    fn chart(kind: ChartKind, series: Vec<Series>) -> Chart {
        Chart {
            title: "Requests per interval".to_string(),
            x_label: "time (ms)".to_string(),
            y_label: "requests".to_string(),
            kind,
            series,
            x_categories: Vec::new(),
            y_log: false,
            markers: Vec::new(),
            partial_from: None,
        }
    }

    fn timeline(series_count: usize, points: usize) -> Chart {
        let series = (0..series_count)
            .map(|s| Series {
                name: format!("series {s}"),
                points: (0..points)
                    .map(|i| {
                        (
                            i as f64 * 100.0,
                            1000.0 + (s * 300) as f64 + (i as f64 / 9.0).sin() * 200.0,
                        )
                    })
                    .collect(),
            })
            .collect();
        chart(ChartKind::Line, series)
    }

    fn percentiles() -> Chart {
        let mut bars = chart(
            ChartKind::Bar,
            vec![
                series("cache-aside", &[(0.0, 1.5), (1.0, 4.0), (2.0, 9.0)]),
                series("write-through", &[(0.0, 2.0), (1.0, 5.0), (2.0, 12.0)]),
            ],
        );
        bars.x_categories = ["p50", "p90", "p99"].map(String::from).to_vec();
        bars.x_label = "percentile".to_string();
        bars.y_label = "latency (ms)".to_string();
        bars
    }

    #[test]
    fn values_spanning_over_a_hundredfold_get_a_log_axis_that_says_so() {
        let mut cold_warm = chart(
            ChartKind::Bar,
            vec![series("p50", &[(0.0, 250.0), (1.0, 2.0)])],
        );
        cold_warm.x_categories = ["cold", "warm"].map(String::from).to_vec();
        cold_warm.y_label = "latency (ms)".to_string();
        let texts = texts(&render(&cold_warm));
        assert!(
            texts.iter().any(|t| t == "latency (ms) (log scale)"),
            "{texts:?}"
        );
        // Within a hundredfold the axis stays linear.
        let texts_linear = super::tests::texts(&render(&percentiles()));
        assert!(
            texts_linear.iter().any(|t| t == "latency (ms)"),
            "{texts_linear:?}"
        );
    }

    #[test]
    fn events_are_labelled_markers_and_the_partial_interval_is_labelled() {
        let mut steps = chart(
            ChartKind::Steps,
            vec![series(
                "requests",
                &[(0.0, 10.0), (100.0, 12.0), (200.0, 3.0), (230.0, 3.0)],
            )],
        );
        steps.markers.push(Marker {
            x: 120.0,
            label: "fault redis down".into(),
        });
        steps.partial_from = Some(200.0);
        let texts = texts(&render(&steps));
        assert!(texts.iter().any(|t| t == "fault redis down"), "{texts:?}");
        assert!(texts.iter().any(|t| t == "partial"), "{texts:?}");
    }

    fn render(chart: &Chart) -> String {
        render_svg(chart, 800, 400).expect("chart renders")
    }

    /// Every `<text>` of the SVG, parsed strictly as XML (so the SVG is well-formed).
    fn texts(svg: &str) -> Vec<String> {
        let document = roxmltree::Document::parse(svg).expect("the SVG is well-formed XML");
        document
            .descendants()
            .filter(|node| node.has_tag_name("text"))
            .map(|node| node.text().unwrap_or_default().trim().to_string())
            .collect()
    }

    /// The y axis' tick labels: the only right-aligned text.
    fn y_ticks(svg: &str) -> Vec<String> {
        let document = roxmltree::Document::parse(svg).unwrap();
        document
            .descendants()
            .filter(|node| {
                node.has_tag_name("text") && node.attribute("text-anchor") == Some("end")
            })
            .map(|node| node.text().unwrap_or_default().trim().to_string())
            .collect()
    }

    fn polylines(svg: &str) -> Vec<(String, usize)> {
        let document = roxmltree::Document::parse(svg).unwrap();
        document
            .descendants()
            .filter(|node| node.has_tag_name("polyline"))
            .map(|node| {
                let points = node
                    .attribute("points")
                    .unwrap_or_default()
                    .split_whitespace()
                    .count();
                (
                    node.attribute("stroke").unwrap_or_default().to_string(),
                    points,
                )
            })
            .collect()
    }

    /// The series' own lines: polylines in a palette colour with more than the two points
    /// of a legend swatch.
    fn data_lines(svg: &str) -> Vec<(String, usize)> {
        let palette: Vec<String> = PALETTE
            .iter()
            .map(|c| format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2))
            .collect();
        polylines(svg)
            .into_iter()
            .filter(|(stroke, n)| palette.contains(stroke) && *n > 2)
            .collect()
    }

    /// The distinct palette colours lines are drawn in (a dashed series is many short
    /// polylines of one colour).
    fn series_strokes(svg: &str) -> Vec<String> {
        let palette: Vec<String> = PALETTE
            .iter()
            .map(|c| format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2))
            .collect();
        let mut strokes: Vec<String> = polylines(svg)
            .into_iter()
            .map(|(stroke, _)| stroke)
            .filter(|stroke| palette.contains(stroke))
            .collect();
        strokes.sort();
        strokes.dedup();
        strokes
    }

    #[test]
    fn line_chart_shows_title_axis_labels_and_every_series_name() {
        let texts = texts(&render(&timeline(4, 50)));
        for expected in [
            "Requests per interval",
            "time (ms)",
            "requests",
            "series 0",
            "series 3",
        ] {
            assert!(
                texts.iter().any(|t| t == expected),
                "{expected:?} missing from {texts:?}"
            );
        }
    }

    #[test]
    fn markup_in_names_is_escaped_and_reads_back_unchanged() {
        let mut odd = chart(
            ChartKind::Line,
            vec![series(r#"a<b & "c""#, &[(0.0, 1.0), (1.0, 2.0)])],
        );
        odd.title = "<script>alert(1)</script>".to_string();
        odd.x_label = "x & y".to_string();
        let svg = render(&odd);
        assert!(!svg.contains("<script>"), "raw markup leaked into the SVG");
        let texts = texts(&svg);
        for expected in [r#"a<b & "c""#, "<script>alert(1)</script>", "x & y"] {
            assert!(
                texts.iter().any(|t| t == expected),
                "{expected:?} missing from {texts:?}"
            );
        }
    }

    #[test]
    fn charts_need_nothing_from_the_network() {
        let mut log_line = percentiles();
        log_line.kind = ChartKind::Line;
        log_line.y_log = true;
        for chart in [
            timeline(3, 100),
            percentiles(),
            log_line,
            chart(ChartKind::Bar, vec![]),
        ] {
            let svg = render(&chart);
            let without_namespace = svg.replace("http://www.w3.org/2000/svg", "");
            for outside in [
                "http://",
                "https://",
                "<image",
                "href",
                "url(",
                "@font-face",
                "@import",
            ] {
                assert!(
                    !without_namespace.contains(outside),
                    "{outside:?} in {:?}",
                    chart.title
                );
            }
        }
    }

    #[test]
    fn a_chart_without_points_says_no_data() {
        let no_series = chart(ChartKind::Line, vec![]);
        let empty_series = chart(ChartKind::Bar, vec![series("hits", &[])]);
        let only_nan = chart(
            ChartKind::Line,
            vec![series("hits", &[(f64::NAN, 1.0), (2.0, f64::INFINITY)])],
        );
        let beyond_f64_arithmetic =
            chart(ChartKind::Line, vec![series("hits", &[(0.0, f64::MAX)])]);
        for chart in [no_series, empty_series, only_nan, beyond_f64_arithmetic] {
            let texts = texts(&render(&chart));
            assert!(texts.iter().any(|t| t == "no data"), "{texts:?}");
            assert!(
                texts.iter().any(|t| t == "Requests per interval"),
                "{texts:?}"
            );
        }
    }

    #[test]
    fn nan_and_infinite_points_are_left_out_of_the_line() {
        let points = [
            (0.0, 1.0),
            (1.0, f64::NAN),
            (2.0, 3.0),
            (f64::INFINITY, 2.0),
            (4.0, f64::NEG_INFINITY),
            (5.0, 2.0),
        ];
        let svg = render(&chart(ChartKind::Line, vec![series("hits", &points)]));
        assert_eq!(
            data_lines(&svg).iter().map(|l| l.1).collect::<Vec<_>>(),
            [3]
        );
        assert!(!texts(&svg).iter().any(|t| t == "no data"));
    }

    #[test]
    fn bar_chart_names_its_categories_and_starts_at_zero() {
        let mut far_from_zero = percentiles();
        for s in &mut far_from_zero.series {
            for point in &mut s.points {
                point.1 += 1000.0;
            }
        }
        let texts = texts(&render(&far_from_zero));
        for expected in ["p50", "p90", "p99", "cache-aside", "write-through", "0"] {
            assert!(
                texts.iter().any(|t| t == expected),
                "{expected:?} missing from {texts:?}"
            );
        }
    }

    #[test]
    fn bar_chart_without_categories_names_each_distinct_x() {
        let bars = chart(
            ChartKind::Bar,
            vec![
                series("a", &[(10.0, 1.0), (2.5, 2.0)]),
                series("b", &[(10.0, 3.0)]),
            ],
        );
        let texts = texts(&render(&bars));
        assert!(
            texts.iter().any(|t| t == "2.5") && texts.iter().any(|t| t == "10"),
            "{texts:?}"
        );
    }

    #[test]
    fn bar_chart_draws_one_bar_per_point_in_its_series_colour() {
        let svg = render(&percentiles());
        let document = roxmltree::Document::parse(&svg).unwrap();
        let fill_count = |colour: RGBColor| {
            let fill = format!("#{:02X}{:02X}{:02X}", colour.0, colour.1, colour.2);
            document
                .descendants()
                .filter(|n| n.has_tag_name("rect") && n.attribute("fill") == Some(fill.as_str()))
                .count()
        };
        // Three bars each, plus the legend swatch: the first series filled, the second
        // hollow (told apart without colour).
        assert_eq!(fill_count(PALETTE[0]), 4);
        let outline = format!(
            "#{:02X}{:02X}{:02X}",
            PALETTE[1].0, PALETTE[1].1, PALETTE[1].2
        );
        let hollow = document
            .descendants()
            .filter(|n| n.has_tag_name("rect") && n.attribute("stroke") == Some(outline.as_str()))
            .count();
        assert_eq!(hollow, 4);
    }

    #[test]
    fn line_chart_zooms_to_its_data_with_a_little_room() {
        let line = chart(
            ChartKind::Line,
            vec![series(
                "rps",
                &[(0.0, 1000.0), (1.0, 1100.0), (2.0, 1050.0)],
            )],
        );
        let labels = y_ticks(&render(&line));
        assert!(
            !labels.iter().any(|t| t == "0"),
            "the y axis should not start at 0: {labels:?}"
        );
        let prepared = Prepared::new(&line);
        let Scale::Linear(range) = &prepared.y else {
            panic!("a linear y axis")
        };
        assert!(range.start < 1000.0 && range.start > 990.0, "{range:?}");
        assert!(
            range.end > 1100.0 && range.end < 1010.0 + 100.0,
            "{range:?}"
        );
    }

    #[test]
    fn log_axis_shows_decades_and_falls_back_to_linear_with_zero() {
        let mut log = chart(
            ChartKind::Line,
            vec![series("p99", &[(0.0, 0.5), (1.0, 40.0), (2.0, 900.0)])],
        );
        log.y_log = true;
        let labels = y_ticks(&render(&log));
        for decade in ["0.1", "1", "10", "100", "1000"] {
            assert!(
                labels.iter().any(|t| t == decade),
                "{decade:?} missing from {labels:?}"
            );
        }

        log.series[0].points.push((3.0, 0.0));
        let labels = y_ticks(&render(&log));
        assert!(
            labels.iter().any(|t| t == "0"),
            "linear axis expected: {labels:?}"
        );
        assert!(
            !labels.iter().any(|t| t == "0.1"),
            "linear axis expected: {labels:?}"
        );
    }

    #[test]
    fn odd_but_valid_data_renders() {
        let cases = [
            chart(ChartKind::Line, vec![series("one", &[(5.0, 7.0)])]),
            chart(
                ChartKind::Line,
                vec![series("zeros", &[(0.0, 0.0), (1.0, 0.0)])],
            ),
            chart(
                ChartKind::Bar,
                vec![series("zeros", &[(0.0, 0.0), (1.0, 0.0)])],
            ),
            chart(
                ChartKind::Bar,
                vec![series("negative", &[(0.0, -3.0), (1.0, -1.0)])],
            ),
            chart(
                ChartKind::Line,
                vec![series("huge", &[(0.0, 1e18), (1.0, 3e18), (2.0, 2e200)])],
            ),
            chart(
                ChartKind::Line,
                vec![series("tiny", &[(0.0, 1e-9), (1.0, 3e-9)])],
            ),
            chart(
                ChartKind::Line,
                vec![series("flat huge", &[(0.0, 1e15), (1.0, 1e15)])],
            ),
            Chart {
                y_log: true,
                ..percentiles()
            },
        ];
        for case in cases {
            let svg = render(&case);
            let name = &case.series[0].name;
            assert!(!texts(&svg).iter().any(|t| t == "no data"), "{name:?}");
            // Each y tick says where it is: at least two, none repeated.
            let labels = y_ticks(&svg);
            let mut unique = labels.clone();
            unique.dedup();
            assert!(labels.len() >= 2, "{name:?}: too few y ticks {labels:?}");
            assert_eq!(labels, unique, "{name:?}");
        }
    }

    #[test]
    fn tick_labels_stay_distinct_across_magnitudes() {
        for range in [
            0.0..1.0,
            0.0..12_345.0,
            999_000.0..1_001_000.0,
            1e9..1.2e9,
            -5e-6..5e-6,
            1e15..1.0001e15,
            3.0..3.00001,
            0.001..0.001000001,
        ] {
            let axis = linear_axis(range.clone(), 6);
            let labels: Vec<&String> = axis.ticks.iter().map(|(_, l)| l).collect();
            let mut unique = labels.clone();
            unique.dedup();
            assert!(labels.len() >= 2, "{range:?}: {labels:?}");
            assert_eq!(labels, unique, "{range:?}");
        }
        let labels: Vec<String> = linear_axis(0.0..30_000.0, 6)
            .ticks
            .into_iter()
            .map(|t| t.1)
            .collect();
        assert_eq!(labels, ["0", "5k", "10k", "15k", "20k", "25k", "30k"]);
    }

    #[test]
    fn each_series_gets_its_own_colour() {
        let svg = render(&timeline(8, 100));
        let mut strokes: Vec<String> = series_strokes(&svg);
        strokes.sort();
        strokes.dedup();
        assert_eq!(strokes.len(), 8);
    }

    #[test]
    fn long_series_are_bare_polylines_and_the_svg_stays_small() {
        let svg = render(&timeline(4, 300));
        assert_eq!(series_strokes(&svg).len(), 4);
        // No marker on every point: a dozen per series at most, and the legend's.
        assert!(svg.matches("<circle").count() <= 14, "{svg}");
        assert!(svg.len() < 24 * 1024, "{} bytes", svg.len());

        let short = render(&timeline(1, 10));
        assert_eq!(
            short.matches("<circle").count(),
            1 + 10,
            "a short series marks its points"
        );
    }

    #[test]
    fn sizes_too_small_for_text_are_raised() {
        let svg = render_svg(&timeline(2, 10), 10, 0).unwrap();
        let document = roxmltree::Document::parse(&svg).unwrap();
        let root = document.root_element();
        assert_eq!(root.attribute("width"), Some("320"));
        assert_eq!(root.attribute("height"), Some("200"));
    }

    #[test]
    fn crowded_charts_still_render_in_the_smallest_size() {
        let long = "a very long series name that goes on and on and on and on and on".repeat(3);
        let many: Vec<Series> = (0..60)
            .map(|s| series(&format!("{long} {s}"), &[(0.0, s as f64), (1.0, 1.0)]))
            .collect();
        let mut categories = chart(ChartKind::Bar, many.clone());
        categories.x_categories = (0..300).map(|i| format!("category {i}")).collect();
        categories.title = long.clone();
        categories.y_label = long.clone();
        for case in [chart(ChartKind::Line, many), categories] {
            let svg = render_svg(&case, 0, 0).unwrap();
            texts(&svg);
        }
    }
}
