//! The Postgres roles of a managed stack: the servers connect as the owner of `users`,
//! labs as a role that may only read and change its rows. The stack builds their URLs;
//! `store::admin` creates them and hands out their rights.

/// The role the strategy servers connect as on the managed stack (owns `users`).
pub const APP_ROLE: &str = "cachelab_app";
/// The role labs' `db_query`/`db_get` connect as on the managed stack.
pub const LAB_ROLE: &str = "cachelab_lab";
