//! Why an unpack stopped: shared by the entry reader, the unpacker and placement.
//!
//! Whose fault it is decides what the signer hears (docs/design.md, "Healing"): a
//! [`UnpackError::Refused`] entry is the archive's, a [`UnpackError::Blocked`] one is
//! this job's tree or environment, and an I/O error is the archive's only when it
//! carries the mark of [`super::corruption`].

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The archive asks for something we will not do.
    #[error("refused archive entry {path}: {reason}")]
    Refused { path: String, reason: String },
    /// This job's tree or environment stands in the way of an entry (a symlink or a
    /// non-empty directory on disk, a tree this job does not have): the archive may
    /// be sound.
    #[error("cannot restore {path}: {reason}")]
    Blocked { path: String, reason: String },
    /// Reading the stream or writing the staging tree failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}
