//! hey's report layout, so hey users feel at home: summary, response-time histogram,
//! latency distribution, status codes, the X-Cache split, and errors. Two lines hey does
//! not have: the seed (to repeat the ids) and a note when the run was stopped early.

use std::fmt::Write;

use super::summary::Summary;

const BAR: char = '■';
const BAR_WIDTH: u64 = 40;

/// The text report of a finished run.
pub fn print_text(summary: &Summary) -> String {
    let f = summary.cli_figures();
    let secs = |ms: f64| ms / 1000.0;
    let mut out = String::new();
    let _ = writeln!(out, "\nSummary:");
    let _ = writeln!(out, "  Total:\t{:.4} secs", f.total_s);
    let _ = writeln!(out, "  Slowest:\t{:.4} secs", secs(f.slowest_ms));
    let _ = writeln!(out, "  Fastest:\t{:.4} secs", secs(f.fastest_ms));
    let _ = writeln!(out, "  Average:\t{:.4} secs", secs(f.average_ms));
    let _ = writeln!(out, "  Requests/sec:\t{:.4}", f.rps);
    let _ = writeln!(out, "  Seed:\t{}", f.seed);
    if f.cancelled {
        let _ = writeln!(out, "  Stopped early:\tinterrupted before the planned end");
    }
    let responses = summary.responses();
    if let Some(per_request) = f.bytes.checked_div(responses) {
        let _ = writeln!(out, "\n  Total data:\t{} bytes", f.bytes);
        let _ = writeln!(out, "  Size/request:\t{per_request} bytes");
    }
    if !summary.tally.latency.is_empty() {
        let _ = writeln!(out, "\nResponse time histogram:");
        histogram(&mut out, summary);
        let _ = writeln!(out, "\nLatency distribution:");
        for (label, q) in [
            ("10%", f.p10_ms),
            ("25%", f.p25_ms),
            ("50%", f.p50_ms),
            ("75%", f.p75_ms),
            ("90%", f.p90_ms),
            ("95%", f.p95_ms),
            ("99%", f.p99_ms),
            ("99.9%", f.p999_ms),
        ] {
            let _ = writeln!(out, "  {label} in {:.4} secs", secs(q));
        }
    }
    if !f.status.is_empty() {
        let _ = writeln!(out, "\nStatus code distribution:");
        for (code, n) in &f.status {
            let _ = writeln!(out, "  [{code}]\t{n} responses");
        }
    }
    let with_cache: u64 = f.cache.values().sum();
    if with_cache > 0 {
        let _ = writeln!(out, "\nCache (X-Cache header):");
        for (value, n) in &f.cache {
            let share = 100.0 * *n as f64 / with_cache as f64;
            let _ = writeln!(out, "  [{value}]\t{n} responses ({share:.1}%)");
        }
    }
    if !f.error_kinds.is_empty() {
        let _ = writeln!(out, "\nError distribution:");
        for (kind, n) in &f.error_kinds {
            let _ = writeln!(out, "  [{n}]\t{kind}");
        }
    }
    if let Some(v) = &summary.consistency {
        let _ = writeln!(out, "\nConsistency (history checker):");
        let _ = writeln!(out, "  Reads judged:\t{}", v.reads);
        let _ = writeln!(out, "  Certainly stale:\t{}", v.stale_reads);
        let _ = writeln!(out, "  Max staleness:\t{:.3} secs", v.max_stale_ms / 1000.0);
        let _ = writeln!(
            out,
            "  Unexplained:\t{} (reads of values not written during the run)",
            v.unexplained
        );
    }
    out
}

/// Eleven buckets evenly spaced from fastest to slowest, as hey draws them.
fn histogram(out: &mut String, summary: &Summary) {
    let h = &summary.tally.latency;
    let (lo, hi) = (h.min(), h.max());
    let buckets = 11u64;
    let step = ((hi - lo) / (buckets - 1)).max(1);
    let mut counts = vec![0u64; buckets as usize];
    for v in h.iter_recorded() {
        let i = ((v.value_iterated_to().saturating_sub(lo)) / step).min(buckets - 1);
        counts[i as usize] += v.count_at_value();
    }
    let most = counts.iter().copied().max().unwrap_or(1).max(1);
    for (i, count) in counts.iter().enumerate() {
        let mark = (lo + step * i as u64) as f64 / 1e6;
        let bar: String = std::iter::repeat_n(BAR, (count * BAR_WIDTH / most) as usize).collect();
        let _ = writeln!(out, "  {mark:.3} [{count}]\t|{bar}");
    }
}
