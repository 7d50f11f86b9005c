//! Which of a Redis Cluster's 16384 hash slots a key belongs to, as Redis computes it:
//! CRC16 (XMODEM) of the key, or of its hash tag — the part between the first `{` and the
//! next `}`, when that is not empty — modulo 16384. The servers use it to tell which
//! master a call went to, so one dead master does not make them skip the live ones.

/// Hash slots in a Redis Cluster.
pub const SLOTS: usize = 16384;

/// The hash slot of `key`.
pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hashed_part(key)) % SLOTS as u16
}

/// The part of `key` that is hashed: its hash tag if it has a non-empty one.
fn hashed_part(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    match key[open + 1..].iter().position(|&b| b == b'}') {
        Some(len) if len > 0 => &key[open + 1..open + 1 + len],
        _ => key,
    }
}

/// CRC-16/XMODEM: polynomial 0x1021, initial value 0, no reflection.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::{crc16, key_slot};

    #[test]
    fn crc16_is_xmodem() {
        // The standard check value of CRC-16/XMODEM.
        assert_eq!(crc16(b"123456789"), 0x31C3);
    }

    #[test]
    fn slots_match_what_redis_cluster_keyslot_answers() {
        // What a cluster-enabled redis-server's `CLUSTER KEYSLOT` answers.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"user:1"), 10778);
        assert_eq!(key_slot(b"{wb}:queue"), 7466);
        assert_eq!(key_slot(b"lock:{user:7}"), 2780);
        assert_eq!(key_slot(b"a{}b"), 13694);
        assert_eq!(key_slot(b"{a}{b}"), 15495);
    }

    #[test]
    fn a_hash_tag_puts_keys_in_one_slot_and_an_empty_one_is_ignored() {
        assert_eq!(key_slot(b"lock:{user:7}"), key_slot(b"user:7"));
        assert_eq!(key_slot(b"lease:{user:7}"), key_slot(b"user:7"));
        assert_eq!(key_slot(b"a{}b"), crc16(b"a{}b") % 16384);
        assert_eq!(key_slot(b"{a}{b}"), key_slot(b"a"));
        assert_eq!(key_slot(b"x{unclosed"), crc16(b"x{unclosed") % 16384);
    }
}
