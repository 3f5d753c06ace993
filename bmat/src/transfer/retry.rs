//! Bounded retries: which failures are worth another attempt, and how long to wait.
//!
//! Rules (docs/design.md, "bmat"): a bounded number of attempts, exponential backoff with jitter,
//! an overall deadline, and never a retry of a 4xx other than 408 and 429. Presigned
//! URLs add one twist: an expired URL answers 400 on Garage ("Date is too old") and 403
//! on AWS, so for those the caller fetches a fresh URL once instead of giving up.

use std::future::Future;
use std::time::{Duration, Instant};

use bmat_wire::api::CacheProblem;
use rand::Rng;

use super::stall::Stalled;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// No attempt starts after this much time since the first.
    pub deadline: Duration,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Transient: try again after a backoff.
    Retry,
    /// Deterministic: trying again would fail the same way.
    Fatal,
    /// The presigned URL was refused (expired, most likely): get a fresh one, once.
    RefreshUrl,
}

/// Classifies an HTTP status. `presigned` is true for requests that go straight to S3
/// with a presigned URL.
pub fn classify_status(status: u16, presigned: bool) -> Verdict {
    match status {
        408 | 429 => Verdict::Retry,
        400 | 403 if presigned => Verdict::RefreshUrl,
        500..=599 => Verdict::Retry,
        _ => Verdict::Fatal,
    }
}

/// Classifies a failure that produced no HTTP status: connection refused or reset, a
/// timeout, a body cut short. All of these are transient, except a request that could
/// not even be built (a malformed URL), which will never work.
pub fn classify_transport(err: &reqwest::Error) -> Verdict {
    if err.is_builder() {
        Verdict::Fatal
    } else {
        Verdict::Retry
    }
}

/// The stored object is not what the registry holds (missing, shorter, longer): the
/// cache itself is broken, which the signer is told so that it can drop it.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CacheDefect {
    pub problem: CacheProblem,
    pub message: String,
}

/// What a failed attempt found.
#[derive(Debug, thiserror::Error)]
pub enum AttemptCause {
    #[error(transparent)]
    Defect(#[from] CacheDefect),
    #[error(transparent)]
    Stalled(#[from] Stalled),
    /// The network, S3's answer, the signer (when a fresh URL was asked for).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// One failed attempt and what it calls for.
#[derive(Debug)]
pub struct AttemptError {
    pub verdict: Verdict,
    pub error: AttemptCause,
}

/// A request to a presigned URL that failed for good.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// Its last attempt failed: `what` names the request and the attempts made.
    #[error("{what}")]
    Failed {
        what: String,
        #[source]
        cause: AttemptCause,
    },
    /// No fresh URL could be had for it.
    #[error(transparent)]
    Refresh(#[from] anyhow::Error),
}

impl TransferError {
    /// What is wrong with the stored object, if that is why the request failed.
    pub fn defect(&self) -> Option<CacheProblem> {
        match self {
            TransferError::Failed {
                cause: AttemptCause::Defect(d),
                ..
            } => Some(d.problem),
            _ => None,
        }
    }
}

impl AttemptError {
    pub fn retry(error: impl Into<AttemptCause>) -> Self {
        AttemptError {
            verdict: Verdict::Retry,
            error: error.into(),
        }
    }

    pub fn fatal(error: impl Into<AttemptCause>) -> Self {
        AttemptError {
            verdict: Verdict::Fatal,
            error: error.into(),
        }
    }

    pub fn new(verdict: Verdict, error: impl Into<AttemptCause>) -> Self {
        AttemptError {
            verdict,
            error: error.into(),
        }
    }
}

impl RetryPolicy {
    pub fn start(&self) -> Retrier<'_> {
        Retrier {
            policy: self,
            failures: 0,
            started: Instant::now(),
        }
    }

    /// The wait before attempt `failures + 1`: exponential, capped, with "equal jitter"
    /// (half fixed, half random) so that parallel parts do not retry in lockstep.
    pub fn backoff(&self, failures: u32, rng: &mut impl Rng) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16));
        let capped = exp.min(self.max_delay);
        let half = capped / 2;
        half + half.mul_f64(rng.random::<f64>())
    }
}

/// The state of one retried operation.
pub struct Retrier<'a> {
    policy: &'a RetryPolicy,
    failures: u32,
    started: Instant,
}

