//! The invalidation link: one RESP3 connection per server to Redis with client-side
//! caching on (`CLIENT TRACKING ON`, default mode: Redis remembers the keys this
//! connection read and pushes an `invalidate` when anyone writes one; or `BCAST PREFIX
//! user:`: every write to `user:*` is pushed). Pushes are handled in the connection's own
//! reader as they arrive, in order with the replies. A heartbeat (PING every
//! `near_heartbeat_ms`, answered within it) watches the link: while it is down or silent
//! L1 is flushed and not used, and it is used again only once a new connection has tracking
//! on. Our own loop, not the redis crate's experimental client-side cache, which keeps a
//! value whose invalidation arrived while its read was in flight.

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, PushInfo, PushKind, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::NearCache;
use crate::knobs::{Knobs, NearMode};

/// How often the link looks at the mode and heartbeat knobs.
const KNOB_CHECK: Duration = Duration::from_millis(20);

/// The link's connection while tracking is on.
#[derive(Default)]
pub struct Link {
    conn: Mutex<Option<(MultiplexedConnection, NearMode)>>,
}

impl Link {
    /// The connection, when it is up with tracking on in `mode`.
    pub fn connection(&self, mode: NearMode) -> Option<MultiplexedConnection> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.as_ref()
            .filter(|(_, on)| *on == mode)
            .map(|(c, _)| c.clone())
    }

    pub fn is_up(&self, mode: NearMode) -> bool {
        self.connection(mode).is_some()
    }

    pub(super) fn set(&self, up: Option<(MultiplexedConnection, NearMode)>) {
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = up;
    }
}

/// Keep the link up while the mode asks for one, until `stop`: connect, turn tracking on,
/// beat, and on any silence start again. Every change of the link's state flushes L1.
pub async fn run(near: Arc<NearCache>, url: String, knobs: Arc<Knobs>, stop: CancellationToken) {
    let mut said_cluster = false;
    loop {
        let mode = knobs.get().near_cache;
        let wanted = match mode {
            NearMode::Tracking | NearMode::Bcast => true,
            NearMode::Off | NearMode::Ttl => false,
        };
        if !wanted || near.cluster {
            if wanted && !said_cluster {
                said_cluster = true;
                tracing::warn!(
                    "near cache {}: needs one Redis node (a cluster would need a tracking connection per master); L1 stays unused",
                    mode.name()
                );
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(KNOB_CHECK) => continue,
            }
        }
        let heartbeat = Duration::from_millis(knobs.get().near_heartbeat_ms);
        let connected = tokio::select! {
            _ = stop.cancelled() => return,
            c = connect(&near, &url, mode, heartbeat) => c,
        };
        match connected {
            Ok(conn) => {
                near.flush();
                near.link.set(Some((conn.clone(), mode)));
                tracing::debug!("near cache: tracking on ({})", mode.name());
                beat(&near, conn, mode, heartbeat, &knobs, &stop).await;
                near.link.set(None);
                near.flush();
            }
            Err(e) => tracing::debug!("near cache: no invalidation link: {e}"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(heartbeat.min(Duration::from_millis(200))) => {}
        }
    }
}

/// A RESP3 connection whose pushes go to `near`, with tracking on in `mode`.
async fn connect(
    near: &Arc<NearCache>,
    url: &str,
    mode: NearMode,
    bound: Duration,
) -> redis::RedisResult<MultiplexedConnection> {
    let separator = if url.contains('?') { '&' } else { '?' };
    let client = redis::Client::open(format!("{url}{separator}protocol=resp3"))?;
    let to = Arc::downgrade(near);
    let pushes = move |push: PushInfo| {
        if let Some(near) = to.upgrade() {
            near.on_push(push);
        }
        Ok::<(), ()>(())
    };
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(bound))
        .set_response_timeout(Some(bound))
        .set_push_sender(pushes);
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let mut tracking = redis::cmd("CLIENT");
    tracking.arg("TRACKING").arg("ON");
    if mode == NearMode::Bcast {
        tracking.arg("BCAST").arg("PREFIX").arg("user:");
    }
    tracking.query_async::<()>(&mut conn).await?;
    Ok(conn)
}

/// PING every heartbeat until one is not answered within it, the link dropped, the mode
/// or the heartbeat changed, or the server stops. The knobs are read every `KNOB_CHECK`, so
/// a change applies at once, not after the old heartbeat's wait. A new heartbeat ends the
/// link (and so flushes L1): the connection's own timeouts are the heartbeat it was made
/// with, and the next one is made with the new one.
async fn beat(
    near: &NearCache,
    mut conn: MultiplexedConnection,
    mode: NearMode,
    heartbeat: Duration,
    knobs: &Knobs,
    stop: &CancellationToken,
) {
    let mut last_ping = Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(KNOB_CHECK) => {}
        }
        let settings = knobs.get();
        if settings.near_cache != mode
            || Duration::from_millis(settings.near_heartbeat_ms) != heartbeat
            || !near.link.is_up(mode)
        {
            return;
        }
        if last_ping.elapsed() < heartbeat {
            continue;
        }
        last_ping = Instant::now();
        let ping = redis::cmd("PING");
        let answered = tokio::select! {
            _ = stop.cancelled() => return,
            answered = tokio::time::timeout(heartbeat, ping.query_async::<String>(&mut conn)) => answered,
        };
        if !matches!(answered, Ok(Ok(_))) {
            tracing::debug!("near cache: the invalidation link went silent; L1 flushed");
            return;
        }
    }
}

/// What a push asks of L1: drop these users, drop everything, or the link is gone.
#[derive(Debug, PartialEq)]
pub enum Pushed {
    Invalidate(Vec<i32>),
    FlushAll,
    LinkLost,
    Other,
}

/// Read a push: `invalidate` with the keys written (`user:N`), or with nil after a
/// FLUSHALL; the client library's own `Disconnection`.
pub fn read_push(push: &PushInfo) -> Pushed {
    match &push.kind {
        PushKind::Invalidate => match push.data.first() {
            Some(Value::Array(keys)) => Pushed::Invalidate(
                keys.iter()
                    .filter_map(|k| match k {
                        Value::BulkString(b) => std::str::from_utf8(b)
                            .ok()?
                            .strip_prefix("user:")?
                            .parse()
                            .ok(),
                        _ => None,
                    })
                    .collect(),
            ),
            _ => Pushed::FlushAll,
        },
        PushKind::Disconnection => Pushed::LinkLost,
        _ => Pushed::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::{read_push, Pushed};
    use redis::{PushInfo, PushKind, Value};

    #[test]
    fn pushes_name_users_to_drop_or_everything() {
        let keys = PushInfo {
            kind: PushKind::Invalidate,
            data: vec![Value::Array(vec![
                Value::BulkString(b"user:7".to_vec()),
                Value::BulkString(b"lock:{user:7}".to_vec()),
            ])],
        };
        assert_eq!(read_push(&keys), Pushed::Invalidate(vec![7]));
        let flush = PushInfo {
            kind: PushKind::Invalidate,
            data: vec![Value::Nil],
        };
        assert_eq!(read_push(&flush), Pushed::FlushAll);
        let gone = PushInfo {
            kind: PushKind::Disconnection,
            data: vec![],
        };
        assert_eq!(read_push(&gone), Pushed::LinkLost);
    }
}
