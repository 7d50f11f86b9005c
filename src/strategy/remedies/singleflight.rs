//! Singleflight: within one server process, one Postgres read per key at a time. The
//! first miss (the leader) reads; misses of the same key that arrive meanwhile wait for
//! its answer (X-Cache COALESCED). The leader's read runs as its own task, so it finishes
//! for the waiters even if the leader's client goes away. A waiter waits at most a
//! bounded time, then reads Postgres itself: no failure upstream becomes a hang.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

use crate::strategy::{read, Backend, Strategy, StrategyError, XCache};

/// What a read in flight ends with, shared by everyone waiting on it.
type Outcome = Result<Option<Bytes>, Arc<StrategyError>>;

/// Reads in flight, by user id.
#[derive(Default)]
pub struct Flights(Mutex<HashMap<i32, watch::Receiver<Option<Outcome>>>>);

enum Joined {
    Leader(watch::Sender<Option<Outcome>>),
    Follower(watch::Receiver<Option<Outcome>>),
}

impl Flights {
    fn join(&self, id: i32) -> Joined {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = map.get(&id) {
            // A leader that died without answering leaves a closed channel: replace it.
            if rx.has_changed().is_ok() || rx.borrow().is_some() {
                return Joined::Follower(rx.clone());
            }
        }
        let (tx, rx) = watch::channel(None);
        map.insert(id, rx);
        Joined::Leader(tx)
    }

    fn leave(&self, id: i32) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }
}

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
pub async fn read<S: Strategy>(
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
                    outcome = read::load_and_fill(s, &b, id, true, None) => outcome.map_err(Arc::new),
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
            (
                read::load_and_fill(s, b, id, true, None).await,
                XCache::Miss,
            )
        }
    }
}
