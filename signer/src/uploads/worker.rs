//! Durable completion: `complete` only records the part list (state `finished`); this
//! worker runs CompleteMultipartUpload for finished uploads, one at a time, oldest
//! first, straight from the database, so a restart resumes the queue.
//!
//! Crash window: S3 may have completed the object while the signer died (or the
//! answer was lost) before the database said so. CompleteMultipartUpload then fails
//! (the upload id is gone) and HeadObject tells the truth: an object of the recorded
//! size means the earlier completion went through.
//!
//! Each attempt first writes the cache's index object (`crate::cache_index`), so
//! that every completed cache can be found again by a rebuild of the registry.

use std::time::Duration;

use bmat_wire::api::UploadState;
use tokio::sync::watch;
use tracing::{info, warn};

use super::error::UploadError;
use super::lifecycle::abort_upload;
use crate::cache_index::{self, CacheIndex};
use crate::registry::{CompletedOutcome, UploadRow};
use crate::retry::RetryPolicy;
use crate::state::{AppState, millis, now_ms};
use crate::tasks::Task;
use crate::text::chain;

/// Longest sleep between looks at the queue when nothing woke the worker.
const MAX_IDLE: Duration = Duration::from_secs(5);
/// Shortest sleep, so a clock oddity cannot spin the loop.
const MIN_IDLE: Duration = Duration::from_millis(20);

/// What one pass did with one upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing was due.
    Idle,
    Completed(String),
    /// Failed; retried at the given time (Unix ms).
    Retry(String, i64),
    Aborted(String),
}

