//! The archive format: tar with pax mtimes, compressed with zstd; entries named per
//! tree ([`names`]), written from a list of paths ([`write`]), packed and unpacked
//! with verification ([`stream`]), every entry checked ([`unpack`]), moved into place
//! at the end and put back on failure ([`place`]).

mod copy;
pub mod corruption;
pub mod entries;
pub mod error;
pub mod handoff;
pub mod names;
pub mod place;
pub mod staging;
pub mod stream;
pub mod unpack;
pub mod write;
mod writers;

pub use error::UnpackError;
pub use place::TreeStagings;
pub use staging::Staging;
pub use unpack::{Unpacked, unpack};
pub use write::{ArchiveWriter, WriteReport};

#[cfg(test)]
mod tests;
