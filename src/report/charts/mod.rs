//! Charts for the HTML report, drawn by plotters' SVG backend into self-contained SVG
//! strings that the page inlines. The page is read offline, so the SVG names no URL and
//! embeds no font: its `<text>` elements ask the viewer for `sans-serif`, and the browser
//! lays them out (plotters' built-in font estimate only sizes the label areas).

use std::ops::Range;

use anyhow::{Context, Result};
use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// How a chart draws its series: lines suit timelines, bars suit a few named values
/// (latency percentiles) compared across series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartKind {
    Line,
    Bar,
}

/// One named set of `(x, y)` points; the name is what the legend shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Everything needed to draw one chart, independent of where the numbers came from, so the
/// report can chart `load()` results and a lab's own `chart(title, opts)` the same way.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub kind: ChartKind,
    pub series: Vec<Series>,
    /// Names of the x positions 0, 1, 2...: a point's x is then the index of its category
    /// (rounded), and points whose x is not one of them are skipped. Empty for a numeric x axis; a bar
    /// chart then makes one category of each distinct x value.
    pub x_categories: Vec<String>,
    /// Asks for a logarithmic y axis, for values spanning decades (latency tails).
    pub y_log: bool,
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
/// Series with at most this many points also get a dot on each point, so a lone point or
/// a short series is visible; longer ones are a bare polyline, keeping the SVG small.
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

/// Writes the title centred at the top and returns the area below it.
fn draw_title<'a>(area: &Area<'a>, title: &str) -> Result<Area<'a>> {
    if title.is_empty() {
        return Ok(area.margin(MARGIN / 2, 0, 0, 0));
    }
    let height = (TITLE_PX * 2.0) as u32;
    let (top, rest) = area.split_vertically(height);
    let style = ("sans-serif", TITLE_PX * 1.24)
        .into_font()
        .style(FontStyle::Bold)
        .color(&TEXT)
        .pos(Pos::new(HPos::Center, VPos::Center));
    let (w, _) = top.dim_in_pixel();
    let title = shorten(title, chars_fitting(w as i32 - 2 * MARGIN, TITLE_PX * 1.1));
    top.draw(&Text::new(
        title,
        (w as i32 / 2, height as i32 / 2 + 2),
        style,
    ))?;
    Ok(rest)
}

/// Lays the series names out in rows under the title (wrapping as needed) and returns the
/// area left for the plot. Outside the plot, the legend never hides data; it takes at most a
/// third of the height, and names that do not fit are counted as "+N more".
fn draw_legend<'a>(area: &Area<'a>, chart: &Chart, prepared: &Prepared) -> Result<Area<'a>> {
    if chart.series.is_empty() {
        return Ok(area.clone());
    }
    const SWATCH: i32 = 18;
    const GAP: i32 = 6;
    const SPACING: i32 = 20;
    let row_height = (LEGEND_PX * 1.7) as i32;
    let (width, height) = area.dim_in_pixel();
    let usable = width as i32 - 2 * MARGIN;
    let max_rows = (height as i32 / 3 / row_height).max(1);

    // First place every item, then cut the strip to the rows actually used.
    let mut items: Vec<(i32, i32, usize, String)> = Vec::new(); // x, row, series, label
    let (mut x, mut row) = (0, 0);
    let mut hidden = 0;
    for (index, series) in chart.series.iter().enumerate() {
        let mut label = shorten(&series.name, LEGEND_MAX_CHARS);
        if prepared.points[index].is_empty() {
            label.push_str(" (no data)");
        }
        let item_width = SWATCH + GAP + text_width(&label, LEGEND_PX);
        if x > 0 && x + item_width > usable {
            x = 0;
            row += 1;
        }
        if row == max_rows {
            hidden = chart.series.len() - index;
            break;
        }
        items.push((x, row, index, label));
        x += item_width + SPACING;
    }
    let rows = row.min(max_rows - 1) + 1;
    let more = |hidden: usize| format!("+{hidden} more");
    if hidden > 0 {
        // Make room for the count at the end of the last row.
        let room = usable - text_width(&more(hidden + 1), LEGEND_PX) - SPACING;
        while let Some((x, _, _, label)) = items.last() {
            if x + SWATCH + GAP + text_width(label, LEGEND_PX) <= room || items.len() == 1 {
                break;
            }
            items.pop();
            hidden += 1;
        }
    }
    let (strip, rest) = area.split_vertically((rows * row_height + 4) as u32);

    // Centre a single row; wrapped rows start at the left margin.
    let offset = if rows == 1 {
        ((usable - (x - SPACING)) / 2).max(0)
    } else {
        0
    };
    let style = font(LEGEND_PX).pos(Pos::new(HPos::Left, VPos::Center));
    for (x, row, index, label) in items {
        let colour = colour(index);
        let (x, y) = (MARGIN + offset + x, row * row_height + row_height / 2);
        match chart.kind {
            ChartKind::Line => {
                strip.draw(&PathElement::new(
                    vec![(x, y), (x + SWATCH, y)],
                    colour.stroke_width(3),
                ))?;
                strip.draw(&Circle::new((x + SWATCH / 2, y), 3, colour.filled()))?;
            }
            ChartKind::Bar => {
                let corners = [(x + 3, y - 6), (x + SWATCH - 3, y + 6)];
                strip.draw(&Rectangle::new(corners, colour.filled()))?;
            }
        }
        strip.draw(&Text::new(label, (x + SWATCH + GAP, y), style.clone()))?;
    }
    if hidden > 0 {
        let (x, y) = (
            width as i32 - MARGIN,
            (rows - 1) * row_height + row_height / 2,
        );
        let style = font(LEGEND_PX).pos(Pos::new(HPos::Right, VPos::Center));
        strip.draw(&Text::new(more(hidden), (x, y), style))?;
    }
    Ok(rest)
}

