//! Knobs of the transfer machinery: retry bounds, timeouts, parallelism.
//!
//! The defaults are what jobs get. A few can be overridden through the environment
//! (`BMAT_RETRY_ATTEMPTS`, `BMAT_API_RETRY_SECS`, `BMAT_STALL_TIMEOUT_SECS`,
//! `BMAT_CONNECT_TIMEOUT_SECS`, `BMAT_UPLOAD_PARALLELISM`, `BMAT_PART_SIZE_MIB`,
//! `BMAT_DOWNLOAD_PARALLELISM`, `BMAT_RANGE_SIZE_MIB`, `BMAT_ZSTD_LEVEL`,
//! `BMAT_LIST_PAGE`) so that
//! tests and benchmarks can shorten a wait or measure a setting without a rebuild.
//! `BMAT_ZSTD_LEVEL` and `BMAT_API_RETRY_SECS` are documented (README): the right
//! level depends on the link to S3, and how long to wait out a cache service that is
//! down on what a job can afford, which only the user knows.

use std::time::Duration;

use crate::transfer::retry::RetryPolicy;

#[derive(Debug, Clone)]
pub struct Tuning {
    /// Retries of signer API calls.
    pub api_retry: RetryPolicy,
    /// Retries of one part PUT or one ranged GET.
    pub transfer_retry: RetryPolicy,
    /// Time allowed to open a TCP (or Unix) connection.
    pub connect_timeout: Duration,
    /// One API request attempt, start to end.
    pub api_attempt_timeout: Duration,
    /// A transfer that moves no byte for this long is abandoned (and retried).
    pub stall_timeout: Duration,
    /// The part size asked of the signer (it may answer with another).
    pub part_size: u64,
    /// Memory for parts (in flight, queued, being filled): fewer are sent at once
    /// when the signer's parts are larger than asked.
    pub part_memory: u64,
    /// Part PUTs in flight at once, at most.
    pub upload_parallelism: usize,
    /// Part URLs asked for in one call.
    pub part_url_batch: u32,
    /// Ranged GETs in flight at once.
    pub download_parallelism: usize,
    /// Bytes per ranged GET.
    pub range_size: u64,
    /// zstd level and worker threads.
    pub zstd_level: i32,
    pub zstd_workers: u32,
    /// How long `save` waits for the signer to finish the upload after `complete`.
    pub completion_wait: Duration,
    /// Interval of the plain progress line when stderr is not a terminal.
    pub progress_interval: Duration,
    /// Caches asked for per page of `bmat cache list` (the signer's maximum: 1000).
    pub list_page: u32,
    /// `BMAT_CACHE_FORMAT`, when set: how saves store a cache. Unset, Rust saves store
    /// contents caches and generic saves archives.
    pub cache_format: Option<CacheFormat>,
}

/// `archive`: every save one whole archive, as before contents caches (for
/// benchmarks that compare the two); `contents`: generic saves too store contents
/// caches, reusing what the cache of the same key in a scope the job reads holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheFormat {
    Archive,
    Contents,
}

impl Default for Tuning {
    fn default() -> Self {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
        Tuning {
            // Control requests ride out a signer restart or a short outage: up to 30 s
            // in all (BMAT_API_RETRY_SECS), the deadline rather than the count ending it.
            api_retry: RetryPolicy {
                attempts: 40,
                base_delay: Duration::from_millis(250),
                max_delay: Duration::from_secs(4),
                deadline: Duration::from_secs(30),
            },
            transfer_retry: RetryPolicy {
                attempts: 4,
                base_delay: Duration::from_millis(500),
                max_delay: Duration::from_secs(8),
                deadline: Duration::from_secs(600),
            },
            connect_timeout: Duration::from_secs(10),
            api_attempt_timeout: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(30),
            // 8 MiB parts, 4 in flight + 1 queued + 1 being filled: 48 MiB. (With
            // 64 MiB, 6 in flight, a save of random data peaked at 122 MiB of RSS.)
            part_size: 8 << 20,
            part_memory: 48 << 20,
            upload_parallelism: 6,
            part_url_batch: 16,
            // 8 × 4 MiB: at most ~44 MiB of ranges held (in flight, queued, being read).
            download_parallelism: 8,
            range_size: 4 << 20,
            // Level 1, not zstd's default 3: on bmat's own Rust target dir (889 MiB) it
            // compresses 1.3-1.4× faster and decompresses ~1.3× faster, for an archive
            // ~8 % larger (README, "Benchmarks", has the measured trade-off).
            zstd_level: 1,
            zstd_workers: workers.max(1),
            completion_wait: Duration::from_secs(30),
            progress_interval: Duration::from_secs(5),
            list_page: 1000,
            cache_format: None,
        }
    }
}

