//! The JSON reports: `cachelab run --json` (the run's model as it is) and `cachelab load
//! --json` (its one `LoadRun`). Both are what `docs/report.schema.json` describes: every
//! figure's name carries its unit.

use super::model::RunReport;
use crate::load::LoadRun;

/// `cachelab run --json`.
pub fn run(report: &RunReport) -> serde_json::Result<String> {
    serde_json::to_string_pretty(report)
}

/// `cachelab load --json`.
pub fn load(run: &LoadRun) -> serde_json::Result<String> {
    serde_json::to_string_pretty(run)
}
