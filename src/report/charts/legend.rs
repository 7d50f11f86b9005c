//! The words around a chart: its title on top, the legend (a swatch in each series'
//! colour and line style, its name, and the names of empty series), and "no data".

use anyhow::Result;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::*;

/// Writes the title centred at the top and returns the area below it.
pub(super) fn draw_title<'a>(area: &Area<'a>, title: &str) -> Result<Area<'a>> {
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
pub(super) fn draw_legend<'a>(
    area: &Area<'a>,
    chart: &Chart,
    prepared: &Prepared,
) -> Result<Area<'a>> {
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
            ChartKind::Line | ChartKind::Steps => {
                let ends = [(x, y), (x + SWATCH, y)];
                strip.draw(&PathElement::new(ends, colour.stroke_width(3)))?;
                draw_point(&strip, index, (x + SWATCH / 2, y), colour)?;
            }
            ChartKind::Bar => {
                let corners = [(x + 3, y - 6), (x + SWATCH - 3, y + 6)];
                let style = if hollow(index) {
                    colour.stroke_width(2)
                } else {
                    colour.filled()
                };
                strip.draw(&Rectangle::new(corners, style))?;
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

pub(super) fn shorten(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max_chars - 1).collect();
    cut.push('…');
    cut
}

/// A framed, empty plot that says so, in place of axes with nothing on them.
pub(super) fn draw_no_data(area: &Area) -> Result<()> {
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

/// The legend's point marker, shaped like the series' markers on the plot (circle,
/// triangle, square, cross), so series differ in more than colour.
pub(super) fn draw_point<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    index: usize,
    (x, y): (i32, i32),
    colour: RGBColor,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    match index % 4 {
        0 => area.draw(&Circle::new((x, y), 3, colour.filled()))?,
        1 => area.draw(&TriangleMarker::new((x, y), 4, colour.filled()))?,
        2 => area.draw(&Rectangle::new(
            [(x - 3, y - 3), (x + 3, y + 3)],
            colour.filled(),
        ))?,
        _ => area.draw(&Cross::new((x, y), 4, colour.stroke_width(2)))?,
    }
    Ok(())
}
