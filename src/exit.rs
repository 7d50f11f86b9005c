//! Exit codes and the run verdict. The crate root owns them so that every layer that
//! decides how a run ended (the report, the commands, `main`) reads them from one place,
//! and the report need not know the commands.

/// Everything passed.
pub const OK: u8 = 0;
/// A check failed or an assert stopped a lab.
pub const FAILED: u8 = 1;
/// Bad arguments, a script error, or the stack could not start.
pub const ERROR: u8 = 2;

/// How a whole run ended, worst first in what a script branches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every lab passed (or was skipped).
    Passed,
    /// A check failed or an assert stopped a lab.
    Failed,
    /// A script error, a set-up error, or a stop beyond the script's control.
    Error,
}

impl Verdict {
    /// The process exit code a script can branch on.
    pub fn code(self) -> u8 {
        match self {
            Verdict::Passed => OK,
            Verdict::Failed => FAILED,
            Verdict::Error => ERROR,
        }
    }
}
