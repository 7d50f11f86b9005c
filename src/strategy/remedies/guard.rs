//! The write guard (`set_write_guard("version")`): a cache write or fill applies only if
//! its row is newer than the cached one. Rows carry `updated_at`, which Postgres takes
//! with `clock_timestamp()` under the row lock at every write, so two racing writers'
//! stamps are ordered like their commits (not `NOW()`, the transaction's start, which can
//! go backwards between two racing UPDATEs). One script compares the stamps and writes.
//!
//! A write's invalidation (cache-aside, a DELETE) leaves a marker with the write's stamp
//! instead of deleting the key: a read that loaded the old row before the write cannot
//! put it back (its stamp is older), while a read of the new row fills at once. The marker
//! reads as a miss.
//!
//! Without the guard two concurrent write-through PUTs can land their SETs in the other
//! order and the cache keeps the older row until the TTL; a slow cache-aside read can put
//! back the row a write just invalidated.

use bytes::Bytes;

/// The marker a guarded invalidation leaves, `{"invalidated_at":"<stamp>"}`.
pub fn marker(stamp: &str) -> Bytes {
    Bytes::from(format!(
        "{{\"invalidated_at\":{}}}",
        serde_json::Value::String(stamp.to_string())
    ))
}

/// Is this cached value an invalidation marker?
pub fn is_marker(value: &[u8]) -> bool {
    value.starts_with(b"{\"invalidated_at\"")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_marker_names_its_stamp_and_is_never_a_row_or_a_tombstone() {
        let m = super::marker("2026-01-01T00:00:00.5");
        assert_eq!(&m[..], br#"{"invalidated_at":"2026-01-01T00:00:00.5"}"#);
        assert!(super::is_marker(&m));
        assert!(!super::is_marker(br#"{"id":1,"name":"invalidated_at"}"#));
        assert!(!crate::strategy::remedies::tombstone::is_tombstone(&m));
    }
}
