//! `bmat cache save KEY`: ask first, then stream the archive up.
//!
//! Order matters: the signer is asked to `begin` before any file is read (or even
//! stat'ed), so an existing key costs one request. Then the pack pipeline runs on a
//! blocking thread and hands parts through a bounded channel to the uploader on the
//! runtime. After `complete`, the signer finishes the upload in the background; we
//! wait until it says `completed` so that "cache saved" is true when printed. Any
//! failure after `begin` aborts the upload (best effort; the signer's reaper cleans up
//! what we cannot).

use std::io;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use bmat_wire::api::{
    BeginResponse, CompleteRequest, Extent, FORMAT_ARCHIVE, FORMAT_CONTENTS, SkipReason,
    UploadState,
};
use tokio::sync::mpsc;

use crate::archive::stream::{Compression, archive_to, pack};
use crate::commands::outcome::{Failure, FailureKind, Outcome, Skip, infrastructure};
use crate::commands::restore::read_index;
use crate::contents::split::{Base, split};
use crate::context::{JobContext, SavePolicy};
use crate::progress::Progress;
use crate::transfer::api::{ApiClient, Refused};
use crate::transfer::parts::{Part, PartWriter, StreamSummary};
use crate::transfer::s3::S3Transfer;
use crate::transfer::tuning::{CacheFormat, Tuning};
use crate::transfer::upload::Uploader;
use crate::trees::roots::{Roots, TreePath};

/// A validated save request.
pub struct SaveRequest {
    pub key: String,
    /// The trees the paths are in.
    pub roots: Roots,
    /// What to save, each in its tree.
    pub paths: Vec<TreePath>,
    pub policy: SavePolicy,
    /// `Some`: save a contents cache, reusing what its base holds: the cache a restore
    /// of the key with these fallback prefixes would take. `None`: an archive, unless
    /// `BMAT_CACHE_FORMAT=contents` (then the base is the key's cache in a read scope).
    pub reuse_from: Option<Vec<String>>,
}

/// Runs a save; never fails, every failure is an [`Outcome::Failed`].
pub async fn save(req: SaveRequest, ctx: &JobContext) -> Outcome {
    let tuning = &ctx.tuning;
    let started = Instant::now();
    let failed = |error: Failure| Outcome::failed(&req.key, "save", started, error);
    let api = match ctx.api() {
        Ok(api) => api,
        Err(e) => return failed(infrastructure(e)),
    };
    let (upload_id, part_size, max_size, signer_formats) = match api
        .begin(
            &req.key,
            tuning.part_size,
            req.policy.refresh_after,
            &req.policy.only_scopes,
        )
        .await
    {
        Ok(BeginResponse::Skip { reason }) => {
            return Outcome::Skipped {
                key: req.key.clone(),
                reason: match reason {
                    SkipReason::Exists => Skip::Exists,
                    SkipReason::InProgress => Skip::InProgress,
                    SkipReason::Scope => Skip::Scope,
                },
                elapsed: started.elapsed(),
            };
        }
        // A read-only token (a pull request's): saving is not the job's to do.
        Err(e) if e.refusal().is_some_and(Refused::is_read_only) => {
            return Outcome::Skipped {
                key: req.key.clone(),
                reason: Skip::ReadOnly,
                elapsed: started.elapsed(),
            };
        }
        Ok(BeginResponse::Upload {
            upload_id,
            part_size,
            max_size,
            formats,
        }) => (upload_id, part_size, max_size, formats),
        Err(e) => return failed(infrastructure(anyhow!(e).context("starting the upload"))),
    };
    let progress = Progress::new(format!("saving {}", req.key), None);
    let result = {
        let _display = progress.display(tuning.progress_interval);
        let target = Target {
            upload_id: &upload_id,
            part_size,
            max_size,
        };
        let reuse_from = contents_over(
            &signer_formats,
            tuning.cache_format,
            req.reuse_from.as_deref(),
        );
        async {
            // One HTTP client for the base's index and the parts.
            let s3 = S3Transfer::new(tuning)?;
            let layout = match reuse_from {
                Some(fallbacks) => Layout::Contents(
                    find_base(&api, &req.key, fallbacks, &s3, tuning, &progress).await,
                ),
                None => Layout::Archive,
            };
            upload(&api, &req, &s3, tuning, target, layout, &progress).await
        }
        .await
    };
    match result {
        Ok(saved) => Outcome::Saved {
            key: req.key.clone(),
            bytes: progress.raw(),
            archive_bytes: saved.logical_size.unwrap_or(saved.summary.size),
            uploaded_bytes: saved.summary.size,
            stored_bytes: saved.summary.size + saved.refs_bytes,
            base: saved.base,
            elapsed: started.elapsed(),
        },
        Err(e) => {
            // Best effort, and bounded: the signer reaps stale uploads anyway, and a job
            // must not wait minutes on a cache that already failed.
            let _ = tokio::time::timeout(Duration::from_secs(10), api.abort(&upload_id)).await;
            failed(match e {
                SaveError::Archive(_) => Failure::new(FailureKind::LocalTree, &e.into()),
                SaveError::Service(e) => infrastructure(e),
            })
        }
    }
}

