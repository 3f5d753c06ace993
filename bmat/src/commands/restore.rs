//! `bmat cache restore KEY [--fallback PREFIX]...`: look up, download in parallel
//! ranges, unpack into a staging directory as bytes arrive, verify, move into place.
//!
//! The tree is only touched after the whole archive is downloaded, hashed and
//! unpacked without a refused entry, and after no entry is found to lead through a
//! symlink on disk. Any failure before that removes the staging directory and leaves
//! the tree as it was.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use bmat_wire::api::{
    CacheHit, CacheProblem, CacheRef, FORMAT_CONTENTS, LookupResponse, ObjectUrl, ReportRequest,
};

use crate::archive::corruption::corruption;
use crate::archive::stream::{
    Bounds, Expected, RestoreError, unpack_into_tree, unpack_stream_into_tree,
};
use crate::commands::outcome::{Failure, FailureKind, Outcome, infrastructure};
use crate::contents::assemble::assemble;
use crate::contents::layout::{Manifest, TRAILER_LEN, Trailer, open_index};
use crate::contents::plan::Plan;
use crate::context::JobContext;
use crate::progress::Progress;
use crate::progress::human_bytes;
use crate::transfer::api::ApiClient;
use crate::transfer::download::{RangeDownload, Source, Span, UrlSource};
use crate::transfer::retry::TransferError;
use crate::transfer::s3::S3Transfer;
use crate::transfer::tuning::Tuning;
use crate::trees::disk::free_space;
use crate::trees::roots::Roots;

/// A validated restore request.
pub struct RestoreRequest {
    pub key: String,
    pub fallbacks: Vec<String>,
    /// The trees to restore into.
    pub roots: Roots,
}

/// Runs a restore; never fails, every failure is an [`Outcome::Failed`].
pub async fn restore(req: RestoreRequest, ctx: &JobContext) -> Outcome {
    let tuning = &ctx.tuning;
    let started = Instant::now();
    let failed = |error: Failure| Outcome::failed(&req.key, "restore", started, error);
    let api = match ctx.api() {
        Ok(api) => api,
        Err(e) => return failed(infrastructure(e)),
    };
    // A broken cache (missing, corrupt, not unpackable) is reported, and the next
    // candidate tried; anything else (network, disk, this job's tree) ends the
    // restore and is reported to no one: only the archive bytes can condemn a cache.
    let mut tried: Vec<CacheRef> = Vec::new();
    let mut broken = None;
    while tried.len() < MAX_CANDIDATES {
        let hit = match api.lookup(&req.key, &req.fallbacks, &tried).await {
            Ok(LookupResponse { hit: Some(hit) }) => hit,
            Ok(LookupResponse { hit: None }) => break,
            Err(e) => {
                return failed(infrastructure(
                    anyhow::Error::new(e).context("looking up the cache"),
                ));
            }
        };
        // A contents cache's download is known only once its manifest is read.
        let total = (hit.format != FORMAT_CONTENTS).then_some(hit.size);
        let progress = Progress::new(format!("restoring {}", hit.key), total);
        let result = {
            let _display = progress.display(tuning.progress_interval);
            download_into(&api, &hit, &req.roots, tuning, &progress).await
        };
        match result {
            Ok(downloaded) => {
                report_restore(&api, &hit, None).await;
                return Outcome::Hit {
                    key: req.key.clone(),
                    matched_key: hit.key.clone(),
                    scope: hit.scope.clone(),
                    own_scope: hit.own_scope,
                    bytes: progress.raw(),
                    archive_bytes: downloaded,
                    elapsed: started.elapsed(),
                };
            }
            Err(DownloadError::Defect(problem, e)) => {
                report_restore(&api, &hit, Some(problem)).await;
                tried.push(CacheRef {
                    scope: hit.scope,
                    key: hit.key,
                });
                broken = Some(Failure::new(FailureKind::CorruptCache, &e));
            }
            Err(e) => return failed(e.failure()),
        }
    }
    match broken {
        Some(failure) => failed(failure),
        None => Outcome::Miss {
            key: req.key.clone(),
            elapsed: started.elapsed(),
        },
    }
}

/// `restore --lookup-only`: whether a restore would find a cache, and which. Nothing
/// is downloaded, nothing in the tree is touched, and nothing is reported: a lookup
/// does not move the cache's last use, only a reported restore does.
pub async fn lookup_only(req: RestoreRequest, ctx: &JobContext) -> Outcome {
    let started = Instant::now();
    let found = match ctx.api() {
        Ok(api) => api.lookup(&req.key, &req.fallbacks, &[]).await,
        Err(e) => Err(e),
    };
    match found {
        Ok(LookupResponse { hit: Some(hit) }) => Outcome::Found {
            key: req.key,
            matched_key: hit.key,
            scope: hit.scope,
            own_scope: hit.own_scope,
            archive_bytes: hit.size,
            elapsed: started.elapsed(),
        },
        Ok(LookupResponse { hit: None }) => Outcome::Miss {
            key: req.key,
            elapsed: started.elapsed(),
        },
        Err(e) => Outcome::failed(
            &req.key,
            "lookup",
            started,
            infrastructure(anyhow::Error::new(e).context("looking up the cache")),
        ),
    }
}

