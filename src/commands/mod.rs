//! One file per subcommand; each returns the process exit code.

pub mod api;
pub mod load;
pub mod run;
pub mod serve;
pub mod target;

/// Exit codes a script can branch on.
pub mod exit {
    /// Everything passed.
    pub const OK: u8 = 0;
    /// A check failed or an assert stopped a lab.
    pub const FAILED: u8 = 1;
    /// Bad arguments, a script error, or the stack could not start.
    pub const ERROR: u8 = 2;
}
