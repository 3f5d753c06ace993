//! Moves a verified staging tree into place.
//!
//! [`check_targets`] runs first and touches nothing: it refuses an entry whose
//! parent, already on disk, is a symlink (writing there would go wherever the link
//! points), and a file or symlink that would replace a non-empty directory. Only then
//! [`place`] renames entries over what is there: a whole directory in one rename
//! when the destination has none, otherwise merged entry by entry, replacing files,
//! symlinks, empty directories and mismatched types. Renames stay inside one
//! filesystem because the staging directory lives in the destination tree.
//!
//! Crash window: a failure in the middle of [`place`] (disk full, a permission
//! change) leaves the entries moved so far in place; every one of them is complete
//! and verified, none is half-written.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::times::Mtime;
use super::unpack::{UnpackError, Unpacked};
use crate::paths::RelPath;

/// Refuses when any entry would be written below a symlink that exists in the
/// destination tree, or when a file or symlink would replace a non-empty directory
/// there (a restore never deletes what the user has in a directory). Looks, changes
/// nothing.
pub fn check_targets(root: &Path, unpacked: &Unpacked) -> Result<(), UnpackError> {
    let dirs: HashSet<&RelPath> = unpacked.dirs.iter().map(|(p, _, _)| p).collect();
    // Whether each ancestor looked at is a directory on disk. Below one that is not,
    // nothing exists: a restore into a fresh tree costs one `lstat` per directory.
    let mut is_dir: HashMap<&Path, bool> = HashMap::new();
    for rel in &unpacked.paths {
        let mut parent_on_disk = true;
        for ancestor in rel.ancestors() {
            let here = match is_dir.get(ancestor) {
                Some(here) => *here,
                None => {
                    let here = ancestor_is_dir(root, rel, ancestor)?;
                    is_dir.insert(ancestor, here);
                    here
                }
            };
            if !here {
                parent_on_disk = false;
                break;
            }
        }
        if parent_on_disk && !dirs.contains(rel) && is_non_empty_dir(&root.join(rel.as_path()))? {
            return Err(UnpackError::Refused {
                path: rel.to_string(),
                reason: "it would replace a non-empty directory on disk".into(),
            });
        }
    }
    Ok(())
}

/// Whether `ancestor` of `rel` is a directory on disk; a symlink is refused.
fn ancestor_is_dir(root: &Path, rel: &RelPath, ancestor: &Path) -> Result<bool, UnpackError> {
    match fs::symlink_metadata(root.join(ancestor)) {
        Ok(meta) if meta.file_type().is_symlink() => Err(UnpackError::Refused {
            path: rel.to_string(),
            reason: format!(
                "it would be written through the symlink {} on disk",
                ancestor.display()
            ),
        }),
        Ok(meta) => Ok(meta.is_dir()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(UnpackError::Io(e)),
    }
}

fn is_non_empty_dir(path: &Path) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(fs::read_dir(path)?.next().is_some()),
        Ok(_) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Moves everything under `staging` to the same place under `root`, then sets the
/// directories' modes and mtimes (deepest first, since placing a child changes its
/// parent's mtime).
pub fn place(staging: &Path, root: &Path, dirs: &[(RelPath, u32, Mtime)]) -> io::Result<()> {
    merge(staging, root)?;
    let mut dirs: Vec<&(RelPath, u32, Mtime)> = dirs.iter().collect();
    dirs.sort_by_key(|(p, _, _)| std::cmp::Reverse(p.depth()));
    for (rel, mode, mtime) in dirs {
        let dest = root.join(rel.as_path());
        fs::set_permissions(&dest, fs::Permissions::from_mode(*mode))?;
        mtime.apply(&dest)?;
    }
    Ok(())
}

fn merge(from: &Path, to: &Path) -> io::Result<()> {
    for child in fs::read_dir(from)? {
        let child = child?;
        let src = child.path();
        let dest = to.join(child.file_name());
        let src_is_dir = child.file_type()?.is_dir();
        match fs::symlink_metadata(&dest) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::rename(&src, &dest)?,
            Err(e) => return Err(e),
            Ok(meta) if meta.is_dir() && src_is_dir => merge(&src, &dest)?,
            Ok(meta) => {
                if meta.is_dir() {
                    // Empty: `check_targets` refused non-empty ones, and `remove_dir`
                    // fails rather than delete anything put there since.
                    fs::remove_dir(&dest)?;
                } else if src_is_dir {
                    fs::remove_file(&dest)?;
                }
                // A file or symlink over a file or symlink: rename replaces atomically.
                fs::rename(&src, &dest)?;
            }
        }
    }
    Ok(())
}
