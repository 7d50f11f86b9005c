//! HTTP requests to the strategy servers, over real HTTP as curl would send them.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use rhai::{Dynamic, Map};
use std::time::{Duration, Instant};

use super::{def, Registry};
use crate::lab::context::{self, HttpClient, Pending};
use crate::lab::convert::{
    arg_int, arg_map, arg_str, from_json, lab_error, round_float, to_json, LabResult,
};

/// How long one lab request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub fn register(r: &mut Registry) {
    def!(r, "http", "http_get(path: string) -> map",
        "GET; returns #{status, body, cache, ms}: body a map when JSON, cache the X-Cache header, ms the latency.",
        |path: Dynamic| request("http_get", Method::GET, &path, None));
    def!(
        r,
        "http",
        "http_put(path: string, params: map) -> map",
        "PUT with params as query parameters (as the seed apps took them), e.g. #{name: \"Ann\"}.",
        |path: Dynamic, params: Dynamic| request("http_put", Method::PUT, &path, Some(&params))
    );
    def!(
        r,
        "http",
        "http_post(path: string, params: map) -> map",
        "POST with params as query parameters; 201 and the created user.",
        |path: Dynamic, params: Dynamic| request("http_post", Method::POST, &path, Some(&params))
    );
    def!(
        r,
        "http",
        "http_delete(path: string) -> map",
        "DELETE; 204 when the user existed.",
        |path: Dynamic| request("http_delete", Method::DELETE, &path, None)
    );
    def!(
        r,
        "http",
        "http_get_async(path: string) -> int",
        "Start a GET in the background and go on; http_wait(handle) gives its answer (for races).",
        |path: Dynamic| start("http_get_async", Method::GET, &path, None)
    );
    def!(
        r,
        "http",
        "http_put_async(path: string, params: map) -> int",
        "Start a PUT in the background; http_wait(handle) gives its answer.",
        |path: Dynamic, params: Dynamic| start("http_put_async", Method::PUT, &path, Some(&params))
    );
    def!(
        r,
        "http",
        "http_delete_async(path: string) -> int",
        "Start a DELETE in the background; http_wait(handle) gives its answer.",
        |path: Dynamic| start("http_delete_async", Method::DELETE, &path, None)
    );
    def!(
        r,
        "http",
        "http_wait(handle: int) -> map",
        "Wait for a request started by an http_*_async call; returns the same map as http_get.",
        |handle: Dynamic| -> LabResult<Dynamic> {
            let handle = arg_int("http_wait", "handle", &handle)?;
            context::with(|ctx| {
                let pending = ctx.pending.borrow_mut().remove(&handle);
                let Some(Pending::Http(task)) = pending else {
                    return Err(lab_error(format!(
                        "http_wait: no pending request with handle {handle}"
                    )));
                };
                let answer = ctx
                    .block_on(task)?
                    .map_err(|e| lab_error(format!("http_wait: the request failed: {e}")))?
                    .map_err(lab_error)?;
                Ok(shaped(ctx, "http_wait", &answer))
            })
        }
    );
}

/// The URL (with params as query string) of a lab request.
fn url_of(
    ctx: &crate::lab::context::LabContext,
    path: &str,
    query: Option<String>,
) -> LabResult<String> {
    let mut url = ctx.url_for(path)?;
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&q);
    }
    Ok(url)
}

/// Start a request in the background; its handle.
fn start(
    function: &str,
    method: Method,
    path: &Dynamic,
    params: Option<&Dynamic>,
) -> LabResult<i64> {
    let path = arg_str(function, "path", path)?;
    let query = params.map(|p| query_of(function, p)).transpose()?;
    context::with(|ctx| {
        let url = url_of(ctx, &path, query)?;
        let client = ctx.http.clone();
        let task = ctx
            .runtime
            .spawn(async move { send(&client, method, &url).await });
        Ok(ctx.park(Pending::Http(task)))
    })
}

/// Params as a query string, as the seed apps took them.
fn query_of(function: &str, params: &Dynamic) -> LabResult<String> {
    let map: Map = arg_map(function, "params", params)?;
    let mut encoder = form_urlencoded::Serializer::new(String::new());
    for (key, value) in &map {
        let text = match to_json(value) {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        encoder.append_pair(key, &text);
    }
    Ok(encoder.finish())
}

/// The answer as a lab map, remembering its fields for error messages.
fn shaped(
    ctx: &crate::lab::context::LabContext,
    function: &'static str,
    answer: &serde_json::Value,
) -> Dynamic {
    let value = from_json(answer);
    if let Some(map) = value.read_lock::<Map>() {
        ctx.remember_shape(function, &map);
    }
    value
}

fn request(
    function: &'static str,
    method: Method,
    path: &Dynamic,
    params: Option<&Dynamic>,
) -> LabResult<Dynamic> {
    let path = arg_str(function, "path", path)?;
    let query = params.map(|p| query_of(function, p)).transpose()?;
    context::with(|ctx| {
        let url = url_of(ctx, &path, query)?;
        let answer = ctx
            .block_on(send(&ctx.http, method, &url))?
            .map_err(lab_error)?;
        Ok(shaped(ctx, function, &answer))
    })
}

/// Send one request and describe the answer as JSON: {status, body, cache, ms}.
pub(super) async fn send(
    client: &HttpClient,
    method: Method,
    url: &str,
) -> Result<serde_json::Value, String> {
    let request = Request::builder()
        .method(method.clone())
        .uri(url)
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let started = Instant::now();
    let exchange = async {
        let response = client.request(request).await?;
        let status = response.status().as_u16();
        let cache = response
            .headers()
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = response.into_body().collect().await?.to_bytes();
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, cache, body))
    };
    let (status, cache, body) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("{method} {url}: no answer within {REQUEST_TIMEOUT:?}"))?
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let ms = round_float(started.elapsed().as_secs_f64() * 1000.0);
    let body = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&body).into_owned())
        })
    };
    Ok(serde_json::json!({ "status": status, "body": body, "cache": cache, "ms": ms }))
}