fn shorten(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max_chars - 1).collect();
    cut.push('…');
    cut
}

/// A framed, empty plot that says so, in place of axes with nothing on them.
fn draw_no_data(area: &Area) -> Result<()> {
    let area = area.margin(MARGIN, MARGIN, MARGIN, MARGIN);
    let (w, h) = area.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    area.draw(&Rectangle::new(
        [(0, 0), (w - 1, h - 1)],
        AXIS.stroke_width(1),
    ))?;
    let style = font(TITLE_PX).pos(Pos::new(HPos::Center, VPos::Center));
    area.draw(&Text::new("no data", (w / 2, h / 2), style))?;
    Ok(())
}

/// The chart's points reduced to what can be drawn, in plot coordinates, with the scale of
/// each axis decided: computed once so that the legend and the plot agree on which series
/// are empty.
struct Prepared {
    /// Per series (same order as `chart.series`), the drawable points; x is a category
    /// index on a category axis, y is log10(y) on a log axis.
    points: Vec<Vec<(f64, f64)>>,
    x: Scale,
    y: Scale,
    /// Bars rise from here: 0 on a linear axis, the bottom of a log axis.
    bar_base: f64,
}

impl Prepared {
    fn new(chart: &Chart) -> Self {
        let finite = |v: f64| v.is_finite() && v.abs() <= MAX_MAGNITUDE;
        let mut points: Vec<Vec<(f64, f64)>> = chart
            .series
            .iter()
            .map(|s| {
                s.points
                    .iter()
                    .copied()
                    .filter(|&(x, y)| finite(x) && finite(y))
                    .collect()
            })
            .collect();

        // Categories: given by the chart, or for bars one per distinct x value.
        let categories: Option<Vec<String>> = if !chart.x_categories.is_empty() {
            let n = chart.x_categories.len() as f64;
            for series in &mut points {
                series.retain(|&(x, _)| x > -0.5 && x < n - 0.5);
            }
            Some(chart.x_categories.clone())
        } else if chart.kind == ChartKind::Bar {
            let mut xs: Vec<f64> = points.iter().flatten().map(|&(x, _)| x).collect();
            xs.sort_by(f64::total_cmp);
            xs.dedup();
            for point in points.iter_mut().flatten() {
                point.0 = xs.binary_search_by(|x| x.total_cmp(&point.0)).unwrap_or(0) as f64;
            }
            Some(xs.iter().map(|&x| format_value(x)).collect())
        } else {
            None
        };

        // A log axis needs every value above zero; with a zero or negative value it falls
        // back to linear rather than dropping points.
        let log = chart.y_log && points.iter().flatten().all(|&(_, y)| y > 0.0);
        if log {
            for point in points.iter_mut().flatten() {
                point.1 = point.1.log10();
            }
        }

        let all = || points.iter().flatten();
        let (x_min, x_max) = min_max(all().map(|p| p.0));
        let (y_min, y_max) = min_max(all().map(|p| p.1));

        let x = match categories {
            Some(names) => Scale::Categories(names),
            None => {
                // Dots on the first and last point would sit on the plot's edges.
                let dotted = points
                    .iter()
                    .any(|s| !s.is_empty() && s.len() <= MARKER_MAX_POINTS);
                Scale::Linear(padded(x_min, x_max, if dotted { 0.03 } else { 0.0 }))
            }
        };
        let y = if log {
            let start = y_min.floor();
            let end = if y_max.ceil() > start {
                y_max.ceil()
            } else {
                start + 1.0
            };
            Scale::Log(start..end)
        } else if chart.kind == ChartKind::Bar {
            // Bars are read by their length, so the axis always includes zero.
            let (lo, hi) = (y_min.min(0.0), y_max.max(0.0));
            let (lo, hi) = if lo == hi { (0.0, 1.0) } else { (lo, hi) };
            let headroom = (hi - lo) * 0.05;
            let lo = if lo < 0.0 { lo - headroom } else { lo };
            let hi = if hi > 0.0 { hi + headroom } else { hi };
            Scale::Linear(lo..hi)
        } else {
            Scale::Linear(padded(y_min, y_max, 0.05))
        };
        let bar_base = match &y {
            Scale::Log(range) => range.start,
            _ => 0.0,
        };
        Prepared {
            points,
            x,
            y,
            bar_base,
        }
    }

