//! Downloads byte spans of one or more objects with parallel ranged GETs and hands the
//! bytes over in order (an archive: one span, the whole object; a contents cache: the
//! frames a restore needs, from every object that holds them).
//!
//! Up to `parallelism` ranges are in flight; finished ranges wait, in order, in a
//! small bounded channel read by a blocking [`RangeReader`] (the decompressor's input).
//! Memory is bounded by (parallelism + channel) × range size whatever the object size.
//! Each range is retried alone; a refused URL (expired) is replaced once by a fresh one
//! from the signer.

use std::future::Future;
use std::io::{self, Read};
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures_util::StreamExt;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

use super::retry::{RetryPolicy, TransferError, with_fresh_url};
use super::s3::S3Transfer;
use crate::progress::Progress;

pub type UrlFuture = Pin<Box<dyn Future<Output = anyhow::Result<String>> + Send>>;

/// The presigned GET URL, replaceable when it expires.
pub struct UrlSource {
    /// (generation, url): the generation tells a range whether someone else already
    /// refreshed the URL it failed with.
    current: Mutex<(u64, String)>,
    refresh: Box<dyn Fn() -> UrlFuture + Send + Sync>,
}

impl UrlSource {
    pub fn new(url: String, refresh: impl Fn() -> UrlFuture + Send + Sync + 'static) -> Self {
        UrlSource {
            current: Mutex::new((0, url)),
            refresh: Box::new(refresh),
        }
    }

    async fn get(&self) -> (u64, String) {
        self.current.lock().await.clone()
    }

    async fn refreshed(&self, failed_generation: u64) -> anyhow::Result<(u64, String)> {
        let mut current = self.current.lock().await;
        if current.0 == failed_generation {
            let url = (self.refresh)().await?;
            *current = (failed_generation + 1, url);
        }
        Ok(current.clone())
    }
}

/// An object to read from: its URL and its size.
#[derive(Clone)]
pub struct Source {
    pub url: Arc<UrlSource>,
    pub size: u64,
}

/// `len` bytes at `at` of source `source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub source: usize,
    pub at: u64,
    pub len: u64,
}

pub struct RangeDownload {
    pub s3: S3Transfer,
    pub sources: Vec<Source>,
    /// What to read, in the order the reader gets it.
    pub spans: Vec<Span>,
    pub range_size: u64,
    pub parallelism: usize,
    pub retry: RetryPolicy,
    pub progress: Progress,
}

/// The ranges `(start, len)` covering `size` bytes.
pub fn ranges(size: u64, range_size: u64) -> Vec<(u64, u64)> {
    let step = range_size.max(1);
    (0..size.div_ceil(step))
        .map(|i| (i * step, step.min(size - i * step)))
        .collect()
}

impl RangeDownload {
    /// The whole of one object.
    pub fn whole(source: Source) -> (Vec<Source>, Vec<Span>) {
        let span = Span {
            source: 0,
            at: 0,
            len: source.size,
        };
        (vec![source], vec![span])
    }

    /// The spans, cut into ranges of at most `range_size` bytes.
    fn ranges(&self) -> Vec<Span> {
        self.spans
            .iter()
            .flat_map(|span| {
                ranges(span.len, self.range_size)
                    .into_iter()
                    .map(move |(start, len)| Span {
                        source: span.source,
                        at: span.at + start,
                        len,
                    })
            })
            .collect()
    }

    /// Starts the download on the runtime; read the bytes from the returned reader (on
    /// a blocking thread). The task's result tells why a reader saw the stream end early.
    pub fn start(self) -> (RangeReader, JoinHandle<Result<(), TransferError>>) {
        let (tx, rx) = mpsc::channel::<Bytes>(2);
        let reader = RangeReader {
            rx,
            current: Bytes::new(),
            remaining: self.spans.iter().map(|s| s.len).sum(),
        };
        let task = tokio::spawn(async move {
            let this = Arc::new(self);
            let fetches = this.ranges().into_iter().map(|range| {
                let this = this.clone();
                async move { this.fetch(range).await }
            });
            let mut ordered = futures_util::stream::iter(fetches).buffered(this.parallelism.max(1));
            while let Some(bytes) = ordered.next().await {
                if tx.send(bytes?).await.is_err() {
                    // The reader gave up (its own error is the one to report).
                    return Ok(());
                }
            }
            Ok(())
        });
        (reader, task)
    }

    /// Downloads every span into memory (small reads: a contents cache's index).
    pub async fn bytes(self) -> Result<Vec<u8>, TransferError> {
        let mut out = Vec::new();
        for range in self.ranges() {
            out.extend_from_slice(&self.fetch(range).await?);
        }
        Ok(out)
    }

    async fn fetch(&self, range: Span) -> Result<Bytes, TransferError> {
        let Span { source, at, len } = range;
        // Spans are made with their sources (`whole`, or a checked manifest's plan).
        let Source { url, size } = &self.sources[source];
        let bytes = with_fresh_url(
            &self.retry,
            url.get().await,
            |(_, u): (u64, String)| async move { self.s3.get_range(&u, at, len, *size).await },
            |(generation, _): (u64, String)| async move { url.refreshed(generation).await },
            || format!("bytes {at}+{len}"),
        )
        .await?;
        self.progress.add_sent(len);
        Ok(bytes)
    }
}

/// Blocking reader over the ordered ranges. It ends only after exactly the expected
/// number of bytes; a download that stopped early is an error here, never a short EOF.
pub struct RangeReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
    remaining: u64,
}

impl Read for RangeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            if self.remaining == 0 {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(bytes) => self.current = bytes,
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "download interrupted",
                    ));
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        self.remaining = self.remaining.saturating_sub(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_object_exactly() {
        assert_eq!(ranges(10, 4), [(0, 4), (4, 4), (8, 2)]);
        assert_eq!(ranges(8, 4), [(0, 4), (4, 4)]);
        assert_eq!(ranges(0, 4), []);
        assert_eq!(ranges(3, 8), [(0, 3)]);
    }

    #[test]
    fn the_reader_refuses_to_end_early() {
        let (tx, rx) = mpsc::channel(4);
        let mut reader = RangeReader {
            rx,
            current: Bytes::new(),
            remaining: 6,
        };
        tx.try_send(Bytes::from_static(b"abc")).ok();
        drop(tx);
        let mut out = Vec::new();
        let err = reader.read_to_end(&mut out).err();
        assert_eq!(out, b"abc");
        assert_eq!(err.map(|e| e.kind()), Some(io::ErrorKind::UnexpectedEof));
    }

    #[test]
    fn the_reader_joins_chunks_in_order() {
        let (tx, rx) = mpsc::channel(4);
        let mut reader = RangeReader {
            rx,
            current: Bytes::new(),
            remaining: 6,
        };
        tx.try_send(Bytes::from_static(b"abc")).ok();
        tx.try_send(Bytes::from_static(b"def")).ok();
        let mut out = Vec::new();
        assert!(reader.read_to_end(&mut out).is_ok());
        assert_eq!(out, b"abcdef");
    }
}
