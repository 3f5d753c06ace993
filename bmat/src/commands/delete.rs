//! `bmat cache delete KEY`: remove the cache of KEY from the job's own scope, so that
//! the next save writes a new one (keys are written once). Needs a writing token; a
//! read-only one is refused, which is an outcome, not a failure.

use std::time::Instant;

use crate::commands::outcome::{Outcome, infrastructure};
use crate::context::JobContext;

/// A validated delete request.
pub struct DeleteRequest {
    pub key: String,
}

/// Runs a delete; never fails, every failure is an [`Outcome::Failed`].
pub async fn delete(req: DeleteRequest, ctx: &JobContext) -> Outcome {
    let started = Instant::now();
    let answer = match ctx.api() {
        Ok(api) => api.delete_cache(&req.key).await,
        Err(e) => Err(e),
    };
    let elapsed = started.elapsed();
    match answer {
        Ok(_) => Outcome::Deleted {
            key: req.key,
            elapsed,
        },
        Err(e) => match e.refusal() {
            Some(r) if r.is_read_only() => Outcome::Refused {
                key: req.key,
                elapsed,
            },
            Some(r) if r.is_not_found() => Outcome::NotFound {
                key: req.key,
                elapsed,
            },
            _ => Outcome::failed(&req.key, "delete", started, infrastructure(e)),
        },
    }
}
