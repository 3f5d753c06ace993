//! The reaper: nothing the signer starts in S3 outlives its purpose.
//!
//! One pass ([`reap_once`]):
//! 1. abandoned uploads (`creating`/`uploading` with no sign of life for part URL
//!    expiry + margin) → aborted, and their multipart uploads aborted;
//! 2. aborted uploads whose AbortMultipartUpload has not succeeded yet → again;
//! 3. multipart uploads under `{prefix}/caches/` without a live row, older than the
//!    stale window by S3's `Initiated` → aborted (covers a crash between
//!    CreateMultipartUpload and the database write);
//! 4. eviction: caches unused for `ttl_days`, then least recently used caches of
//!    owners over `owner_quota` (as a delete: row, then object unless retained);
//! 5. retained objects no cache reads any more → released (and references of uploads
//!    that ended without a cache forgotten); then objects under the prefix that no row
//!    needs (no cache or live upload of theirs, no counted reference, not retained,
//!    not released within the download grace), older than the stale window by S3's
//!    `LastModified` → deleted; and so are index objects under `{prefix}/index/` of no
//!    cache or live upload, as old;
//! 6. old `completed`/`aborted` upload rows, job tokens expired for a week, usage
//!    counters older than a week and a day, and released objects past the download
//!    grace → forgotten.
//!
//! Each step runs even if an earlier one failed; failures are reported and retried on
//! the next pass. A pass runs only while this process holds the prefix's lease (see
//! [`super::lease`]).

use std::collections::HashSet;
use std::time::Duration;

use bmat_wire::api::UploadState;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::caches::evict::{self, Evicted};
use crate::names;
use crate::registry::{Registry, RegistryError, UploadRow};
use crate::state::{AppState, ms_ago, now_ms};
use crate::tasks::Task;
use crate::text::chain;
use crate::uploads::UploadError;
use crate::uploads::lifecycle::{abort_in_s3, abort_upload};

/// Finished upload rows are kept this long for `GET /v1/uploads/{id}`, and expired job
/// tokens so that their holders hear "expired", not "unknown".
const UPLOAD_ROW_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReapReport {
    /// Upload ids (ULIDs) of abandoned uploads aborted.
    pub stale_aborted: Vec<String>,
    /// Upload ids whose pending S3 abort succeeded this time.
    pub aborts_retried: Vec<String>,
    /// Object names of multipart uploads without a live row, aborted.
    pub orphan_uploads_aborted: Vec<String>,
    /// Upload ids (= object ULIDs) of caches deleted for being unused past the TTL.
    pub expired: Vec<String>,
    /// Upload ids of caches deleted to bring an owner under its quota.
    pub over_quota: Vec<String>,
    /// Retained objects released because no cache reads them any more.
    pub released: usize,
    /// Object names deleted because no row refers to them.
    pub orphan_objects_deleted: Vec<String>,
    /// Index objects deleted because no cache or live upload is theirs.
    pub orphan_indexes_deleted: Vec<String>,
    pub pruned_upload_rows: usize,
    /// One line per failed step or item.
    pub errors: Vec<String>,
}

