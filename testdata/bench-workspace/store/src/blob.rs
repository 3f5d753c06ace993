//! Writing and reading one blob.

use bench_core::digest;

use crate::{Error, Result, Store, io};

impl Store {
    /// Stores `data`; returns its hash. Writing an existing blob is a no-op.
    pub async fn put(&self, data: &[u8]) -> Result<String> {
        let hash = digest(data);
        if self.contains(&hash).await? {
            return Ok(hash);
        }
        let packed = zstd::encode_all(data, self.level).map_err(Error::Zstd)?;
        self.write_packed(&hash, &packed).await?;
        Ok(hash)
    }

    /// Stores a blob already compressed, as another store holds it, after checking
    /// that it decompresses to content of hash `hash`.
    pub async fn put_packed(&self, hash: &str, packed: &[u8]) -> Result<()> {
        check(hash, &unpack(packed)?)?;
        self.write_packed(hash, packed).await
    }

    pub async fn contains(&self, hash: &str) -> Result<bool> {
        let path = self.blob_path(hash)?;
        tokio::fs::try_exists(&path).await.map_err(io(&path))
    }

    /// The content of blob `hash`, checked against its hash.
    pub async fn get(&self, hash: &str) -> Result<Vec<u8>> {
        let data = unpack(&self.get_packed(hash).await?)?;
        check(hash, &data)?;
        Ok(data)
    }

    /// The blob as stored, compressed and unchecked.
    pub async fn get_packed(&self, hash: &str) -> Result<Vec<u8>> {
        let path = self.blob_path(hash)?;
        match tokio::fs::read(&path).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::NotFound(hash.to_owned()))
            }
            other => other.map_err(io(&path)),
        }
    }

    pub async fn remove(&self, hash: &str) -> Result<u64> {
        let path = self.blob_path(hash)?;
        let size = tokio::fs::metadata(&path).await.map_err(io(&path))?.len();
        tokio::fs::remove_file(&path).await.map_err(io(&path))?;
        Ok(size)
    }

    /// Writes to a temporary file then renames it, so a reader never sees half a
    /// blob and two writers of one blob both succeed.
    async fn write_packed(&self, hash: &str, packed: &[u8]) -> Result<()> {
        if let Some(limit) = self.max_bytes {
            let used = self.stats().await?.packed_bytes;
            if used + packed.len() as u64 > limit {
                return Err(Error::Full {
                    needed: packed.len() as u64,
                    limit,
                });
            }
        }
        let path = self.blob_path(hash)?;
        let tmp_dir = self.root.join("tmp");
        for dir in [path.parent().unwrap_or(&self.root), &tmp_dir] {
            tokio::fs::create_dir_all(dir).await.map_err(io(dir))?;
        }
        let tmp = tmp_dir.join(format!("{hash}.{}", std::process::id()));
        tokio::fs::write(&tmp, packed).await.map_err(io(&tmp))?;
        tokio::fs::rename(&tmp, &path).await.map_err(io(&path))
    }
}

fn unpack(packed: &[u8]) -> Result<Vec<u8>> {
    zstd::decode_all(packed).map_err(Error::Zstd)
}

fn check(hash: &str, data: &[u8]) -> Result<()> {
    let actual = digest(data);
    if actual != hash {
        return Err(Error::Corrupt {
            hash: hash.to_owned(),
            actual,
        });
    }
    Ok(())
}
