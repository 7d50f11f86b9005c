//! Bounded knobs and load options, against the real stack (DESIGN "Correctness: Bounded
//! knobs"): a value outside a knob's range is a lab error (exit 2) or a usage error naming
//! the range, `set_ttl_ms` makes entries expire in milliseconds, and `load()` and
//! `cachelab load` refuse options that cannot mean what they say instead of quietly
//! running something else.

mod common;

use common::{cachelab, run};
use std::path::Path;
use std::time::{Duration, Instant};

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/labs")
        .join(name)
}

#[test]
fn out_of_range_setters_and_senseless_load_options_are_lab_errors_naming_the_range_or_option() {
    // One run of every refusal (a short timeout: before they were refused, the slow rate
    // ran until it).
    let r = run(&["--timeout", "20"], &[&fixture("refused")]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    for (lab, message) in [
        (
            "set_ttl_past_a_year.rhai",
            "set_ttl: argument `secs` must be in 1..=31536000 s (up to 1 year), got 10000000000000000",
        ),
        (
            "set_lock_ttl_past_a_minute.rhai",
            "set_lock_ttl: argument `ms` must be in 1..=60000 ms (up to 1 min), got 1000000000",
        ),
        (
            "set_ttl_ms_zero.rhai",
            "set_ttl_ms: argument `ms` must be in 1..=31536000000 ms (up to 1 year), got 0",
        ),
        (
            "set_wb_batch_max_zero.rhai",
            "set_wb_batch_max: argument `n` must be in 1..=100000, got 0",
        ),
        (
            "set_lease_ttl_past_a_minute.rhai",
            "set_lease_ttl: argument `ms` must be in 1..=60000 ms (up to 1 min), got 600000",
        ),
        ("load_n_zero.rhai", "load: option `n` must be at least 1, got 0"),
        ("load_c_zero.rhai", "load: option `c` must be at least 1, got 0"),
        (
            "load_rate_nan.rhai",
            "load: option `rate` must be a positive finite number of requests per second, got NaN",
        ),
        (
            "load_zipf_s_nan.rhai",
            "load: option `zipf_s` must be in (0, 10], got NaN",
        ),
        (
            "load_rate_past_the_deadline.rhai",
            "load: option `rate`: 1000 requests at 0.000000001 per second take",
        ),
        (
            "load_duration_zero.rhai",
            "load: option `duration_ms` must be at least 1, got 0",
        ),
        (
            "load_ids_past_the_table.rhai",
            "load: option `ids` must be first..last with first <= last, within 1..=2147483647",
        ),
    ] {
        let at = format!("{}:5:1: ", fixture("refused").join(lab).display());
        let line = r
            .stdout
            .lines()
            .find(|l| l.contains(&at))
            .unwrap_or_else(|| panic!("{lab}: no error at {at} in\n{}", r.stdout));
        assert!(line.contains(message), "{lab}: wanted {message:?} in {line:?}");
    }
    assert!(
        !r.stdout.contains("(it must be)"),
        "a refused call went on to its check:\n{}",
        r.stdout
    );
}

#[test]
fn set_ttl_ms_makes_an_entry_expire_in_milliseconds() {
    let r = run(&[], &[&fixture("ttl_ms.rhai")]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("0 failed"), "{}", r.stdout);
}

/// `cachelab serve ARGS`'s exit code and stderr; a serve that starts anyway (it must not)
/// is interrupted, and the test fails.
fn serve_refusal(args: &[&str]) -> (Option<i32>, String) {
    let tmp = common::private_tmpdir();
    let mut child = cachelab()
        .arg("serve")
        .args(["--port", "0"])
        .args(args)
        .env("TMPDIR", tmp.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            // SAFETY: signalling the child this test started.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            child.wait().unwrap();
            panic!("serve {args:?} started instead of refusing the value");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn serve_refuses_a_knob_flag_outside_its_range_with_exit_2_naming_the_range() {
    for (args, range) in [
        (["--ttl-jitter", "500"], "[0, 100] percent"),
        (["--lock-ttl-ms", "100000000"], "1..=60000 ms"),
        (["--ttl", "31536001"], "1..=31536000 s"),
        (["--lease-ttl-ms", "0"], "1..=60000 ms"),
        (["--wb-batch-max", "100001"], "1..=100000"),
    ] {
        let (code, stderr) = serve_refusal(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(args[0]) && stderr.contains(range),
            "{args:?}: wanted {range:?} in {stderr}"
        );
    }
}

#[test]
fn cachelab_load_refuses_rates_and_zipf_exponents_that_cannot_run_with_exit_2() {
    // Nothing listens there: a refused plan never connects.
    let url = "http://127.0.0.1:9/users/{id}";
    for (args, words) in [
        (vec!["--rate", "NaN"], "rate"),
        (vec!["--rate", "inf"], "positive finite"),
        (vec!["--rate", "0"], "rate"),
        (vec!["-q", "inf"], "positive finite"),
        (vec!["--rate", "1e-300"], "too low"),
        (vec!["-q", "1e-300"], "too low"),
        (vec!["--keys", "zipf:NaN"], "zipf"),
        (vec!["--keys", "zipf:50"], "(0, 10]"),
    ] {
        let out = cachelab()
            .args(["load", url, "-n", "2", "-c", "1"])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(words) && !stderr.contains("panicked"),
            "{args:?}: wanted {words:?} in {stderr}"
        );
    }
}
