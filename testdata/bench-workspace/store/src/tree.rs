//! Whole trees: storing the files of a manifest, restoring them.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use bench_core::Manifest;

use crate::{Result, Store, io};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeStats {
    pub files: u64,
    /// Files whose content the store held already.
    pub present: u64,
    pub bytes: u64,
}

impl Store {
    /// Stores every file of `manifest` read from `dir`.
    pub async fn put_tree(&self, dir: &Path, manifest: &Manifest) -> Result<TreeStats> {
        let mut stats = TreeStats::default();
        for (path, entry) in &manifest.entries {
            stats.files += 1;
            stats.bytes += entry.size;
            if self.contains(&entry.sha256).await? {
                stats.present += 1;
                continue;
            }
            let file = dir.join(path);
            let data = tokio::fs::read(&file).await.map_err(io(&file))?;
            // The file may have changed since the scan: store what is there now
            // under its own hash, and let a verify of the manifest tell.
            self.put(&data).await?;
        }
        Ok(stats)
    }

    /// Writes every file of `manifest` under `dir`, with its executable bit.
    pub async fn restore_tree(&self, manifest: &Manifest, dir: &Path) -> Result<TreeStats> {
        let mut stats = TreeStats::default();
        for (path, entry) in &manifest.entries {
            let file = dir.join(path);
            if let Some(parent) = file.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(io(parent))?;
            }
            let data = self.get(&entry.sha256).await?;
            tokio::fs::write(&file, &data).await.map_err(io(&file))?;
            let mode = if entry.executable { 0o755 } else { 0o644 };
            let perms = std::fs::Permissions::from_mode(mode);
            tokio::fs::set_permissions(&file, perms)
                .await
                .map_err(io(&file))?;
            stats.files += 1;
            stats.bytes += data.len() as u64;
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::temp_store;

    #[tokio::test]
    async fn put_and_restore_a_tree() {
        let store = temp_store("tree");
        let src = store.root().with_extension("src");
        std::fs::create_dir_all(src.join("bin")).expect("mkdir");
        std::fs::write(src.join("bin/run"), b"#!/bin/sh\n").expect("write");
        std::fs::write(src.join("data"), b"#!/bin/sh\n").expect("write");
        let mut manifest = bench_core::Manifest::default();
        manifest.add("bin/run", b"#!/bin/sh\n");
        manifest.add("data", b"#!/bin/sh\n");
        let put = store.put_tree(&src, &manifest).await.expect("put");
        assert_eq!((put.files, put.present), (2, 1));
        let dst = store.root().with_extension("dst");
        let restored = store.restore_tree(&manifest, &dst).await.expect("restore");
        assert_eq!(restored.files, 2);
        assert_eq!(
            std::fs::read(dst.join("bin/run")).expect("read"),
            b"#!/bin/sh\n"
        );
        for dir in [store.root(), &src, &dst] {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