/// Why a save failed once the upload had begun.
#[derive(Debug, thiserror::Error)]
enum SaveError {
    /// Reading the files to save.
    #[error("archiving: {0}")]
    Archive(io::Error),
    /// The upload: the signer, S3, the network.
    #[error(transparent)]
    Service(#[from] anyhow::Error),
}

/// The upload a save writes to, as *begin* granted it.
#[derive(Clone, Copy)]
struct Target<'a> {
    upload_id: &'a str,
    part_size: u64,
    max_size: u64,
}

/// What an upload stored.
struct Stored {
    summary: StreamSummary,
    /// A contents cache's logical size.
    logical_size: Option<u64>,
    /// The stored bytes of the other objects it reads.
    refs_bytes: u64,
    /// A contents cache's base, when it reused contents of one.
    base: Option<String>,
}

/// How a save stores its cache: one archive, or a contents cache over a base (none
/// when no contents cache could be found to reuse).
enum Layout {
    Archive,
    Contents(Option<Box<FoundBase>>),
}

/// A contents cache's base: the key it was found under and its manifest.
struct FoundBase {
    key: String,
    base: Base,
}

/// The cache a restore of `key` with `fallbacks` would take, when it is a contents
/// cache whose index reads: its contents are reused. Anything else (a miss, an
/// archive, a failure) means a save of every content, never a failed save.
/// Whether a save stores a contents cache, and if so the fallbacks it looks for a base
/// under (none: only its own key); `None`: an archive. A save asks for contents
/// (`reuse_from`, a Rust save's) or the tuning forces a format; a signer that does not
/// list the contents format (from before them) keeps no refs, and would store a
/// contents cache as an archive that no restore could read.
fn contents_over<'a>(
    signer_formats: &[u8],
    format: Option<CacheFormat>,
    reuse_from: Option<&'a [String]>,
) -> Option<&'a [String]> {
    match (format, reuse_from) {
        _ if !signer_formats.contains(&FORMAT_CONTENTS) => None,
        (Some(CacheFormat::Archive), _) | (None, None) => None,
        (_, Some(fallbacks)) => Some(fallbacks),
        (Some(CacheFormat::Contents), None) => Some(&[]),
    }
}

async fn find_base(
    api: &ApiClient,
    key: &str,
    fallbacks: &[String],
    s3: &S3Transfer,
    tuning: &Tuning,
    progress: &Progress,
) -> Option<Box<FoundBase>> {
    let hit = api.lookup_base(key, fallbacks).await.ok()?.hit?;
    if hit.format != FORMAT_CONTENTS {
        return None;
    }
    let (_, manifest, _) = read_index(api, &hit, s3, tuning, progress).await.ok()?;
    let size_of = |id: &str| match hit.id.as_deref() {
        Some(own) if own == id => Some(hit.size),
        _ => hit.objects.iter().find(|o| o.id == id).map(|o| o.size),
    };
    let base = Base::new(manifest, size_of);
    Some(Box::new(FoundBase { key: hit.key, base }))
}

