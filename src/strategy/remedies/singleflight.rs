//! Singleflight: within one server process, one Postgres read per key at a time. The
//! first miss (the leader) reads; misses of the same key that arrive meanwhile wait for
//! its answer (X-Cache COALESCED). The leader's read runs as its own task, so it finishes
//! for the waiters even if the leader's client goes away. A waiter waits at most a
//! bounded time, then reads Postgres itself: no failure upstream becomes a hang.

use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

use super::state::Joined;
use crate::strategy::backend::Backend;
use crate::strategy::error::StrategyError;
use crate::strategy::fill::load_and_fill;
use crate::strategy::source::RowSource;
use crate::xcache::XCache;

/// Removes the flight however the leader's task ends.
struct Flight {
    b: Arc<Backend>,
    id: i32,
}

impl Drop for Flight {
    fn drop(&mut self) {
        self.b.remedies.flights.leave(self.id);
    }
}

/// Answer a miss of `id`, sharing one Postgres read among concurrent misses.
pub async fn read<S: RowSource>(
    s: S,
    b: &Arc<Backend>,
    id: i32,
    wait: Duration,
) -> (Result<Option<Bytes>, StrategyError>, XCache) {
    match b.remedies.flights.join(id) {
        Joined::Leader(tx) => {
            let flight = Flight { b: b.clone(), id };
            let lab = b.lab_token();
            let task = b.tasks.spawn(async move {
                let b = flight.b.clone();
                // Cancelled with its lab: the waiters then read Postgres themselves.
                let outcome = tokio::select! {
                    outcome = load_and_fill(s, &b, id, true, None) => outcome.map_err(Arc::new),
                    _ = lab.cancelled() => Err(Arc::new(StrategyError::Internal(anyhow::anyhow!(
                        "the read of user {id} was cancelled: its lab ended"
                    )))),
                };
                let _ = tx.send(Some(outcome.clone()));
                drop(flight);
                outcome
            });
            let outcome = match task.await {
                Ok(outcome) => outcome.map_err(StrategyError::Shared),
                Err(e) => Err(StrategyError::Internal(anyhow::anyhow!(
                    "the read of user {id} failed: {e}"
                ))),
            };
            (outcome, XCache::Miss)
        }
        Joined::Follower(mut rx) => {
            let answered = tokio::time::timeout(wait, async {
                rx.wait_for(Option::is_some)
                    .await
                    .ok()
                    .and_then(|v| v.clone())
            })
            .await;
            if let Ok(Some(outcome)) = answered {
                return (outcome.map_err(StrategyError::Coalesced), XCache::Coalesced);
            }
            // The leader vanished or is slower than the bound: read Postgres ourselves.
            (load_and_fill(s, b, id, true, None).await, XCache::Miss)
        }
    }
}
