//! The life of an upload, in one place (see docs/design.md, "Data flow"):
//! `creating` → `uploading` → `finished` → `completed` | `aborted`.
//!
//! - [`begin`]: the row first (`creating`), then CreateMultipartUpload, then
//!   `uploading`; so no multipart upload exists without a row.
//! - [`part_urls`]: presigned UploadPart URLs, each signed for its exact body size;
//!   renews the lease.
//! - [`complete`]: checks the parts against S3 (ListParts) and the objects a cache of
//!   contents reads (the job's to read), records them: `finished`, queued for the
//!   completion worker ([`super::worker`]), which makes it `completed`.
//! - [`abort`] / [`abort_upload`]: `aborted`, then AbortMultipartUpload (retried by the
//!   reaper until it succeeds).
//!
//! Every step answers with an [`UploadError`] variant per thing that can go wrong; the
//! API maps them to HTTP statuses in one place.

use std::collections::{HashMap, HashSet};

use bmat_wire::api::{
    BeginRequest, BeginResponse, CompleteRequest, Extent, PartUrl, PartUrlsRequest,
    PartUrlsResponse, SkipReason, UploadState, UploadStatus,
};
use bmat_wire::validate_key;
use tracing::{info, warn};

use super::contents::{self, ContentsError};
use super::error::{MAX_URLS_PER_REQUEST, UploadError, s3};
use crate::auth::JobGrant;
use crate::config::{MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE};
use crate::metrics::UploadEvent;
use crate::names;
use crate::registry::{BeginOutcome, FinishOutcome, Finished, Readable, UploadRow, UploadRules};
use crate::state::{AppState, now_ms};

pub async fn begin(
    st: &AppState,
    job: &JobGrant,
    req: &BeginRequest,
) -> Result<BeginResponse, UploadError> {
    validate_key(&req.key).map_err(|source| UploadError::InvalidKey {
        key: req.key.clone(),
        source,
    })?;
    let cfg = st.cfg();
    let limits = &cfg.limits;
    if let Some(size) = req.expected_size
        && size > limits.max_cache_size
    {
        return Err(UploadError::ExpectedTooLarge {
            size,
            cap: limits.max_cache_size,
        });
    }
    // Checked before anything is taken: a scope that may not save holds no key.
    if !req.only_scopes.is_empty()
        && !req
            .only_scopes
            .iter()
            .any(|p| names::matches(p, &job.scope))
    {
        return Ok(BeginResponse::Skip {
            reason: SkipReason::Scope,
        });
    }
    let part_size = req.part_size.map_or(limits.part_size, |asked| {
        allowed_part_size(asked, limits.max_cache_size)
    });
    let ulid = ulid::Ulid::new().to_string();
    let outcome = {
        let (job, key, ulid) = (job.clone(), req.key.clone(), ulid.clone());
        let rules = UploadRules {
            lease: std::time::Duration::from_secs(cfg.timing.lease_secs),
            max_live: limits.max_live_uploads,
            max_live_unprotected: limits.max_live_unprotected_uploads,
            protected: limits.protected_scopes.clone(),
            replace_created_before: req.refresh_after_secs.map(|secs| {
                now_ms()
                    .saturating_sub(i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX))
            }),
        };
        st.db
            .run(move |r| r.begin_upload(&job.place(), &key, &ulid, part_size, now_ms(), &rules))
            .await?
    };
    match outcome {
        BeginOutcome::Exists => {
            return Ok(BeginResponse::Skip {
                reason: SkipReason::Exists,
            });
        }
        BeginOutcome::InProgress => {
            return Ok(BeginResponse::Skip {
                reason: SkipReason::InProgress,
            });
        }
        BeginOutcome::TooManyInScope(max) => {
            return Err(UploadError::TooManyLive {
                scope: job.scope.clone(),
                max,
            });
        }
        BeginOutcome::TooManyUnprotected(max) => {
            return Err(UploadError::TooManyLiveUnprotected {
                owner: job.owner.clone(),
                max,
            });
        }
        BeginOutcome::Created { took_over } => {
            if let Some(old) = took_over {
                st.metrics.upload(UploadEvent::Aborted);
                info!(owner = %job.owner, scope = %job.scope, key = %req.key, "lease of upload {old} expired; it was aborted");
            }
        }
    }

    // The row exists, so a multipart upload created now can never leak: if we crash
    // before storing its id, the reaper finds it under the prefix without a live row.
    let object = st.object_name(&ulid);
    let s3_id = match st.s3.create_multipart_upload(&object).await {
        Ok(id) => id,
        Err(e) => {
            let u = ulid.clone();
            st.db
                .run(move |r| r.mark_aborted(&u, &[UploadState::Creating], now_ms()))
                .await?;
            st.metrics.upload(UploadEvent::Aborted);
            return Err(s3("creating the multipart upload")(e));
        }
    };
    let stored = {
        let (u, id) = (ulid.clone(), s3_id.clone());
        st.db
            .run(move |r| r.set_uploading(&u, &id, now_ms()))
            .await?
    };
    if !stored {
        // Aborted while CreateMultipartUpload ran (explicit abort or lease take-over).
        let (u, id) = (ulid.clone(), s3_id.clone());
        st.db
            .run(move |r| r.record_orphan_upload_id(&u, &id, now_ms()))
            .await?;
        if st.s3.abort_multipart_upload(&object, &s3_id).await.is_ok() {
            let u = ulid.clone();
            st.db.run(move |r| r.s3_aborted(&u)).await?;
        }
        return Err(UploadError::AbortedWhileCreating(ulid));
    }
    st.metrics.upload(UploadEvent::Started);
    info!(owner = %job.owner, scope = %job.scope, key = %req.key, upload = %ulid, "upload begun");
    Ok(BeginResponse::Upload {
        upload_id: ulid,
        part_size,
        max_size: limits.max_cache_size,
    })
}

