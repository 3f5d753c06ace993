//! Unpacks a tar stream into a staging directory, refusing anything that could land
//! outside it.
//!
//! Refused, by entry name: absolute paths, any `..` component, an empty name, an
//! entry inside a symlink the archive created earlier (writing through it could
//! reach anywhere), a hard link to anything but a file this archive restored before
//! it, device files, FIFOs and any other type. Nothing is
//! ever opened through a symlink: files are created with `O_EXCL`, which fails on an
//! existing link instead of following it.
//!
//! Extension headers (pax, GNU long names) are read by [`super::entries`], which
//! refuses an oversized one before reading it.
//!
//! Directory modes and mtimes are returned rather than applied: they must be set
//! after the entries are moved into place (moving into a directory changes its mtime).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::entries::{Entries, Names};
use super::error::UnpackError;
use super::staging::is_staging_name;
use super::writers::{FileWriters, SMALL_FILE, SmallFile};
use crate::trees::paths::RelPath;
use crate::trees::times::Mtime;

const COPY_BUF: usize = 1 << 20;

fn refuse(path: impl Into<String>, reason: impl Into<String>) -> UnpackError {
    UnpackError::Refused {
        path: path.into(),
        reason: reason.into(),
    }
}

/// What was unpacked.
#[derive(Debug, Default)]
pub struct Unpacked {
    /// Every entry path, once each.
    pub paths: Vec<RelPath>,
    /// Directory entries with the mode and mtime to set once in place.
    pub dirs: Vec<(RelPath, u32, Mtime)>,
    pub files: u64,
    pub symlinks: u64,
}

/// Where entries are unpacked: the staging directory of the tree each belongs to.
pub trait Stage {
    /// The staging directory for archive name `name`, and the path inside it.
    fn locate(&mut self, name: &RelPath) -> Result<(PathBuf, RelPath), UnpackError>;
}

/// One staging directory for every entry.
impl Stage for &Path {
    fn locate(&mut self, name: &RelPath) -> Result<(PathBuf, RelPath), UnpackError> {
        Ok((self.to_path_buf(), name.clone()))
    }
}

/// Unpacks every entry of `archive` into the staging directories `stage` gives. Stops
/// at the end-of-archive marker; the caller drains whatever follows (to finish
/// hashing). The paths returned are archive names.
///
/// More than `max_entries` entries (the number its saver recorded) fails the unpack.
pub fn unpack<R: Read>(
    archive: R,
    mut stage: impl Stage,
    max_entries: Option<u64>,
) -> Result<Unpacked, UnpackError> {
    let mut tar = tar::Archive::new(archive);
    let mut state = State::default();
    let mut count = 0u64;
    std::thread::scope(|s| {
        let writers = FileWriters::start(s);
        let mut entries = Entries::new(&mut tar)?;
        while let Some((mut entry, names)) = entries.next_entry()? {
            count += 1;
            if let Some(max) = max_entries.filter(|max| count > *max) {
                return Err(UnpackError::Io(super::corruption::corruption(format!(
                    "the archive holds more than the {max} entries recorded for it"
                ))));
            }
            state.unpack_one(&mut entry, names, &mut stage, &writers)?;
        }
        writers.finish()?;
        Ok::<_, UnpackError>(())
    })?;
    let mut out = state.out;
    out.dirs = state
        .dirs
        .into_iter()
        .map(|(p, (mode, mtime))| (p, mode, mtime))
        .collect();
    Ok(out)
}

#[derive(Default)]
struct State {
    out: Unpacked,
    /// Directories known to exist in the staging tree (entries or parents made for
    /// them): most entries then cost no `stat` or `mkdir` for their parent.
    made: HashSet<PathBuf>,
    /// File contents pass through here, in large writes.
    copy_buf: Vec<u8>,
    seen: HashSet<RelPath>,
    /// Regular files the archive created and that are still there: the only
    /// targets a hard link may have.
    files: HashSet<RelPath>,
    /// Symlinks the archive created: no later entry may go through one.
    symlinks: HashSet<RelPath>,
    dirs: HashMap<RelPath, (u32, Mtime)>,
}

enum Kind {
    File,
    /// A second name of a file this archive created earlier (that file, staged).
    HardLink(PathBuf),
    Dir,
    Symlink,
}

