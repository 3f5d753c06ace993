//! The archive format: tar with pax mtimes, compressed with zstd; written from a
//! list of paths, unpacked with every entry checked, moved into place at the end.

pub mod corruption;
pub mod entries;
pub mod error;
pub mod handoff;
pub mod names;
pub mod place;
pub mod staging;
pub mod stream;
pub mod times;
pub mod unpack;
pub mod write;
mod writers;

pub use error::UnpackError;
pub use place::TreeStagings;
pub use staging::Staging;
pub use unpack::{Unpacked, unpack};
pub use write::{ArchiveWriter, WriteReport};

/// Copies all of `src` to `dst` through `buf`, one `read` and one `write_all` per
/// buffer-full (`io::copy` would use 8 KiB, and syscalls are dear in a CI VM).
/// Returns the bytes copied.
fn copy_through(
    buf: &mut [u8],
    src: &mut impl std::io::Read,
    dst: &mut (impl std::io::Write + ?Sized),
) -> std::io::Result<u64> {
    let mut copied = 0;
    loop {
        let n = match src.read(buf) {
            Ok(0) => return Ok(copied),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        dst.write_all(&buf[..n])?;
        copied += n as u64;
    }
}

#[cfg(test)]
mod tests;
