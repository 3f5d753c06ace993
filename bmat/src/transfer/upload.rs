//! Uploads parts as they arrive, several at once, to presigned UploadPart URLs.
//!
//! Part URLs are asked for in batches ahead of need, each signed for a full part (S3
//! refuses a body of another length); the last, shorter part gets a URL of its own
//! size when it is known. Each part is retried alone; a
//! refused URL (expired) is replaced by a fresh one once. The first part that cannot
//! be uploaded ends the whole upload: the receiver is dropped, which stops the
//! producer at its next part.

use std::collections::HashMap;

use anyhow::{Context as _, anyhow};
use bmat_wire::api::CompletedPart;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc;

use super::parts::Part;
use super::retry::{RetryPolicy, with_fresh_url};
use super::s3::S3Transfer;
use crate::progress::Progress;
use crate::transfer::api::ApiClient;

/// S3's limit on the number of parts of one upload.
const S3_MAX_PARTS: u64 = 10_000;

pub struct Uploader<'a> {
    pub api: &'a ApiClient,
    pub s3: &'a S3Transfer,
    pub retry: &'a RetryPolicy,
    pub upload_id: &'a str,
    pub part_size: u64,
    pub max_size: u64,
    pub parallelism: usize,
    pub url_batch: u32,
    pub progress: &'a Progress,
}

impl Uploader<'_> {
    /// Uploads every part received until the channel closes; returns the parts in
    /// order with their ETags.
    pub async fn run(&self, mut rx: mpsc::Receiver<Part>) -> anyhow::Result<Vec<CompletedPart>> {
        let mut urls = PartUrls::new(self);
        let mut in_flight = FuturesUnordered::new();
        let mut done = Vec::new();
        let mut open = true;
        while open || !in_flight.is_empty() {
            tokio::select! {
                part = rx.recv(), if open && in_flight.len() < self.parallelism.max(1) => match part {
                    Some(part) => {
                        let url = urls.get(part.number, self.short_size(&part)).await?;
                        in_flight.push(self.upload_one(part, url));
                    }
                    None => open = false,
                },
                Some(result) = in_flight.next() => done.push(result?),
            }
        }
        done.sort_by_key(|p: &CompletedPart| p.part_number);
        Ok(done)
    }

    /// The size to ask a URL for when `part` is not a full one (the archive's last).
    fn short_size(&self, part: &Part) -> Option<u64> {
        let len = part.data.len() as u64;
        (len != self.part_size).then_some(len)
    }

    async fn upload_one(&self, part: Part, url: String) -> anyhow::Result<CompletedPart> {
        let number = part.number;
        let size = self.short_size(&part);
        let etag = with_fresh_url(
            self.retry,
            url,
            |url: String| {
                let data = part.data.clone();
                async move { self.s3.put_part(&url, data).await }
            },
            |_: String| async move {
                fetch_urls(self.api, self.upload_id, vec![number], size)
                    .await?
                    .remove(&number)
                    .ok_or_else(|| anyhow!("the signer sent no URL for part {number}"))
            },
            || format!("part {number}"),
        )
        .await?;
        self.progress.add_sent(part.data.len() as u64);
        Ok(CompletedPart {
            part_number: number,
            etag,
        })
    }
}

/// Part URLs fetched ahead, a batch at a time.
struct PartUrls<'a> {
    up: &'a Uploader<'a>,
    known: HashMap<u32, String>,
    /// Highest part number the size cap allows.
    last_allowed: u32,
}

impl<'a> PartUrls<'a> {
    fn new(up: &'a Uploader<'a>) -> Self {
        let parts = up
            .max_size
            .div_ceil(up.part_size.max(1))
            .clamp(1, S3_MAX_PARTS);
        PartUrls {
            up,
            known: HashMap::new(),
            last_allowed: parts as u32,
        }
    }

    /// The URL of part `number`; with `size`, of a short part of that size (never one
    /// fetched ahead, which is signed for a full part).
    async fn get(&mut self, number: u32, size: Option<u64>) -> anyhow::Result<String> {
        if let Some(url) = self.known.remove(&number)
            && size.is_none()
        {
            return Ok(url);
        }
        if number > self.last_allowed {
            return Err(anyhow!(
                "the archive needs more than {} parts, past the size limit",
                self.last_allowed
            ));
        }
        if size.is_some() {
            return fetch_urls(self.up.api, self.up.upload_id, vec![number], size)
                .await?
                .remove(&number)
                .ok_or_else(|| anyhow!("the signer sent no URL for part {number}"));
        }
        let end = number
            .saturating_add(self.up.url_batch.max(1) - 1)
            .min(self.last_allowed);
        self.known = fetch_urls(
            self.up.api,
            self.up.upload_id,
            (number..=end).collect(),
            None,
        )
        .await?;
        self.known
            .remove(&number)
            .ok_or_else(|| anyhow!("the signer sent no URL for part {number}"))
    }
}

async fn fetch_urls(
    api: &ApiClient,
    upload_id: &str,
    numbers: Vec<u32>,
    size: Option<u64>,
) -> anyhow::Result<HashMap<u32, String>> {
    let answer = api
        .part_urls(upload_id, numbers, size)
        .await
        .context("asking for part URLs")?;
    Ok(answer
        .urls
        .into_iter()
        .map(|u| (u.part_number, u.url))
        .collect())
}
