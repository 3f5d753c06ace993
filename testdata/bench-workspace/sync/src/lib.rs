//! Copies blobs from one store to another and verifies stores, a bounded number of
//! blobs at once, retrying transient failures.

mod copy;
mod pool;
mod verify;

use std::time::Duration;

pub use copy::{Event, SyncReport, copy_blobs};
pub use verify::{Verification, verify_blobs};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] bench_store::Error),
    #[error("a copy task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Blobs in flight at once; at least 1.
    pub concurrency: usize,
    /// Read every copied blob back from the destination and check its hash.
    pub verify: bool,
    /// Further attempts after a transient failure (I/O, not a missing blob).
    pub retries: u32,
    /// Wait before the first retry; doubled for each next one.
    pub retry_delay: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            concurrency: 4,
            verify: true,
            retries: 2,
            retry_delay: Duration::from_millis(50),
        }
    }
}

/// The distinct blobs the files of `manifest` need, each once.
pub fn blobs_of(manifest: &bench_core::Manifest) -> Vec<String> {
    manifest.by_hash().into_keys().map(str::to_owned).collect()
}

/// Whether trying again may help: I/O can fail for a moment; a blob that is
/// missing, corrupt or misnamed stays so.
fn transient(error: &bench_store::Error) -> bool {
    matches!(
        error,
        bench_store::Error::Io { .. } | bench_store::Error::Zstd(_)
    )
}