/// A part size a client asked for, brought within S3's limits: at least 5 MiB, at most
/// 5 GiB, and large enough that a cache of `max_cache_size` fits in 10,000 parts.
fn allowed_part_size(asked: u64, max_cache_size: u64) -> u64 {
    let floor = MIN_PART_SIZE.max(max_cache_size.div_ceil(u64::from(MAX_PARTS)));
    asked.clamp(floor.min(MAX_PART_SIZE), MAX_PART_SIZE)
}

pub async fn part_urls(
    st: &AppState,
    job: &JobGrant,
    id: &str,
    req: &PartUrlsRequest,
) -> Result<PartUrlsResponse, UploadError> {
    let up = load_owned(st, job, id).await?;
    if up.state != UploadState::Uploading {
        return Err(UploadError::WrongState {
            id: up.ulid,
            state: up.state,
            needed: "part URLs are only issued while it is uploading",
        });
    }
    let sizes = part_sizes(req, up.part_size, st.cfg().limits.max_cache_size)?;
    let renewed = {
        let u = up.ulid.clone();
        let lease = std::time::Duration::from_secs(st.cfg().timing.lease_secs);
        st.db
            .run(move |r| r.renew_lease(&u, now_ms(), lease))
            .await?
    };
    if !renewed {
        return Err(UploadError::NoLongerUploading(up.ulid));
    }
    let Some(s3_id) = up.s3_upload_id.as_deref() else {
        return Err(UploadError::NoS3Upload(up.ulid));
    };
    let object = st.object_name(&up.ulid);
    let expiry = st.cfg().timing.part_url_expiry();
    let mut urls = Vec::with_capacity(sizes.len());
    for (n, size) in sizes {
        let url = st
            .s3
            .presign_upload_part(&object, s3_id, n, size, expiry)
            .map_err(s3("presigning a part upload"))?;
        urls.push(PartUrl {
            part_number: n,
            url,
        });
    }
    Ok(PartUrlsResponse { urls })
}

/// The parts asked for, each with the body size its URL is signed for: the part size,
/// or less where the size cap ends the archive, or the client's `size` for a short last
/// part. So no part can be larger than the upload's part size, and none can reach past
/// the cap: S3 itself refuses other bodies.
fn part_sizes(
    req: &PartUrlsRequest,
    part_size: u64,
    cap: u64,
) -> Result<Vec<(u32, u64)>, UploadError> {
    if req.part_numbers.is_empty() {
        return Err(UploadError::NoPartNumbers);
    }
    if req.part_numbers.len() > MAX_URLS_PER_REQUEST {
        return Err(UploadError::TooManyPartNumbers(req.part_numbers.len()));
    }
    if req.size.is_some() && req.part_numbers.len() != 1 {
        return Err(UploadError::SizeForOnePart);
    }
    let mut seen = HashSet::new();
    let mut sizes = Vec::with_capacity(req.part_numbers.len());
    for &n in &req.part_numbers {
        if n == 0 || n > MAX_PARTS {
            return Err(UploadError::PartOutOfRange(n));
        }
        if !seen.insert(n) {
            return Err(UploadError::PartTwice(n));
        }
        // Every part but the last is `part_size` bytes, so part n starts here; a part
        // that starts at or past the cap can only make the archive too large.
        let start = u64::from(n - 1).saturating_mul(part_size);
        if start >= cap {
            return Err(UploadError::PartPastCap { n, start, cap });
        }
        let largest = part_size.min(cap - start);
        let size = match req.size {
            None => largest,
            Some(s) if (1..=largest).contains(&s) => s,
            Some(size) => {
                return Err(UploadError::PartSize {
                    n,
                    size,
                    largest,
                    part_size,
                    cap,
                });
            }
        };
        sizes.push((n, size));
    }
    Ok(sizes)
}

