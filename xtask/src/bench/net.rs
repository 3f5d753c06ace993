//! The baseline's network side, done the way a plain client does it: the signer API
//! (begin, part URLs, complete, lookup) and parallel part PUTs / ranged GETs through
//! presigned URLs. Used by the baseline (B) and by the raw transfer limits (C).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bmat_wire::api::{
    BeginRequest, BeginResponse, CacheHit, CompleteRequest, CompletedPart, Extent, LookupRequest,
    LookupResponse, PartUrlsRequest, PartUrlsResponse, UploadState, UploadStatus,
};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

/// Requests in flight at once, as the baseline does (actions/cache: 8).
pub const IN_FLIGHT: usize = 8;

/// A client of the signer API with the stack's token.
#[derive(Clone)]
pub struct Signer {
    http: reqwest::Client,
    url: String,
    token: String,
    /// The part size the baseline asks for (actions/cache uploads 64 MiB parts).
    part_size: u64,
}

/// An upload begun, with a URL for each of its parts.
pub struct Upload {
    pub id: String,
    pub part_size: u64,
    pub urls: Vec<String>,
}

impl Signer {
    pub fn new(url: &str, token: &str, part_size: u64) -> Result<Signer> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(32)
            .build()
            .context("cannot build an HTTP client")?;
        Ok(Signer {
            http,
            url: url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            part_size,
        })
    }

    async fn call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Req>,
    ) -> Result<Resp> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}/v1{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            bail!("{method} {path}: the signer answered {status}: {text}");
        }
        response
            .json()
            .await
            .with_context(|| format!("{method} {path}: bad JSON"))
    }

    /// Begins an upload of `size` bytes and asks for every part's URL.
    pub async fn begin(&self, key: &str, size: u64) -> Result<Upload> {
        let begin: BeginResponse = self
            .call(
                reqwest::Method::POST,
                "/uploads",
                Some(&BeginRequest {
                    key: key.to_owned(),
                    expected_size: Some(size),
                    part_size: Some(self.part_size),
                    refresh_after_secs: None,
                    only_scopes: vec![],
                }),
            )
            .await?;
        let BeginResponse::Upload {
            upload_id,
            part_size,
            ..
        } = begin
        else {
            bail!("the signer said {begin:?} to a fresh key {key}");
        };
        let parts = size.div_ceil(part_size).max(1) as u32;
        let last_size = size - u64::from(parts - 1) * part_size;
        let mut urls = Vec::new();
        // The signer hands out part URLs in batches, each signed for a full part; the
        // last part's URL is signed for its own length.
        for first in (1..=parts).step_by(100) {
            let numbers: Vec<u32> = (first..=(first + 99).min(parts)).collect();
            for (numbers, size) in batch_sizes(numbers, parts, last_size, part_size) {
                let answer: PartUrlsResponse = self
                    .call(
                        reqwest::Method::POST,
                        &format!("/uploads/{upload_id}/parts"),
                        Some(&PartUrlsRequest {
                            part_numbers: numbers,
                            size,
                        }),
                    )
                    .await?;
                let mut batch = answer.urls;
                batch.sort_by_key(|u| u.part_number);
                urls.extend(batch.into_iter().map(|u| u.url));
            }
        }
        Ok(Upload {
            id: upload_id,
            part_size,
            urls,
        })
    }

    /// Completes the upload, recording `extent` (the signer requires one), and waits
    /// until the signer has stored the cache.
    pub async fn complete(
        &self,
        upload: &Upload,
        parts: Vec<CompletedPart>,
        size: u64,
        sha256: String,
        extent: Extent,
    ) -> Result<()> {
        let mut status: UploadStatus = self
            .call(
                reqwest::Method::POST,
                &format!("/uploads/{}/complete", upload.id),
                Some(&CompleteRequest {
                    parts,
                    size,
                    sha256,
                    extent,
                    format: bmat_wire::api::FORMAT_ARCHIVE,
                    refs: vec![],
                    logical_size: None,
                }),
            )
            .await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut delay = Duration::from_millis(20);
        while status.state != UploadState::Completed {
            if status.state == UploadState::Aborted || Instant::now() > deadline {
                bail!("upload {} ended as {:?}", upload.id, status.state);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(200));
            status = self
                .call::<(), _>(
                    reqwest::Method::GET,
                    &format!("/uploads/{}", upload.id),
                    None,
                )
                .await?;
        }
        Ok(())
    }

    pub async fn abort(&self, upload: &Upload) -> Result<()> {
        let _: UploadStatus = self
            .call::<(), _>(
                reqwest::Method::DELETE,
                &format!("/uploads/{}", upload.id),
                None,
            )
            .await?;
        Ok(())
    }

    pub async fn lookup(&self, key: &str) -> Result<CacheHit> {
        let answer: LookupResponse = self
            .call(
                reqwest::Method::POST,
                "/lookup",
                Some(&LookupRequest {
                    key: key.to_owned(),
                    fallbacks: vec![],
                    exclude: vec![],
                    formats: vec![],
                    for_save: false,
                }),
            )
            .await?;
        answer.hit.ok_or_else(|| anyhow!("no cache under {key}"))
    }

    /// Deletes a cache (cleanup between repetitions; a missing one is fine).
    pub async fn delete(&self, key: &str) -> Result<()> {
        let _: serde_json::Value = self
            .call::<(), _>(reqwest::Method::DELETE, &format!("/caches/{key}"), None)
            .await?;
        Ok(())
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

/// Where the bytes of the parts come from.
pub enum Source {
    /// Read each part from the file when its turn comes (the baseline).
    File(Arc<File>),
    /// Already in memory, one buffer per part (the raw PUT limit: nothing but the
    /// network).
    Memory(Vec<Vec<u8>>),
}

impl Source {
    /// Reads the parts of `path` into memory.
    pub fn preload(path: &Path, part_size: u64) -> Result<Source> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let size = file.metadata()?.len();
        let mut parts = Vec::new();
        let mut start = 0;
        while start < size || parts.is_empty() {
            let len = part_size.min(size - start);
            parts.push(read_at(&file, start, len)?);
            start += len;
        }
        Ok(Source::Memory(parts))
    }
}

