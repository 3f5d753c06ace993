//! What can go wrong in the registry, one variant per failure, the cause kept.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot create the registry directory {}", .dir.display())]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the registry {}", .path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot open the registry {} to read", .path.display())]
    OpenReader {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// Setting the connection up or reading its schema version failed.
    #[error("registry {}", .path.display())]
    Setup {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("registry {}: cannot switch to WAL journal mode (got {mode})", .path.display())]
    NotWal { path: PathBuf, mode: String },
    #[error(
        "registry {}: schema version {version} is newer than this signer knows ({known})",
        .path.display()
    )]
    NewerSchema {
        path: PathBuf,
        version: i64,
        known: i64,
    },
    #[error("registry {}: migration to schema version {version}", .path.display())]
    Migration {
        path: PathBuf,
        version: usize,
        #[source]
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// A JSON column (part list, read scopes) could not be written.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("value {0} does not fit the registry")]
    SizeOutOfRange(u64),
    #[error("finished upload {0} has no size or checksum")]
    IncompleteUpload(String),
    /// The blocking task running a registry call panicked or was cancelled.
    #[error("registry task failed")]
    TaskFailed(#[source] tokio::task::JoinError),
}