    fn is_empty(&self) -> bool {
        self.points.iter().all(Vec::is_empty)
    }
}

fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

/// The data range widened by `share` of its span on each side, but not across zero (counts
/// stay on a non-negative axis); a range of one value (a single point, all-equal values) is
/// widened around it so the axis still has a length.
fn padded(lo: f64, hi: f64, share: f64) -> Range<f64> {
    let magnitude = lo.abs().max(hi.abs());
    let pad = if hi - lo > magnitude * 1e-6 {
        (hi - lo) * share
    } else if magnitude == 0.0 {
        1.0
    } else {
        magnitude * 0.1
    };
    let start = if lo >= 0.0 {
        (lo - pad).max(0.0)
    } else {
        lo - pad
    };
    let end = if hi <= 0.0 {
        (hi + pad).min(0.0)
    } else {
        hi + pad
    };
    if start < end {
        start..end
    } else {
        // Only all-zero values get here: give them a unit range around zero.
        -1.0..1.0
    }
}

/// What an axis spans, before its ticks are chosen: how many fit depends on the pixels the
/// axis gets, known only once the label areas around the plot are sized.
enum Scale {
    Linear(Range<f64>),
    /// In log10 units, from a whole decade to a whole decade.
    Log(Range<f64>),
    /// Names of the positions 0, 1, 2...
    Categories(Vec<String>),
}

impl Scale {
    /// The axis with ticks at least `spacing` pixels apart on an axis `length` pixels long.
    fn axis(&self, length: i32, spacing: i32) -> Axis {
        let target = (length / spacing.max(1)).clamp(2, 8) as usize;
        match self {
            Scale::Linear(range) => linear_axis(range.clone(), target),
            Scale::Log(range) => log_axis(range.clone(), target),
            Scale::Categories(names) => category_axis(names, length),
        }
    }
}

/// One axis: its range, where its ticks go and what they say. It is plotters' coordinate
/// for that axis too, so the grid and labels sit exactly on the ticks chosen here.
#[derive(Clone)]
struct Axis {
    range: Range<f64>,
    ticks: Vec<(f64, String)>,
}

impl Axis {
    fn widest_label(&self) -> i32 {
        self.ticks
            .iter()
            .map(|(_, label)| text_width(label, TICK_PX))
            .max()
            .unwrap_or(0)
    }
}