/// PUTs the parts of `size` bytes from `source` to `upload`'s URLs, [`IN_FLIGHT`] at
/// once; returns the parts with their ETags, in order.
pub async fn put_parts(
    http: &reqwest::Client,
    upload: &Upload,
    source: Source,
    size: u64,
) -> Result<Vec<CompletedPart>> {
    let mut set = JoinSet::new();
    let mut done = Vec::new();
    let (file, mut preloaded) = match source {
        Source::File(file) => (Some(file), Vec::new().into_iter()),
        Source::Memory(parts) => (None, parts.into_iter()),
    };
    for (i, url) in upload.urls.iter().enumerate() {
        if set.len() >= IN_FLIGHT
            && let Some(joined) = set.join_next().await
        {
            done.push(joined.map_err(|e| anyhow!("a part upload crashed: {e}"))??);
        }
        let start = i as u64 * upload.part_size;
        let len = upload.part_size.min(size - start.min(size));
        let ready = preloaded.next();
        let (http, url, file) = (http.clone(), url.clone(), file.clone());
        let number = i as u32 + 1;
        set.spawn(async move {
            let data = match (ready, file) {
                (Some(data), _) => data,
                (None, Some(file)) => {
                    tokio::task::spawn_blocking(move || read_at(&file, start, len))
                        .await
                        .map_err(|e| anyhow!("a part read crashed: {e}"))??
                }
                (None, None) => bail!("no data for part {number}"),
            };
            let response = http
                .put(&url)
                .header(reqwest::header::CONTENT_LENGTH, len)
                .body(data)
                .send()
                .await
                .with_context(|| format!("PUT part {number}"))?;
            if !response.status().is_success() {
                bail!("PUT part {number}: S3 answered {}", response.status());
            }
            let etag = response
                .headers()
                .get(reqwest::header::ETAG)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| anyhow!("PUT part {number}: no ETag"))?
                .to_owned();
            Ok(CompletedPart {
                part_number: number,
                etag,
            })
        });
    }
    while let Some(joined) = set.join_next().await {
        done.push(joined.map_err(|e| anyhow!("a part upload crashed: {e}"))??);
    }
    done.sort_by_key(|p| p.part_number);
    Ok(done)
}