pub async fn complete(
    st: &AppState,
    job: &JobGrant,
    id: &str,
    req: &CompleteRequest,
) -> Result<UploadStatus, UploadError> {
    const NEEDED: &str = "it cannot be completed";
    let up = load_owned(st, job, id).await?;
    match up.state {
        // A retried complete (lost answer): the first one was accepted.
        UploadState::Finished | UploadState::Completed => return Ok(upload_status(&up)),
        UploadState::Creating | UploadState::Aborted => {
            return Err(UploadError::WrongState {
                id: up.ulid,
                state: up.state,
                needed: NEEDED,
            });
        }
        UploadState::Uploading => {}
    }
    if req.parts.is_empty() {
        return Err(UploadError::NoParts);
    }
    let mut previous = 0u32;
    for p in &req.parts {
        let n = p.part_number;
        if n == 0 || n > MAX_PARTS {
            return Err(UploadError::PartOutOfRange(n));
        }
        if n <= previous {
            return Err(UploadError::PartsNotAscending { n, previous });
        }
        previous = n;
    }
    if !is_sha256_hex(&req.sha256) {
        return Err(UploadError::BadSha256(req.sha256.clone()));
    }
    contents::check(req, &up.ulid)?;
    if let Err(e) = check_extent(&req.extent) {
        abort_upload(st, &up, &[UploadState::Uploading]).await?;
        return Err(e);
    }
    let cap = st.cfg().limits.max_cache_size;
    if req.size > cap {
        abort_upload(st, &up, &[UploadState::Uploading]).await?;
        return Err(UploadError::SizeOverCap {
            size: req.size,
            cap,
        });
    }
    let Some(s3_id) = up.s3_upload_id.as_deref() else {
        return Err(UploadError::NoS3Upload(up.ulid));
    };

    // Trust S3, not the client: the parts must exist with these ETags, and their real
    // sizes decide the cap.
    let listed = match st.s3.list_parts(&st.object_name(&up.ulid), s3_id).await {
        Ok(parts) => parts,
        Err(e) if e.is_not_found() => {
            abort_upload(st, &up, &[UploadState::Uploading]).await?;
            return Err(UploadError::GoneFromS3(up.ulid));
        }
        Err(e) => return Err(s3("listing the uploaded parts")(e)),
    };
    let listed: HashMap<u32, _> = listed.into_iter().map(|p| (p.part_number, p)).collect();
    let mut total = 0u64;
    for p in &req.parts {
        let Some(real) = listed.get(&p.part_number) else {
            return Err(UploadError::PartNotUploaded(p.part_number));
        };
        if !etag_eq(&real.etag, &p.etag) {
            return Err(UploadError::EtagMismatch {
                n: p.part_number,
                given: p.etag.clone(),
                real: real.etag.clone(),
            });
        }
        total = total.saturating_add(real.size);
    }
    if total > cap {
        abort_upload(st, &up, &[UploadState::Uploading]).await?;
        return Err(UploadError::PartsOverCap { total, cap });
    }
    if total != req.size {
        return Err(UploadError::SizeMismatch {
            claimed: req.size,
            total,
        });
    }

    let done = Finished {
        parts: req
            .parts
            .iter()
            .map(|p| (p.part_number, p.etag.clone()))
            .collect(),
        size: total,
        sha256: req.sha256.clone(),
        extent: req.extent,
        format: req.format,
        logical_size: req.logical_size,
        refs: req.refs.clone(),
    };
    let finished = {
        let (u, owner, scopes) = (up.ulid.clone(), job.owner.clone(), job.search_order());
        st.db
            .run(move |r| {
                let job = Readable {
                    owner: &owner,
                    scopes: &scopes,
                };
                r.finish_upload(&u, &done, &job, now_ms())
            })
            .await?
    };
    // Refused, the upload stays `uploading`: the client aborts it.
    if let FinishOutcome::Unreadable(id) = finished {
        return Err(ContentsError::Unreadable(id).into());
    }
    if finished == FinishOutcome::NotUploading {
        // A concurrent complete won, or the upload was aborted meanwhile.
        let now = load_owned(st, job, &up.ulid).await?;
        return match now.state {
            UploadState::Finished | UploadState::Completed => Ok(upload_status(&now)),
            state => Err(UploadError::WrongState {
                id: now.ulid,
                state,
                needed: NEEDED,
            }),
        };
    }
    st.worker_wake.notify_one();
    info!(owner = %job.owner, scope = %job.scope, key = %up.key, upload = %up.ulid, size = total, "upload finished, queued for completion");
    Ok(UploadStatus {
        upload_id: up.ulid,
        key: up.key,
        state: UploadState::Finished,
    })
}

