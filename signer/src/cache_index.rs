//! Each cache's self-description in S3, `{prefix}/index/{ULID}` (docs/design.md,
//! "Registry and S3 layout": the registry is an index): what its row holds, so that
//! `signer registry rebuild` can recover the registry from the bucket alone. The
//! completion worker writes it before CompleteMultipartUpload, so every completed
//! cache has one; a cache's deletion deletes it after the row (best effort: the
//! reaper's sweep takes what is left).

use bmat_wire::api::{Extent, FORMAT_ARCHIVE, FORMAT_CONTENTS};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::names::{self, InvalidName};
use crate::registry::{CacheRow, ObjectRef, UploadRow};
use crate::s3::S3Error;
use crate::state::AppState;

/// The layout version this signer writes and reads.
const VERSION: u32 = 1;

/// What `{prefix}/index/{ULID}` holds (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheIndex {
    pub v: u32,
    /// The cache's ULID: its object's name and this one's.
    pub id: String,
    pub owner: String,
    pub scope: String,
    pub key: String,
    pub format: u8,
    /// The object's size and SHA-256.
    pub size: u64,
    pub sha256: String,
    pub unpacked_size: Option<u64>,
    pub entries: Option<u64>,
    pub logical_size: Option<u64>,
    /// The other objects a cache of contents reads, with their sizes.
    #[serde(default)]
    pub refs: Vec<ObjectRef>,
    /// Unix ms: when its completion was attempted (its row's own time is a moment
    /// later).
    pub created_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("not a cache's index: {0}")]
    Json(#[from] serde_json::Error),
    #[error("layout version {0}, this signer reads {VERSION}")]
    Version(u32),
    #[error("{0}")]
    Name(#[from] InvalidName),
    #[error("names cache {0}, not the one of its name")]
    OtherId(String),
    #[error("format {0} is none this signer stores")]
    Format(u8),
    #[error("ref {0} is not a canonical ULID")]
    Ref(String),
}

impl CacheIndex {
    /// The index of the cache a `finished` upload becomes; `None` when it has no size
    /// or checksum yet.
    pub fn of_upload(up: &UploadRow, refs: Vec<ObjectRef>, created_at: i64) -> Option<Self> {
        Some(CacheIndex {
            v: VERSION,
            id: up.ulid.clone(),
            owner: up.owner.clone(),
            scope: up.scope.clone(),
            key: up.key.clone(),
            format: up.format,
            size: up.size?,
            sha256: up.sha256.clone()?,
            unpacked_size: up.extent.unpacked_size,
            entries: up.extent.entries,
            logical_size: up.logical_size,
            refs,
            created_at,
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // A struct of strings and numbers always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The object `{prefix}/index/{id}` read back: its layout, names and refs checked
    /// (the bucket is input like any other).
    pub fn parse(id: &str, bytes: &[u8]) -> Result<Self, IndexError> {
        let index: CacheIndex = serde_json::from_slice(bytes)?;
        if index.v != VERSION {
            return Err(IndexError::Version(index.v));
        }
        if index.id != id {
            return Err(IndexError::OtherId(index.id));
        }
        names::owner(&index.owner)?;
        names::scope("scope", &index.scope)?;
        names::key(&index.key)?;
        if ![FORMAT_ARCHIVE, FORMAT_CONTENTS].contains(&index.format) {
            return Err(IndexError::Format(index.format));
        }
        if let Some(r) = index
            .refs
            .iter()
            .find(|r| !names::is_ulid(&r.id) || r.id == id)
        {
            return Err(IndexError::Ref(r.id.clone()));
        }
        Ok(index)
    }

    /// The cache's row (last used: when it was created) and its references.
    pub fn into_row(self) -> (CacheRow, Vec<ObjectRef>) {
        let row = CacheRow {
            owner: self.owner,
            scope: self.scope,
            key: self.key,
            ulid: self.id,
            size: self.size,
            sha256: self.sha256,
            extent: Extent {
                unpacked_size: self.unpacked_size,
                entries: self.entries,
            },
            created_at: self.created_at,
            last_used_at: self.created_at,
            restored_at: None,
            format: self.format,
            logical_size: self.logical_size,
        };
        (row, self.refs)
    }
}

/// Writes the index of a cache (an idempotent PUT).
pub async fn put(st: &AppState, index: &CacheIndex) -> Result<(), S3Error> {
    let name = st.cfg().s3.index_name(&index.id);
    st.s3.put_object(&name, index.to_bytes()).await
}

/// Deletes the index of a cache whose row is gone; a failure is logged, and the
/// reaper's sweep deletes it later.
pub async fn forget(st: &AppState, ulid: &str) {
    let name = st.cfg().s3.index_name(ulid);
    if let Err(e) = st.s3.delete_object(&name).await {
        warn!(cache = %ulid, "cannot delete the cache's index object (the orphan sweep will): {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "01BX5ZZKBKACTAV9WEVGEMMVRZ";
    const OTHER: &str = "01BX5ZZKBKACTAV9WEVGEMMVS0";

    fn index() -> CacheIndex {
        CacheIndex {
            v: VERSION,
            id: ID.into(),
            owner: "acme/widgets".into(),
            scope: "refs/pull/1/merge".into(),
            key: "deps-linux".into(),
            format: FORMAT_CONTENTS,
            size: 10,
            sha256: "ab".repeat(32),
            unpacked_size: Some(30),
            entries: Some(3),
            logical_size: Some(20),
            refs: vec![ObjectRef {
                id: OTHER.into(),
                size: 7,
            }],
            created_at: 1_700_000_000_000,
        }
    }

    #[test]
    fn an_index_reads_back_as_the_row_it_was_written_from() {
        let bytes = index().to_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains(r#""key":"deps-linux""#), "{text}");
        let (row, refs) = CacheIndex::parse(ID, &bytes).unwrap().into_row();
        assert_eq!(
            (row.ulid.as_str(), row.scope.as_str(), row.format, row.size),
            (ID, "refs/pull/1/merge", FORMAT_CONTENTS, 10)
        );
        assert_eq!(row.extent.unpacked_size, Some(30));
        assert_eq!(
            (row.created_at, row.last_used_at),
            (1_700_000_000_000, 1_700_000_000_000)
        );
        assert_eq!(refs, index().refs);
    }

    #[test]
    fn what_no_signer_wrote_is_refused() {
        let refused = |i: CacheIndex| CacheIndex::parse(ID, &i.to_bytes()).unwrap_err();
        assert!(matches!(
            refused(CacheIndex { v: 2, ..index() }),
            IndexError::Version(2)
        ));
        assert!(matches!(
            refused(CacheIndex {
                id: OTHER.into(),
                ..index()
            }),
            IndexError::OtherId(_)
        ));
        assert!(matches!(
            refused(CacheIndex {
                key: "../x y".into(),
                ..index()
            }),
            IndexError::Name(_)
        ));
        assert!(matches!(
            refused(CacheIndex {
                format: 9,
                ..index()
            }),
            IndexError::Format(9)
        ));
        let own = CacheIndex {
            refs: vec![ObjectRef {
                id: ID.into(),
                size: 1,
            }],
            ..index()
        };
        assert!(matches!(refused(own), IndexError::Ref(_)));
        assert!(matches!(
            CacheIndex::parse(ID, b"not json"),
            Err(IndexError::Json(_))
        ));
    }
}
