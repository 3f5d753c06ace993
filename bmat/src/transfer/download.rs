//! Downloads byte spans of one or more objects with parallel ranged GETs and hands the
//! bytes over in order (an archive: one span, the whole object; a contents cache: the
//! frames a restore needs, from every object that holds them).
//!
//! The spans become GETs of at most `range_size` bytes, cut at multiples of it in the
//! object, and pieces of one object close behind one another share a GET (see
//! [`Gets`]). Up to `parallelism` GETs are in flight; their bytes are handed on, in the
//! spans' order, through a small bounded channel read by a blocking [`RangeReader`]
//! (the decompressor's input). Memory is bounded by (parallelism + [`WINDOW`] +
//! channel) × range size whatever the object size. Each GET is retried alone; a refused
//! URL (expired) is replaced once by a fresh one from the signer.

use std::collections::HashMap;
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

    /// The GETs that fetch the spans.
    fn gets(&self) -> Gets {
        Gets::of(&self.spans, self.range_size)
    }

    /// The bytes the GETs fetch: the spans' and the gaps read with them.
    pub fn fetched_bytes(&self) -> u64 {
        self.gets().gets.iter().map(|g| g.len).sum()
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
            let Gets { gets, pieces } = self.gets();
            let mut uses = vec![0usize; gets.len()];
            for piece in &pieces {
                uses[piece.get] += 1;
            }
            let this = Arc::new(self);
            let fetches = gets.into_iter().map(|get| {
                let this = this.clone();
                async move { this.fetch(get).await }
            });
            let mut ordered = futures_util::stream::iter(fetches).buffered(this.parallelism.max(1));
            // GETs fetched whose pieces are not all handed on yet (at most `WINDOW` back).
            let mut held: HashMap<usize, Bytes> = HashMap::new();
            let mut fetched = 0;
            for piece in pieces {
                // A piece's GET was made for it or for an earlier piece: in order.
                while fetched <= piece.get {
                    let Some(bytes) = ordered.next().await else {
                        return Ok(());
                    };
                    held.insert(fetched, bytes?);
                    fetched += 1;
                }
                uses[piece.get] -= 1;
                let bytes = if uses[piece.get] == 0 {
                    held.remove(&piece.get)
                } else {
                    held.get(&piece.get).cloned()
                };
                let Some(bytes) = bytes else {
                    return Ok(());
                };
                let piece = bytes.slice(piece.at..piece.at + piece.len);
                if tx.send(piece).await.is_err() {
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
        let Gets { gets, pieces } = self.gets();
        let mut fetched = Vec::with_capacity(gets.len());
        for get in gets {
            fetched.push(self.fetch(get).await?);
        }
        let mut out = Vec::new();
        for piece in pieces {
            out.extend_from_slice(&fetched[piece.get][piece.at..piece.at + piece.len]);
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

/// A GET may take a piece of its object this far past its end: the bytes between are
/// read and dropped. Stores keep objects in blocks (Garage: 1 MiB, each checked whole
/// on every read), so a piece that starts in the block another GET ended in costs that
/// block twice, and a request costs more than this many bytes on any store.
const MAX_GAP: u64 = 1 << 20;

/// A piece may join a GET at most this many GETs back: what is fetched waits in memory
/// until its last piece is handed on.
pub const WINDOW: usize = 4;

/// The GETs that fetch a list of spans, and where each piece of the spans lies in them.
#[derive(Debug, Default, PartialEq, Eq)]
struct Gets {
    gets: Vec<Span>,
    /// The spans cut at multiples of the range size, in order.
    pieces: Vec<Piece>,
}

/// `len` bytes at `at` of GET `get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Piece {
    get: usize,
    at: usize,
    len: usize,
}

impl Gets {
    /// Spans are cut at multiples of `range_size` of their object, so that GETs of a
    /// whole object, or of neighbouring spans, never share a block. A piece joins the
    /// last GET of its object when that GET is one of the last [`WINDOW`], lies in the
    /// same multiple of `range_size`, and ends at most [`MAX_GAP`] before the piece (or
    /// holds it already: a frame fetched again).
    fn of(spans: &[Span], range_size: u64) -> Gets {
        let step = range_size.max(1);
        let mut out = Gets::default();
        let mut last_of: HashMap<usize, usize> = HashMap::new();
        for span in spans {
            let end = span.at + span.len;
            let mut at = span.at;
            while at < end {
                let cell = at / step;
                let len = end.min((cell + 1) * step) - at;
                let joined = last_of.get(&span.source).copied().filter(|&g| {
                    let get = out.gets[g];
                    out.gets.len() - g <= WINDOW
                        && get.at / step == cell
                        && at >= get.at
                        && at <= get.at + get.len + MAX_GAP
                });
                let get = match joined {
                    Some(g) => {
                        let get = &mut out.gets[g];
                        get.len = get.len.max(at + len - get.at);
                        g
                    }
                    None => {
                        out.gets.push(Span {
                            source: span.source,
                            at,
                            len,
                        });
                        last_of.insert(span.source, out.gets.len() - 1);
                        out.gets.len() - 1
                    }
                };
                out.pieces.push(Piece {
                    get,
                    // Within one GET: at most `range_size` bytes.
                    at: (at - out.gets[get].at) as usize,
                    len: len as usize,
                });
                at += len;
            }
        }
        out
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

    fn span(source: usize, at: u64, len: u64) -> Span {
        Span { source, at, len }
    }

    fn piece(get: usize, at: usize, len: usize) -> Piece {
        Piece { get, at, len }
    }

    #[test]
    fn a_whole_object_is_cut_at_multiples_of_the_range_size() {
        let gets = Gets::of(&[span(0, 0, 10)], 4);
        assert_eq!(gets.gets, [span(0, 0, 4), span(0, 4, 4), span(0, 8, 2)]);
        assert_eq!(
            gets.pieces,
            [piece(0, 0, 4), piece(1, 0, 4), piece(2, 0, 2)]
        );
        assert_eq!(Gets::of(&[span(0, 0, 0)], 4), Gets::default());
        // A span off the multiples: its cuts stay on them.
        let gets = Gets::of(&[span(0, 3, 6)], 4);
        assert_eq!(gets.gets, [span(0, 3, 1), span(0, 4, 4), span(0, 8, 1)]);
    }

    #[test]
    fn pieces_of_one_object_close_behind_one_another_share_a_get() {
        let mb = 1 << 20;
        let size = 64 * mb;
        // Object 0's frames around one of object 1, then one a frame fetched again.
        let spans = [
            span(0, 0, 100),
            span(1, 5000, 50),
            span(0, 300, 200),
            span(0, 100, 100),
        ];
        let gets = Gets::of(&spans, size);
        assert_eq!(gets.gets, [span(0, 0, 500), span(1, 5000, 50)]);
        assert_eq!(
            gets.pieces,
            [
                piece(0, 0, 100),
                piece(1, 0, 50),
                piece(0, 300, 200),
                piece(0, 100, 100)
            ]
        );
        // Too far behind, across a multiple of the range size, or too many GETs back:
        // a GET of its own.
        let far = Gets::of(&[span(0, 0, 100), span(0, 100 + MAX_GAP + 1, 10)], size);
        assert_eq!(far.gets.len(), 2);
        let across = Gets::of(&[span(0, 0, 100), span(0, size + 10, 10)], size);
        assert_eq!(across.gets.len(), 2);
        let mut spans: Vec<Span> = (1..=WINDOW).map(|s| span(s, 0, 10)).collect();
        spans.insert(0, span(0, 0, 10));
        spans.push(span(0, 20, 10));
        assert_eq!(Gets::of(&spans, size).gets.len(), WINDOW + 2);
        spans.remove(1);
        assert_eq!(Gets::of(&spans, size).gets.len(), WINDOW);
    }

    #[test]
    fn the_reader_gets_the_spans_bytes_in_order_from_shared_gets() {
        // What `start` hands on, without the network: every piece from its GET's bytes.
        let object: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        let spans = [span(0, 10, 90), span(0, 500, 20), span(0, 40, 30)];
        let gets = Gets::of(&spans, 1024);
        assert_eq!(gets.gets.len(), 1);
        let fetched: Vec<&[u8]> = gets
            .gets
            .iter()
            .map(|g| &object[g.at as usize..(g.at + g.len) as usize])
            .collect();
        let got: Vec<u8> = gets
            .pieces
            .iter()
            .flat_map(|p| fetched[p.get][p.at..p.at + p.len].iter().copied())
            .collect();
        let want: Vec<u8> = spans
            .iter()
            .flat_map(|s| {
                object[s.at as usize..(s.at + s.len) as usize]
                    .iter()
                    .copied()
            })
            .collect();
        assert_eq!(got, want);
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
