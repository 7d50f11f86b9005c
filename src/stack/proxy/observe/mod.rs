//! What the proxies see of an app's traffic in target mode: the Redis proxy decodes RESP
//! (2 and 3) and the Postgres proxy the frontend/backend protocol, and both count what the
//! app did into one `Observed`. Decoding only watches: the bytes pass through unchanged
//! (pipelining, pub/sub and MULTI included), and a stream the decoder cannot follow is
//! simply no longer observed on that connection.

mod counts;
mod postgres;
mod resp;

pub use counts::{Observed, Seen};

use std::sync::{Arc, Mutex};

/// Which Redis keys are the app's cache entries (the model's `cache_key`).
#[derive(Clone)]
pub struct KeyFilter(pub Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl std::fmt::Debug for KeyFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyFilter")
    }
}

/// Which protocol a proxy decodes, and how.
#[derive(Clone)]
pub enum Protocol {
    /// RESP; a key counts for hits, misses, sets and dels when `is_cache_key` says so.
    Redis {
        is_cache_key: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    },
    /// PostgreSQL's protocol (3.0).
    Postgres,
}

/// A proxy's observer: the protocol and where the counts go.
#[derive(Clone)]
pub struct Observer {
    pub protocol: Protocol,
    pub observed: Arc<Observed>,
}

impl Observer {
    /// The decoder state of one new connection.
    pub(super) fn tap(&self) -> Tap {
        let state = match &self.protocol {
            Protocol::Redis { is_cache_key } => {
                Decoder::Redis(resp::Conversation::new(is_cache_key.clone()))
            }
            Protocol::Postgres => Decoder::Postgres(postgres::Conversation::default()),
        };
        Tap(Arc::new(Mutex::new((state, self.observed.clone()))))
    }
}

enum Decoder {
    Redis(resp::Conversation),
    Postgres(postgres::Conversation),
}

/// One connection's decoder, fed by both directions' pumps.
#[derive(Clone)]
pub(super) struct Tap(Arc<Mutex<(Decoder, Arc<Observed>)>>);

impl Tap {
    /// Bytes on their way from the client (the app) to the upstream.
    pub(super) fn client_sent(&self, bytes: &[u8]) {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (decoder, observed) = &mut *guard;
        match decoder {
            Decoder::Redis(c) => c.client_sent(bytes, observed),
            Decoder::Postgres(c) => c.client_sent(bytes, observed),
        }
    }

    /// Bytes on their way from the upstream to the client.
    pub(super) fn upstream_sent(&self, bytes: &[u8]) {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (decoder, observed) = &mut *guard;
        match decoder {
            Decoder::Redis(c) => c.upstream_sent(bytes, observed),
            Decoder::Postgres(c) => c.upstream_sent(bytes, observed),
        }
    }
}

/// How a Postgres client opens: the 8-byte requests a proxy that speaks no TLS answers
/// with `N` itself (SSLRequest, GSSENCRequest). `None` for anything else.
pub(super) fn is_encryption_request(first: &[u8]) -> bool {
    postgres::is_encryption_request(first)
}