/// The worker loop: runs until `shutdown` turns true.
pub async fn run(st: AppState, mut shutdown: watch::Receiver<bool>) {
    let delay = Duration::from_secs(st.cfg().timing.worker_start_delay_secs);
    if !delay.is_zero() {
        info!(
            "completion worker starts in {}s (timing.worker_start_delay_secs)",
            delay.as_secs()
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
    }
    loop {
        // Drain everything that is due.
        loop {
            match complete_one(&st).await {
                Ok(Step::Idle) => break,
                Ok(_) => {}
                Err(e) => {
                    warn!("completion worker: {}", chain(&e));
                    break;
                }
            }
            if *shutdown.borrow() {
                return;
            }
        }
        st.tasks.ran(Task::Worker);
        let idle = match st.db.run(|r| r.next_completion_time()).await {
            Ok(Some(due)) => Duration::from_millis((due - now_ms()).max(0) as u64),
            Ok(None) => MAX_IDLE,
            Err(e) => {
                warn!("completion worker: {e:#}");
                MAX_IDLE
            }
        }
        .clamp(MIN_IDLE, MAX_IDLE);
        tokio::select! {
            _ = st.worker_wake.notified() => {}
            _ = tokio::time::sleep(idle) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Takes the oldest due `finished` upload and moves it on: completed, retried later
/// (S3 down, throttled, failing), or aborted when it can never complete or has failed
/// for `completion_give_up_after_secs`. Public so tests and tools can drive it.
pub async fn complete_one(st: &AppState) -> Result<Step, UploadError> {
    let Some(up) = st.db.run(|r| r.next_due_completion(now_ms())).await? else {
        return Ok(Step::Idle);
    };
    let object = st.object_name(&up.ulid);
    let without = |what| UploadError::FinishedWithout {
        id: up.ulid.clone(),
        what,
    };
    let s3_id = up
        .s3_upload_id
        .clone()
        .ok_or_else(|| without("S3 upload id"))?;
    let size = up.size.ok_or_else(|| without("size"))?;

    // Every completed cache describes itself in S3 (docs/design.md, "Registry and S3
    // layout": the registry is an index): the index first, so a completion never goes
    // through without one.
    let refs = {
        let ulid = up.ulid.clone();
        st.db.read(move |r| r.refs_of(&ulid)).await?
    };
    let index = CacheIndex::of_upload(&up, refs, now_ms()).ok_or_else(|| without("checksum"))?;
    if let Err(e) = cache_index::put(st, &index).await {
        return failed_attempt(st, &up, &e).await;
    }

    let failure = match st
        .s3
        .complete_multipart_upload(&object, &s3_id, &up.parts)
        .await
    {
        Ok(()) => return record(st, &up).await,
        Err(e) => e,
    };
    match st.s3.head_object(&object).await {
        Ok(Some(found)) if found == size => {
            info!(upload = %up.ulid, "CompleteMultipartUpload failed ({failure}) but the object exists: an earlier completion went through");
            return record(st, &up).await;
        }
        // The upload id is gone and no object of the recorded size exists: nothing can
        // ever complete it.
        Ok(_) if failure.is_not_found() => {
            warn!(upload = %up.ulid, "the multipart upload no longer exists in S3: {failure}");
            return give_up(st, &up).await;
        }
        Ok(Some(found)) => {
            warn!(upload = %up.ulid, "object exists with {found} bytes, expected {size}");
        }
        Ok(None) => {}
        Err(e) => warn!(upload = %up.ulid, "HeadObject after a failed completion failed too: {e}"),
    }
    if failure.is_part_mismatch() {
        warn!(upload = %up.ulid, "S3 refuses the part list; no retry can change that: {failure}");
        return give_up(st, &up).await;
    }

    failed_attempt(st, &up, &failure).await
}

/// An attempt failed for a reason that may pass: retried after the backoff, or given
/// up `completion_give_up_after_secs` after the client finished.
async fn failed_attempt(
    st: &AppState,
    up: &UploadRow,
    failure: &(dyn std::fmt::Display + Sync),
) -> Result<Step, UploadError> {
    let failing_since = up.finished_at.unwrap_or(up.created_at);
    let give_up_after = st.cfg().timing.completion_give_up_after();
    if now_ms().saturating_sub(failing_since) >= millis(give_up_after) {
        warn!(upload = %up.ulid, attempts = up.attempts, "completion still failing {} s after the upload finished; giving up: {failure}", give_up_after.as_secs());
        return give_up(st, up).await;
    }
    retry_later(st, up, failure).await
}

/// Schedules the next attempt after the backoff.
async fn retry_later(
    st: &AppState,
    up: &UploadRow,
    failure: &(dyn std::fmt::Display + Sync),
) -> Result<Step, UploadError> {
    let attempts = up.attempts.saturating_add(1);
    let cfg = st.cfg();
    let t = &cfg.timing;
    let next = now_ms().saturating_add(backoff_ms(
        t.completion_backoff_ms,
        t.completion_max_backoff_ms,
        attempts,
    ));
    warn!(upload = %up.ulid, attempts, "completion failed, retrying in {} ms: {failure}", next - now_ms());
    let ulid = up.ulid.clone();
    st.db
        .run(move |r| r.schedule_retry(&ulid, attempts, next, now_ms()))
        .await?;
    Ok(Step::Retry(up.ulid.clone(), next))
}

/// The wait in ms after `attempts` failures: `base · 2^(attempts-1)` capped at `max`,
/// plus up to `base` of jitter so retries of many uploads spread. The worker retries
/// until `completion_give_up_after_secs`, not a number of tries.
fn backoff_ms(base: u64, max: u64, attempts: u32) -> i64 {
    let policy = RetryPolicy {
        attempts: None,
        base: Duration::from_millis(base),
        cap: Duration::from_millis(max),
        jitter: true,
    };
    i64::try_from(policy.delay(attempts).as_millis())
        .unwrap_or(i64::MAX / 4)
        .min(i64::MAX / 4)
}

async fn record(st: &AppState, up: &UploadRow) -> Result<Step, UploadError> {
    let ulid = up.ulid.clone();
    let outcome = st
        .db
        .run(move |r| r.record_completed(&ulid, now_ms()))
        .await?;
    match outcome {
        CompletedOutcome::Recorded => {
            st.metrics.committed(up.size.unwrap_or(0));
            info!(owner = %up.owner, key = %up.key, upload = %up.ulid, size = ?up.size, replaced = ?up.replaces, "cache stored");
            // A refresh: the replaced cache's row is gone, and so goes its index.
            if let Some(old) = &up.replaces {
                cache_index::forget(st, old).await;
            }
        }
        CompletedOutcome::KeyTaken => {
            // Cannot happen while the one-live-upload rule holds; keep the older cache.
            warn!(upload = %up.ulid, key = %up.key, "a cache for the key already exists; deleting the surplus object");
            if !st.holds_prefix().await {
                warn!(upload = %up.ulid, "not deleted: this signer does not hold the prefix's lease");
            } else {
                if let Err(e) = st.s3.delete_object(&st.object_name(&up.ulid)).await {
                    warn!(upload = %up.ulid, "cannot delete the surplus object (the orphan sweep will): {e}");
                }
                cache_index::forget(st, &up.ulid).await;
            }
        }
        CompletedOutcome::NotFinished => {
            warn!(upload = %up.ulid, "upload left the finished state during completion");
        }
    }
    Ok(Step::Completed(up.ulid.clone()))
}

/// Aborts the upload, only while this process holds the prefix's lease (a copy of this
/// registry may hold the same row, whose upload the other signer completes); else it is
/// tried again later.
async fn give_up(st: &AppState, up: &UploadRow) -> Result<Step, UploadError> {
    if !st.holds_prefix().await {
        let why = "this signer does not hold the prefix's lease, so it aborts nothing";
        return retry_later(st, up, &why).await;
    }
    abort_upload(st, up, &[UploadState::Finished]).await?;
    warn!(owner = %up.owner, key = %up.key, upload = %up.ulid, "completion given up; upload aborted");
    Ok(Step::Aborted(up.ulid.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        for attempts in 1..6 {
            let b = backoff_ms(500, 60_000, attempts);
            let floor = 500i64 << (attempts - 1);
            assert!(b >= floor && b < floor + 500, "{attempts}: {b}");
        }
        for attempts in [8, 20, 40, u32::MAX] {
            let b = backoff_ms(500, 60_000, attempts);
            assert!((60_000..60_500).contains(&b), "{attempts}: {b}");
        }
        assert!(backoff_ms(u64::MAX, u64::MAX, 200) > 0);
    }
}
