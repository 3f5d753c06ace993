//! A content-addressed store: blobs compressed with zstd under their SHA-256.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bench_core::{Manifest, digest};

pub struct Store {
    root: PathBuf,
    level: i32,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>, level: i32) -> Store {
        Store {
            root: root.into(),
            level,
        }
    }

    fn blob_path(&self, hash: &str) -> PathBuf {
        self.root.join("blobs").join(&hash[..2]).join(hash)
    }

    /// Stores `data`; returns its hash. Writing an existing blob is a no-op.
    pub async fn put(&self, data: &[u8]) -> Result<String> {
        let hash = digest(data);
        let path = self.blob_path(&hash);
        if tokio::fs::try_exists(&path).await? {
            return Ok(hash);
        }
        let packed = zstd::encode_all(data, self.level).context("compressing")?;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        tokio::fs::write(&path, packed)
            .await
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(hash)
    }

    pub async fn get(&self, hash: &str) -> Result<Vec<u8>> {
        let packed = tokio::fs::read(self.blob_path(hash))
            .await
            .with_context(|| format!("blob {hash}"))?;
        Ok(zstd::decode_all(&packed[..])?)
    }

    /// Stores every file of `manifest` read from `dir`.
    pub async fn put_tree(&self, dir: &Path, manifest: &Manifest) -> Result<u64> {
        let mut stored = 0;
        for path in manifest.entries.keys() {
            let data = tokio::fs::read(dir.join(path)).await?;
            self.put(&data).await?;
            stored += 1;
        }
        Ok(stored)
    }

    /// Bytes free in the store's filesystem.
    pub fn free_bytes(&self) -> Result<u64> {
        let path = std::ffi::CString::new(self.root.as_os_str().as_encoded_bytes())?;
        // SAFETY: a zeroed statvfs is valid; statvfs fills it.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: valid NUL-terminated path and pointer.
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(st.f_bavail as u64 * st.f_frsize as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_and_get() {
        let dir = std::env::temp_dir().join(format!("bench-store-{}", std::process::id()));
        let store = Store::new(&dir, 3);
        let hash = store.put(b"hello hello hello").await.expect("put");
        assert_eq!(store.get(&hash).await.expect("get"), b"hello hello hello");
        assert!(store.free_bytes().expect("statvfs") > 0);
        let _ = std::fs::remove_dir_all(dir);
    }
}
