//! An index of the manifests kept in a store: each manifest is a blob (in the
//! binary encoding), named in `index.json`; lookup by name or by hash prefix, with a
//! small LRU cache of decoded manifests.

mod lru;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bench_core::Manifest;
use bench_store::Store;
use serde::{Deserialize, Serialize};

pub use lru::{CacheStats, Lru};

/// A hash prefix shorter than this is more likely a typo than a lookup.
pub const MIN_PREFIX: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] bench_store::Error),
    #[error(transparent)]
    Manifest(#[from] bench_core::Error),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("no manifest named {0:?} or with a hash starting so")]
    Unknown(String),
    #[error("{prefix:?} is shorter than {MIN_PREFIX} hex digits")]
    ShortPrefix { prefix: String },
    #[error("{prefix:?} starts the hashes of {} manifests: {}", matches.len(), matches.join(", "))]
    Ambiguous {
        prefix: String,
        matches: Vec<String>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One named manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub hash: String,
    pub files: u64,
    pub bytes: u64,
    /// Seconds since the epoch.
    pub recorded: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct IndexFile {
    manifests: BTreeMap<String, Record>,
}

pub struct Index {
    store: Store,
    path: PathBuf,
    file: IndexFile,
    cache: Lru<String, Arc<Manifest>>,
}

impl Index {
    /// The index of `store`, empty when it has none yet.
    pub fn open(store: Store, cache_size: usize) -> Result<Index> {
        let path = store.root().join("index.json");
        let file = match read_optional(&path) {
            Ok(Some(text)) => serde_json::from_str(&text).map_err(|source| Error::Json {
                path: path.clone(),
                source,
            })?,
            Ok(None) => IndexFile::default(),
            Err(source) => return Err(Error::Io { path, source }),
        };
        Ok(Index {
            store,
            path,
            file,
            cache: Lru::new(cache_size),
        })
    }

    pub fn records(&self) -> impl Iterator<Item = (&str, &Record)> {
        self.file.manifests.iter().map(|(n, r)| (n.as_str(), r))
    }

    /// Stores `manifest` and names it `name`, replacing what had that name.
    pub async fn record(&mut self, name: &str, manifest: &Manifest) -> Result<String> {
        let hash = self.store.put(&bench_core::encode(manifest)?).await?;
        let recorded = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let record = Record {
            hash: hash.clone(),
            files: manifest.len() as u64,
            bytes: manifest.total_size(),
            recorded,
        };
        self.file.manifests.insert(name.to_owned(), record);
        self.cache.insert(hash.clone(), Arc::new(manifest.clone()));
        self.save()?;
        Ok(hash)
    }

    /// Forgets name `name`; the blobs stay until a gc.
    pub fn remove(&mut self, name: &str) -> Result<Option<Record>> {
        let removed = self.file.manifests.remove(name);
        if removed.is_some() {
            self.save()?;
        }
        Ok(removed)
    }

    /// The hash of the manifest named `key`, or whose hash starts with `key`.
    pub fn resolve(&self, key: &str) -> Result<String> {
        if let Some(record) = self.file.manifests.get(key) {
            return Ok(record.hash.clone());
        }
        if !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Unknown(key.to_owned()));
        }
        if key.len() < MIN_PREFIX {
            return Err(Error::ShortPrefix {
                prefix: key.to_owned(),
            });
        }
        let prefix = key.to_ascii_lowercase();
        // Several names may hold one manifest: that is one match, not ambiguity.
        let matches: BTreeSet<&str> = self
            .file
            .manifests
            .values()
            .map(|r| r.hash.as_str())
            .filter(|h| h.starts_with(&prefix))
            .collect();
        if matches.len() > 1 {
            return Err(Error::Ambiguous {
                prefix,
                matches: matches.iter().map(|h| h[..12].to_owned()).collect(),
            });
        }
        matches
            .first()
            .map(|h| (*h).to_owned())
            .ok_or_else(|| Error::Unknown(key.to_owned()))
    }

    /// The manifest `key` resolves to, from the cache or the store.
    pub async fn load(&mut self, key: &str) -> Result<Arc<Manifest>> {
        let hash = self.resolve(key)?;
        if let Some(manifest) = self.cache.get(&hash) {
            return Ok(Arc::clone(manifest));
        }
        let bytes = self.store.get(&hash).await?;
        let manifest = Arc::new(bench_core::decode(&bytes).map_err(bench_core::Error::from)?);
        self.cache.insert(hash, Arc::clone(&manifest));
        Ok(manifest)
    }

    /// Every blob a named manifest needs: the manifests and their files. What a gc
    /// of the store must keep.
    pub async fn live_blobs(&mut self) -> Result<BTreeSet<String>> {
        let hashes: Vec<String> = self.records().map(|(_, r)| r.hash.clone()).collect();
        let mut live = BTreeSet::new();
        for hash in hashes {
            let manifest = self.load(&hash).await?;
            live.extend(manifest.entries.values().map(|e| e.sha256.clone()));
            live.insert(hash);
        }
        Ok(live)
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Writes the index next to itself, then renames it over the old one.
    fn save(&self) -> Result<()> {
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        let text = serde_json::to_string_pretty(&self.file).map_err(|source| Error::Json {
            path: self.path.clone(),
            source,
        })?;
        std::fs::create_dir_all(self.store.root()).map_err(io)?;
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)
    }
}

/// The file's text, or `None` when there is no file.
fn read_optional(path: &std::path::Path) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn record_resolve_and_load() {
        let root = std::env::temp_dir().join(format!("bench-index-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let store = Store::new(&root, 3);
        let mut index = Index::open(store.clone(), 4).expect("open");
        let mut manifest = Manifest::default();
        manifest.add("a.txt", b"a");
        let hash = index.record("v1", &manifest).await.expect("record");
        index.record("also-v1", &manifest).await.expect("record");
        assert_eq!(index.resolve("v1").expect("name"), hash);
        assert_eq!(index.resolve(&hash[..6]).expect("prefix"), hash);
        assert!(matches!(
            index.resolve("ab"),
            Err(Error::ShortPrefix { .. })
        ));
        assert!(matches!(index.resolve("v2"), Err(Error::Unknown(_))));

        let mut reopened = Index::open(store, 4).expect("reopen");
        assert_eq!(*reopened.load("v1").await.expect("load"), manifest);
        reopened.load("also-v1").await.expect("load");
        let stats = reopened.cache_stats();
        assert_eq!((stats.hits, stats.misses), (1, 1));
        let live = reopened.live_blobs().await.expect("live");
        assert_eq!(live.len(), 2);
        let _ = std::fs::remove_dir_all(root);
    }
}
