//! What request handlers and background tasks share.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use tracing::warn;

use crate::auth::{AuthError, Principal, StaticTokens, check_job_token, token_hash};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::registry::{CacheRow, Db, Place, UsageEvent};
use crate::s3::S3Client;
use crate::s3::S3Error;

#[derive(Clone)]
pub struct AppState {
    /// The config and its tokens, replaced whole by a reload (SIGHUP): a request holds
    /// the `Arc` it started with, so one in flight never sees half of each.
    live: Arc<RwLock<Arc<Live>>>,
    pub db: Db,
    pub s3: S3Client,
    /// Wakes the completion worker when `complete` queued an upload.
    pub worker_wake: Arc<Notify>,
    pub metrics: Arc<Metrics>,
}

struct Live {
    cfg: Arc<Config>,
    /// The config's tokens, by hash.
    tokens: StaticTokens,
}

impl Live {
    fn new(cfg: Config) -> Arc<Live> {
        Arc::new(Live {
            tokens: StaticTokens::from_config(&cfg),
            cfg: Arc::new(cfg),
        })
    }
}

impl AppState {
    pub fn new(cfg: Config, db: Db, s3: S3Client) -> AppState {
        AppState {
            live: Arc::new(RwLock::new(Live::new(cfg))),
            db,
            s3,
            worker_wake: Arc::new(Notify::new()),
            metrics: Arc::new(Metrics::new()),
        }
    }

    fn live(&self) -> Arc<Live> {
        self.live
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The config as of now (a reload may replace it for later calls).
    pub fn cfg(&self) -> Arc<Config> {
        self.live().cfg.clone()
    }

    /// Swaps in a validated config and its tokens, for every request that starts
    /// from now on (see [`crate::reload`] for what it may change).
    pub fn replace_config(&self, cfg: Config) {
        let next = Live::new(cfg);
        *self.live.write().unwrap_or_else(PoisonError::into_inner) = next;
    }

    /// Counts a lookup or an eviction in the usage table. Usage is for operators'
    /// eyes: a failure to count is logged, never the request's failure.
    pub async fn count_usage(&self, owner: &str, scope: &str, event: UsageEvent) {
        let (owner, scope) = (owner.to_owned(), scope.to_owned());
        let counted = self
            .db
            .run(move |r| {
                let at = Place {
                    owner: &owner,
                    scope: &scope,
                };
                r.record_usage(&at, event, now_ms())
            })
            .await;
        if let Err(e) = counted {
            warn!("cannot count usage ({event:?}): {e:#}");
        }
    }

    /// Who a bearer token is: a token of the config, else a minted job token that has
    /// neither expired nor been revoked. Registry failures are `Err(Err(..))`.
    pub async fn principal(
        &self,
        token: &str,
    ) -> Result<Result<Principal, AuthError>, anyhow::Error> {
        let hash = token_hash(token);
        if let Some(p) = self.live().tokens.get(&hash) {
            return Ok(Ok(p.clone()));
        }
        let row = self.db.read(move |r| r.job_token_by_hash(&hash)).await?;
        Ok(match row {
            Some(row) => check_job_token(row, now_ms()),
            None => Err(AuthError::UnknownToken),
        })
    }

    /// Deletes a cache: object first, then row. A row without an object would be a
    /// broken hit; an object without a row is only a leak the reaper's orphan sweep
    /// removes. By ULID, so a newer cache of the same key is never touched.
    pub async fn delete_cache(&self, c: &CacheRow) -> Result<(), DeleteError> {
        self.s3
            .delete_object(&self.object_name(&c.ulid))
            .await
            .map_err(DeleteError::S3)?;
        let ulid = c.ulid.clone();
        self.db
            .run(move |r| r.delete_cache(&ulid))
            .await
            .map_err(DeleteError::Registry)?;
        Ok(())
    }

    pub fn object_name(&self, ulid: &str) -> String {
        self.cfg().s3.object_name(ulid)
    }
}

/// Why deleting a cache failed.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("deleting the object: {0}")]
    S3(#[source] S3Error),
    #[error("deleting the row: {0:#}")]
    Registry(#[source] anyhow::Error),
}

/// Unix time in milliseconds (the registry's clock).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
