//! The HTTP API: routes a request to the strategy and shapes the answer. Every refusal is
//! a 4xx with `{"error": "..."}`; Postgres trouble is a 503 naming Postgres.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use super::input::{parse_id, BadRequest, UserFields, MAX_BODY_BYTES};
use crate::strategy::{Backend, Patch, Source, Strategy};

pub type Reply = Response<Full<Bytes>>;

/// Answer one request.
pub async fn handle<S: Strategy>(strategy: &S, b: &Backend, req: Request<Incoming>) -> Reply {
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
        Err(Refusal::Database(e)) => {
            tracing::warn!(strategy = S::NAME, "Postgres error: {e:#}");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("postgres unavailable: {e:#}"),
            )
        }
    }
}

enum Refusal {
    Bad(BadRequest),
    NotAllowed(&'static str),
    Database(anyhow::Error),
}

impl From<BadRequest> for Refusal {
    fn from(bad: BadRequest) -> Self {
        Refusal::Bad(bad)
    }
}

impl From<anyhow::Error> for Refusal {
    fn from(e: anyhow::Error) -> Self {
        Refusal::Database(e)
    }
}

async fn route<S: Strategy>(
    strategy: &S,
    b: &Backend,
    req: Request<Incoming>,
) -> Result<Reply, Refusal> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method().clone(), segments.as_slice()) {
        (Method::GET | Method::HEAD, ["users", id]) => {
            let id = parse_id(id)?;
            match strategy.read(b, id).await? {
                Some(fetched) => {
                    let mut reply = json(StatusCode::OK, fetched.body);
                    let cache = match fetched.source {
                        Source::Cache => "HIT",
                        Source::Database => "MISS",
                    };
                    reply
                        .headers_mut()
                        .insert("x-cache", HeaderValue::from_static(cache));
                    Ok(reply)
                }
                None => {
                    let mut reply = no_such_user(id);
                    reply
                        .headers_mut()
                        .insert("x-cache", HeaderValue::from_static("MISS"));
                    Ok(reply)
                }
            }
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

async fn health(b: &Backend) -> Reply {
    let (redis, postgres) = tokio::join!(b.cache.ping(), b.store.ping());
    let mut down = Vec::new();
    if let Err(e) = &redis {
        down.push(format!("redis: {e}"));
    }
    if let Err(e) = &postgres {
        down.push(format!("postgres: {e:#}"));
    }
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
    error(StatusCode::NOT_FOUND, &format!("user {id} not found"))
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
