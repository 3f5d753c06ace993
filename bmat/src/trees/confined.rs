//! Files of a tree read and rewritten after a restore (docs/design.md, "Rust"): only
//! regular files inside the tree, reached through real directories, opened without
//! following a link. A restored archive may hold symlinks anywhere; no rewrite may go
//! through one to a file outside.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path};

use super::times::Mtime;

/// Whether `path` is a regular file inside `root`, every directory between them a
/// directory (not a symlink to one). Checked with `lstat`, so nothing is followed.
pub fn is_confined_file(root: &Path, path: &Path) -> io::Result<bool> {
    let Ok(rel) = path.strip_prefix(root) else {
        return Ok(false);
    };
    let mut at = root.to_path_buf();
    let mut components = rel.components().peekable();
    while let Some(component) = components.next() {
        let Component::Normal(name) = component else {
            return Ok(false);
        };
        at.push(name);
        let meta = match fs::symlink_metadata(&at) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let last = components.peek().is_none();
        if (last && !meta.file_type().is_file()) || (!last && !meta.file_type().is_dir()) {
            return Ok(false);
        }
    }
    Ok(at != root)
}

/// `path` opened with `O_NOFOLLOW` (a symlink put there since the check fails to
/// open rather than lead elsewhere), when it is a confined file of `root`.
fn open(root: &Path, path: &Path, options: &mut OpenOptions) -> io::Result<Option<File>> {
    if !is_confined_file(root, path)? {
        return Ok(None);
    }
    options
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map(Some)
}

/// The text of `path`, a regular file inside `root`; `None` when it is not one.
pub fn read_to_string(root: &Path, path: &Path) -> io::Result<Option<String>> {
    let Some(mut file) = open(root, path, OpenOptions::new().read(true))? else {
        return Ok(None);
    };
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(Some(text))
}

/// Replaces the contents of `path`, a regular file inside `root`, keeping its mtime
/// (Cargo compares them). Returns false, having written nothing, when it is not one.
pub fn rewrite_keeping_mtime(root: &Path, path: &Path, contents: &[u8]) -> io::Result<bool> {
    let Some(mut file) = open(root, path, OpenOptions::new().write(true))? else {
        return Ok(false);
    };
    let mtime = Mtime::of(&file.metadata()?);
    file.set_len(0)?;
    file.write_all(contents)?;
    mtime.apply_to_file(&file)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn only_regular_files_reached_through_real_directories_are_confined() -> io::Result<()> {
        let (root, outside) = (tempfile::tempdir()?, tempfile::tempdir()?);
        let (root, outside) = (root.path(), outside.path());
        fs::create_dir_all(root.join("d"))?;
        fs::write(root.join("d/f"), "in")?;
        fs::write(outside.join("f"), "out")?;
        symlink(outside.join("f"), root.join("d/link"))?;
        symlink(outside, root.join("dirlink"))?;
        assert!(is_confined_file(root, &root.join("d/f"))?);
        for path in [
            root.join("d/link"),
            root.join("dirlink/f"),
            root.join("d"),
            root.join("d/none"),
            root.join("d/../d/f"),
            outside.join("f"),
            root.to_path_buf(),
        ] {
            assert!(!is_confined_file(root, &path)?, "{}", path.display());
        }
        assert!(!rewrite_keeping_mtime(root, &root.join("d/link"), b"x")?);
        assert_eq!(read_to_string(root, &root.join("dirlink/f"))?, None);
        assert_eq!(fs::read_to_string(outside.join("f"))?, "out");
        assert!(rewrite_keeping_mtime(root, &root.join("d/f"), b"new")?);
        assert_eq!(
            read_to_string(root, &root.join("d/f"))?.as_deref(),
            Some("new")
        );
        Ok(())
    }
}
