//! The thread each proxy runs on, with a single-threaded runtime of its own. A proxied
//! request wakes the proxy twice (the request, then the answer); on the process's
//! multi-threaded pool each wake-up may also wake a second worker (a futex and another
//! epoll), which on a loaded loopback costs more than the forwarding itself. One thread that
//! nothing else shares does the same work with less CPU per request (see the README's
//! target-mode "Overhead").

use std::io;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Start the thread for the proxy `name` and return its runtime. The thread runs until
/// `cancel` is cancelled and every task in `tasks` has ended.
pub(super) fn start(
    name: &str,
    cancel: CancellationToken,
    tasks: TaskTracker,
) -> io::Result<Handle> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name(format!("{name} proxy"))
        .spawn(move || {
            runtime.block_on(async {
                cancel.cancelled().await;
                tasks.close();
                tasks.wait().await;
            })
        })?;
    Ok(handle)
}
