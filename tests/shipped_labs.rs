//! The labs in labs/ pass, run as a user runs them. This is its own test binary so the
//! labs' latency comparisons run without other tests competing for the two cores.

mod common;

use common::cachelab;
use std::path::Path;

#[test]
fn the_shipped_labs_all_pass() {
    let labs = Path::new(env!("CARGO_MANIFEST_DIR")).join("labs");
    let out = cachelab().arg("run").arg(&labs).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    for lab in [
        "stampede",
        "eviction",
        "consistency",
        "upsert",
        "pool-exhaustion",
        "write-behind-loss",
        "popularity-shift",
        "ttl-tradeoff",
        "write-through-race",
    ] {
        assert!(
            stdout.contains(&format!("labs/{lab}.rhai")),
            "{lab} did not run:\n{stdout}"
        );
    }
    let last = stdout.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.contains(" labs: ") && last.contains(" passed, 0 failed · "),
        "{stdout}"
    );
    assert!(last.ends_with(" passed, 0 failed"), "{stdout}");
}
