//! What a lab concludes: checks that are recorded and go on, asserts that stop the lab,
//! and notes for the report.

use rhai::{Dynamic, NativeCallContext};

use super::{def, Registry};
use crate::lab::context::{self, Halt};
use crate::lab::convert::{arg_bool, arg_str, same_value, LabResult};

pub fn register(r: &mut Registry) {
    def!(
        r,
        "checks",
        "check(name: string, condition: bool) -> bool",
        "Record a named check (✓/✗ in the report) and go on; returns the condition.",
        |call: NativeCallContext, name: Dynamic, condition: Dynamic| -> LabResult<bool> {
            let name = arg_str("check", "name", &name)?;
            let pass = arg_bool("check", "condition", &condition)?;
            let line = call.call_position().line();
            context::with(|ctx| {
                ctx.add_check(name, pass, line);
                Ok(pass)
            })
        }
    );
    def!(
        r,
        "checks",
        "assert(condition: bool, message: string)",
        "Stop the lab (it fails) unless condition is true.",
        |condition: Dynamic, message: Dynamic| -> LabResult<()> {
            let pass = arg_bool("assert", "condition", &condition)?;
            if pass {
                return Ok(());
            }
            let message = arg_str("assert", "message", &message)?;
            context::with(|ctx| Err(ctx.halt_with(Halt::Assert(message))))
        }
    );
    def!(r, "checks", "assert_eq(actual: any, expected: any, message: string)",
        "Stop the lab (it fails) unless actual equals expected (3 == 3.0; maps and arrays by content).",
        |actual: Dynamic, expected: Dynamic, message: Dynamic| -> LabResult<()> {
            if same_value(&actual, &expected) {
                return Ok(());
            }
            let message = arg_str("assert_eq", "message", &message)?;
            context::with(|ctx| {
                Err(ctx.halt_with(Halt::Assert(format!("{message}: expected {expected}, got {actual}"))))
            })
        });
    def!(
        r,
        "checks",
        "note(text: any)",
        "Add an observation to the report (numbers, tables, anything worth reading).",
        |text: Dynamic| -> LabResult<()> {
            let text = if text.is_string() {
                text.into_string().unwrap_or_default()
            } else {
                text.to_string()
            };
            context::with(|ctx| {
                ctx.add_note(text);
                Ok(())
            })
        }
    );
}
