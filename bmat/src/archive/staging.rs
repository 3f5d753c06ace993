//! The staging directory of a restore, and the removal of those whose restore died.
//!
//! A restore unpacks into `.bmat-restore-XXXXXXXXXX/tree/` inside the destination
//! tree. One killed with SIGKILL cannot remove that directory, so each restore holds
//! an flock on its staging directory while it lives (the kernel drops the lock when
//! the process ends, however it ends; a pid file would not do, pids are reused), and
//! every restore first removes the staging directories whose lock it can take.
//! `locked`, beside `tree/`, is written once the lock is held: a directory without it
//! is being created right now (or was left by an older bmat) and is left alone.
//! `cache save` never archives these directories.

use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rand::Rng;

use crate::trees::times::Mtime;

/// Prefix of staging directories; archive entries may not use it.
pub const STAGING_PREFIX: &str = ".bmat-restore-";

/// Written inside a staging directory once its restore holds the lock.
const LOCKED: &str = "locked";

/// Whether a file name is one of a staging directory.
pub fn is_staging_name(name: &std::ffi::OsStr) -> bool {
    name.as_bytes().starts_with(STAGING_PREFIX.as_bytes())
}

/// A staging directory inside the destination tree, locked while this value lives and
/// removed on drop. Unless the restore got as far as placing files, dropping it also
/// puts back the tree root's mtime (which creating and removing the staging
/// directory changed), so that a failed restore leaves no trace at all.
pub struct Staging {
    base: PathBuf,
    tree: PathBuf,
    root: PathBuf,
    root_mtime: Option<Mtime>,
    placed: bool,
    /// The open staging directory, flocked. Dropped after the directory is removed.
    _lock: File,
}

impl Staging {
    /// Removes the staging directories of dead restores in `root`, then makes this
    /// restore's.
    pub fn create(root: &Path) -> io::Result<Staging> {
        let root_mtime = fs::symlink_metadata(root).ok().map(|m| Mtime::of(&m));
        remove_abandoned(root);
        let suffix: String = {
            let mut rng = rand::rng();
            (0..10)
                .map(|_| {
                    char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)])
                })
                .collect()
        };
        let base = root.join(format!("{STAGING_PREFIX}{suffix}"));
        fs::DirBuilder::new().mode(0o700).create(&base)?;
        let lock = match lock_new(&base) {
            Ok(lock) => lock,
            Err(e) => {
                let _ = fs::remove_dir_all(&base);
                return Err(e);
            }
        };
        Ok(Staging {
            tree: base.join("tree"),
            base,
            root: root.to_owned(),
            root_mtime,
            placed: false,
            _lock: lock,
        })
    }

    /// Where the archive is unpacked.
    pub fn path(&self) -> &Path {
        &self.tree
    }

    /// Marks the tree as changed on purpose: its root keeps its new mtime.
    pub fn set_placed(&mut self) {
        self.placed = true;
    }
}

/// Locks the new staging directory `base`, then marks it locked and makes `tree/`.
fn lock_new(base: &Path) -> io::Result<File> {
    let dir = open_dir(base)?;
    // Blocks only while another restore's `remove_abandoned` looks at it: it finds
    // no `locked` yet and lets go.
    dir.lock()?;
    File::create(base.join(LOCKED))?;
    fs::DirBuilder::new()
        .mode(0o700)
        .create(base.join("tree"))?;
    Ok(dir)
}

fn open_dir(path: &Path) -> io::Result<File> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(path)
}

impl Drop for Staging {
    fn drop(&mut self) {
        // Never follows symlinks: removes links, not what they point to.
        let _ = fs::remove_dir_all(&self.base);
        if let (false, Some(mtime)) = (self.placed, self.root_mtime) {
            let _ = mtime.apply(&self.root);
        }
    }
}

/// Removes every staging directory in `root` whose restore is gone: marked locked,
/// and its lock free. Best effort: a cache must not fail over litter.
pub fn remove_abandoned(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        // The entry's own type: a symlink with a staging name is not followed.
        if !is_staging_name(&entry.file_name()) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        let Ok(dir) = open_dir(&path) else { continue };
        // Held by a live restore: leave it.
        if dir.try_lock().is_err() {
            continue;
        }
        if fs::symlink_metadata(path.join(LOCKED)).is_ok() {
            let _ = fs::remove_dir_all(&path);
        }
    }
}
