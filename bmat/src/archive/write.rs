//! Writes a tar stream of chosen paths under a root directory.
//!
//! Format: POSIX ustar headers plus pax extended records (as `GNU tar --posix`
//! writes): `mtime` with nanoseconds, and `path` / `linkpath` when a name does not fit
//! the ustar fields. Files, directories (recursively) and symlinks (stored as links,
//! never followed) are archived with their mode and mtime; owners are not recorded.
//! A file reached again under another name (a hard link) is stored once, the other
//! names as hard-link entries pointing at the first.
//!
//! The caller gives the trees ([`Roots`]) and entries in them ([`TreePath`]), so the
//! same writer serves `cache save` (the working directory, and `~/…` under `$HOME`)
//! and callers whose files live elsewhere (a target directory outside the tree,
//! Cargo's home). Entries are named as [`super::names`] says.
//!
//! A restore's staging directory (`.bmat-restore-*`, anywhere) is never archived:
//! listed or met in a walk, it is skipped without a word; nor is a tree's top-level
//! `.bmat-root` (see [`super::names`]).
//!
//! A path that vanished before it could be read is noted in the report, not an
//! error; so is a path reached through a symlinked directory (that would follow a
//! link, possibly out of the tree) and a file swapped for another kind of entry
//! before it was opened. A file whose size or mtime changes while it is read fails
//! the archive ([`ChangedWhileRead`]): what was read is neither the old file nor the
//! new one, and a cache must not restore a torn file with a plausible mtime.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use super::names::{TreeError, is_reserved_top, name_of, starts_reserved};
use super::staging::is_staging_name;
use crate::trees::paths::RelPath;
use crate::trees::roots::{Roots, Tree, TreePath};
use crate::trees::times::Mtime;

/// What happened besides the entries written.
#[derive(Debug, Default, Clone)]
pub struct WriteReport {
    pub entries: u64,
    /// Listed (or found in a walk) but gone when read.
    pub vanished: Vec<String>,
    /// Reached through a symlinked directory: skipped.
    pub through_symlink: Vec<String>,
    /// Swapped for another kind of entry (a symlink, a directory) before it was
    /// opened: skipped.
    pub changed: Vec<String>,
    /// Sockets, FIFOs, devices: skipped.
    pub unsupported: Vec<String>,
}

impl WriteReport {
    /// One `warning:`-worthy line per kind of trouble, naming a few paths.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut add = |list: &Vec<String>, what: &str| {
            if list.is_empty() {
                return;
            }
            let shown: Vec<&str> = list.iter().take(5).map(String::as_str).collect();
            let more = if list.len() > 5 {
                format!(" and {} more", list.len() - 5)
            } else {
                String::new()
            };
            out.push(format!("{} {what}: {}{more}", list.len(), shown.join(", ")));
        };
        add(
            &self.vanished,
            "path(s) vanished before they could be archived",
        );
        add(
            &self.through_symlink,
            "path(s) skipped because they go through a symlinked directory",
        );
        add(
            &self.changed,
            "file(s) replaced by another kind of entry while being archived, skipped",
        );
        add(
            &self.unsupported,
            "special file(s) skipped (not a file, directory or symlink)",
        );
        out
    }
}

/// A file changed while it was being read: the archive would hold a torn copy.
#[derive(Debug, thiserror::Error)]
#[error("{path} changed while it was being archived ({what})")]
pub struct ChangedWhileRead {
    pub path: String,
    pub what: &'static str,
}

fn changed(rel: &RelPath, what: &'static str) -> io::Error {
    io::Error::other(ChangedWhileRead {
        path: rel.to_string(),
        what,
    })
}

/// A test-only injected fault: called with a file's path after the file is opened
/// and stat'ed and before it is read, to change it at exactly that point.
#[cfg(test)]
pub type BeforeRead = Box<dyn FnMut(&Path)>;

