//! Stall detection: a transfer that moves no byte for a while is abandoned.
//!
//! A total timeout would have to be generous enough for the slowest part on the
//! slowest link; a stall timeout catches a dead peer in seconds whatever the size.
//! The transfer ticks a [`Heartbeat`] whenever bytes move (a body chunk sent or
//! received); [`watch`] fails once no tick has come for the stall period.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

// tokio's clock, so that tests can run it paused.
use tokio::time::Instant;

#[derive(Clone)]
pub struct Heartbeat {
    origin: Instant,
    /// Milliseconds since `origin` of the last tick.
    last: Arc<AtomicU64>,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self::new()
    }
}

impl Heartbeat {
    pub fn new() -> Self {
        Heartbeat {
            origin: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn tick(&self) {
        let now = self.origin.elapsed().as_millis() as u64;
        self.last.fetch_max(now, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("no data moved for {0} s")]
pub struct Stalled(pub u64);

/// Runs `fut`, failing with [`Stalled`] when `beat` has not ticked for `stall`.
pub async fn watch<T>(
    beat: &Heartbeat,
    stall: Duration,
    fut: impl Future<Output = T>,
) -> Result<T, Stalled> {
    beat.tick();
    let guard = async {
        loop {
            let idle = beat.idle();
            if idle >= stall {
                return;
            }
            tokio::time::sleep(stall - idle).await;
        }
    };
    tokio::select! {
        out = fut => Ok(out),
        () = guard => Err(Stalled(stall.as_secs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_silent_future_is_stopped() {
        let beat = Heartbeat::new();
        let out = watch(&beat, Duration::from_secs(5), std::future::pending::<()>()).await;
        assert!(out.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_keep_a_slow_future_alive() {
        let beat = Heartbeat::new();
        let b = beat.clone();
        let slow = async move {
            // 10 s in all, but never more than 1 s without a tick.
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                b.tick();
            }
            7
        };
        assert_eq!(
            watch(&beat, Duration::from_secs(3), slow).await.ok(),
            Some(7)
        );
    }
}
