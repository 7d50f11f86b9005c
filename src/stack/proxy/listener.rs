//! The proxy's listening socket and its accept loop. Down really closes the socket, so
//! clients get "connection refused" as from a dead server; when the port cannot be bound
//! again at once (something took it meanwhile), the loop keeps trying in the background.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};

use super::{connection, Fault, Shared};

/// How often a failed re-bind is retried.
const REBIND_EVERY: Duration = Duration::from_millis(100);

/// Listen on `addr` with SO_REUSEADDR, so the same port can be bound again after Down
/// while connections that used it linger in TIME_WAIT.
pub(super) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Accept connections while there is a listener and hand each to its own task; re-bind when
/// a heal could not. Ends when the proxy is shut down.
pub(super) async fn accept_loop(shared: Arc<Shared>) {
    let mut control = shared.control.subscribe();
    let mut rebind_failing = false;
    loop {
        let down = control.borrow_and_update().fault == Some(Fault::Down);
        let listening = !down && ensure_listening(&shared, &mut rebind_failing);
        // `set`/`heal` may swap the listener at any time; it is looked up at every poll and
        // a swap is announced on the watch channel, which wakes this loop.
        let accept = poll_fn(|cx| match shared.lock_listener().as_ref() {
            Some(listener) => listener.poll_accept(cx).map(Some),
            None => Poll::Ready(None),
        });
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            changed = control.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep(REBIND_EVERY), if !down && !listening => {}
            accepted = accept, if listening => match accepted {
                Some(Ok((stream, _peer))) => {
                    shared
                        .tasks
                        .spawn(connection::serve(stream, Arc::clone(&shared)));
                }
                Some(Err(e)) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::debug!("{} proxy: accept failed: {e}", shared.name);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                // Closed by `set(Down)` or shutdown; the watch or the token says which.
                None => {}
            },
        }
    }
}

/// Make sure a listener is in place unless the proxy is Down or shut down, binding the
/// proxy's address again if needed. A failure is logged once per outage, not per retry.
fn ensure_listening(shared: &Shared, rebind_failing: &mut bool) -> bool {
    // `apply` and `close` change the listener and the fault under this lock, so what is
    // read here is consistent.
    let mut listener = shared.lock_listener();
    if listener.is_some() {
        return true;
    }
    if shared.cancel.is_cancelled() || shared.control.borrow().fault == Some(Fault::Down) {
        return false;
    }
    match bind(shared.addr) {
        Ok(bound) => {
            *listener = Some(bound);
            if *rebind_failing {
                tracing::info!("{} proxy: listening on {} again", shared.name, shared.addr);
            }
            *rebind_failing = false;
            true
        }
        Err(e) => {
            if !*rebind_failing {
                tracing::warn!(
                    "{} proxy: cannot listen on {} again ({e}); retrying in the background",
                    shared.name,
                    shared.addr
                );
            }
            *rebind_failing = true;
            false
        }
    }
}
