//! A content-addressed store: blobs compressed with zstd under their SHA-256, in
//! `blobs/<first two hex digits>/<hash>`, written atomically.

mod blob;
mod maintain;
mod statvfs;
mod tree;

use std::path::{Path, PathBuf};

pub use maintain::{GcStats, Stats};
pub use tree::TreeStats;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no blob {0}")]
    NotFound(String),
    #[error("blob {hash} is corrupt: its content hashes to {actual}")]
    Corrupt { hash: String, actual: String },
    #[error("{hash:?} is not a SHA-256")]
    BadHash { hash: String },
    #[error("storing {needed} more bytes would pass the store's limit of {limit}")]
    Full { needed: u64, limit: u64 },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("zstd: {0}")]
    Zstd(std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The I/O error of `path`, for `map_err`.
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + use<> {
    let path = path.to_owned();
    move |source| Error::Io { path, source }
}

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    level: i32,
    max_bytes: Option<u64>,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>, level: i32) -> Store {
        Store {
            root: root.into(),
            level,
            max_bytes: None,
        }
    }

    /// Refuse writes that would take the store's packed size past `max_bytes`.
    pub fn with_limit(mut self, max_bytes: Option<u64>) -> Store {
        self.max_bytes = max_bytes;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// Where blob `hash` lives; refuses anything but 64 lowercase hex digits, so a
    /// hash read from a manifest cannot name a path outside the store.
    fn blob_path(&self, hash: &str) -> Result<PathBuf> {
        let valid = hash.len() == 64
            && hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid {
            return Err(Error::BadHash {
                hash: hash.to_owned(),
            });
        }
        Ok(self.blobs_dir().join(&hash[..2]).join(hash))
    }

    /// Bytes free in the store's filesystem.
    pub fn free_bytes(&self) -> Result<u64> {
        statvfs::free_bytes(&self.root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn temp_store(name: &str) -> Store {
        let dir = std::env::temp_dir().join(format!("bench-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Store::new(dir, 3)
    }

    #[tokio::test]
    async fn put_get_and_refuse() {
        let store = temp_store("put");
        let hash = store.put(b"hello hello hello").await.expect("put");
        assert_eq!(store.get(&hash).await.expect("get"), b"hello hello hello");
        assert!(store.contains(&hash).await.expect("contains"));
        assert!(store.free_bytes().expect("statvfs") > 0);
        assert!(matches!(
            store.get("../../etc/passwd").await,
            Err(Error::BadHash { .. })
        ));
        let missing = bench_core::digest(b"nothing");
        assert!(matches!(store.get(&missing).await, Err(Error::NotFound(_))));
        let _ = std::fs::remove_dir_all(store.root());
    }
}
