//! Time inside a lab.

use rhai::Dynamic;
use std::time::Duration;

use super::{def, Registry};
use crate::lab::context;
use crate::lab::convert::{arg_count, LabResult};

pub fn register(r: &mut Registry) {
    // Typed `int` and `float` (not Dynamic) so they replace both of Rhai's built-in
    // sleep(seconds), which would block past --timeout.
    def!(
        r,
        "time",
        "sleep(ms: int)",
        "Pause the lab for ms milliseconds (bounded by --timeout and Ctrl-C).",
        |ms: i64| -> LabResult<()> {
            let ms = arg_count("sleep", "ms", &Dynamic::from(ms))?;
            pause(Duration::from_millis(ms))
        }
    );
    def!(
        r,
        "time",
        "sleep(ms: float)",
        "The same with a fractional number of milliseconds (a negative one sleeps not at all).",
        |ms: f64| -> LabResult<()> {
            if !ms.is_finite() {
                return Err(crate::lab::convert::lab_error(format!(
                    "sleep: argument `ms` must be a number of milliseconds, got {ms}"
                )));
            }
            pause(Duration::from_secs_f64(ms.max(0.0) / 1000.0))
        }
    );
    def!(
        r,
        "time",
        "cpu_ms() -> float",
        "CPU time (user + system, ms) the cachelab process has used so far: the strategy servers and the load generator run in it, so the difference over a load ÷ its requests is the CPU per request of serving and sending it (Redis and Postgres run in their own processes).",
        || -> LabResult<f64> { Ok(process_cpu_ms()) }
    );
    def!(
        r,
        "time",
        "now_ms() -> int",
        "Milliseconds since the Unix epoch, for timing steps.",
        || -> LabResult<i64> {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            Ok(now.as_millis() as i64)
        }
    );
}

fn pause(how_long: Duration) -> LabResult<()> {
    context::with(|ctx| ctx.block_on(tokio::time::sleep(how_long)))
}

/// User + system CPU time of this process, in ms (getrusage).
fn process_cpu_ms() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}