impl State {
    fn unpack_one<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        names: Names,
        stage: &mut impl Stage,
        writers: &FileWriters<'_>,
    ) -> Result<(), UnpackError> {
        let shown = String::from_utf8_lossy(&names.path).into_owned();
        let rel =
            RelPath::from_entry(&names.path).map_err(|e| refuse(shown.clone(), e.to_string()))?;
        let (staging, inner) = stage.locate(&rel)?;
        if inner
            .as_path()
            .components()
            .next()
            .is_some_and(|c| is_staging_name(c.as_os_str()))
        {
            return Err(refuse(
                shown,
                "the name is reserved for bmat's staging directories",
            ));
        }
        let kind = match entry.header().entry_type() {
            EntryType::Regular | EntryType::Continuous => Kind::File,
            EntryType::Directory => Kind::Dir,
            EntryType::Symlink => Kind::Symlink,
            EntryType::Link => {
                let target = self.hard_link_target(&names, &shown)?;
                match stage.locate(&target)? {
                    (base, inner) if base == staging => Kind::HardLink(base.join(inner.as_path())),
                    _ => return Err(refuse(shown, "a hard link to a file of another tree")),
                }
            }
            EntryType::Char | EntryType::Block => {
                return Err(refuse(shown, "device files are not restored"));
            }
            EntryType::Fifo => return Err(refuse(shown, "FIFOs are not restored")),
            other => {
                return Err(refuse(
                    shown,
                    format!("entry type {:?} is not supported", other.as_byte() as char),
                ));
            }
        };
        if let Some(link) = rel.ancestors().find(|a| {
            self.symlinks
                .contains(&RelPath::from_normal(a.to_path_buf()))
        }) {
            return Err(refuse(
                shown,
                format!("it would be written through the symlink {}", link.display()),
            ));
        }
        let mode = entry.header().mode().map_err(UnpackError::Io)? & 0o777;
        let mtime = names.mtime;
        let dest = staging.join(inner.as_path());
        // A path seen before, or made as a parent, may be a file a writer has queued
        // or a directory they write into: let them finish before touching it.
        let conflict = self.seen.contains(&rel) || self.made.contains(&dest);
        if conflict {
            writers.wait_idle()?;
        }
        if let Some(parent) = dest.parent()
            && !self.made.contains(parent)
        {
            fs::create_dir_all(parent)?;
            self.made.extend(
                parent
                    .ancestors()
                    .take_while(|a| a.starts_with(&staging))
                    .map(Path::to_owned),
            );
        }
        match kind {
            Kind::File if !conflict && entry.size() <= SMALL_FILE => {
                let mut data = Vec::with_capacity(entry.size() as usize);
                entry.read_to_end(&mut data)?;
                writers.write(SmallFile {
                    dest,
                    data,
                    mode,
                    mtime,
                })?;
                self.files.insert(rel.clone());
                self.out.files += 1;
            }
            Kind::HardLink(target) => {
                // The target may still be queued for a writer.
                writers.wait_idle()?;
                // linkat without AT_SYMLINK_FOLLOW: never follows a link at `target`
                // (there is none: it is a file this archive made).
                self.create_or_replace(&rel, &dest, || fs::hard_link(&target, &dest))?;
                self.files.insert(rel.clone());
                self.out.files += 1;
            }
            Kind::File => {
                let mut file = self.create_or_replace(&rel, &dest, || {
                    fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .custom_flags(libc::O_NOFOLLOW)
                        .open(&dest)
                })?;
                if self.copy_buf.is_empty() {
                    self.copy_buf = vec![0; COPY_BUF];
                }
                super::copy::copy_through(&mut self.copy_buf, entry, &mut file)?;
                file.set_permissions(fs::Permissions::from_mode(mode))?;
                mtime.apply_to_file(&file)?;
                self.files.insert(rel.clone());
                self.out.files += 1;
            }
            Kind::Dir => {
                match fs::create_dir(&dest) {
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        self.clear_for(&rel, &dest, true)?;
                        if !dest.is_dir() {
                            fs::create_dir(&dest)?;
                        }
                    }
                    other => other?,
                }
                self.made.insert(dest.clone());
                self.dirs.insert(rel.clone(), (mode, mtime));
            }
            Kind::Symlink => {
                let target = names
                    .link
                    .as_deref()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| refuse(shown.clone(), "symlink without a target"))?;
                let target = std::ffi::OsStr::from_bytes(target);
                self.create_or_replace(&rel, &dest, || std::os::unix::fs::symlink(target, &dest))?;
                mtime.apply(&dest)?;
                self.symlinks.insert(rel.clone());
                self.out.symlinks += 1;
            }
        }
        if self.seen.insert(rel.clone()) {
            self.out.paths.push(rel);
        }
        Ok(())
    }

    /// The target of a hard-link entry: it must name a regular file this archive
    /// created earlier and that is still there, so a link can neither reach outside
    /// the tree nor give a restored file a second name elsewhere.
    fn hard_link_target(&self, names: &Names, shown: &str) -> Result<RelPath, UnpackError> {
        let raw = names
            .link
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| refuse(shown, "hard link without a target"))?;
        let target = RelPath::from_entry(raw).map_err(|e| {
            refuse(
                shown,
                format!("hard link to {}: {e}", String::from_utf8_lossy(raw)),
            )
        })?;
        if !self.files.contains(&target) {
            return Err(refuse(
                shown,
                format!(
                    "hard link to {}, which is not a file restored before it",
                    String::from_utf8_lossy(raw)
                ),
            ));
        }
        Ok(target)
    }

    /// Creates `dest` with `create`; if an earlier entry left something there, clears
    /// it first, as tar does. `create` never follows or writes through what is there
    /// (`O_EXCL`, `symlink`, `link` fail on an existing name).
    fn create_or_replace<T>(
        &mut self,
        rel: &RelPath,
        dest: &Path,
        create: impl Fn() -> io::Result<T>,
    ) -> io::Result<T> {
        match create() {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                self.clear_for(rel, dest, false)?;
                create()
            }
            other => other,
        }
    }

    /// A repeated entry replaces the earlier one, as tar does (a directory repeated
    /// as a directory is kept, with the later metadata).
    fn clear_for(&mut self, rel: &RelPath, dest: &Path, is_dir: bool) -> io::Result<()> {
        match fs::symlink_metadata(dest) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
            Ok(meta) if meta.is_dir() && is_dir => Ok(()),
            Ok(meta) => {
                if meta.is_dir() {
                    fs::remove_dir_all(dest)?;
                    self.made.retain(|p| !p.starts_with(dest));
                    self.dirs
                        .retain(|p, _| !p.as_path().starts_with(rel.as_path()));
                    self.symlinks
                        .retain(|p| !p.as_path().starts_with(rel.as_path()));
                    self.files
                        .retain(|p| !p.as_path().starts_with(rel.as_path()));
                } else {
                    fs::remove_file(dest)?;
                    self.symlinks.remove(rel);
                    self.files.remove(rel);
                }
                Ok(())
            }
        }
    }
}
