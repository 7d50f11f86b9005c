//! One proxied connection, from accept to close: connect upstream (TCP or a Unix socket),
//! carry data both ways, and cut the connection with a reset when a fault says so (a Unix
//! upstream, which has no reset, is closed). Cutting is decided here, once per connection;
//! what happens to each chunk is the delay line's business.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::delay_line::{pump, Direction};
use super::observe::{self, Protocol};
use super::upstream::UpstreamStream;
use super::{Control, Fault, Shared};

/// Serve one accepted client until either side closes, a fault cuts it or the proxy shuts
/// down.
pub(super) async fn serve(mut client: TcpStream, shared: Arc<Shared>) {
    let _open = OpenConnection::count(&shared);
    let mut control = shared.control.subscribe();
    let mut cut = CutRule::new(&control.borrow_and_update());
    if cut.blackholed {
        // Nothing will ever be answered and the connection is cut when the blackhole ends,
        // so there is no point in reaching the upstream.
        let ending = until_cut(swallow(&mut client), &shared, &mut control, &mut cut).await;
        if ending.is_abrupt() {
            reset_on_close(&[&client]);
        }
        return;
    }
    if control.borrow().fault == Some(Fault::Down) {
        // Accepted just before the listener closed.
        return reset_on_close(&[&client]);
    }
    // An observing Postgres proxy speaks no TLS: it answers SSLRequest (and GSSENCRequest)
    // with `N` itself, and keeps the first bytes of anything else to send on.
    let mut first = Vec::new();
    if matches!(
        shared.observer.as_ref().map(|o| &o.protocol),
        Some(Protocol::Postgres)
    ) {
        match until_cut(
            refuse_encryption(&mut client),
            &shared,
            &mut control,
            &mut cut,
        )
        .await
        {
            Ending::Finished(Ok(bytes)) => first = bytes,
            Ending::Finished(Err(_)) | Ending::Shutdown => return,
            Ending::Cut => return reset_on_close(&[&client]),
        }
    }
    let connect = shared.upstream.connect();
    let mut upstream = match until_cut(connect, &shared, &mut control, &mut cut).await {
        Ending::Finished(Ok(upstream)) => upstream,
        Ending::Finished(Err(e)) => {
            // The upstream being down is the client's news, not the proxy's failure.
            tracing::debug!(
                "{} proxy: connecting to {}: {e}",
                shared.name,
                shared.upstream
            );
            return reset_on_close(&[&client]);
        }
        Ending::Cut => return reset_on_close(&[&client]),
        Ending::Shutdown => return,
    };
    let _ = client.set_nodelay(true);
    let carried = match &mut upstream {
        UpstreamStream::Tcp(stream) => {
            let (from_upstream, to_upstream) = stream.split();
            let both_ways = carry(&mut client, &first, from_upstream, to_upstream, &shared);
            until_cut(both_ways, &shared, &mut control, &mut cut).await
        }
        UpstreamStream::Unix(stream) => {
            let (from_upstream, to_upstream) = stream.split();
            let both_ways = carry(&mut client, &first, from_upstream, to_upstream, &shared);
            until_cut(both_ways, &shared, &mut control, &mut cut).await
        }
    };
    if carried.is_abrupt() {
        match &upstream {
            UpstreamStream::Tcp(stream) => reset_on_close(&[&client, stream]),
            // A Unix socket has no reset: the upstream sees the connection end.
            UpstreamStream::Unix(_) => reset_on_close(&[&client]),
        }
    }
}

/// Carry bytes both ways between the client (`first`, then what it sends) and the
/// upstream's two halves, until one side ends or fails.
async fn carry(
    client: &mut TcpStream,
    first: &[u8],
    from_upstream: impl AsyncRead + Unpin,
    to_upstream: impl AsyncWrite + Unpin,
    shared: &Shared,
) -> std::io::Result<((), ())> {
    let tap = shared.observer.as_ref().map(observe::Observer::tap);
    let (from_client, to_client) = client.split();
    let from_client = AsyncReadExt::chain(first, from_client);
    tokio::try_join!(
        pump(
            from_client,
            to_upstream,
            shared.control.subscribe(),
            Direction::ToUpstream,
            tap.clone(),
        ),
        pump(
            from_upstream,
            to_client,
            shared.control.subscribe(),
            Direction::ToClient,
            tap,
        ),
    )
}

/// How a connection's work ended.
enum Ending<T> {
    /// The work finished by itself (with its own result).
    Finished(T),
    /// A fault cut the connection.
    Cut,
    /// The proxy is shutting down.
    Shutdown,
}

/// Run `work` until it finishes, a fault cuts the connection, or the proxy shuts down.
async fn until_cut<T>(
    work: impl std::future::Future<Output = T>,
    shared: &Shared,
    control: &mut watch::Receiver<Control>,
    cut: &mut CutRule,
) -> Ending<T> {
    let cut_signal = async {
        loop {
            if control.changed().await.is_err() {
                return std::future::pending().await;
            }
            if cut.applies(&control.borrow_and_update()) {
                return;
            }
        }
    };
    tokio::select! {
        _ = shared.cancel.cancelled() => Ending::Shutdown,
        _ = cut_signal => Ending::Cut,
        done = work => Ending::Finished(done),
    }
}

impl<T, E> Ending<Result<T, E>> {
    /// Cut, or failed on one side: the peers must see a broken connection.
    fn is_abrupt(&self) -> bool {
        matches!(self, Ending::Cut | Ending::Finished(Err(_)))
    }
}

/// Make the coming close of `streams` a reset (SO_LINGER 0) instead of a clean end, so the
/// peers see a broken connection as they would if a network or a server failed.
fn reset_on_close(streams: &[&TcpStream]) {
    for stream in streams {
        let _ = stream.set_zero_linger();
    }
}

/// Answer a Postgres client's encryption requests with `N` (no TLS, no GSS encryption)
/// until it sends something else; that message's first 8 bytes are returned.
async fn refuse_encryption(client: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    loop {
        let mut first = [0u8; 8];
        client.read_exact(&mut first).await?;
        if !observe::is_encryption_request(&first) {
            return Ok(first.to_vec());
        }
        client.write_all(b"N").await?;
    }
}

/// Read and drop whatever a blackholed client sends, until it closes.
async fn swallow(client: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    while client.read(&mut buf).await? > 0 {}
    Ok(())
}

/// When a connection must be cut, from the control state it has seen.
struct CutRule {
    cuts: u64,
    blackholes: u64,
    /// The connection has lived through a blackhole: data was lost, so its protocol state
    /// is broken and it must not outlive the blackhole.
    blackholed: bool,
}

impl CutRule {
    fn new(control: &Control) -> Self {
        Self {
            cuts: control.cuts,
            blackholes: control.blackholes,
            blackholed: control.fault == Some(Fault::Blackhole),
        }
    }

    fn applies(&mut self, control: &Control) -> bool {
        if control.cuts != self.cuts || control.fault == Some(Fault::Down) {
            return true;
        }
        if control.blackholes != self.blackholes {
            self.blackholed = true;
        }
        self.blackholed && control.fault != Some(Fault::Blackhole)
    }
}

/// Counts a connection as open for as long as it lives.
struct OpenConnection<'a>(&'a Shared);

impl<'a> OpenConnection<'a> {
    fn count(shared: &'a Shared) -> Self {
        shared.open.fetch_add(1, Ordering::Relaxed);
        Self(shared)
    }
}

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}