async fn upload(
    api: &ApiClient,
    req: &SaveRequest,
    s3: &S3Transfer,
    tuning: &Tuning,
    target: Target<'_>,
    layout: Layout,
    progress: &Progress,
) -> Result<Stored, SaveError> {
    let Target {
        upload_id,
        part_size,
        max_size,
    } = target;
    let part_bytes =
        usize::try_from(part_size).map_err(|_| anyhow!("part size {part_size} is too large"))?;
    // Capacity 1: with the parts in flight and the one being filled, memory is
    // (in flight + 2) × part size, which `parts_in_flight` keeps within the budget.
    let (tx, rx) = mpsc::channel::<Part>(1);
    let (contents, base) = match layout {
        Layout::Archive => (false, None),
        Layout::Contents(base) => (true, base),
    };
    let base_key = base.as_ref().map(|b| b.key.clone());
    let producer = {
        let roots = req.roots.clone();
        let paths = req.paths.clone();
        let progress = progress.clone();
        let own_id = upload_id.to_owned();
        let compression = Compression {
            level: tuning.zstd_level,
            workers: tuning.zstd_workers,
        };
        tokio::task::spawn_blocking(move || {
            let sink = move |part: Part| {
                tx.blocking_send(part)
                    .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))
            };
            let writer = PartWriter::new(part_bytes, max_size, sink);
            if !contents {
                let (writer, report) = pack(&roots, &paths, writer, compression, &progress)?;
                return Ok::<_, io::Error>((writer.finish()?, report, None));
            }
            let base = base.as_ref().map(|b| &b.base);
            let ((writer, split), report) = archive_to(&roots, &paths, |tar| {
                split(tar, writer, &own_id, base, compression, &progress)
            })?;
            Ok((writer.finish()?, report, Some(split)))
        })
    };
    let uploader = Uploader {
        api,
        s3,
        retry: &tuning.transfer_retry,
        upload_id,
        part_size,
        max_size,
        parallelism: tuning.parts_in_flight(part_size),
        url_batch: tuning.part_url_batch,
        progress,
    };
    let uploaded = uploader.run(rx).await;
    let packed = producer
        .await
        .map_err(|e| anyhow!("the archiver crashed: {e}"))?;
    // An upload failure makes the producer fail too (its channel closes): report the
    // cause, not the echo.
    let parts = uploaded?;
    let (summary, report, split) = packed.map_err(SaveError::Archive)?;
    for warning in report.warnings() {
        let _ = crate::output::eprintln(&format!("warning: {warning}"));
    }
    if parts.len() as u32 != summary.parts {
        return Err(anyhow!("{} parts uploaded, {} written", parts.len(), summary.parts).into());
    }
    let complete = CompleteRequest {
        parts,
        size: summary.size,
        sha256: summary.sha256.clone(),
        // What restores of this cache may unpack to: the tar stream and its entries.
        extent: Extent {
            unpacked_size: Some(
                split
                    .as_ref()
                    .map_or_else(|| progress.raw(), |s| s.tar_bytes),
            ),
            entries: Some(report.entries),
        },
        format: if split.is_some() {
            FORMAT_CONTENTS
        } else {
            FORMAT_ARCHIVE
        },
        refs: split.as_ref().map(|s| s.refs.clone()).unwrap_or_default(),
        logical_size: split.as_ref().map(|s| s.logical_size),
    };
    let status = api
        .complete(upload_id, &complete)
        .await
        .context("completing the upload")?;
    wait_completed(api, upload_id, status.state, tuning.completion_wait).await?;
    Ok(Stored {
        summary,
        logical_size: complete.logical_size,
        refs_bytes: split.as_ref().map_or(0, |s| s.refs_bytes),
        base: base_key.filter(|_| split.as_ref().is_some_and(|s| s.reused_contents > 0)),
    })
}

/// Polls the upload until the signer has completed it.
async fn wait_completed(
    api: &ApiClient,
    upload_id: &str,
    mut state: UploadState,
    wait: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + wait;
    let mut delay = Duration::from_millis(50);
    loop {
        match state {
            UploadState::Completed => return Ok(()),
            UploadState::Aborted => {
                return Err(anyhow!("the signer could not complete the upload"));
            }
            _ if Instant::now() >= deadline => {
                return Err(anyhow!(
                    "the signer accepted the upload but had not completed it after {} s",
                    wait.as_secs()
                ));
            }
            _ => {}
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
        state = api
            .status(upload_id)
            .await
            .context("checking the upload")?
            .state;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_are_saved_only_to_a_signer_that_keeps_refs() {
        let fallbacks = ["rust-deps-".to_owned()];
        let rust = Some(&fallbacks[..]);
        let keeps_refs = [FORMAT_CONTENTS];
        // A Rust save over its fallbacks; a generic one as an archive unless forced.
        assert_eq!(contents_over(&keeps_refs, None, rust), rust);
        assert_eq!(contents_over(&keeps_refs, None, None), None);
        let own_key: Option<&[String]> = Some(&[]);
        assert_eq!(
            contents_over(&keeps_refs, Some(CacheFormat::Contents), None),
            own_key
        );
        assert_eq!(
            contents_over(&keeps_refs, Some(CacheFormat::Archive), rust),
            None
        );
        // A signer from before contents caches lists no format: always an archive.
        assert_eq!(contents_over(&[], None, rust), None);
        assert_eq!(contents_over(&[], Some(CacheFormat::Contents), None), None);
    }
}
