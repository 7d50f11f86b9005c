//! The report of a run, one model drawn in every format: `cachelab run` reports its labs
//! (checks, notes, tables, charts and the `LoadRun` of every load), `cachelab load` its
//! one `LoadRun`. `model` holds what was found; `text`, `json` and `html` draw it, and
//! `charts` draws the SVG charts the page inlines. The report knows neither the commands
//! nor the lab engine: it is handed finished results.

pub mod charts;
pub mod html;
mod loads;
mod model;
mod page;
pub mod text;

pub use model::*;
