//! The HTTP server: an accept loop over hyper's HTTP/1 connections, because
//! `axum::serve` holds every connection for as long as the client likes. Here:
//! - a connection must deliver each request's head within `header_read_timeout`
//!   (hyper's timer: it runs from accept, and again from the end of each answer, so an
//!   idle keep-alive connection is closed after it too);
//! - a connection on which no byte moves either way for `idle_timeout` is closed,
//!   whatever it is doing (a half-sent body, a client that stops reading its answer);
//! - at most `max_connections` are open at once. When all are taken the loop stops
//!   accepting until one closes: new connections wait in the kernel's listen backlog,
//!   costing no file descriptor here, and are served in turn once the timeouts above
//!   free a slot. Refusing them instead (accept and close) would refuse health checks
//!   for as long as a flood lasts; waiting delays them by at most about one timeout.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::retry::RetryPolicy;

/// How long shutdown waits for requests in flight before dropping their connections.
const DRAIN: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of file descriptors): retrying at once would spin.
/// The accept loop never gives up.
const ACCEPT_RETRY: RetryPolicy = RetryPolicy {
    attempts: None,
    base: Duration::from_millis(100),
    cap: Duration::from_millis(100),
    jitter: false,
};

#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, lets
/// each connection finish the request it is answering (up to [`DRAIN`]) and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while conns.try_join_next().is_some() {}
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break, // never closed
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(ACCEPT_RETRY.delay(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        conns.spawn(connection(
            stream,
            router.clone(),
            limits,
            closing_rx.clone(),
            permit,
        ));
    }
    drop(listener);
    let _ = closing_tx.send(true);
    let drained =
        tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        warn!(
            "{} connection(s) still busy after {} s; closing them",
            conns.len(),
            DRAIN.as_secs()
        );
    }
}

/// One connection, holding its slot (`_permit`) until it closes.
async fn connection(
    stream: TcpStream,
    router: Router,
    limits: ConnLimits,
    mut closing: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let conn = builder.serve_connection(io, TowerToHyperService::new(router));
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    debug!("connection closed: {e}");
                }
                return;
            }
            () = tokio::time::sleep_until(activity.last() + limits.idle_timeout) => {
                if activity.last().elapsed() >= limits.idle_timeout {
                    debug!("connection closed: nothing moved for {:?}", limits.idle_timeout);
                    return; // dropping it closes the socket
                }
            }
            _ = closing.changed(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// When a byte last moved on a connection.
struct Activity {
    start: Instant,
    /// Milliseconds after `start`.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A stream that records in [`Activity`] every read or write that moved bytes.
struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
