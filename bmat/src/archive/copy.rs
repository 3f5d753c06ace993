//! Copying file contents in large buffers.

/// Copies all of `src` to `dst` through `buf`, one `read` and one `write_all` per
/// buffer-full (`io::copy` would use 8 KiB, and syscalls are dear in a CI VM).
/// Returns the bytes copied.
pub(super) fn copy_through(
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
