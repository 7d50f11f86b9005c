//! Background refreshes (stale-while-revalidate, refresh-ahead): the request is answered
//! from the cache at once and one task per key reloads the row from Postgres. The new
//! row only replaces the exact value that was refreshed, so a write that changed or
//! invalidated the entry in the meantime is never undone by an older read.

use bytes::Bytes;
use std::sync::Arc;

use crate::counters::Counter;
use crate::strategy::backend::Backend;
use crate::strategy::fill::load_and_fill;
use crate::strategy::source::RowSource;

/// Removes the key from the in-flight set however the refresh ends.
struct Running {
    b: Arc<Backend>,
    id: i32,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.b.remedies.refreshing.finish(self.id);
    }
}

/// Refresh `id` in the background unless a refresh of it is running already; `old` is
/// the cached value being refreshed.
pub fn spawn<S: RowSource>(s: S, b: &Arc<Backend>, id: i32, old: Bytes) {
    if !b.remedies.refreshing.start(id) {
        return;
    }
    b.counters.record(Counter::BackgroundRefreshes);
    let running = Running { b: b.clone(), id };
    let lab = b.lab_token();
    b.tasks.spawn(async move {
        let b = running.b.clone();
        tokio::select! {
            _ = lab.cancelled() => {}
            result = load_and_fill(s, &b, id, true, Some(old)) => {
                if let Err(e) = result {
                    tracing::debug!(strategy = b.name, "background refresh of user:{id} failed: {e}");
                }
            }
        }
        drop(running);
    });
}