impl Tuning {
    /// Part PUTs to keep in flight with parts of `part_size` bytes: as many as the
    /// part memory holds besides the queued part and the one being filled.
    pub fn parts_in_flight(&self, part_size: u64) -> usize {
        let fit = self.part_memory / part_size.max(1);
        (fit.saturating_sub(2) as usize).clamp(1, self.upload_parallelism.max(1))
    }

    /// The defaults with the overrides `get` finds in the environment applied.
    /// Unparsable values are ignored: a knob must never turn a cache step into a
    /// failure.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Tuning {
        let mut t = Tuning::default();
        let num = |name: &str| get(name).and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(n) = num("BMAT_RETRY_ATTEMPTS").filter(|n| (1..=20).contains(n)) {
            t.api_retry.attempts = n as u32;
            t.transfer_retry.attempts = n as u32;
        }
        if let Some(n) = num("BMAT_API_RETRY_SECS").filter(|n| (1..=600).contains(n)) {
            t.api_retry.deadline = Duration::from_secs(n);
        }
        if let Some(n) = num("BMAT_STALL_TIMEOUT_SECS").filter(|n| *n > 0) {
            t.stall_timeout = Duration::from_secs(n);
        }
        if let Some(n) = num("BMAT_CONNECT_TIMEOUT_SECS").filter(|n| *n > 0) {
            t.connect_timeout = Duration::from_secs(n);
        }
        if let Some(n) = num("BMAT_UPLOAD_PARALLELISM").filter(|n| (1..=64).contains(n)) {
            t.upload_parallelism = n as usize;
        }
        if let Some(n) = num("BMAT_PART_SIZE_MIB").filter(|n| (5..=5120).contains(n)) {
            t.part_size = n << 20;
            t.part_memory = t.part_memory.max(3 * t.part_size);
        }
        if let Some(n) = num("BMAT_DOWNLOAD_PARALLELISM").filter(|n| (1..=64).contains(n)) {
            t.download_parallelism = n as usize;
        }
        if let Some(n) = num("BMAT_RANGE_SIZE_MIB").filter(|n| (1..=1024).contains(n)) {
            t.range_size = n << 20;
        }
        match get("BMAT_CACHE_FORMAT").as_deref().map(str::trim) {
            Some("archive") => t.cache_format = Some(CacheFormat::Archive),
            Some("contents") => t.cache_format = Some(CacheFormat::Contents),
            _ => {}
        }
        if let Some(n) = num("BMAT_LIST_PAGE").filter(|n| (1..=1000).contains(n)) {
            t.list_page = n as u32;
        }
        if let Some(n) = get("BMAT_ZSTD_LEVEL")
            .and_then(|v| v.trim().parse::<i32>().ok())
            .filter(|n| (1..=19).contains(n))
        {
            t.zstd_level = n;
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_and_nonsense_is_ignored() {
        let t = Tuning::from_lookup(|name| match name {
            "BMAT_RETRY_ATTEMPTS" => Some("2".into()),
            "BMAT_STALL_TIMEOUT_SECS" => Some("abc".into()),
            "BMAT_UPLOAD_PARALLELISM" => Some("0".into()),
            "BMAT_API_RETRY_SECS" => Some("5".into()),
            _ => None,
        });
        assert_eq!(t.api_retry.attempts, 2);
        assert_eq!(t.api_retry.deadline, Duration::from_secs(5));
        assert_eq!(
            Tuning::default().api_retry.deadline,
            Duration::from_secs(30)
        );
        assert_eq!(t.transfer_retry.attempts, 2);
        assert_eq!(t.stall_timeout, Tuning::default().stall_timeout);
        assert_eq!(t.upload_parallelism, 6);
    }

    #[test]
    fn larger_parts_than_asked_mean_fewer_in_flight() {
        let t = Tuning::default();
        assert_eq!(t.parts_in_flight(8 << 20), 4);
        assert_eq!(t.parts_in_flight(16 << 20), 1);
        assert_eq!(t.parts_in_flight(64 << 20), 1);
        assert_eq!(t.parts_in_flight(1 << 30), 1);
        assert_eq!(t.parts_in_flight(5 << 20), 6);
    }
}
