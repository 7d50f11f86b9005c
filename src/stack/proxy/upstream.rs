//! Where a proxy forwards to: a `host:port` over TCP, or the Unix socket of a server this
//! process started. The socket is the cheaper kernel path (no TCP on either end), which
//! is most of what an extra hop costs on loopback.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::{TcpStream, UnixStream};

/// The address a proxy connects to for each client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// `host:port`, resolved for each connection.
    Tcp(String),
    /// A Unix stream socket's path.
    Unix(PathBuf),
}

impl From<String> for Upstream {
    fn from(authority: String) -> Self {
        Upstream::Tcp(authority)
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Upstream::Tcp(authority) => f.write_str(authority),
            Upstream::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// One connection to the upstream.
pub(super) enum UpstreamStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Upstream {
    pub(super) async fn connect(&self) -> io::Result<UpstreamStream> {
        Ok(match self {
            Upstream::Tcp(authority) => {
                let stream = TcpStream::connect(authority.as_str()).await?;
                let _ = stream.set_nodelay(true);
                UpstreamStream::Tcp(stream)
            }
            Upstream::Unix(path) => loop {
                // A full listen queue (a paused server) fails a Unix connect at once, where
                // a TCP one waits: wait too, as the client would have over TCP. The caller
                // bounds the wait (a fault or the proxy's shutdown).
                match UnixStream::connect(path).await {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        tokio::time::sleep(FULL_QUEUE_RETRY).await;
                    }
                    connected => break UpstreamStream::Unix(connected?),
                }
            },
        })
    }
}

/// How soon a connect that found the server's listen queue full tries again.
const FULL_QUEUE_RETRY: Duration = Duration::from_millis(5);