impl Retrier<'_> {
    /// Records a failure. Returns the wait before the next attempt, or `None` when the
    /// operation must give up (fatal error, attempts used up, deadline passed).
    pub fn next_delay(&mut self, verdict: Verdict) -> Option<Duration> {
        self.failures += 1;
        if verdict == Verdict::Fatal || self.failures >= self.policy.attempts {
            return None;
        }
        let delay = self.policy.backoff(self.failures, &mut rand::rng());
        if self.started.elapsed() + delay >= self.policy.deadline {
            return None;
        }
        Some(delay)
    }

    /// Records a failure and sleeps before the next attempt; false means give up.
    pub async fn wait(&mut self, verdict: Verdict) -> bool {
        match self.next_delay(verdict) {
            Some(delay) => {
                tokio::time::sleep(delay).await;
                true
            }
            None => false,
        }
    }

    /// Time left before the overall deadline, to bound the next attempt.
    pub fn remaining(&self) -> Duration {
        self.policy.deadline.saturating_sub(self.started.elapsed())
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// One request to a presigned URL, retried under `policy`. A refused URL (most likely
/// expired) is replaced through `refresh` once; refused again, it is fatal. `url` is
/// whatever the caller needs to make and replace the request (a URL, or a URL with its
/// generation). `what` names the operation in the final error.
pub async fn with_fresh_url<U, T, AF, RF>(
    policy: &RetryPolicy,
    mut url: U,
    mut attempt: impl FnMut(U) -> AF,
    mut refresh: impl FnMut(U) -> RF,
    what: impl FnOnce() -> String,
) -> Result<T, TransferError>
where
    U: Clone,
    AF: Future<Output = Result<T, AttemptError>>,
    RF: Future<Output = anyhow::Result<U>>,
{
    let mut retry = policy.start();
    let mut refreshed = false;
    loop {
        let err = match attempt(url.clone()).await {
            Ok(done) => return Ok(done),
            Err(err) => err,
        };
        let verdict = match err.verdict {
            Verdict::RefreshUrl if !refreshed => {
                refreshed = true;
                url = refresh(url).await?;
                continue;
            }
            Verdict::RefreshUrl => Verdict::Fatal,
            other => other,
        };
        if !retry.wait(verdict).await {
            // The cause stays typed (a missing object is told apart from a timeout).
            let tries = retry.failures();
            return Err(TransferError::Failed {
                what: format!("{} (after {tries} attempts)", what()),
                cause: err.error,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
            deadline: Duration::from_secs(60),
        }
    }

    #[test]
    fn only_408_429_and_5xx_are_retried() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert_eq!(classify_status(s, false), Verdict::Retry, "{s}");
            assert_eq!(classify_status(s, true), Verdict::Retry, "{s}");
        }
        for s in [400, 401, 403, 404, 409, 413, 416, 422] {
            assert_eq!(classify_status(s, false), Verdict::Fatal, "{s}");
        }
    }

    #[test]
    fn a_refused_presigned_url_is_refreshed_not_retried() {
        // Garage answers an expired URL with 400, AWS with 403.
        assert_eq!(classify_status(400, true), Verdict::RefreshUrl);
        assert_eq!(classify_status(403, true), Verdict::RefreshUrl);
        assert_eq!(classify_status(404, true), Verdict::Fatal);
        assert_eq!(classify_status(416, true), Verdict::Fatal);
    }

    #[test]
    fn attempts_are_bounded() {
        let p = policy();
        let mut r = p.start();
        assert!(r.next_delay(Verdict::Retry).is_some());
        assert!(r.next_delay(Verdict::Retry).is_some());
        assert!(r.next_delay(Verdict::Retry).is_some());
        assert_eq!(
            r.next_delay(Verdict::Retry),
            None,
            "the fourth failure is the last"
        );
        assert_eq!(r.failures(), 4);
    }

    #[test]
    fn fatal_gives_up_at_once() {
        let p = policy();
        assert_eq!(p.start().next_delay(Verdict::Fatal), None);
    }

    #[test]
    fn deadline_stops_retries() {
        let p = RetryPolicy {
            deadline: Duration::from_millis(1),
            ..policy()
        };
        let mut r = p.start();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(r.next_delay(Verdict::Retry), None);
    }

    #[test]
    fn backoff_grows_and_is_capped_with_jitter() {
        let p = policy();
        let mut rng = rand::rng();
        for _ in 0..100 {
            let d1 = p.backoff(1, &mut rng);
            assert!(
                d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100),
                "{d1:?}"
            );
            let d3 = p.backoff(3, &mut rng);
            assert!(
                d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400),
                "{d3:?}"
            );
            let d9 = p.backoff(9, &mut rng);
            assert!(
                d9 >= Duration::from_millis(250) && d9 <= Duration::from_millis(500),
                "{d9:?}"
            );
        }
    }
}