/// Runs a pass at once and then every `timing.reaper_interval_secs`, until `shutdown`.
/// Before each pass it reads the prefix's claim again: unless it names this process
/// (not taken yet, or held by another signer, of this registry's copy as well), the
/// round reaps nothing, since what it would delete or abort may be the other's.
pub async fn run(st: AppState, mut shutdown: watch::Receiver<bool>) {
    let interval = Duration::from_secs(st.cfg().timing.reaper_interval_secs);
    loop {
        if st.holds_prefix().await {
            let report = reap_once(&st).await;
            log(&report);
        } else {
            st.metrics.reaper_skipped();
            match st.lease.lost() {
                Some(why) => error!("reaper pass skipped: {why}"),
                None => {
                    warn!("reaper pass skipped: this signer does not hold the prefix's lease now")
                }
            }
        }
        st.tasks.ran(Task::Reaper);
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

fn log(r: &ReapReport) {
    let acted = r.stale_aborted.len()
        + r.aborts_retried.len()
        + r.orphan_uploads_aborted.len()
        + r.expired.len()
        + r.over_quota.len()
        + r.orphan_objects_deleted.len()
        + r.orphan_indexes_deleted.len();
    if acted > 0 {
        info!(
            stale = r.stale_aborted.len(),
            aborts_retried = r.aborts_retried.len(),
            orphan_uploads = r.orphan_uploads_aborted.len(),
            expired = r.expired.len(),
            over_quota = r.over_quota.len(),
            orphan_objects = r.orphan_objects_deleted.len(),
            orphan_indexes = r.orphan_indexes_deleted.len(),
            "reaper pass"
        );
    }
    for e in &r.errors {
        warn!("reaper: {e}");
    }
}

/// One full pass (see the module doc). Never fails as a whole: see `errors`.
pub async fn reap_once(st: &AppState) -> ReapReport {
    let mut report = ReapReport::default();
    if let Err(e) = abort_stale(st, &mut report).await {
        report.errors.push(format!("abandoned uploads: {e:#}"));
    }
    if let Err(e) = retry_aborts(st, &mut report).await {
        report.errors.push(format!("pending aborts: {e:#}"));
    }
    if let Err(e) = abort_orphan_uploads(st, &mut report).await {
        report
            .errors
            .push(format!("multipart uploads without a row: {e:#}"));
    }
    let mut expired = Evicted::default();
    let done = evict::expired(st, &mut expired).await;
    report.expired = expired.ulids;
    report.errors.extend(expired.errors);
    if let Err(e) = done {
        report.errors.push(format!("TTL eviction: {}", chain(&e)));
    }
    let mut over_quota = Evicted::default();
    let done = evict::over_quota(st, &mut over_quota).await;
    report.over_quota = over_quota.ulids;
    report.errors.extend(over_quota.errors);
    if let Err(e) = done {
        report.errors.push(format!("quota eviction: {}", chain(&e)));
    }
    match st.db.run(|r| r.release_unreferenced(now_ms())).await {
        Ok(n) => report.released = n,
        Err(e) => report
            .errors
            .push(format!("releasing unreferenced objects: {e:#}")),
    }
    if let Err(e) = delete_orphan_objects(st, &mut report).await {
        report.errors.push(format!("objects without a row: {e:#}"));
    }
    if let Err(e) = delete_orphan_indexes(st, &mut report).await {
        report
            .errors
            .push(format!("index objects without a row: {e:#}"));
    }
    let cutoff = ms_ago(UPLOAD_ROW_RETENTION);
    match st.db.run(move |r| r.prune_uploads(cutoff)).await {
        Ok(n) => report.pruned_upload_rows = n,
        Err(e) => report.errors.push(format!("pruning upload rows: {e:#}")),
    }
    if let Err(e) = st.db.run(move |r| r.prune_job_tokens(cutoff)).await {
        report
            .errors
            .push(format!("pruning expired job tokens: {e:#}"));
    }
    if let Err(e) = st.db.run(|r| r.prune_usage(now_ms())).await {
        report.errors.push(format!("pruning usage counters: {e:#}"));
    }
    let released_before = grace_cutoff(st);
    if let Err(e) = st.db.run(move |r| r.prune_released(released_before)).await {
        report
            .errors
            .push(format!("forgetting released objects: {e:#}"));
    }
    st.metrics.reaper_pass(
        &[
            ("stale_upload_aborted", report.stale_aborted.len()),
            ("abort_retried", report.aborts_retried.len()),
            ("orphan_upload_aborted", report.orphan_uploads_aborted.len()),
            ("orphan_object_deleted", report.orphan_objects_deleted.len()),
            ("orphan_index_deleted", report.orphan_indexes_deleted.len()),
            ("error", report.errors.len()),
        ],
        &[
            ("ttl", report.expired.len()),
            ("quota", report.over_quota.len()),
        ],
    );
    report
}

fn stale_cutoff(st: &AppState) -> i64 {
    ms_ago(st.cfg().timing.stale_after())
}

/// Objects released before this are past their download grace.
fn grace_cutoff(st: &AppState) -> i64 {
    ms_ago(st.cfg().timing.download_grace())
}

async fn abort_stale(st: &AppState, report: &mut ReapReport) -> anyhow::Result<()> {
    let cutoff = stale_cutoff(st);
    let stale = st.db.run(move |r| r.stale_uploads(cutoff)).await?;
    for up in stale {
        // Guarded by state: an upload completed meanwhile is left alone.
        match abort_upload(st, &up, &[UploadState::Creating, UploadState::Uploading]).await {
            Ok(true) => {
                info!(owner = %up.owner, key = %up.key, upload = %up.ulid, "abandoned upload aborted");
                report.stale_aborted.push(up.ulid);
            }
            Ok(false) => {}
            Err(e) => report
                .errors
                .push(format!("aborting upload {}: {}", up.ulid, chain(&e))),
        }
    }
    Ok(())
}

async fn retry_aborts(st: &AppState, report: &mut ReapReport) -> anyhow::Result<()> {
    let pending = st.db.run(|r| r.pending_s3_aborts()).await?;
    for up in pending {
        match abort_in_s3(st, &up).await {
            Ok(()) => report.aborts_retried.push(up.ulid),
            Err(UploadError::S3 { source, .. }) => report
                .errors
                .push(format!("aborting upload {} in S3: {source}", up.ulid)),
            Err(e) => return Err(anyhow::Error::new(e)),
        }
    }
    Ok(())
}

/// The ULID an object name under `prefix` refers to, if it has that shape.
fn ulid_of(prefix: &str, object: &str) -> Option<String> {
    object
        .strip_prefix(prefix)
        .filter(|rest| names::is_ulid(rest))
        .map(str::to_owned)
}

async fn abort_orphan_uploads(st: &AppState, report: &mut ReapReport) -> anyhow::Result<()> {
    let prefix = st.cfg().s3.caches_prefix();
    let listed = st.s3.list_multipart_uploads(&prefix).await?;
    // Read after listing: every upload in the list had its row written before it was
    // created, so the rows read now are at least as new as the list.
    let cutoff = stale_cutoff(st);
    for mu in listed {
        let row: Option<UploadRow> = match ulid_of(&prefix, &mu.key) {
            Some(ulid) => st.db.run(move |r| r.get_upload(&ulid)).await?,
            None => None,
        };
        let keep = match &row {
            Some(r) if r.state.is_live() && r.s3_upload_id.as_deref() == Some(&mu.upload_id) => {
                true
            }
            // CreateMultipartUpload answered but its id is not stored yet: give the
            // begin request the stale window to finish (after that step 1 aborts the
            // row and this upload goes on the next pass).
            Some(r) if r.state == UploadState::Creating && r.s3_upload_id.is_none() => {
                r.updated_at >= cutoff
            }
            _ => false,
        };
        // However it looks to this registry, a multipart upload that S3 says is
        // younger than the stale window may be another signer's, or a registry being
        // put back: never touched (nor one S3 gives no readable time for).
        let young = mu.initiated_ms.is_none_or(|t| t >= cutoff);
        if keep || young {
            continue;
        }
        match st.s3.abort_multipart_upload(&mu.key, &mu.upload_id).await {
            Ok(()) => {
                if let Some(r) = row.filter(|r| r.s3_upload_id.as_deref() == Some(&mu.upload_id)) {
                    st.db.run(move |db| db.s3_aborted(&r.ulid)).await?;
                }
                info!(object = %mu.key, "multipart upload without a live row aborted");
                report.orphan_uploads_aborted.push(mu.key);
            }
            Err(e) => report
                .errors
                .push(format!("aborting multipart upload of {}: {e}", mu.key)),
        }
    }
    Ok(())
}

async fn delete_orphan_objects(st: &AppState, report: &mut ReapReport) -> anyhow::Result<()> {
    // An object released (a refresh replaced its cache, the last cache reading it
    // went) stays as long as a download URL handed out before may still be used.
    let released_after = grace_cutoff(st);
    let needed = move |r: &Registry, u: &str| r.object_needed(u, released_after);
    let prefix = st.cfg().s3.caches_prefix();
    report.orphan_objects_deleted = sweep(st, prefix, needed, &mut report.errors).await?;
    Ok(())
}

/// Index objects of no cache: a deleted cache's when deleting it failed, an aborted
/// upload's (its completion was attempted), a rebuild's skipped ones.
async fn delete_orphan_indexes(st: &AppState, report: &mut ReapReport) -> anyhow::Result<()> {
    let prefix = st.cfg().s3.index_prefix();
    let needed = |r: &Registry, u: &str| r.index_needed(u);
    report.orphan_indexes_deleted = sweep(st, prefix, needed, &mut report.errors).await?;
    Ok(())
}

/// Deletes the objects under `prefix` older than the stale window whose ULID
/// `needed` does not keep (and those of no ULID); their names.
async fn sweep<F>(
    st: &AppState,
    prefix: String,
    needed: F,
    errors: &mut Vec<String>,
) -> anyhow::Result<Vec<String>>
where
    F: Fn(&Registry, &str) -> Result<bool, RegistryError> + Send + 'static,
{
    let objects = st.s3.list_objects_dated(&prefix).await?;
    // Young objects are left alone whatever the registry says, judged by S3's own
    // LastModified (not the ULID in the name: a copied or restored object is new under
    // an old name), so nothing in flight, another signer's, or a registry being put
    // back is touched.
    let cutoff = stale_cutoff(st);
    let old: Vec<(String, Option<String>)> = objects
        .into_iter()
        .filter(|o| o.last_modified_ms.is_some_and(|t| t < cutoff))
        .map(|o| (ulid_of(&prefix, &o.name), o.name))
        .map(|(u, n)| (n, u))
        .collect();
    // One registry call: the worker's completion (cache row + upload state) is one
    // transaction, so an object being completed right now is seen as either.
    let kept: HashSet<String> = {
        let ulids: Vec<String> = old.iter().filter_map(|(_, u)| u.clone()).collect();
        st.db
            .run(move |r| {
                let mut keep = HashSet::new();
                for u in ulids {
                    if needed(r, &u)? {
                        keep.insert(u);
                    }
                }
                Ok(keep)
            })
            .await?
    };
    let mut deleted = Vec::new();
    for (name, ulid) in old {
        if ulid.as_ref().is_some_and(|u| kept.contains(u)) {
            continue;
        }
        match st.s3.delete_object(&name).await {
            Ok(()) => {
                info!(object = %name, "object without a cache row deleted");
                deleted.push(name);
            }
            Err(e) => errors.push(format!("deleting orphan object {name}: {e}")),
        }
    }
    Ok(deleted)
}
