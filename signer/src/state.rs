//! What request handlers and background tasks share.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bmat_wire::api::UploadState;
use tokio::sync::Notify;
use tracing::warn;

use crate::config::Config;
use crate::registry::{Db, UploadRow};
use crate::s3::S3Client;

#[derive(Clone)]
pub struct AppState {
    pub cfg: Arc<Config>,
    pub db: Db,
    pub s3: S3Client,
    /// Wakes the completion worker when `complete` queued an upload.
    pub worker_wake: Arc<Notify>,
    /// Token → owner.
    tokens: Arc<HashMap<String, String>>,
}

impl AppState {
    pub fn new(cfg: Config, db: Db, s3: S3Client) -> AppState {
        let tokens = cfg
            .tokens
            .iter()
            .map(|t| (t.token.clone(), t.owner.clone()))
            .collect();
        AppState {
            cfg: Arc::new(cfg),
            db,
            s3,
            worker_wake: Arc::new(Notify::new()),
            tokens: Arc::new(tokens),
        }
    }

    /// The owner a bearer token acts for. Every configured token is compared in
    /// constant time, so timing does not reveal how much of a guess was right.
    pub fn owner_of(&self, token: &str) -> Option<&str> {
        let mut found = None;
        for (known, owner) in self.tokens.iter() {
            if constant_time_eq(known.as_bytes(), token.as_bytes()) {
                found = Some(owner.as_str());
            }
        }
        found
    }

    pub fn object_name(&self, ulid: &str) -> String {
        self.cfg.s3.object_name(ulid)
    }

    /// Marks the upload aborted (if it is still in one of `from`), then aborts its S3
    /// multipart upload. The database goes first so that nothing completes an upload
    /// whose parts are being thrown away; if S3 fails, `needs_abort` stays set and the
    /// reaper retries. Returns whether this call did the marking.
    pub async fn abort_upload(&self, up: &UploadRow, from: &[UploadState]) -> anyhow::Result<bool> {
        let ulid = up.ulid.clone();
        let from = from.to_vec();
        let marked = self
            .db
            .run(move |r| r.mark_aborted(&ulid, &from, now_ms()))
            .await?;
        if marked && let Some(s3_id) = &up.s3_upload_id {
            match self
                .s3
                .abort_multipart_upload(&self.object_name(&up.ulid), s3_id)
                .await
            {
                Ok(()) => {
                    let ulid = up.ulid.clone();
                    self.db.run(move |r| r.s3_aborted(&ulid)).await?;
                }
                Err(e) => {
                    warn!(upload = %up.ulid, "AbortMultipartUpload failed, the reaper will retry: {e}")
                }
            }
        }
        Ok(marked)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Unix time in milliseconds (the registry's clock).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
