//! Free loopback ports for the managed servers.

use anyhow::Context;

/// Ask the kernel for a free port on 127.0.0.1. The port is released before it is
/// returned, so a caller that fails to bind it should ask again.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}
