//! Time inside a lab.

use rhai::Dynamic;
use std::time::Duration;

use super::{def, Registry};
use crate::lab::context;
use crate::lab::convert::{arg_count, LabResult};

pub fn register(r: &mut Registry) {
    // Typed `int` (not Dynamic) so it replaces Rhai's built-in sleep(seconds).
    def!(
        r,
        "time",
        "sleep(ms: int)",
        "Pause the lab for ms milliseconds (bounded by --timeout and Ctrl-C).",
        |ms: i64| -> LabResult<()> {
            let ms = arg_count("sleep", "ms", &Dynamic::from(ms))?;
            context::with(|ctx| ctx.block_on(tokio::time::sleep(Duration::from_millis(ms))))
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
