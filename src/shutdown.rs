//! Ctrl-C and SIGTERM. The first one cancels the process-wide shutdown token, which every
//! long-running piece (servers, load workers, labs) watches, so an orderly shutdown
//! follows: servers, load workers, then the managed stack. A second signal exits at once,
//! and the reaper still ends the stack's processes on the way out.

use std::sync::{LazyLock, Once};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

static TOKEN: LazyLock<CancellationToken> = LazyLock::new(CancellationToken::new);
static LISTEN: Once = Once::new();

/// The process-wide token cancelled by the first SIGINT or SIGTERM.
pub fn token() -> CancellationToken {
    TOKEN.clone()
}

/// Has a shutdown been asked for?
pub fn requested() -> bool {
    TOKEN.is_cancelled()
}

/// Start turning signals into the token (once per process; needs a tokio runtime).
pub fn listen() {
    LISTEN.call_once(|| {
        let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
        let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
        tokio::spawn(async move {
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
            tracing::info!("shutting down (press Ctrl-C again to exit at once)");
            TOKEN.cancel();
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
            crate::stack::reaper::reap_all();
            std::process::exit(130);
        });
    });
}

/// Resolves once a shutdown has been asked for.
pub async fn signalled() {
    listen();
    TOKEN.cancelled().await;
}