/// Where downloaded ranges go.
#[derive(Clone)]
pub enum Sink {
    /// Written at their offset into this file (the baseline's temp file).
    File(Arc<File>),
    /// Counted and dropped (the raw GET limit).
    Discard,
}

/// Range size of the downloads: 64 MiB, smaller when the object would otherwise not
/// give every one of the [`IN_FLIGHT`] requests something to do (at least 4 MiB).
pub fn range_size(size: u64) -> u64 {
    size.div_ceil(IN_FLIGHT as u64).clamp(4 << 20, 64 << 20)
}

/// GETs `url` in ranges, [`IN_FLIGHT`] at once, into `sink`; returns the bytes moved.
pub async fn get_ranges(http: &reqwest::Client, url: &str, size: u64, sink: Sink) -> Result<u64> {
    let step = range_size(size);
    let mut set = JoinSet::new();
    let mut total = 0u64;
    for start in (0..size).step_by(step as usize) {
        if set.len() >= IN_FLIGHT
            && let Some(joined) = set.join_next().await
        {
            total += joined.map_err(|e| anyhow!("a range download crashed: {e}"))??;
        }
        let len = step.min(size - start);
        let (http, url, sink) = (http.clone(), url.to_owned(), sink.clone());
        set.spawn(async move {
            let end = start + len - 1;
            let mut response = http
                .get(&url)
                .header(reqwest::header::RANGE, format!("bytes={start}-{end}"))
                .send()
                .await
                .with_context(|| format!("GET bytes {start}-{end}"))?;
            if !response.status().is_success() {
                bail!("GET bytes {start}-{end}: S3 answered {}", response.status());
            }
            let mut at = start;
            while let Some(chunk) = response
                .chunk()
                .await
                .with_context(|| format!("GET bytes {start}-{end}"))?
            {
                if let Sink::File(file) = &sink {
                    file.write_all_at(&chunk, at)
                        .context("writing the download")?;
                }
                at += chunk.len() as u64;
            }
            if at != start + len {
                bail!("GET bytes {start}-{end}: got {} bytes", at - start);
            }
            Ok(len)
        });
    }
    while let Some(joined) = set.join_next().await {
        total += joined.map_err(|e| anyhow!("a range download crashed: {e}"))??;
    }
    Ok(total)
}

/// SHA-256 of a file, read sequentially (the baseline computes it beside the upload,
/// since the signer wants it at completion).
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

fn read_at(file: &File, start: u64, len: u64) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, start)
        .context("reading a part of the archive")?;
    Ok(buf)
}

/// A batch of part numbers as requests: one for the full parts, and one with its own
/// size for the last part when it is shorter.
fn batch_sizes(
    numbers: Vec<u32>,
    parts: u32,
    last_size: u64,
    part_size: u64,
) -> Vec<(Vec<u32>, Option<u64>)> {
    if last_size == part_size || !numbers.contains(&parts) {
        return vec![(numbers, None)];
    }
    let full: Vec<u32> = numbers.into_iter().filter(|n| *n != parts).collect();
    let mut requests = vec![(vec![parts], Some(last_size.max(1)))];
    if !full.is_empty() {
        requests.insert(0, (full, None));
    }
    requests
}