pub struct ArchiveWriter<W: Write> {
    builder: tar::Builder<W>,
    roots: Roots,
    seen: HashSet<RelPath>,
    /// What each ancestor of a listed path turned out to be.
    dir_cache: HashMap<PathBuf, AncestorKind>,
    report: WriteReport,
    /// Files with more than one link, by (device, inode): the path they were first
    /// archived under. Later names become hard-link entries (Cargo links every
    /// build script and final binary twice).
    linked: HashMap<(u64, u64), RelPath>,
    /// File contents pass through here: one read per 256 KiB instead of the 8 KiB
    /// that `tar::Builder::append` would use (syscalls are dear in a CI VM).
    copy_buf: Vec<u8>,
    #[cfg(test)]
    pub(crate) before_read: Option<BeforeRead>,
}

const COPY_BUF: usize = 256 << 10;

impl<W: Write> ArchiveWriter<W> {
    /// A writer of paths under one tree.
    pub fn new(out: W, root: &Path) -> Self {
        Self::with_roots(out, Roots::main_only(root))
    }

    /// A writer of entries of `roots`.
    pub fn with_roots(out: W, roots: Roots) -> Self {
        ArchiveWriter {
            builder: tar::Builder::new(out),
            roots,
            seen: HashSet::new(),
            dir_cache: HashMap::new(),
            report: WriteReport::default(),
            linked: HashMap::new(),
            copy_buf: vec![0; COPY_BUF],
            #[cfg(test)]
            before_read: None,
        }
    }

