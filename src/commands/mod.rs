//! One file per subcommand; each returns the process exit code.

pub mod api;
pub mod list;
pub mod load;
pub mod new;
pub mod run;
pub mod serve;
pub mod target;