impl Ranged for Axis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let share = (value - self.range.start) / (self.range.end - self.range.start);
        limit.0 + (share * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // Only the labelled ticks get a grid line; no lighter lines between them.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.iter().map(|(at, _)| *at).collect()
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

impl ValueFormatter<f64> for Axis {
    fn format_ext(&self, value: &f64) -> String {
        self.ticks
            .iter()
            .find(|(at, _)| at == value)
            .map(|(_, label)| label.clone())
            .unwrap_or_default()
    }
}

/// About `target` ticks at round numbers (1, 2, 2.5 or 5 times a power of ten) in `range`.
fn linear_axis(range: Range<f64>, target: usize) -> Axis {
    let step = nice_step((range.end - range.start) / target as f64);
    let first = (range.start / step).ceil();
    let values: Vec<f64> = (0..)
        .map(|k| (first + k as f64) * step)
        .take_while(|&v| v <= range.end)
        .take(4 * target)
        .map(|v| if v.abs() < step * 1e-9 { 0.0 } else { v })
        .collect();
    let format = NumberFormat::new(values.iter().fold(0.0, |m: f64, v| m.max(v.abs())), step);
    Axis {
        ticks: values.iter().map(|&v| (v, format.apply(v))).collect(),
        range,
    }
}

fn nice_step(raw: f64) -> f64 {
    let magnitude = 10f64.powf(raw.log10().floor());
    let norm = raw / magnitude;
    let nice = [1.0, 2.0, 2.5, 5.0]
        .into_iter()
        .find(|&n| norm <= n)
        .unwrap_or(10.0);
    nice * magnitude
}

/// Ticks on the decades (every n-th when there are more than `target`), plus 2 and 5 times
/// each when there is room for three ticks a decade.
fn log_axis(range: Range<f64>, target: usize) -> Axis {
    let decades = (range.end - range.start) as usize;
    let stride = decades.div_ceil(target).max(1);
    let mut ticks = Vec::new();
    for d in (0..=decades).step_by(stride) {
        let exponent = range.start + d as f64;
        ticks.push(exponent);
        if decades * 3 <= target && d < decades {
            ticks.extend([2f64.log10() + exponent, 5f64.log10() + exponent]);
        }
    }
    Axis {
        ticks: ticks
            .into_iter()
            .map(|t| (t, format_value(10f64.powf(t))))
            .collect(),
        range,
    }
}

/// Categories sit on 0, 1, 2...; when their names would not fit side by side in `length`
/// pixels, only every n-th is labelled (the bars themselves are all drawn).
fn category_axis(names: &[String], length: i32) -> Axis {
    let labels: Vec<String> = names.iter().map(|name| shorten(name, 20)).collect();
    let widest = labels
        .iter()
        .map(|l| text_width(l, TICK_PX))
        .max()
        .unwrap_or(0);
    let needed = labels.len() as i32 * (widest + 10);
    let stride = (needed as f64 / length.max(1) as f64).ceil().max(1.0) as usize;
    Axis {
        range: -0.5..(names.len() as f64 - 0.5),
        ticks: labels
            .into_iter()
            .enumerate()
            .step_by(stride)
            .map(|(i, l)| (i as f64, l))
            .collect(),
    }
}

/// How one axis writes its numbers: a shared unit suffix (k, M, G, T) or scientific
/// notation for the extremes, and as many decimals as the tick step needs, so that
/// neighbouring labels never read the same.
struct NumberFormat {
    divisor: f64,
    suffix: &'static str,
    decimals: usize,
    scientific: bool,
}

impl NumberFormat {
    fn new(max_abs: f64, step: f64) -> Self {
        let exponent = |v: f64| v.abs().log10().floor() as i32;
        if max_abs >= 1e15 || (max_abs > 0.0 && max_abs < 1e-3) {
            let decimals = if step > 0.0 {
                exponent(max_abs) - exponent(step)
            } else {
                0
            };
            return NumberFormat {
                divisor: 1.0,
                suffix: "",
                decimals: decimals.clamp(0, 6) as usize,
                scientific: true,
            };
        }
        let (divisor, suffix) = [
            (1e12, 1e12, "T"),
            (1e9, 1e9, "G"),
            (1e6, 1e6, "M"),
            (1e4, 1e3, "k"),
        ]
        .into_iter()
        .find(|&(from, _, _)| max_abs >= from)
        .map(|(_, divisor, suffix)| (divisor, suffix))
        .unwrap_or((1.0, ""));
        let scaled = step / divisor;
        let decimals = (0..=MAX_DECIMALS)
            .find(|&d| {
                let shifted = scaled.abs() * 10f64.powi(d);
                shifted >= 0.999 && (shifted - shifted.round()).abs() < 1e-6 * shifted
            })
            .unwrap_or(MAX_DECIMALS) as usize;
        NumberFormat {
            divisor,
            suffix,
            decimals,
            scientific: false,
        }
    }

    fn apply(&self, value: f64) -> String {
        if value == 0.0 {
            "0".to_string()
        } else if self.scientific {
            format!("{:.*e}", self.decimals, value)
        } else {
            format!("{:.*}{}", self.decimals, value / self.divisor, self.suffix)
        }
    }
}

/// Enough for ticks 1e-10 apart: `padded` treats values closer than a millionth of their
/// size as one, and below 1e-3 the labels turn scientific.
const MAX_DECIMALS: i32 = 10;

/// One number on its own (a category made from an x value, a log tick).
fn format_value(value: f64) -> String {
    NumberFormat::new(value.abs(), value.abs()).apply(value)
}

fn draw_plot(area: &Area, chart: &Chart, prepared: &Prepared) -> Result<()> {
    let (width, height) = area.dim_in_pixel();
    let (width, height) = (width as i32, height as i32);
    let (top, bottom, left) = (MARGIN / 2, MARGIN / 2, MARGIN);
    let desc_room = |label: &str| {
        if label.is_empty() {
            0
        } else {
            (DESC_PX * 1.6) as i32
        }
    };
    // Tick labels start 10 px (twice plotters' default tick) from the axis.
    let x_area = 10 + (TICK_PX * 1.3) as i32 + 4 + desc_room(&chart.x_label);
    let plot_height = height - top - bottom - x_area;
    let y = prepared.y.axis(plot_height, 40);
    let y_area = 10 + y.widest_label() + 6 + desc_room(&chart.y_label);
    // The last x label is centred on the right edge: leave room for its right half.
    let x = prepared.x.axis(width - left - y_area - 2 * MARGIN, 90);
    let right = MARGIN.max(
        x.ticks
            .last()
            .map(|(_, l)| text_width(l, TICK_PX) / 2 + 4)
            .unwrap_or(0),
    );
    let plot_width = width - left - y_area - right;

    let mut builder = ChartBuilder::on(area);
    builder
        .margin_top(top)
        .margin_bottom(bottom)
        .margin_left(left)
        .margin_right(right)
        .x_label_area_size(x_area)
        .y_label_area_size(y_area);
    let mut plot = builder.build_cartesian_2d(x, y)?;

    // Axis names longer than their axis are cut rather than run into the legend.
    let x_desc = shorten(&chart.x_label, chars_fitting(plot_width, DESC_PX));
    let y_desc = shorten(&chart.y_label, chars_fitting(plot_height, DESC_PX));
    let mut mesh = plot.configure_mesh();
    mesh.bold_line_style(GRID)
        .axis_style(AXIS)
        .label_style(font(TICK_PX))
        .axis_desc_style(font(DESC_PX));
    if !x_desc.is_empty() {
        mesh.x_desc(x_desc);
    }
    if !y_desc.is_empty() {
        mesh.y_desc(y_desc);
    }
    if chart.kind == ChartKind::Bar {
        mesh.disable_x_mesh();
    }
    mesh.draw()?;

    match chart.kind {
        ChartKind::Line => {
            for (index, points) in prepared.points.iter().enumerate() {
                let markers = if points.len() <= MARKER_MAX_POINTS {
                    3
                } else {
                    0
                };
                let style = colour(index).filled().stroke_width(2);
                plot.draw_series(
                    LineSeries::new(points.iter().copied(), style).point_size(markers),
                )?;
            }
        }
        ChartKind::Bar => {
            // Each category holds a group of bars, one slot per series, 80% of its width.
            let slot_width = 0.8 / prepared.points.len() as f64;
            for (index, points) in prepared.points.iter().enumerate() {
                let style = colour(index).filled();
                plot.draw_series(points.iter().map(|&(category, value)| {
                    let left = category.round() - 0.4 + index as f64 * slot_width;
                    let corners = [(left, prepared.bar_base), (left + slot_width * 0.9, value)];
                    Rectangle::new(corners, style)
                }))?;
            }
        }
    }
    Ok(())
}

fn chars_fitting(pixels: i32, px: f64) -> usize {
    (f64::from(pixels.max(0)) / (px * CHAR_EM)).floor().max(4.0) as usize
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
        // Three bars each, plus the legend swatch.
        assert_eq!(fill_count(PALETTE[0]), 4);
        assert_eq!(fill_count(PALETTE[1]), 4);
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
        let mut strokes: Vec<String> = data_lines(&svg).into_iter().map(|l| l.0).collect();
        assert_eq!(strokes.len(), 8);
        strokes.sort();
        strokes.dedup();
        assert_eq!(strokes.len(), 8);
    }

    #[test]
    fn long_series_are_bare_polylines_and_the_svg_stays_small() {
        let svg = render(&timeline(4, 300));
        assert_eq!(data_lines(&svg).len(), 4);
        // The only circles are the four legend swatches, not one per point.
        assert_eq!(svg.matches("<circle").count(), 4);
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