/// Caches one restore tries at most: the hit, then the next candidates while each
/// turns out broken.
const MAX_CANDIDATES: usize = 3;

/// Tells the signer how the restore of `hit` went (best effort, bounded: the job must
/// not wait on it). A success moves the cache's last use; a problem may get a broken
/// cache dropped. A local failure is never told.
async fn report_restore(api: &ApiClient, hit: &CacheHit, problem: Option<CacheProblem>) {
    let req = ReportRequest {
        scope: hit.scope.clone(),
        key: hit.key.clone(),
        sha256: hit.sha256.clone(),
        issued_at_ms: hit.issued_at_ms,
        lookup_id: hit.lookup_id.clone(),
        problem,
    };
    let _ = tokio::time::timeout(REPORT_TIMEOUT, api.report(&req)).await;
}

const REPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the download and unpack of one cache failed. The split follows
/// [`RestoreError::defect`] and [`TransferError::defect`], which alone say what the
/// archive bytes are to blame for.
#[derive(Debug)]
pub enum DownloadError {
    /// The cache itself is broken: the signer is told `problem`, and the next
    /// candidate is tried.
    Defect(CacheProblem, anyhow::Error),
    /// This job's disk, trees or environment: nothing is reported, no other
    /// candidate tried.
    Local(anyhow::Error),
    /// The signer, S3, the network.
    Service(anyhow::Error),
}

impl DownloadError {
    pub fn failure(&self) -> Failure {
        match self {
            DownloadError::Defect(_, e) => Failure::new(FailureKind::CorruptCache, e),
            DownloadError::Local(e) => Failure::new(FailureKind::LocalTree, e),
            DownloadError::Service(e) => Failure::new(FailureKind::Infrastructure, e),
        }
    }
}

impl From<anyhow::Error> for DownloadError {
    fn from(e: anyhow::Error) -> Self {
        DownloadError::Service(e)
    }
}

impl From<TransferError> for DownloadError {
    fn from(e: TransferError) -> Self {
        let defect = e.defect();
        let e = anyhow::Error::new(e).context("downloading");
        match defect {
            Some(problem) => DownloadError::Defect(problem, e),
            None => DownloadError::Service(e),
        }
    }
}

impl From<RestoreError> for DownloadError {
    fn from(e: RestoreError) -> Self {
        let defect = e.defect();
        let e = anyhow!("{e}");
        match defect {
            Some(problem) => DownloadError::Defect(problem, e),
            None => DownloadError::Local(e),
        }
    }
}

/// Downloads the cache of `hit` and unpacks it into `roots` (through a staging
/// directory inside it, see [`unpack_into_tree`]). Returns the bytes downloaded.
pub async fn download_into(
    api: &ApiClient,
    hit: &CacheHit,
    roots: &Roots,
    tuning: &Tuning,
    progress: &Progress,
) -> Result<u64, DownloadError> {
    // What the archive may cost is bounded before it is paid: it must fit the free
    // space now, and unpacking stops past what its saver recorded (or, for a cache
    // saved before that was recorded, past the free space).
    // The main tree may not exist yet (a fresh checkout's build directory): its
    // nearest existing ancestor is on the filesystem it will be made on.
    let root = roots
        .main
        .ancestors()
        .find(|dir| dir.exists())
        .unwrap_or(&roots.main);
    let free = free_space(root)
        .with_context(|| format!("free space under {}", root.display()))
        .map_err(DownloadError::Local)?;
    let need = hit.extent.unpacked_size.unwrap_or(hit.size);
    if need > free {
        return Err(DownloadError::Local(anyhow!(
            "not enough free space under {}: the cache unpacks to {}, {} are free",
            root.display(),
            human_bytes(need),
            human_bytes(free)
        )));
    }
    // Past a recorded size the archive is damaged. A cache saved before sizes were
    // recorded (the signer now refuses completions without one) stops short of the
    // free space, so that it never fills the disk the job builds on.
    let bounds = Bounds {
        max_unpacked: hit
            .extent
            .unpacked_size
            .unwrap_or_else(|| unrecorded_budget(free)),
        unpacked_recorded: hit.extent.unpacked_size.is_some(),
        max_entries: hit.extent.entries,
    };
    let s3 = S3Transfer::new(tuning)?;
    if hit.format == FORMAT_CONTENTS {
        return contents_into(api, hit, s3, roots, tuning, progress, bounds).await;
    }
    let (sources, spans) = RangeDownload::whole(own_source(api, hit));
    let download = ranged(s3, sources, spans, tuning, progress);
    let (reader, download_task) = download.start();
    let unpack_task = {
        let roots = roots.clone();
        let (size, sha256, progress) = (hit.size, hit.sha256.clone(), progress.clone());
        tokio::task::spawn_blocking(move || {
            let expected = Expected {
                size,
                sha256: &sha256,
                bounds,
            };
            unpack_into_tree(reader, &roots, &expected, &progress)
        })
    };
    finish(unpack_task, download_task).await?;
    Ok(hit.size)
}

