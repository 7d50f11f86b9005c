//! Axes: linear with "nice" steps, logarithmic by decades, or named categories, and the
//! number format their tick labels share.

use std::ops::Range;

use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, ValueFormatter};
use plotters::prelude::*;

use super::*;

/// What an axis spans, before its ticks are chosen: how many fit depends on the pixels the
/// axis gets, known only once the label areas around the plot are sized.
pub(super) enum Scale {
    Linear(Range<f64>),
    /// In log10 units, from a whole decade to a whole decade.
    Log(Range<f64>),
    /// Names of the positions 0, 1, 2...
    Categories(Vec<String>),
}

impl Scale {
    /// The axis with ticks at least `spacing` pixels apart on an axis `length` pixels long.
    pub(super) fn axis(&self, length: i32, spacing: i32) -> Axis {
        let target = (length / spacing.max(1)).clamp(2, 8) as usize;
        match self {
            Scale::Linear(range) => linear_axis(range.clone(), target),
            Scale::Log(range) => log_axis(range.clone(), target),
            Scale::Categories(names) => category_axis(names, length),
        }
    }

    /// The span of a numeric axis in plot units (a category axis spans its positions).
    pub(super) fn span(&self) -> Range<f64> {
        match self {
            Scale::Linear(range) | Scale::Log(range) => range.clone(),
            Scale::Categories(names) => -0.5..names.len() as f64 - 0.5,
        }
    }
}

/// One axis: its range, where its ticks go and what they say. It is plotters' coordinate
/// for that axis too, so the grid and labels sit exactly on the ticks chosen here.
#[derive(Clone)]
pub(super) struct Axis {
    pub(super) range: Range<f64>,
    pub(super) ticks: Vec<(f64, String)>,
}

impl Axis {
    pub(super) fn widest_label(&self) -> i32 {
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
pub(super) fn linear_axis(range: Range<f64>, target: usize) -> Axis {
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

pub(super) fn nice_step(raw: f64) -> f64 {
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
pub(super) fn log_axis(range: Range<f64>, target: usize) -> Axis {
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
pub(super) fn category_axis(names: &[String], length: i32) -> Axis {
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
pub(super) struct NumberFormat {
    pub(super) divisor: f64,
    pub(super) suffix: &'static str,
    pub(super) decimals: usize,
    pub(super) scientific: bool,
}

impl NumberFormat {
    pub(super) fn new(max_abs: f64, step: f64) -> Self {
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

    pub(super) fn apply(&self, value: f64) -> String {
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
pub(super) const MAX_DECIMALS: i32 = 10;

/// One number on its own (a category made from an x value, a log tick).
pub(super) fn format_value(value: f64) -> String {
    NumberFormat::new(value.abs(), value.abs()).apply(value)
}
