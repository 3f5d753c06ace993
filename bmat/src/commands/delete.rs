//! `bmat cache delete KEY`: remove the cache of KEY from the job's own scope, so that
//! the next save writes a new one (keys are written once); `--prefix P`: every cache
//! of the job's own scope whose key starts with P (a closed pull request's). Needs a
//! writing token; a read-only one is refused, which is an outcome, not a failure.

use std::time::Instant;

use crate::commands::outcome::{Outcome, infrastructure};
use crate::context::JobContext;
use crate::transfer::api::ApiError;

/// A validated delete request.
pub enum DeleteRequest {
    Key(String),
    Prefix(String),
}

impl DeleteRequest {
    /// The key or prefix asked for.
    pub fn asked(&self) -> &str {
        match self {
            DeleteRequest::Key(key) | DeleteRequest::Prefix(key) => key,
        }
    }
}

/// Runs a delete; never fails, every failure is an [`Outcome::Failed`].
pub async fn delete(req: DeleteRequest, ctx: &JobContext) -> Outcome {
    let started = Instant::now();
    let api = match ctx.api() {
        Ok(api) => api,
        Err(e) => return refused_or_failed(req, started, e),
    };
    let answer = match &req {
        DeleteRequest::Key(key) => api.delete_cache(key).await.map(|_| None),
        DeleteRequest::Prefix(prefix) => api.delete_caches(prefix).await.map(Some),
    };
    let elapsed = started.elapsed();
    match (answer, req) {
        (Ok(None), req) => Outcome::Deleted {
            key: req.asked().to_owned(),
            elapsed,
        },
        (Ok(Some(done)), req) => Outcome::DeletedMany {
            prefix: req.asked().to_owned(),
            count: done.deleted,
            bytes: done.bytes,
            elapsed,
        },
        (Err(e), req) => refused_or_failed(req, started, e),
    }
}

fn refused_or_failed(req: DeleteRequest, started: Instant, e: ApiError) -> Outcome {
    let elapsed = started.elapsed();
    let key = req.asked().to_owned();
    match e.refusal() {
        Some(r) if r.is_read_only() => Outcome::Refused { key, elapsed },
        Some(r) if r.is_not_found() => Outcome::NotFound { key, elapsed },
        _ => Outcome::failed(&key, "delete", started, infrastructure(e)),
    }
}
