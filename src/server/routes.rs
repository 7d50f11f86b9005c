//! The HTTP API: routes a request to the strategy and shapes the answer. Every refusal is
//! a 4xx with `{"error": "..."}`; an unavailable Postgres (or, for write-behind's writes,
//! Redis) is a 503 naming it; anything else is a 500 that says what failed.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;
use std::time::Duration;

use super::input::{parse_id, BadRequest, UserFields, MAX_BODY_BYTES};
use crate::strategy::remedies::tombstone;
use crate::strategy::{Backend, Patch, Strategy, StrategyError};

pub type Reply = Response<Full<Bytes>>;

/// `/health` answers within this bound whatever Redis and Postgres do.
const HEALTH_BOUND: Duration = Duration::from_millis(800);

/// Answer one request.
pub async fn handle<S: Strategy>(strategy: S, b: &Arc<Backend>, req: Request<Incoming>) -> Reply {
    match route(strategy, b, req).await {
        Ok(reply) => reply,
        Err(Refusal::Bad(bad)) => error(
            StatusCode::from_u16(bad.status).unwrap_or(StatusCode::BAD_REQUEST),
            &bad.message,
        ),
        Err(Refusal::NotAllowed(allow)) => {
            let mut reply = error(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("method not allowed; use {allow}"),
            );
            reply
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
            reply
        }
        Err(Refusal::Failed(e)) => {
            if let Some(counter) = e.counter() {
                b.counters.record(counter);
            }
            if let StrategyError::Internal(_) = e {
                tracing::error!(strategy = S::NAME, "internal error: {e}");
            }
            let status =
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let message = match e {
                StrategyError::Internal(_) => format!("internal error: {e}"),
                _ => e.to_string(),
            };
            error(status, &message)
        }
    }
}

enum Refusal {
    Bad(BadRequest),
    NotAllowed(&'static str),
    Failed(StrategyError),
}

impl From<BadRequest> for Refusal {
    fn from(bad: BadRequest) -> Self {
        Refusal::Bad(bad)
    }
}

impl From<StrategyError> for Refusal {
    fn from(e: StrategyError) -> Self {
        Refusal::Failed(e)
    }
}

async fn route<S: Strategy>(
    strategy: S,
    b: &Arc<Backend>,
    req: Request<Incoming>,
) -> Result<Reply, Refusal> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method().clone(), segments.as_slice()) {
        (Method::GET | Method::HEAD, ["users", id]) => {
            let id = parse_id(id)?;
            let fetched = strategy.read(b, id).await?;
            let mut reply = match fetched.user {
                Some(body) => json(StatusCode::OK, body),
                None => json(StatusCode::NOT_FOUND, tombstone::body(id)),
            };
            reply
                .headers_mut()
                .insert("x-cache", HeaderValue::from_static(fetched.cache.as_str()));
            Ok(reply)
        }
        (Method::PUT, ["users", id]) => {
            let id = parse_id(id)?;
            let fields = read_fields(req).await?;
            if fields.name.is_none() && fields.email.is_none() {
                return Err(BadRequest::new(
                    "give `name` and/or `email` (query parameters or a JSON body)",
                )
                .into());
            }
            let patch = Patch {
                name: fields.name.as_deref(),
                email: fields.email.as_deref(),
            };
            Ok(match strategy.update(b, id, patch).await? {
                Some(body) => json(StatusCode::OK, body),
                None => no_such_user(id),
            })
        }
        (Method::DELETE, ["users", id]) => {
            let id = parse_id(id)?;
            Ok(if strategy.delete(b, id).await? {
                Response::builder()
                    .status(StatusCode::NO_CONTENT)
                    .body(Full::new(Bytes::new()))
                    .expect("static response")
            } else {
                no_such_user(id)
            })
        }
        (Method::POST, ["users"]) => {
            let fields = read_fields(req).await?;
            let (Some(name), Some(email)) = (fields.name.as_deref(), fields.email.as_deref())
            else {
                return Err(BadRequest::new("POST /users needs both `name` and `email`").into());
            };
            Ok(json(
                StatusCode::CREATED,
                strategy.create(b, name, email).await?,
            ))
        }
        (Method::GET | Method::HEAD, ["metrics"]) => Ok(Response::builder()
            .header(CONTENT_TYPE, "text/plain; version=0.0.4")
            .body(Full::new(Bytes::from(
                b.counters.render_prometheus(S::NAME),
            )))
            .expect("static response")),
        (Method::GET | Method::HEAD, ["health"]) => Ok(health(b).await),
        (_, ["users", _]) => Err(Refusal::NotAllowed("GET, HEAD, PUT, DELETE")),
        (_, ["users"]) => Err(Refusal::NotAllowed("POST")),
        (_, ["metrics"]) | (_, ["health"]) => Err(Refusal::NotAllowed("GET, HEAD")),
        (method, _) => Err(BadRequest {
            status: 404,
            message: format!("no route for {method} {path}"),
        }
        .into()),
    }
}

async fn read_fields(req: Request<Incoming>) -> Result<UserFields, Refusal> {
    let query = req.uri().query().map(str::to_string);
    let body = Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                BadRequest {
                    status: 413,
                    message: format!("request body is larger than {MAX_BODY_BYTES} bytes"),
                }
            } else {
                BadRequest::new(format!("could not read the request body: {e}"))
            }
        })?
        .to_bytes();
    Ok(UserFields::parse(query.as_deref(), &body)?)
}

/// 200 when Redis and Postgres (with its users table) answer, else 503 naming what is
/// down; always within `HEALTH_BOUND`.
async fn health(b: &Backend) -> Reply {
    let bounded = |what: &'static str| async move {
        Err::<(), String>(format!("{what}: no answer within {HEALTH_BOUND:?}"))
    };
    let redis = async {
        tokio::select! {
            r = b.cache.ping() => r.map_err(|e| format!("redis: {e}")),
            r = async { tokio::time::sleep(HEALTH_BOUND).await; bounded("redis").await } => r,
        }
    };
    let postgres = async {
        tokio::select! {
            r = b.store.ping() => r.map_err(|e| format!("postgres: {e}")),
            r = async { tokio::time::sleep(HEALTH_BOUND).await; bounded("postgres").await } => r,
        }
    };
    let (redis, postgres) = tokio::join!(redis, postgres);
    let down: Vec<String> = [redis, postgres]
        .into_iter()
        .filter_map(Result::err)
        .collect();
    if down.is_empty() {
        json(
            StatusCode::OK,
            Bytes::from_static(br#"{"status":"ok","redis":"ok","postgres":"ok"}"#),
        )
    } else {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("unhealthy: {}", down.join("; ")),
        )
    }
}

fn no_such_user(id: i32) -> Reply {
    json(StatusCode::NOT_FOUND, tombstone::body(id))
}

fn json(status: StatusCode, body: Bytes) -> Reply {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .expect("static response")
}

/// A JSON error answer: `{"error": message}`.
pub fn error(status: StatusCode, message: &str) -> Reply {
    let body = serde_json::json!({ "error": message }).to_string();
    json(status, Bytes::from(body))
}
