//! The caching strategies behind one small trait.
//!
//! Reads, deletes and the database half of every write work the same way in both
//! strategies, so they are the trait's provided methods; each strategy file says only what
//! it does to the cache after a write. The HTTP layer knows nothing beyond this trait.

mod cache_aside;
mod write_through;

pub use cache_aside::CacheAside;
pub use write_through::WriteThrough;

use bytes::Bytes;
use std::future::Future;
use std::sync::Arc;

use crate::cache::{user_key, Cache};
use crate::counters::Counters;
use crate::knobs::{Knobs, Protection};
use crate::store::{Store, User};

/// What a strategy works with: the table, the cache, its own counters and the shared knobs.
pub struct Backend {
    pub store: Store,
    pub cache: Cache,
    pub counters: Counters,
    pub knobs: Arc<Knobs>,
}

/// Where a GET's answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cache,
    Database,
}

/// A user as the HTTP layer sends it: the JSON bytes and where they came from.
pub struct Fetched {
    pub body: Bytes,
    pub source: Source,
}

/// Fields a PUT may change.
pub struct Patch<'a> {
    pub name: Option<&'a str>,
    pub email: Option<&'a str>,
}

/// A caching strategy: what a server does to the cache around reads and writes. Every
/// write goes to Postgres first; a strategy says what follows for the cache.
pub trait Strategy: Send + Sync + 'static {
    /// The name URLs, logs and labs use ("cache-aside", "write-through").
    const NAME: &'static str;

    /// After a PUT changed `user` in Postgres (`body` is its JSON).
    fn after_update(
        &self,
        b: &Backend,
        user: &User,
        body: &Bytes,
    ) -> impl Future<Output = ()> + Send;

    /// After a POST created `user` in Postgres (`body` is its JSON).
    fn after_create(
        &self,
        b: &Backend,
        user: &User,
        body: &Bytes,
    ) -> impl Future<Output = ()> + Send;

    /// PUT: change a user in Postgres, then the strategy's cache step. `None` if absent.
    fn update(
        &self,
        b: &Backend,
        id: i32,
        patch: Patch<'_>,
    ) -> impl Future<Output = anyhow::Result<Option<Bytes>>> + Send {
        async move {
            let Some(user) = b.store.update_user(id, patch.name, patch.email).await? else {
                return Ok(None);
            };
            b.counters.record_db_write();
            tracing::debug!(strategy = Self::NAME, "DB UPDATED user:{id}");
            let body = to_json(&user);
            self.after_update(b, &user, &body).await;
            Ok(Some(body))
        }
    }

    /// POST: create a user in Postgres, then the strategy's cache step.
    fn create(
        &self,
        b: &Backend,
        name: &str,
        email: &str,
    ) -> impl Future<Output = anyhow::Result<Bytes>> + Send {
        async move {
            let user = b.store.insert_user(name, email).await?;
            b.counters.record_db_write();
            tracing::debug!(strategy = Self::NAME, "DB INSERTED user:{}", user.id);
            let body = to_json(&user);
            self.after_create(b, &user, &body).await;
            Ok(body)
        }
    }

    /// GET: the cache first; on a miss Postgres, then SETEX the row. Redis failures count
    /// as misses and never fail the read.
    fn read(
        &self,
        b: &Backend,
        id: i32,
    ) -> impl Future<Output = anyhow::Result<Option<Fetched>>> + Send {
        async move {
            let key = user_key(id);
            let cache_answered = match b.cache.get(&key).await {
                Ok(Some(bytes)) => {
                    b.counters.record_hit();
                    tracing::debug!(strategy = Self::NAME, "CACHE HIT {key}");
                    return Ok(Some(Fetched {
                        body: bytes,
                        source: Source::Cache,
                    }));
                }
                Ok(None) => true,
                Err(e) => {
                    b.counters.record_cache_error();
                    b.cache.log_error("GET", &key, &e);
                    false
                }
            };
            b.counters.record_miss();
            tracing::debug!(strategy = Self::NAME, "CACHE MISS {key}");
            let user = match b.knobs.protection() {
                Protection::None => {
                    b.counters.record_db_read();
                    b.store.get_user(id, b.knobs.db_delay()).await?
                }
            };
            let Some(user) = user else { return Ok(None) };
            let body = to_json(&user);
            if cache_answered {
                cache_user(b, &user, &body).await;
            }
            Ok(Some(Fetched {
                body,
                source: Source::Database,
            }))
        }
    }

    /// DELETE: remove the row, then the cache entry. `false` if there was no such user.
    fn delete(&self, b: &Backend, id: i32) -> impl Future<Output = anyhow::Result<bool>> + Send {
        async move {
            let existed = b.store.delete_user(id).await?;
            b.counters.record_db_write();
            tracing::debug!(strategy = Self::NAME, "DB DELETED user:{id}");
            evict_user(b, id).await;
            Ok(existed)
        }
    }
}

/// The JSON the API returns for a user.
pub fn to_json(user: &User) -> Bytes {
    Bytes::from(serde_json::to_vec(user).expect("a user always serialises"))
}

/// SETEX the user's JSON (plus the padding knob's filler, as trailing JSON whitespace so
/// the cached value stays valid JSON), counting success or failure.
pub async fn cache_user(b: &Backend, user: &User, body: &[u8]) {
    let key = user_key(user.id);
    let padding = b.knobs.padding();
    let value: std::borrow::Cow<[u8]> = if padding == 0 {
        body.into()
    } else {
        let mut padded = Vec::with_capacity(body.len() + padding);
        padded.extend_from_slice(body);
        padded.resize(body.len() + padding, b' ');
        padded.into()
    };
    match b.cache.set_ex(&key, &value, b.knobs.ttl()).await {
        Ok(()) => {
            b.counters.record_cache_set();
            tracing::debug!("CACHE UPDATED {key} (ttl {} s)", b.knobs.ttl());
        }
        Err(e) => {
            b.counters.record_cache_error();
            b.cache.log_error("SETEX", &key, &e);
        }
    }
}

/// DEL the user's cache entry, counting success or failure.
pub async fn evict_user(b: &Backend, id: i32) {
    let key = user_key(id);
    match b.cache.del(&key).await {
        Ok(()) => {
            b.counters.record_cache_del();
            tracing::debug!("CACHE DELETED {key}");
        }
        Err(e) => {
            b.counters.record_cache_error();
            b.cache.log_error("DEL", &key, &e);
        }
    }
}
