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