/// A contents cache: its index (skeleton and manifest) from the end of its own object,
/// then the frames its plan needs from every object that holds them, reassembled into
/// the tar stream an archive would hold and unpacked like one. Returns the bytes
/// downloaded.
async fn contents_into(
    api: &ApiClient,
    hit: &CacheHit,
    s3: S3Transfer,
    roots: &Roots,
    tuning: &Tuning,
    progress: &Progress,
    bounds: Bounds,
) -> Result<u64, DownloadError> {
    let damaged = |e: std::io::Error| DownloadError::from(RestoreError::from(e));
    let (skeleton, manifest, index_bytes) = read_index(api, hit, &s3, tuning, progress).await?;
    // The manifest's objects, as sources: its own (the hit's) and those the signer
    // listed for it. One it does not list is damage (the signer checked every ref).
    let mut sources = Vec::new();
    for id in &manifest.objects {
        let source = if Some(id) == hit.id.as_ref() {
            own_source(api, hit)
        } else {
            let Some(object) = hit.objects.iter().find(|o| &o.id == id) else {
                return Err(damaged(corruption(format!(
                    "the manifest reads from object {id}, which the cache does not list"
                ))));
            };
            Source {
                url: Arc::new(refreshable_url(api.clone(), hit, Some(object))),
                size: object.size,
            }
        };
        sources.push(source);
    }
    let plan = Plan::of(&manifest);
    let spans: Vec<Span> = plan
        .spans(&manifest)
        .into_iter()
        .map(|s| Span {
            source: s.object as usize,
            at: s.at,
            len: s.len,
        })
        .collect();
    if let Some(bad) = spans.iter().find(|s| {
        s.at.checked_add(s.len)
            .is_none_or(|end| end > sources[s.source].size)
    }) {
        return Err(damaged(corruption(format!(
            "the manifest names bytes {}+{} past the end of an object",
            bad.at, bad.len
        ))));
    }
    let download = ranged(s3, sources, spans, tuning, progress);
    let downloaded = index_bytes + download.fetched_bytes();
    let (reader, download_task) = download.start();
    let unpack_task = {
        let roots = roots.clone();
        let progress = progress.clone();
        tokio::task::spawn_blocking(move || {
            unpack_stream_into_tree(&roots, &bounds, &progress, |out| {
                assemble(reader, &skeleton, &manifest, &plan, out)
            })
        })
    };
    finish(unpack_task, download_task).await?;
    Ok(downloaded)
}

/// A contents cache's skeleton (decompressed) and manifest, read from the end of its
/// own object: the trailer, then both in one range; and the bytes that took.
pub async fn read_index(
    api: &ApiClient,
    hit: &CacheHit,
    s3: &S3Transfer,
    tuning: &Tuning,
    progress: &Progress,
) -> Result<(Vec<u8>, Manifest, u64), DownloadError> {
    let damaged = |e: std::io::Error| DownloadError::from(RestoreError::from(e));
    let own = own_source(api, hit);
    let read = |span: Span| ranged(s3.clone(), vec![own.clone()], vec![span], tuning, progress);
    if hit.size < TRAILER_LEN {
        return Err(damaged(corruption("not a contents cache: too short")));
    }
    // One GET of the object's tail holds the trailer and, most often, the whole index:
    // a round trip saved before the first frame can be asked for.
    let tail_len = hit.size.min(INDEX_GUESS);
    let tail_at = hit.size - tail_len;
    let tail = read(Span {
        source: 0,
        at: tail_at,
        len: tail_len,
    })
    .bytes()
    .await?;
    let trailer = &tail[(tail_len - TRAILER_LEN) as usize..];
    let t = Trailer::parse(trailer, hit.size).map_err(damaged)?;
    let index_len = t.skeleton_len + t.manifest_len;
    let fetched_index;
    let (index, fetched) = if t.skeleton_at >= tail_at {
        // The trailer's check keeps the index before the trailer, inside the tail.
        let from = (t.skeleton_at - tail_at) as usize;
        (&tail[from..from + index_len as usize], tail_len)
    } else {
        fetched_index = read(Span {
            source: 0,
            at: t.skeleton_at,
            len: index_len,
        })
        .bytes()
        .await?;
        (&fetched_index[..], tail_len + index_len)
    };
    let (skeleton, manifest) = open_index(index, &t).map_err(damaged)?;
    Ok((skeleton, manifest, fetched))
}

