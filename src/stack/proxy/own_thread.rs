//! The thread an observing proxy (target mode) runs on, with a single-threaded runtime of
//! its own. A proxied request wakes the proxy twice (the request, then the answer); on the
//! process's multi-threaded pool each wake-up may also wake a second worker (a futex and
//! another epoll), which on a loaded loopback costs more than the forwarding itself. One
//! thread that nothing else shares does the same work with less CPU per request (see the
//! README's target-mode "Overhead"). The price: one proxy's connections share one core,
//! so the proxies in front of cachelab's own servers, where the labs in `labs/` were
//! measured, stay on the pool.

use std::io;

use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Start the thread for the proxy `name` and return its runtime. The thread runs until
/// `cancel` is cancelled and every task in `tasks` has ended.
pub(super) async fn start(
    name: &str,
    cancel: CancellationToken,
    tasks: TaskTracker,
) -> io::Result<Handle> {
    let (ready, runtime) = oneshot::channel();
    // The runtime is built, run and dropped on its thread: dropping one in an async context
    // panics, and the caller is one.
    std::thread::Builder::new()
        .name(format!("{name} proxy"))
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => return drop(ready.send(Err(e))),
            };
            if ready.send(Ok(runtime.handle().clone())).is_err() {
                return;
            }
            runtime.block_on(async {
                cancel.cancelled().await;
                tasks.close();
                tasks.wait().await;
            })
        })?;
    runtime
        .await
        .map_err(|_| io::Error::other("the proxy's thread ended before its runtime ran"))?
}
