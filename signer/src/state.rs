//! What request handlers and background tasks share.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use crate::auth::{AuthError, Principal, StaticTokens, check_job_token, token_hash};
use crate::config::Config;
use crate::registry::{CacheRow, Db};
use crate::s3::S3Client;
use crate::s3::S3Error;

#[derive(Clone)]
pub struct AppState {
    pub cfg: Arc<Config>,
    pub db: Db,
    pub s3: S3Client,
    /// Wakes the completion worker when `complete` queued an upload.
    pub worker_wake: Arc<Notify>,
    /// The config's tokens, by hash.
    tokens: Arc<StaticTokens>,
}

impl AppState {
    pub fn new(cfg: Config, db: Db, s3: S3Client) -> AppState {
        let tokens = StaticTokens::from_config(&cfg);
        AppState {
            cfg: Arc::new(cfg),
            db,
            s3,
            worker_wake: Arc::new(Notify::new()),
            tokens: Arc::new(tokens),
        }
    }

    /// Who a bearer token is: a token of the config, else a minted job token that has
    /// neither expired nor been revoked. Registry failures are `Err(Err(..))`.
    pub async fn principal(
        &self,
        token: &str,
    ) -> Result<Result<Principal, AuthError>, anyhow::Error> {
        let hash = token_hash(token);
        if let Some(p) = self.tokens.get(&hash) {
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
        self.cfg.s3.object_name(ulid)
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
