//! A caching strategy as the HTTP server calls it: GET, PUT, POST and DELETE, each the
//! shared path by default with the strategy's own step after the Postgres write. A
//! strategy file overrides only what makes it different: write-through caches the
//! written row, write-behind queues writes in Redis, refresh-ahead refreshes hot entries
//! early (through `RowSource`).

use bytes::Bytes;
use std::future::Future;
use std::sync::Arc;

use super::backend::Backend;
use super::error::StrategyError;
use super::fill::to_json;
use super::read::{self, Fetched};
use super::remedies::invalidation;
use super::source::RowSource;
use super::write::{self, Patch};
use crate::store::User;

/// A caching strategy: what a server does to the cache around reads and writes.
pub trait Strategy: RowSource {
    /// The name URLs, logs, `use_strategy` and `--strategy` use.
    const NAME: &'static str;
    /// One line for `cachelab api`, the README and `serve --help`.
    const SUMMARY: &'static str;

    /// GET: the shared read path with every remedy.
    fn read(
        self,
        b: &Arc<Backend>,
        id: i32,
    ) -> impl Future<Output = Result<Fetched, StrategyError>> + Send {
        read::read(self, b.clone(), id)
    }

    /// PUT: change a user in Postgres, then the strategy's cache step. `None` if absent.
    fn update(
        self,
        b: &Arc<Backend>,
        id: i32,
        patch: Patch<'_>,
    ) -> impl Future<Output = Result<Option<Bytes>, StrategyError>> + Send {
        async move {
            let Some(user) = write::update_row(b, id, &patch).await? else {
                return Ok(None);
            };
            let body = to_json(&user);
            self.after_update(b, &user).await;
            Ok(Some(body))
        }
    }

    /// POST: create a user in Postgres, then the strategy's cache step.
    fn create(
        self,
        b: &Arc<Backend>,
        name: &str,
        email: &str,
    ) -> impl Future<Output = Result<Bytes, StrategyError>> + Send {
        async move {
            let user = write::insert_row(b, name, email).await?;
            self.after_create(b, &user).await;
            Ok(to_json(&user))
        }
    }

    /// DELETE: remove the row, then the cache entry. `false` if there was no such user.
    fn delete(
        self,
        b: &Arc<Backend>,
        id: i32,
    ) -> impl Future<Output = Result<bool, StrategyError>> + Send {
        async move {
            let deleted = write::delete_row(b, id).await?;
            invalidation::after_write(b.clone(), id, deleted.as_deref(), Self::USES_INVALIDATION)
                .await;
            Ok(deleted.is_some())
        }
    }

    /// After a PUT changed `user` in Postgres: by default the invalidation knob's step
    /// (cache-aside).
    fn after_update(self, b: &Arc<Backend>, user: &User) -> impl Future<Output = ()> + Send {
        invalidation::after_write(
            b.clone(),
            user.id,
            user.updated_at.as_deref(),
            Self::USES_INVALIDATION,
        )
    }

    /// After a POST created `user`: by default drop any tombstone cached for its id.
    fn after_create(self, b: &Arc<Backend>, user: &User) -> impl Future<Output = ()> + Send {
        invalidation::after_write(
            b.clone(),
            user.id,
            user.updated_at.as_deref(),
            Self::USES_INVALIDATION,
        )
    }

    /// Start the strategy's background work (write-behind's flusher); it must end when
    /// `b.stop` is cancelled. Most strategies have none.
    fn start_background(self, b: &Arc<Backend>) {
        let _ = b;
    }
}
