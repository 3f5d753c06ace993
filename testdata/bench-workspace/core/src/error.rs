use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid pattern {pattern:?}: {source}")]
    Pattern {
        pattern: String,
        source: regex::Error,
    },
    #[error("invalid manifest: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid manifest encoding: {0}")]
    Decode(#[from] DecodeError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid SHA-256 {hash:?}")]
    Hash { path: String, hash: String },
}

/// Why bytes are not a manifest in the binary encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a manifest (magic {0:02x?})")]
    Magic([u8; 4]),
    #[error("unsupported version {0}")]
    Version(u8),
    #[error("truncated at byte {0}")]
    Truncated(usize),
    #[error("varint too long at byte {0}")]
    Varint(usize),
    #[error("entry {index}: shared prefix {shared} longer than the previous path")]
    Prefix { index: usize, shared: usize },
    #[error("entry {0}: path is not UTF-8")]
    Utf8(usize),
    #[error("entry {0}: paths are not sorted")]
    Order(usize),
    #[error("{0} trailing bytes")]
    Trailing(usize),
}
