//! What the remedies of one server remember between requests: reads in flight
//! (singleflight), refreshes running (swr, refresh-ahead) and how long each key took to
//! recompute (xfetch). Plain data, held by the server's `Backend`; the remedies that use
//! it live in their own files.

use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

use super::xfetch::RecomputeTimes;
use crate::strategy::error::StrategyError;

/// Everything the remedies of one server remember.
#[derive(Default)]
pub struct State {
    pub flights: Flights,
    pub refreshing: InFlight,
    pub recompute_times: RecomputeTimes,
}

/// What a read in flight ends with, shared by everyone waiting on it.
pub type Outcome = Result<Option<Bytes>, Arc<StrategyError>>;

/// Reads in flight, by user id.
#[derive(Default)]
pub struct Flights(Mutex<HashMap<i32, watch::Receiver<Option<Outcome>>>>);

pub enum Joined {
    Leader(watch::Sender<Option<Outcome>>),
    Follower(watch::Receiver<Option<Outcome>>),
}

impl Flights {
    pub fn join(&self, id: i32) -> Joined {
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

    pub fn leave(&self, id: i32) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }
}

/// Keys with a refresh running in this server.
#[derive(Default)]
pub struct InFlight(Mutex<HashSet<i32>>);

impl InFlight {
    pub fn start(&self, id: i32) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(id)
    }

    pub fn finish(&self, id: i32) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }
}
