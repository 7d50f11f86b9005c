//! hey's report layout, so hey users feel at home: summary, response-time histogram,
//! latency distribution, status codes, the X-Cache split, and errors. Lines hey does not
//! have: the seed (to repeat the ids, when the URL has an `{id}`), the GET/PUT split of a
//! mix, the history checker's verdict, and a note when the run was stopped early.

use std::fmt::Write;

use super::run::LoadRun;

const BAR: char = '■';
const BAR_WIDTH: u64 = 40;

/// The text report of a finished run.
pub fn print_text(run: &LoadRun) -> String {
    let secs = |ms: f64| ms / 1000.0;
    let mut out = String::new();
    let _ = writeln!(out, "\nSummary:");
    let _ = writeln!(out, "  Total:\t{:.4} secs", run.duration_s);
    let _ = writeln!(out, "  Slowest:\t{:.4} secs", secs(run.max_ms));
    let _ = writeln!(out, "  Fastest:\t{:.4} secs", secs(run.fastest_ms));
    let _ = writeln!(out, "  Average:\t{:.4} secs", secs(run.average_ms));
    let _ = writeln!(out, "  Requests/sec:\t{:.4}", run.rps);
    if run.keyed {
        let _ = writeln!(out, "  Seed:\t{}", run.seed);
    }
    if let Some(mix) = run.mix {
        let _ = writeln!(out, "  GETs / PUTs:\t{} / {}", mix.gets, mix.puts);
    }
    if run.cancelled {
        let _ = writeln!(out, "  Stopped early:\tinterrupted before the planned end");
    }
    let responses: u64 = run.status.values().sum();
    if let Some(per_request) = run.bytes.checked_div(responses) {
        let _ = writeln!(out, "\n  Total data:\t{} bytes", run.bytes);
        let _ = writeln!(out, "  Size/request:\t{per_request} bytes");
    }
    if !run.histogram.is_empty() {
        let _ = writeln!(out, "\nResponse time histogram:");
        let most = run
            .histogram
            .iter()
            .map(|b| b.responses)
            .max()
            .unwrap_or(1)
            .max(1);
        for bucket in &run.histogram {
            let bar: String =
                std::iter::repeat_n(BAR, (bucket.responses * BAR_WIDTH / most) as usize).collect();
            let _ = writeln!(
                out,
                "  {:.3} [{}]\t|{bar}",
                secs(bucket.upto_ms),
                bucket.responses
            );
        }
        let _ = writeln!(out, "\nLatency distribution:");
        for (label, ms) in run.percentiles() {
            if label == "max" {
                continue;
            }
            let label = format!("{}%", label.trim_start_matches('p'));
            let _ = writeln!(out, "  {label} in {:.4} secs", secs(ms));
        }
    }
    if !run.status.is_empty() {
        let _ = writeln!(out, "\nStatus code distribution:");
        for (code, n) in &run.status {
            let _ = writeln!(out, "  [{code}]\t{n} responses");
        }
    }
    let with_cache = run.cache.total();
    if with_cache > 0 {
        let _ = writeln!(out, "\nCache (X-Cache header):");
        for (value, n) in run.cache.seen() {
            let share = 100.0 * n as f64 / with_cache as f64;
            let _ = writeln!(out, "  [{value}]\t{n} responses ({share:.1}%)");
        }
    }
    if !run.error_kinds.is_empty() {
        let _ = writeln!(out, "\nError distribution:");
        for (kind, n) in &run.error_kinds {
            let _ = writeln!(out, "  [{n}]\t{kind}");
        }
    }
    if let Some(v) = &run.consistency {
        let _ = writeln!(out, "\nConsistency (history checker):");
        let _ = writeln!(out, "  Reads judged:\t{}", v.reads);
        let _ = writeln!(out, "  Certainly stale:\t{}", v.stale_reads);
        let _ = writeln!(out, "  Max staleness:\t{:.3} secs", v.max_stale_ms / 1000.0);
        let _ = writeln!(
            out,
            "  Values written before the run:\t{} (reads of values no write of the run wrote)",
            v.unexplained
        );
    }
    out
}
