//! The fill-versus-invalidation guard: a row read from Redis is admitted into L1 only if
//! no invalidation of its key (and no flush) arrived since its read was sent. Cache
//! crates' loaders insert unconditionally and never see a concurrent invalidation; this
//! is ours. Each key maps to one of many striped generations, bumped by every
//! invalidation of a key in the stripe, and one epoch is bumped by every flush; a read
//! takes a ticket (both) before it is sent and an admission checks it after inserting
//! (insert, then look: an invalidation that slips in between still takes the entry out).
//! A stripe shared by two keys costs at most a needless drop, never a stale row.

use std::sync::atomic::{AtomicU64, Ordering};

/// Stripes of generations: enough that two hot keys rarely share one.
const STRIPES: usize = 1 << 14;

/// What a read saw before it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    generation: u64,
    epoch: u64,
}

pub struct Generations {
    stripes: Box<[AtomicU64]>,
    epoch: AtomicU64,
}

impl Default for Generations {
    fn default() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            epoch: AtomicU64::new(0),
        }
    }
}

impl Generations {
    fn stripe(&self, id: i32) -> &AtomicU64 {
        &self.stripes[(id as u32 as usize).wrapping_mul(0x9E37_79B9) % STRIPES]
    }

    /// Taken before a read is sent.
    pub fn ticket(&self, id: i32) -> Ticket {
        Ticket {
            epoch: self.epoch.load(Ordering::Acquire),
            generation: self.stripe(id).load(Ordering::Acquire),
        }
    }

    /// Is `ticket` still current for `id` (nothing invalidated or flushed since)?
    pub fn holds(&self, id: i32, ticket: Ticket) -> bool {
        self.ticket(id) == ticket
    }

    /// An invalidation of `id` arrived.
    pub fn invalidate(&self, id: i32) {
        self.stripe(id).fetch_add(1, Ordering::AcqRel);
    }

    /// Everything was flushed.
    pub fn flush(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::Generations;

    #[test]
    fn a_ticket_holds_until_its_key_is_invalidated_or_everything_flushed() {
        let g = Generations::default();
        let t = g.ticket(5);
        assert!(g.holds(5, t));
        g.invalidate(6);
        assert!(
            g.holds(5, t) || g.ticket(6) == g.ticket(5),
            "another key: still holds"
        );
        g.invalidate(5);
        assert!(!g.holds(5, t));
        let t = g.ticket(5);
        g.flush();
        assert!(!g.holds(5, t));
    }
}