/// What the archive unpacks to must be recorded (a restore bounds its writes by it:
/// without it, a small archive could unpack until the disk is full) and possible (the
/// registry stores each as an i64).
fn check_extent(extent: &Extent) -> Result<(), UploadError> {
    for (field, value) in [
        ("unpacked_size", extent.unpacked_size),
        ("entries", extent.entries),
    ] {
        match value {
            None => return Err(UploadError::NoExtent(field)),
            Some(v) if i64::try_from(v).is_err() => {
                return Err(UploadError::ImpossibleExtent { field, value: v });
            }
            Some(_) => {}
        }
    }
    Ok(())
}

pub async fn status(st: &AppState, job: &JobGrant, id: &str) -> Result<UploadStatus, UploadError> {
    Ok(upload_status(&load_owned(st, job, id).await?))
}

/// The client gives up on its upload.
pub async fn abort(st: &AppState, job: &JobGrant, id: &str) -> Result<UploadStatus, UploadError> {
    const NEEDED: &str = "it cannot be aborted";
    let up = load_owned(st, job, id).await?;
    match up.state {
        UploadState::Aborted => Ok(upload_status(&up)),
        UploadState::Finished | UploadState::Completed => Err(UploadError::WrongState {
            id: up.ulid,
            state: up.state,
            needed: NEEDED,
        }),
        UploadState::Creating | UploadState::Uploading => {
            abort_upload(st, &up, &[UploadState::Creating, UploadState::Uploading]).await?;
            let now = load_owned(st, job, &up.ulid).await?;
            if now.state == UploadState::Aborted {
                info!(owner = %job.owner, scope = %job.scope, key = %up.key, upload = %up.ulid, "upload aborted by the client");
                Ok(upload_status(&now))
            } else {
                Err(UploadError::WrongState {
                    id: now.ulid,
                    state: now.state,
                    needed: NEEDED,
                })
            }
        }
    }
}

/// Marks the upload aborted (if it is still in one of `from`), then aborts its S3
/// multipart upload. The database goes first so that nothing completes an upload
/// whose parts are being thrown away; if S3 fails, `needs_abort` stays set and the
/// reaper retries. Returns whether this call did the marking.
pub async fn abort_upload(
    st: &AppState,
    up: &UploadRow,
    from: &[UploadState],
) -> Result<bool, UploadError> {
    let ulid = up.ulid.clone();
    let from = from.to_vec();
    let marked = st
        .db
        .run(move |r| r.mark_aborted(&ulid, &from, now_ms()))
        .await?;
    if marked {
        st.metrics.upload(UploadEvent::Aborted);
    }
    if marked && up.s3_upload_id.is_some() {
        match abort_in_s3(st, up).await {
            Ok(()) => {}
            Err(UploadError::S3 { source, .. }) => {
                warn!(upload = %up.ulid, "AbortMultipartUpload failed, the reaper will retry: {source}")
            }
            Err(e) => return Err(e),
        }
    }
    Ok(marked)
}

/// AbortMultipartUpload for an upload marked aborted, then the registry is told it is
/// done (`needs_abort` cleared). Nothing to do without an S3 upload id.
pub async fn abort_in_s3(st: &AppState, up: &UploadRow) -> Result<(), UploadError> {
    let Some(s3_id) = up.s3_upload_id.as_deref() else {
        return Ok(());
    };
    st.s3
        .abort_multipart_upload(&st.object_name(&up.ulid), s3_id)
        .await
        .map_err(s3("aborting the multipart upload"))?;
    let ulid = up.ulid.clone();
    st.db.run(move |r| r.s3_aborted(&ulid)).await?;
    Ok(())
}

