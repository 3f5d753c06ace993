//! The archive format: tar with pax mtimes, compressed with zstd; written from a
//! list of paths, unpacked with every entry checked, moved into place at the end.

pub mod place;
pub mod times;
pub mod unpack;
pub mod write;
mod writers;

pub use place::{Staging, check_targets, place};
pub use unpack::{UnpackError, Unpacked, unpack};
pub use write::{ArchiveWriter, WriteReport};

#[cfg(test)]
mod tests;