/// Bytes read from the end of a contents cache's object in the first GET: its
/// trailer and, when the index is no larger, its index (a cache of a few thousand
/// files has an index of a few hundred KiB).
const INDEX_GUESS: u64 = 512 << 10;

/// The hit's own object, its URL refreshed by a lookup when it expires.
fn own_source(api: &ApiClient, hit: &CacheHit) -> Source {
    Source {
        url: Arc::new(refreshable_url(api.clone(), hit, None)),
        size: hit.size,
    }
}

/// A ranged download of `spans` of `sources`, with the job's tuning.
fn ranged(
    s3: S3Transfer,
    sources: Vec<Source>,
    spans: Vec<Span>,
    tuning: &Tuning,
    progress: &Progress,
) -> RangeDownload {
    RangeDownload {
        s3,
        sources,
        spans,
        range_size: tuning.range_size,
        parallelism: tuning.download_parallelism,
        retry: tuning.transfer_retry.clone(),
        progress: progress.clone(),
    }
}

/// Waits for the unpacker and the download, and says which one failed first.
async fn finish(
    unpack_task: tokio::task::JoinHandle<Result<crate::archive::Unpacked, RestoreError>>,
    download_task: tokio::task::JoinHandle<Result<(), TransferError>>,
) -> Result<(), DownloadError> {
    let unpacked = unpack_task
        .await
        .map_err(|e| anyhow!("the unpacker crashed: {e}"))?;
    // When the unpacker failed on its own (a refused entry, a corrupt stream), stop
    // the download at once rather than let it finish or retry for nothing. When its
    // input ended early, the download failed: wait for it to learn why.
    if let Err(e) = &unpacked
        && !e.is_input_cut_short()
    {
        download_task.abort();
    }
    match download_task.await {
        Ok(result) => result?,
        Err(e) if e.is_cancelled() => {}
        Err(e) => return Err(anyhow!("the downloader crashed: {e}").into()),
    }
    unpacked?;
    Ok(())
}

/// The URL of the hit's own object (or of `object`, another it reads from),
/// refreshed by a new lookup of the exact key that matched if S3 refuses it
/// (expired). The fresh URL must point at the same cache.
fn refreshable_url(api: ApiClient, hit: &CacheHit, object: Option<&ObjectUrl>) -> UrlSource {
    let (key, sha256) = (hit.key.clone(), hit.sha256.clone());
    let id = object.map(|o| o.id.clone());
    let url = object.map_or_else(|| hit.url.clone(), |o| o.url.clone());
    UrlSource::new(url, move || {
        let (api, key, sha256, id) = (api.clone(), key.clone(), sha256.clone(), id.clone());
        Box::pin(async move {
            let fresh = api
                .lookup(&key, &[], &[])
                .await?
                .hit
                .ok_or_else(|| anyhow!("the cache was deleted"))?;
            if fresh.sha256 != sha256 {
                return Err(anyhow!("the cache was replaced during the download"));
            }
            match id {
                None => Ok(fresh.url),
                Some(id) => fresh
                    .objects
                    .into_iter()
                    .find(|o| o.id == id)
                    .map(|o| o.url)
                    .ok_or_else(|| anyhow!("the cache no longer lists object {id}")),
            }
        })
    })
}

/// What a cache without a recorded unpacked size may write, given `free` bytes: the
/// free space less a reserve for the build (half of it, at most 1 GiB).
fn unrecorded_budget(free: u64) -> u64 {
    const MAX_RESERVE: u64 = 1 << 30;
    free - (free / 2).min(MAX_RESERVE)
}

#[cfg(test)]
mod tests {
    use super::unrecorded_budget;

    #[test]
    fn an_unrecorded_cache_leaves_a_reserve_free() {
        const MIB: u64 = 1 << 20;
        // Issue 17, point 12: a bomb filled a 300 MiB filesystem.
        assert_eq!(unrecorded_budget(300 * MIB), 150 * MIB);
        assert_eq!(unrecorded_budget(100 * 1024 * MIB), 99 * 1024 * MIB);
        assert_eq!(unrecorded_budget(0), 0);
    }
}
