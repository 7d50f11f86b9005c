//! The plot itself: the points reduced to what can be drawn with each axis' scale
//! decided (`Prepared`), then the mesh, the series as lines, steps or bars, the event
//! markers and the partial interval drawn on it.

use std::ops::Range;

use anyhow::Result;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::*;

/// The chart's points reduced to what can be drawn, in plot coordinates, with the scale of
/// each axis decided: computed once so that the legend and the plot agree on which series
/// are empty.
pub(super) struct Prepared {
    /// Per series (same order as `chart.series`), the drawable points; x is a category
    /// index on a category axis, y is log10(y) on a log axis.
    pub(super) points: Vec<Vec<(f64, f64)>>,
    pub(super) x: Scale,
    pub(super) y: Scale,
    /// Bars rise from here: 0 on a linear axis, the bottom of a log axis.
    pub(super) bar_base: f64,
}

impl Prepared {
    pub(super) fn new(chart: &Chart) -> Self {
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
        let positive = points.iter().flatten().all(|&(_, y)| y > 0.0);
        let (low, high) = min_max(points.iter().flatten().map(|p| p.1));
        let log = positive && (chart.y_log || high > low * LOG_SPAN);
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
            // A bar rises from the axis' bottom: one on a whole decade would have no
            // height, so the axis starts a decade lower.
            let start = match y_min.floor() {
                floor if floor == y_min && chart.kind != ChartKind::Line => floor - 1.0,
                floor => floor,
            };
            let end = if y_max.ceil() > start {
                y_max.ceil()
            } else {
                start + 1.0
            };
            Scale::Log(start..end)
        } else if chart.kind != ChartKind::Line {
            // Bars and steps are read by their length, so the axis always includes zero.
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

    pub(super) fn is_empty(&self) -> bool {
        self.points.iter().all(Vec::is_empty)
    }
}

pub(super) fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

/// The data range widened by `share` of its span on each side, but not across zero (counts
/// stay on a non-negative axis); a range of one value (a single point, all-equal values) is
/// widened around it so the axis still has a length.
pub(super) fn padded(lo: f64, hi: f64, share: f64) -> Range<f64> {
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

pub(super) fn draw_plot(area: &Area, chart: &Chart, prepared: &Prepared) -> Result<()> {
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
    let y_label = match prepared.y {
        Scale::Log(_) if !chart.y_log => format!("{} (log scale)", chart.y_label),
        _ => chart.y_label.clone(),
    };
    let y_desc = shorten(&y_label, chars_fitting(plot_height, DESC_PX));
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

    let (y_span, x_span) = (prepared.y.span(), prepared.x.span());
    if let Some(from) = chart.partial_from {
        let shade = RGBColor(0xF2, 0xF2, 0xF2).filled();
        plot.draw_series([Rectangle::new(
            [(from, y_span.start), (x_span.end, y_span.end)],
            shade,
        )])?;
        let style = font(TICK_PX).pos(Pos::new(HPos::Left, VPos::Top));
        plot.draw_series([Text::new("partial", (from, y_span.end), style)])?;
    }

    match chart.kind {
        ChartKind::Line | ChartKind::Steps => {
            for (index, points) in prepared.points.iter().enumerate() {
                let drawn: Vec<(f64, f64)> = if chart.kind == ChartKind::Steps {
                    staircase(points)
                } else {
                    points.clone()
                };
                let style = colour(index).stroke_width(2);
                plot.draw_series(LineSeries::new(drawn, style))?;
                // A shape per series on its points (on a long series, on about a dozen of
                // them, staggered between series), so lines differ in more than colour.
                let every = if points.len() <= MARKER_MAX_POINTS {
                    1
                } else {
                    points.len() / SPARSE_MARKERS
                };
                let offset = (index * every / prepared.points.len().max(1)).min(every - 1);
                let marked: Vec<(f64, f64)> =
                    points.iter().copied().skip(offset).step_by(every).collect();
                let style = colour(index).filled();
                let at = |p: (f64, f64)| EmptyElement::at(p);
                match index % 4 {
                    0 => plot.draw_series(
                        marked
                            .into_iter()
                            .map(|p| at(p) + Circle::new((0, 0), 3, style)),
                    )?,
                    1 => plot.draw_series(
                        marked
                            .into_iter()
                            .map(|p| at(p) + TriangleMarker::new((0, 0), 4, style)),
                    )?,
                    2 => plot.draw_series(
                        marked
                            .into_iter()
                            .map(|p| at(p) + Rectangle::new([(-3, -3), (3, 3)], style)),
                    )?,
                    _ => plot.draw_series(
                        marked
                            .into_iter()
                            .map(|p| at(p) + Cross::new((0, 0), 4, colour(index).stroke_width(2))),
                    )?,
                };
            }
        }
        ChartKind::Bar => {
            // Each category holds a group of bars, one slot per series, 80% of its width.
            let slot_width = 0.8 / prepared.points.len() as f64;
            for (index, points) in prepared.points.iter().enumerate() {
                let style = if hollow(index) {
                    colour(index).stroke_width(2)
                } else {
                    colour(index).filled()
                };
                plot.draw_series(points.iter().map(|&(category, value)| {
                    let left = category.round() - 0.4 + index as f64 * slot_width;
                    let corners = [(left, prepared.bar_base), (left + slot_width * 0.9, value)];
                    Rectangle::new(corners, style)
                }))?;
            }
        }
    }

    // Events: a dashed vertical line each, labelled at the top, staggered when close.
    for (i, marker) in chart.markers.iter().enumerate() {
        if !(x_span.start..=x_span.end).contains(&marker.x) {
            continue;
        }
        let line = [(marker.x, y_span.start), (marker.x, y_span.end)];
        plot.draw_series([DashedPathElement::new(
            line,
            5,
            3,
            RGBColor(0x44, 0x44, 0x44).stroke_width(1),
        )])?;
        let step = (y_span.end - y_span.start) * 0.07;
        let y = y_span.end - step * (i % 3) as f64;
        let style = font(TICK_PX).pos(Pos::new(HPos::Left, VPos::Top));
        plot.draw_series([Text::new(
            format!(" {}", shorten(&marker.label, 32)),
            (marker.x, y),
            style,
        )])?;
    }
    Ok(())
}

/// How many points of a long series carry its marker shape.
const SPARSE_MARKERS: usize = 12;

/// Points `(x, y)` held until the next point's x, as a path: each interval one flat
/// segment joined by verticals.
fn staircase(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut path = Vec::with_capacity(points.len() * 2);
    for pair in points.windows(2) {
        let ((x0, y0), (x1, _)) = (pair[0], pair[1]);
        path.push((x0, y0));
        path.push((x1, y0));
    }
    if let Some(&last) = points.last() {
        path.push(last);
    }
    path
}

pub(super) fn chars_fitting(pixels: i32, px: f64) -> usize {
    (f64::from(pixels.max(0)) / (px * CHAR_EM)).floor().max(4.0) as usize
}
