//! Copying a source tree (testdata, a fixture workspace) to a scratch directory.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use anyhow::Result;

/// Copies `from` into `to` (created), symlinks as symlinks, leaving out any `target`
/// directory: a copy is a fresh checkout. Returns (files and links, bytes) copied.
pub fn copy_tree(from: &Path, to: &Path) -> Result<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if entry.file_name() != "target" {
                let (f, b) = copy_tree(&src, &dst)?;
                files += f;
                bytes += b;
            }
        } else if kind.is_symlink() {
            symlink(fs::read_link(&src)?, &dst)?;
            files += 1;
        } else if kind.is_file() {
            bytes += fs::copy(&src, &dst)?;
            files += 1;
        }
    }
    Ok((files, bytes))
}