    /// Adds a path (a path alone is one of the main tree): a file, a symlink, or a
    /// directory with everything under it. The empty path adds the tree's contents.
    pub fn add(&mut self, entry: impl Into<TreePath>) -> io::Result<()> {
        let TreePath { tree, path: inner } = entry.into();
        let rel = &name_of(&TreePath {
            tree,
            path: inner.clone(),
        });
        if rel
            .as_path()
            .components()
            .any(|c| is_staging_name(c.as_os_str()))
        {
            return Ok(());
        }
        let dir = self.roots.dir(tree).ok_or_else(|| {
            let unset = match tree {
                Tree::Extra(e) => e.shown(),
                Tree::Main => "the tree",
            };
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{rel}: {}", TreeError::Unset(unset)),
            )
        })?;
        // The walk skips the same name below a listed tree root.
        if starts_reserved(&inner) {
            return Ok(());
        }
        let (dir, full) = (dir.to_owned(), dir.join(inner.as_path()));
        if let Some(link) = self.symlinked_ancestor(&dir, &inner) {
            self.report
                .through_symlink
                .push(format!("{rel} (via {})", link.display()));
            return Ok(());
        }
        let meta = match fs::symlink_metadata(&full) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.report.vanished.push(rel.to_string());
                return Ok(());
            }
            Err(e) => return Err(with_path(e, rel)),
        };
        if meta.is_dir() {
            self.add_tree(rel, &full, inner.is_root())
        } else {
            self.add_one(rel, &full, &meta)
        }
    }

    /// `at_tree_root`: `full` is a tree's root, whose `.bmat-root` is skipped.
    fn add_tree(&mut self, rel: &RelPath, full: &Path, at_tree_root: bool) -> io::Result<()> {
        let walk = walkdir::WalkDir::new(full)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| {
                e.depth() == 0
                    || !(is_staging_name(e.file_name())
                        || (e.depth() == 1 && at_tree_root && is_reserved_top(e.file_name())))
            });
        for item in walk {
            let item = match item {
                Ok(item) => item,
                Err(e) => {
                    let gone = e
                        .io_error()
                        .is_some_and(|io| io.kind() == io::ErrorKind::NotFound);
                    let at = e
                        .path()
                        .and_then(|p| p.strip_prefix(full).ok())
                        .map(|p| rel.as_path().join(p));
                    if gone {
                        self.report
                            .vanished
                            .push(at.unwrap_or_default().display().to_string());
                        continue;
                    }
                    let msg = e.to_string();
                    return Err(e.into_io_error().unwrap_or_else(|| io::Error::other(msg)));
                }
            };
            let Ok(sub) = item.path().strip_prefix(full) else {
                continue;
            };
            if at_tree_root && sub.as_os_str().is_empty() {
                continue; // a tree's root itself (`.`, `.bmat-root/home`): only its contents
            }
            let child = RelPath::from_normal(rel.as_path().join(sub));
            match item.metadata() {
                Ok(meta) => self.add_one(&child, item.path(), &meta)?,
                Err(e)
                    if e.io_error()
                        .is_some_and(|io| io.kind() == io::ErrorKind::NotFound) =>
                {
                    self.report.vanished.push(child.to_string());
                }
                Err(e) => {
                    let msg = e.to_string();
                    return Err(e.into_io_error().unwrap_or_else(|| io::Error::other(msg)));
                }
            }
        }
        Ok(())
    }

    /// Adds one entry (no recursion), given its lstat.
    fn add_one(&mut self, rel: &RelPath, full: &Path, meta: &Metadata) -> io::Result<()> {
        if !self.seen.insert(rel.clone()) {
            return Ok(());
        }
        let kind = meta.file_type();
        if kind.is_dir() {
            self.append(rel, EntryType::Directory, meta, None, 0, io::empty())?;
        } else if kind.is_symlink() {
            let target = match fs::read_link(full) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.report.vanished.push(rel.to_string());
                    return Ok(());
                }
                Err(e) => return Err(with_path(e, rel)),
            };
            self.append(rel, EntryType::Symlink, meta, Some(&target), 0, io::empty())?;
        } else if kind.is_file() {
            match self.linked.get(&(meta.dev(), meta.ino())) {
                Some(first) if meta.nlink() > 1 => {
                    let target = first.as_path().to_owned();
                    self.append(rel, EntryType::Link, meta, Some(&target), 0, io::empty())?;
                }
                _ => self.add_file(rel, full)?,
            }
        } else {
            self.report.unsupported.push(rel.to_string());
        }
        Ok(())
    }

    fn add_file(&mut self, rel: &RelPath, full: &Path) -> io::Result<()> {
        // O_NOFOLLOW: if the file was swapped for a symlink since we looked, we must not
        // read through it.
        let file = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(full)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.report.vanished.push(rel.to_string());
                return Ok(());
            }
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                self.report.changed.push(rel.to_string());
                return Ok(());
            }
            Err(e) => return Err(with_path(e, rel)),
        };
        let meta = file.metadata().map_err(|e| with_path(e, rel))?;
        if !meta.is_file() {
            self.report.changed.push(rel.to_string());
            return Ok(());
        }
        if meta.nlink() > 1 {
            self.linked.insert((meta.dev(), meta.ino()), rel.clone());
        }
        #[cfg(test)]
        if let Some(fault) = &mut self.before_read {
            fault(full);
        }
        let size = meta.len();
        let mut body = ExactSize {
            inner: &file,
            remaining: size,
            short: false,
        };
        let appended = self.append(rel, EntryType::Regular, &meta, None, size, &mut body);
        if body.short {
            return Err(changed(rel, "it shrank"));
        }
        appended.map_err(|e| with_path(e, rel))?;
        // What was read is the file as stat'ed only if it still is: a write that kept
        // the size moved the mtime, one that grew it moved the size.
        let after = file.metadata().map_err(|e| with_path(e, rel))?;
        if after.len() != size {
            return Err(changed(rel, "its size changed"));
        }
        if Mtime::of(&after) != Mtime::of(&meta) {
            return Err(changed(rel, "its mtime changed"));
        }
        Ok(())
    }

    fn append(
        &mut self,
        rel: &RelPath,
        kind: EntryType,
        meta: &Metadata,
        link: Option<&Path>,
        size: u64,
        mut data: impl Read,
    ) -> io::Result<()> {
        let mut header = Header::new_ustar();
        header.set_entry_type(kind);
        header.set_mode(meta.mode() & 0o7777);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(size);
        let mtime = Mtime::of(meta);
        header.set_mtime(mtime.secs.max(0) as u64);

        let mut pax: Vec<(&str, Vec<u8>)> = Vec::new();
        let mut name = rel.as_path().as_os_str().as_bytes().to_vec();
        if kind == EntryType::Directory {
            name.push(b'/');
        }
        if header
            .set_path(Path::new(std::ffi::OsStr::from_bytes(&name)))
            .is_err()
        {
            // Too long for ustar's name + prefix: the full name goes in a pax record,
            // the header keeps a truncated one for readers that ignore pax.
            set_name_bytes(&mut header, &name);
            pax.push(("path", name));
        }
        if let Some(target) = link {
            let bytes = target.as_os_str().as_bytes();
            if header.set_link_name_literal(bytes).is_err() {
                pax.push(("linkpath", bytes.to_vec()));
            }
        }
        if mtime.nanos != 0 || mtime.secs < 0 {
            pax.push(("mtime", mtime.to_pax().into_bytes()));
        }
        if size > 0o77777777777 {
            pax.push(("size", size.to_string().into_bytes()));
        }
        if !pax.is_empty() {
            self.builder
                .append_pax_extensions(pax.iter().map(|(k, v)| (*k, v.as_slice())))?;
        }
        header.set_cksum();
        // The entry as `tar::Builder::append` writes it (header, data, zero padding
        // to 512 bytes), with large reads.
        let out = self.builder.get_mut();
        out.write_all(header.as_bytes())?;
        let written = super::copy::copy_through(&mut self.copy_buf, &mut data, out)?;
        let pad = (512 - written % 512) % 512;
        out.write_all(&[0u8; 512][..pad as usize])?;
        self.report.entries += 1;
        Ok(())
    }

    /// The first proper ancestor of `inner` in `dir` that exists but is not a
    /// real directory (a symlink, usually), if any. A missing ancestor is not reported
    /// here: the path then vanished, which the caller notes.
    fn symlinked_ancestor(&mut self, dir: &Path, inner: &RelPath) -> Option<PathBuf> {
        for ancestor in inner.ancestors() {
            let on_disk = dir.join(ancestor);
            let kind =
                *self.dir_cache.entry(on_disk.clone()).or_insert_with(
                    || match fs::symlink_metadata(&on_disk) {
                        Ok(m) if m.is_dir() => AncestorKind::Dir,
                        Ok(_) => AncestorKind::Other,
                        Err(_) => AncestorKind::Missing,
                    },
                );
            match kind {
                AncestorKind::Dir => {}
                AncestorKind::Other => return Some(ancestor.to_owned()),
                AncestorKind::Missing => return None,
            }
        }
        None
    }

    /// Writes the end-of-archive marker and returns the writer and the report.
    pub fn finish(mut self) -> io::Result<(W, WriteReport)> {
        self.builder.finish()?;
        let report = std::mem::take(&mut self.report);
        Ok((self.builder.into_inner()?, report))
    }
}

#[derive(Debug, Clone, Copy)]
enum AncestorKind {
    Dir,
    Other,
    Missing,
}

fn with_path(e: io::Error, rel: &RelPath) -> io::Error {
    io::Error::new(e.kind(), format!("{rel}: {e}"))
}

/// Writes as much of `name` as fits into the ustar name field.
fn set_name_bytes(header: &mut Header, name: &[u8]) {
    if let Some(ustar) = header.as_ustar_mut() {
        let n = name.len().min(ustar.name.len());
        ustar.name[..n].copy_from_slice(&name[..n]);
    }
}

/// Reads at most `remaining` bytes; fails if the file ends before (`short` tells).
struct ExactSize<'a> {
    inner: &'a File,
    remaining: u64,
    short: bool,
}

impl Read for ExactSize<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            self.short = true;
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file ended before its size",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}
