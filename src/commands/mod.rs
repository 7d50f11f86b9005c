//! One file per subcommand; each returns the process exit code.

pub mod api;
pub mod load;
pub mod run;
pub mod serve;
pub mod target;
