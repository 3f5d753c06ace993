//! Copying blobs between stores.

use bench_store::Store;

use crate::pool::for_each_bounded;
use crate::{Error, Options, transient};

/// What happened to one blob, as it happens.
#[derive(Debug)]
pub enum Event<'a> {
    Copied {
        hash: &'a str,
        bytes: u64,
        attempts: u32,
    },
    Present {
        hash: &'a str,
    },
    Failed {
        hash: &'a str,
        error: &'a Error,
    },
}

#[derive(Debug, Default)]
pub struct SyncReport {
    pub copied: u64,
    pub present: u64,
    /// Packed bytes copied.
    pub bytes: u64,
    /// Attempts beyond the first, over all blobs.
    pub retries: u64,
    pub failed: Vec<(String, Error)>,
}

impl SyncReport {
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }
}

enum Outcome {
    Copied { bytes: u64, attempts: u32 },
    Present,
}

/// Copies every blob of `hashes` that `dst` lacks from `src`. A blob that fails
/// does not stop the others: it is in the report's `failed`.
pub async fn copy_blobs<I>(
    src: &Store,
    dst: &Store,
    hashes: I,
    options: &Options,
    mut on_event: impl FnMut(Event<'_>),
) -> SyncReport
where
    I: IntoIterator<Item = String>,
{
    let mut report = SyncReport::default();
    let job = |hash: String| {
        let (src, dst, options) = (src.clone(), dst.clone(), options.clone());
        async move {
            let outcome = copy_with_retries(&src, &dst, &hash, &options).await;
            (hash, outcome)
        }
    };
    for_each_bounded(hashes, options.concurrency, job, |joined| {
        let (hash, outcome) = match joined {
            Ok((hash, outcome)) => (hash, outcome),
            Err(e) => (String::from("?"), Err(Error::Task(e))),
        };
        match outcome {
            Ok(Outcome::Copied { bytes, attempts }) => {
                report.copied += 1;
                report.bytes += bytes;
                report.retries += u64::from(attempts - 1);
                on_event(Event::Copied {
                    hash: &hash,
                    bytes,
                    attempts,
                });
            }
            Ok(Outcome::Present) => {
                report.present += 1;
                on_event(Event::Present { hash: &hash });
            }
            Err(error) => {
                on_event(Event::Failed {
                    hash: &hash,
                    error: &error,
                });
                report.failed.push((hash, error));
            }
        }
    })
    .await;
    report.failed.sort_by(|a, b| a.0.cmp(&b.0));
    report
}

async fn copy_with_retries(
    src: &Store,
    dst: &Store,
    hash: &str,
    options: &Options,
) -> Result<Outcome, Error> {
    let mut delay = options.retry_delay;
    let mut attempts = 1;
    loop {
        match copy_one(src, dst, hash, options.verify).await {
            Ok(Some(bytes)) => return Ok(Outcome::Copied { bytes, attempts }),
            Ok(None) => return Ok(Outcome::Present),
            Err(e) if transient(&e) && attempts <= options.retries => {
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempts += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The packed bytes copied, or `None` when `dst` holds the blob already.
async fn copy_one(
    src: &Store,
    dst: &Store,
    hash: &str,
    verify: bool,
) -> Result<Option<u64>, bench_store::Error> {
    if dst.contains(hash).await? {
        return Ok(None);
    }
    let packed = src.get_packed(hash).await?;
    dst.put_packed(hash, &packed).await?;
    if verify {
        dst.get(hash).await?;
    }
    Ok(Some(packed.len() as u64))
}
