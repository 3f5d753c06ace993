//! The one marker of a damaged archive. It is attached where damage is detected (zstd
//! cannot decode, tar cannot parse, the archive runs past what its saver recorded) and
//! nowhere else, so that a failure of the machine (a full disk, a writer thread that
//! died) is never taken for a broken cache, which the signer would drop.

use std::io;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Corruption(pub String);

/// An I/O error carrying a [`Corruption`].
pub fn corruption(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, Corruption(message.into()))
}

/// `e`, marked as damage found in the archive (unless it already is).
pub fn as_corruption(e: io::Error) -> io::Error {
    if is_corruption(&e) {
        e
    } else {
        corruption(e.to_string())
    }
}

/// Whether `e` carries the marker. tar and zstd pass only `io::Error`s on, so the
/// marker rides in the error's payload and is recognised by its type.
pub fn is_corruption(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Corruption>())
}
