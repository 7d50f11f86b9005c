//! The Redis keys cachelab writes. User rows keep the seed apps' `user:{id}` so
//! `redis-cli GET user:1` works as it did; the keys that travel with a row (its lock, its
//! lease) carry the row's key as a hash tag, so on a Redis Cluster they share its slot and
//! one script can use both.

/// The cache key of a user, as the seed apps named it.
pub fn user_key(id: i32) -> String {
    format!("user:{id}")
}

/// The `lock` protection's key for a user's row.
pub fn lock_key(id: i32) -> String {
    format!("lock:{{user:{id}}}")
}

/// The `lease` invalidation's key for a user's row.
pub fn lease_key(id: i32) -> String {
    format!("lease:{{user:{id}}}")
}

/// Glob patterns of every key cachelab itself writes (write-behind's are `{wb}:*`, see
/// `wb_queue`) (the partial reset of an external
/// Redis deletes exactly these).
pub const OWN_KEY_PATTERNS: [&str; 4] = ["user:*", "lock:{user:*", "lease:{user:*", "{wb}:*"];
