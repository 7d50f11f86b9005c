//! Negative caching, the penetration remedy: reads of ids that do not exist would reach
//! Postgres every time. With `set_negative_ttl(secs)` a 404 is cached as a tombstone for
//! that long. The tombstone is the 404's own JSON body, so `redis-cli GET user:5000` says
//! what it is, and a user row (which starts with `{"id"`) can never be mistaken for one.

use bytes::Bytes;

/// The 404 body for `id`, also stored as its tombstone.
pub fn body(id: i32) -> Bytes {
    Bytes::from(serde_json::json!({ "error": tombstone_message(id) }).to_string())
}

/// The tombstone a write-behind DELETE caches: the 404 body with the delete's stamp, so a
/// racing write's cache SET (applied only over an older stamp) cannot bring the row back.
pub fn stamped(id: i32, deleted_at: &str) -> Bytes {
    let body = tombstone_message(id);
    // Written by hand: the "error" key must come first (see `is_tombstone`).
    Bytes::from(format!(
        "{{\"error\":{},\"deleted_at\":{}}}",
        serde_json::Value::String(body),
        serde_json::Value::String(deleted_at.to_string())
    ))
}

fn tombstone_message(id: i32) -> String {
    format!("user {id} not found")
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
        let stamped = super::stamped(5, "2026-01-01T00:00:00.000001");
        assert!(super::is_tombstone(&stamped), "{stamped:?}");
        let v: serde_json::Value = serde_json::from_slice(&stamped).unwrap();
        assert_eq!(v["deleted_at"], "2026-01-01T00:00:00.000001");
    }
}
