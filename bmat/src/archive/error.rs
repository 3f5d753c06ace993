//! Why an unpack stopped: shared by the entry reader, the unpacker and placement.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The archive asks for something we will not do.
    #[error("refused archive entry {path}: {reason}")]
    Refused { path: String, reason: String },
    /// Reading the stream or writing the staging tree failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}
