//! The one shape of every retry loop in the signer (S3 transport failures, the
//! completion worker, a failed accept): how many tries, and how long to wait before
//! the next: `base`, doubling after each failure up to `cap`, plus up to `base` of
//! random delay when asked, so that many retries spread.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included; `None`: until the caller stops.
    pub attempts: Option<u32>,
    pub base: Duration,
    pub cap: Duration,
    pub jitter: bool,
}

impl RetryPolicy {
    /// Whether another try may follow `failed` failed ones.
    pub fn allows(&self, failed: u32) -> bool {
        self.attempts.is_none_or(|n| failed < n)
    }

    /// The wait after the `failed`-th failure (1 for the first): `base · 2^(failed-1)`
    /// capped at `cap`, plus the jitter.
    pub fn delay(&self, failed: u32) -> Duration {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let base = millis(self.base);
        let grown = base
            .saturating_mul(1u64 << failed.saturating_sub(1).min(32))
            .min(millis(self.cap));
        let jitter = if self.jitter && base > 0 {
            rand::rng().random_range(0..base)
        } else {
            0
        };
        Duration::from_millis(grown.saturating_add(jitter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_number_of_tries_doubling_without_jitter() {
        let p = RetryPolicy {
            attempts: Some(3),
            base: Duration::from_millis(100),
            cap: Duration::from_millis(200),
            jitter: false,
        };
        assert!(p.allows(1) && p.allows(2) && !p.allows(3));
        let waits: Vec<_> = (1..4).map(|n| p.delay(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 200]);
    }
}
