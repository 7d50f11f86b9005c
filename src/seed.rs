//! The data every fresh state starts from: `schema.sql` and `users.json`, compiled into
//! the binary so `cachelab` works from any directory.

use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// The `users` table definition.
pub const SCHEMA_SQL: &str = include_str!("../schema.sql");

/// The mock users, as committed in `users.json`.
pub const USERS_JSON: &str = include_str!("../users.json");

/// One record of `users.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedUser {
    pub id: i32,
    pub name: String,
    pub email: String,
}

/// The parsed records of `users.json` (parsed once).
pub fn users() -> &'static [SeedUser] {
    static USERS: OnceLock<Vec<SeedUser>> = OnceLock::new();
    USERS.get_or_init(|| {
        serde_json::from_str(USERS_JSON).expect("users.json is valid (checked by tests)")
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn users_json_has_a_thousand_users_with_ids_one_to_n() {
        let users = super::users();
        assert!(users.len() >= 1000);
        for (i, u) in users.iter().enumerate() {
            assert_eq!(u.id as usize, i + 1);
            assert!(u.email.contains('@'), "{u:?}");
            assert!(u.name.contains(' '), "{u:?}");
        }
    }
}