/// The upload `id` if it is the job's: its owner's and its scope's. Anyone else's is
/// answered like an unknown one, so ids reveal nothing.
async fn load_owned(st: &AppState, job: &JobGrant, id: &str) -> Result<UploadRow, UploadError> {
    let ulid = canonical_ulid(id).ok_or_else(|| UploadError::InvalidId(id.to_owned()))?;
    let found = {
        let ulid = ulid.clone();
        st.db.read(move |r| r.get_upload(&ulid)).await?
    };
    match found {
        Some(up) if up.owner == job.owner && up.scope == job.scope => Ok(up),
        _ => Err(UploadError::NotFound(ulid)),
    }
}

/// Upload (and token) ids are ULIDs (Crockford base 32, any case): the canonical form.
pub fn canonical_ulid(id: &str) -> Option<String> {
    ulid::Ulid::from_string(id).ok().map(|u| u.to_string())
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// ETags are compared without their quotes (clients and servers differ there).
fn etag_eq(a: &str, b: &str) -> bool {
    a.trim().trim_matches('"') == b.trim().trim_matches('"')
}

fn upload_status(up: &UploadRow) -> UploadStatus {
    UploadStatus {
        upload_id: up.ulid.clone(),
        key: up.key.clone(),
        state: up.state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asked_part_sizes_are_brought_within_s3_limits() {
        const MIB: u64 = 1 << 20;
        let cap = 10 * 1024 * MIB;
        assert_eq!(allowed_part_size(8 * MIB, cap), 8 * MIB);
        assert_eq!(allowed_part_size(1, cap), 5 * MIB);
        assert_eq!(allowed_part_size(u64::MAX, cap), MAX_PART_SIZE);
        // 1 TiB in at most 10,000 parts: no part under 1 TiB / 10,000.
        let tib = 1024 * 1024 * MIB;
        assert_eq!(allowed_part_size(8 * MIB, tib), tib.div_ceil(10_000));
    }

    #[test]
    fn part_urls_are_signed_for_sizes_within_the_part_size_and_the_cap() {
        let ask = |parts: &[u32], size: Option<u64>| PartUrlsRequest {
            part_numbers: parts.to_vec(),
            size,
        };
        // Part size 10, cap 25: parts 1-2 full, part 3 at most 5 bytes.
        assert_eq!(
            part_sizes(&ask(&[1, 2, 3], None), 10, 25).unwrap(),
            [(1, 10), (2, 10), (3, 5)]
        );
        assert_eq!(part_sizes(&ask(&[2], Some(3)), 10, 25).unwrap(), [(2, 3)]);
        assert!(part_sizes(&ask(&[2], Some(11)), 10, 25).is_err());
        assert!(part_sizes(&ask(&[3], Some(6)), 10, 25).is_err());
        assert!(part_sizes(&ask(&[2], Some(0)), 10, 25).is_err());
        assert!(part_sizes(&ask(&[4], None), 10, 25).is_err());
        assert!(part_sizes(&ask(&[1, 2], Some(3)), 10, 25).is_err());
        assert!(part_sizes(&ask(&[1, 1], None), 10, 25).is_err());
        assert!(part_sizes(&ask(&[], None), 10, 25).is_err());
        let many: Vec<u32> = (1..=257).collect();
        assert!(part_sizes(&ask(&many, None), 10, 1 << 40).is_err());
    }

    #[test]
    fn sha256_hex_is_strict() {
        assert!(is_sha256_hex(&"ab".repeat(32)));
        assert!(!is_sha256_hex(&"AB".repeat(32)));
        assert!(!is_sha256_hex(&"ab".repeat(31)));
        assert!(!is_sha256_hex(&"zz".repeat(32)));
    }

    #[test]
    fn etags_compare_without_quotes() {
        assert!(etag_eq("\"abc\"", "abc"));
        assert!(!etag_eq("\"abc\"", "\"abd\""));
    }

    #[test]
    fn upload_ids_are_canonical_ulids() {
        let u = ulid::Ulid::new().to_string();
        assert_eq!(canonical_ulid(&u.to_lowercase()), Some(u));
        assert!(canonical_ulid("../etc").is_none());
    }
}
