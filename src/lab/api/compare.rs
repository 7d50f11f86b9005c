//! Checks that compare: `check_eq`, `check_ge`, `check_le`, `check_between` record what
//! they saw and what they wanted (the report prints `✗ name (76, want 79)`), and
//! `wait_until` waits on a condition instead of a fixed sleep.

use std::time::{Duration, Instant};

use rhai::{Dynamic, FnPtr, NativeCallContext};

use super::{def, Registry};
use crate::lab::context;
use crate::lab::convert::{
    arg_count, arg_num, arg_str, format_float, lab_error, same_value, shown, to_json, LabResult,
};
use crate::report::{Event, Measured};

/// How often `wait_until` asks its condition.
const POLL: Duration = Duration::from_millis(10);

pub fn register(r: &mut Registry) {
    def!(r, "checks", "check_eq(name: string, actual: any, expected: any) -> bool",
        "A check that actual equals expected (3 == 3.0; maps and arrays by content); the report prints both.",
        |call: NativeCallContext, name: Dynamic, actual: Dynamic, expected: Dynamic| -> LabResult<bool> {
            let pass = same_value("check_eq", &actual, &expected)?;
            record(&call, "check_eq", &name, &actual, shown(&expected), pass)
        });
    def!(
        r,
        "checks",
        "check_ge(name: string, actual: number, bound: number) -> bool",
        "A check that actual >= bound; the report prints both.",
        |call: NativeCallContext, name: Dynamic, actual: Dynamic, bound: Dynamic| {
            against_bound(&call, Bound::AtLeast, &name, &actual, &bound)
        }
    );
    def!(
        r,
        "checks",
        "check_le(name: string, actual: number, bound: number) -> bool",
        "A check that actual <= bound; the report prints both.",
        |call: NativeCallContext, name: Dynamic, actual: Dynamic, bound: Dynamic| {
            against_bound(&call, Bound::AtMost, &name, &actual, &bound)
        }
    );
    def!(
        r,
        "checks",
        "check_between(name: string, actual: number, lo: number, hi: number) -> bool",
        "A check that lo <= actual <= hi; the report prints all three.",
        |call: NativeCallContext,
         name: Dynamic,
         actual: Dynamic,
         lo: Dynamic,
         hi: Dynamic|
         -> LabResult<bool> {
            let a = arg_num("check_between", "actual", &actual)?;
            let lo = arg_num("check_between", "lo", &lo)?;
            let hi = arg_num("check_between", "hi", &hi)?;
            if lo > hi {
                return Err(lab_error(format!(
                    "check_between: `lo` ({}) is above `hi` ({})",
                    number(lo),
                    number(hi)
                )));
            }
            let wanted = format!("{} to {}", number(lo), number(hi));
            record(
                &call,
                "check_between",
                &name,
                &actual,
                wanted,
                lo <= a && a <= hi,
            )
        }
    );
    def!(r, "checks", "wait_until(name: string, condition: fn, timeout_ms: int) -> bool",
        "Call condition (a function returning bool) every 10 ms until it is true: a note says how long it took; past timeout_ms it is a failed check. Returns whether it came true.",
        |call: NativeCallContext, name: Dynamic, condition: FnPtr, timeout_ms: Dynamic| -> LabResult<bool> {
            let name = arg_str("wait_until", "name", &name)?;
            let timeout = Duration::from_millis(arg_count("wait_until", "timeout_ms", &timeout_ms)?);
            let started = Instant::now();
            loop {
                let answer: Dynamic = condition.call_within_context(&call, ())?;
                let done = answer.as_bool().map_err(|got| {
                    lab_error(format!("wait_until: `condition` must return a bool, it returned {got}"))
                })?;
                let waited = started.elapsed();
                if done {
                    let text = format!("{name}: after {} ms", waited.as_millis());
                    return context::with(|ctx| {
                        ctx.add(Event::Note { text });
                        Ok(true)
                    });
                }
                if waited >= timeout {
                    let line = call.call_position().line();
                    let measured = Measured {
                        actual: serde_json::json!(format!("still false after {} ms", waited.as_millis())),
                        expected: format!("true within {} ms", timeout.as_millis()),
                    };
                    let name = format!("{name} (still false after {} ms)", timeout.as_millis());
                    return context::with(|ctx| {
                        ctx.add(Event::Check { name, pass: false, line, measured: Some(measured) });
                        Ok(false)
                    });
                }
                context::with(|ctx| ctx.block_on(tokio::time::sleep(POLL)))?;
            }
        });
}

/// Which side of its bound `check_ge`/`check_le` wants the value on.
#[derive(Clone, Copy)]
enum Bound {
    AtLeast,
    AtMost,
}

/// `check_ge` or `check_le`: a recorded check that `actual` is on the right side of `bound`.
fn against_bound(
    call: &NativeCallContext,
    side: Bound,
    name: &Dynamic,
    actual: &Dynamic,
    bound: &Dynamic,
) -> LabResult<bool> {
    let (function, sign) = match side {
        Bound::AtLeast => ("check_ge", ">="),
        Bound::AtMost => ("check_le", "<="),
    };
    let a = arg_num(function, "actual", actual)?;
    let b = arg_num(function, "bound", bound)?;
    let pass = match side {
        Bound::AtLeast => a >= b,
        Bound::AtMost => a <= b,
    };
    record(
        call,
        function,
        name,
        actual,
        format!("{sign} {}", number(b)),
        pass,
    )
}

/// A number as the report prints it: integers without a decimal point.
fn number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format_float(n)
    }
}

/// Record a comparing check; its name ends with `(actual, want expected)`.
fn record(
    call: &NativeCallContext,
    function: &str,
    name: &Dynamic,
    actual: &Dynamic,
    expected: String,
    pass: bool,
) -> LabResult<bool> {
    let name = arg_str(function, "name", name)?;
    let line = call.call_position().line();
    let shown_actual = if actual.is_float() {
        number(actual.as_float().unwrap_or_default())
    } else {
        shown(actual)
    };
    let name = format!("{name} ({shown_actual}, want {expected})");
    let measured = Measured {
        actual: to_json(actual),
        expected,
    };
    context::with(|ctx| {
        ctx.add(Event::Check {
            name,
            pass,
            line,
            measured: Some(measured),
        });
        Ok(pass)
    })
}
