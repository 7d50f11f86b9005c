//! One HTTP/1.1 client connection as a load worker uses it: opened on demand, reused while
//! it stays open, and closed the moment the worker lets go of it (its driver task is
//! aborted on drop, so an abandoned or cancelled request never leaves a socket behind).
//! Failures come back as a short kind ("connection refused") that the report counts.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::task::AbortHandle;

use super::timeline::CacheValue;

/// A kept-alive connection; dropping it closes the socket.
pub(crate) struct Conn {
    sender: SendRequest<Full<Bytes>>,
    driver: AbortHandle,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// A whole response, body read.
pub(crate) struct Answer {
    pub status: u16,
    pub cache: Option<CacheValue>,
    pub body: Bytes,
}

/// Send `request` on `conn` (connecting to `addr` first when there is no open one) and
/// read the whole answer.
pub(crate) async fn send(
    conn: &mut Option<Conn>,
    addr: &str,
    request: Request<Full<Bytes>>,
    connect_timeout: Duration,
) -> Result<Answer, String> {
    if conn.as_ref().is_none_or(|c| c.sender.is_closed()) {
        *conn = None;
        *conn = Some(connect(addr, connect_timeout).await?);
    }
    let sender = &mut conn.as_mut().expect("connected above").sender;
    sender.ready().await.map_err(|e| classify(&e))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| classify(&e))?;
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("x-cache")
        .map(|v| CacheValue::from_header(v.as_bytes()));
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| classify(&e))?
        .to_bytes();
    Ok(Answer {
        status,
        cache,
        body,
    })
}

pub(crate) async fn connect(addr: &str, timeout: Duration) -> Result<Conn, String> {
    let stream = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(classify_io(&e)),
        Err(_) => return Err("connect timeout".to_string()),
    };
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| classify(&e))?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    })
    .abort_handle();
    Ok(Conn { sender, driver })
}

fn classify_io(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".to_string(),
        ConnectionReset => "connection reset".to_string(),
        TimedOut => "connect timeout".to_string(),
        AddrNotAvailable | HostUnreachable | NetworkUnreachable => "unreachable".to_string(),
        _ if e.to_string().contains("lookup") || e.to_string().contains("resolve") => {
            "could not resolve host".to_string()
        }
        _ => format!("connect: {e}"),
    }
}

fn classify(e: &hyper::Error) -> String {
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        return "connection closed".to_string();
    }
    if e.is_parse() {
        return "malformed response".to_string();
    }
    if e.is_timeout() {
        return "timeout".to_string();
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return classify_io(io);
        }
        source = s.source();
    }
    "connection closed".to_string()
}
