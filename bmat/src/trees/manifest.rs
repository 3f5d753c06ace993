//! A manifest of a tree: every entry's path, type, size, mode, mtime (ns) and content
//! hash (or link target). Two trees are restored faithfully when their manifests are
//! equal. Used by the demo and the tests to check a round trip.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::trees::times::Mtime;

/// Lower-case hex SHA-256 of a file's content, read in a stream.
pub fn file_sha256(path: &Path) -> io::Result<String> {
    let mut hasher = Sha256::new();
    io::copy(&mut fs::File::open(path)?, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File { size: u64, sha256: String },
    Dir,
    Symlink { target: Vec<u8> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub mode: u32,
    /// `None` when not compared (see [`Options`]).
    pub mtime: Option<Mtime>,
}

/// Which attributes to record.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Directory mtimes: off when a tree is written after the manifest is taken.
    pub dir_mtimes: bool,
    /// Symlink mtimes and modes (which many tools do not preserve).
    pub symlink_mtimes: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dir_mtimes: true,
            symlink_mtimes: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    pub entries: BTreeMap<PathBuf, Entry>,
}

impl Manifest {
    /// Everything under `root` (the root itself excluded), skipping top-level names
    /// for which `skip` is true.
    pub fn of(root: &Path, options: Options, skip: impl Fn(&Path) -> bool) -> io::Result<Manifest> {
        let mut entries = BTreeMap::new();
        let walk = walkdir::WalkDir::new(root).follow_links(false).min_depth(1);
        let mut it = walk.into_iter();
        while let Some(item) = it.next() {
            let item = item.map_err(io::Error::other)?;
            let rel = item
                .path()
                .strip_prefix(root)
                .map_err(io::Error::other)?
                .to_owned();
            if item.depth() == 1 && skip(&rel) {
                if item.file_type().is_dir() {
                    it.skip_current_dir();
                }
                continue;
            }
            let meta = fs::symlink_metadata(item.path())?;
            let mut mtime = Some(Mtime::of(&meta));
            let mut mode = meta.mode() & 0o7777;
            let kind = if meta.is_dir() {
                if !options.dir_mtimes {
                    mtime = None;
                }
                Kind::Dir
            } else if meta.file_type().is_symlink() {
                if !options.symlink_mtimes {
                    mtime = None;
                    mode = 0;
                }
                Kind::Symlink {
                    target: fs::read_link(item.path())?.as_os_str().as_bytes().to_vec(),
                }
            } else {
                Kind::File {
                    size: meta.len(),
                    sha256: file_sha256(item.path())?,
                }
            };
            entries.insert(rel, Entry { kind, mode, mtime });
        }
        Ok(Manifest { entries })
    }

    /// The differences with `other`, one line each (empty when equal).
    pub fn diff(&self, other: &Manifest) -> Vec<String> {
        let mut out = Vec::new();
        for (path, entry) in &self.entries {
            match other.entries.get(path) {
                None => out.push(format!("missing: {}", path.display())),
                Some(theirs) if theirs != entry => {
                    out.push(format!("differs: {}: {entry} vs {theirs}", path.display()))
                }
                Some(_) => {}
            }
        }
        for path in other
            .entries
            .keys()
            .filter(|p| !self.entries.contains_key(*p))
        {
            out.push(format!("extra: {}", path.display()));
        }
        out
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::File { size, sha256 } => write!(
                f,
                "file {size} B sha256 {}",
                &sha256[..12.min(sha256.len())]
            )?,
            Kind::Dir => write!(f, "dir")?,
            Kind::Symlink { target } => {
                write!(f, "symlink -> {}", String::from_utf8_lossy(target))?
            }
        }
        write!(f, " mode {:o}", self.mode)?;
        if let Some(m) = self.mtime {
            write!(f, " mtime {}", m.to_pax())?;
        }
        Ok(())
    }
}
