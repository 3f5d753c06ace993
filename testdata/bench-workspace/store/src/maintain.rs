//! The store as a whole: listing, sizes and garbage collection.

use std::collections::BTreeSet;

use crate::{Result, Store, io};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub blobs: u64,
    pub packed_bytes: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcStats {
    pub kept: u64,
    pub removed: u64,
    pub freed_bytes: u64,
}

impl Store {
    /// Every blob's hash, sorted.
    pub async fn list(&self) -> Result<Vec<String>> {
        Ok(self.walk().await?.into_iter().map(|(h, _)| h).collect())
    }

    pub async fn stats(&self) -> Result<Stats> {
        let blobs = self.walk().await?;
        Ok(Stats {
            blobs: blobs.len() as u64,
            packed_bytes: blobs.iter().map(|(_, size)| size).sum(),
        })
    }

    /// Removes every blob not in `live`.
    pub async fn gc(&self, live: &BTreeSet<String>) -> Result<GcStats> {
        let mut stats = GcStats::default();
        for (hash, _) in self.walk().await? {
            if live.contains(&hash) {
                stats.kept += 1;
            } else {
                stats.freed_bytes += self.remove(&hash).await?;
                stats.removed += 1;
            }
        }
        Ok(stats)
    }

    /// (hash, packed size) of every blob. Names that are not blobs (a temporary
    /// file left by a crash, a stray file) are skipped.
    async fn walk(&self) -> Result<Vec<(String, u64)>> {
        let root = self.blobs_dir();
        let mut out = Vec::new();
        let mut shards = match tokio::fs::read_dir(&root).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            other => other.map_err(io(&root))?,
        };
        while let Some(shard) = shards.next_entry().await.map_err(io(&root))? {
            let dir = shard.path();
            if !shard.file_type().await.map_err(io(&dir))?.is_dir() {
                continue;
            }
            let mut blobs = tokio::fs::read_dir(&dir).await.map_err(io(&dir))?;
            while let Some(blob) = blobs.next_entry().await.map_err(io(&dir))? {
                let Some(hash) = blob.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if self.blob_path(&hash).is_ok_and(|p| p == blob.path()) {
                    let size = blob.metadata().await.map_err(io(&blob.path()))?.len();
                    out.push((hash, size));
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::temp_store;

    #[tokio::test]
    async fn gc_keeps_live_blobs() {
        let store = temp_store("gc");
        let keep = store.put(b"keep").await.expect("put");
        store.put(b"drop").await.expect("put");
        assert_eq!(store.stats().await.expect("stats").blobs, 2);
        let live = [keep.clone()].into_iter().collect();
        let gc = store.gc(&live).await.expect("gc");
        assert_eq!((gc.kept, gc.removed), (1, 1));
        assert_eq!(store.list().await.expect("list"), [keep]);
        let _ = std::fs::remove_dir_all(store.root());
    }
}
