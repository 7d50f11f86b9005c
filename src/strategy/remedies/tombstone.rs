//! Negative caching, the penetration remedy: reads of ids that do not exist would reach
//! Postgres every time. With `set_negative_ttl(secs)` a 404 is cached as a tombstone for
//! that long. The tombstone is the 404's own JSON body, so `redis-cli GET user:5000` says
//! what it is, and a user row (which starts with `{"id"`) can never be mistaken for one.

use bytes::Bytes;

/// The 404 body for `id`, also stored as its tombstone.
pub fn body(id: i32) -> Bytes {
    Bytes::from(serde_json::json!({ "error": format!("user {id} not found") }).to_string())
}

/// Is this cached value a tombstone?
pub fn is_tombstone(value: &[u8]) -> bool {
    value.starts_with(b"{\"error\"")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_tombstone_is_the_404_body_and_never_a_user_row() {
        let t = super::body(5000);
        assert_eq!(&t[..], br#"{"error":"user 5000 not found"}"#);
        assert!(super::is_tombstone(&t));
        assert!(!super::is_tombstone(br#"{"id":1,"name":"error"}"#));
    }
}
