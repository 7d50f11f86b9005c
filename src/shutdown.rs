//! Ctrl-C and SIGTERM. The first one starts an orderly shutdown (servers, load workers,
//! then the managed stack); a second one exits at once, and the reaper still ends the
//! stack's processes on the way out.

use std::sync::atomic::{AtomicBool, Ordering};
use tokio::signal::unix::{signal, SignalKind};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Has a shutdown been asked for? Long-running loops (labs, load runs) poll this.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

/// Resolves on the first SIGINT or SIGTERM; arranges for the second one to exit at once.
pub async fn signalled() {
    let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = int.recv() => {},
        _ = term.recv() => {},
    }
    REQUESTED.store(true, Ordering::Relaxed);
    tracing::info!("shutting down (press Ctrl-C again to exit at once)");
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
        crate::stack::reaper::reap_all();
        std::process::exit(130);
    });
}
