//! Freshness by content. Cargo judges a workspace unit fresh when no file its dep-info
//! names is newer than the unit's outputs; a fresh checkout gives every file a new
//! mtime, so every member would rebuild. At save, bmat records each file of the
//! members' package directories with its content hash and mtime ([`record`]); at
//! restore, a file whose content is unchanged gets its recorded mtime back, and a
//! changed, added or removed file is left as it is ([`compare`], [`apply`]), so Cargo
//! rebuilds exactly the units whose inputs changed, and their dependents. Cargo stays
//! the judge; bmat only makes its mtime test mean "the content changed".
//!
//! Clocks: recorded times are the saving runner's. Restored outputs and unchanged
//! sources move together by one shift ([`shift`]) that puts every one of them before
//! the oldest changed file and before now, so a changed file is newer than every
//! restored output even when the saving runner's clock ran ahead (or a checkout gave
//! files old times). A shift keeps their order, which is all Cargo's comparison reads.
//! (A build script without `rerun-if-changed` hashes its package's newest mtime: a
//! non-zero shift runs it again. Slower, never stale.)

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use walkdir::WalkDir;

use crate::trees::manifest::file_sha256;
use crate::trees::times::Mtime;

/// One file of a member package, as the saving job had it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// Relative to the workspace root, `/`-separated.
    pub path: String,
    pub sha256: String,
    pub secs: i64,
    pub nanos: u32,
}

impl SourceRecord {
    fn mtime(&self) -> Mtime {
        Mtime {
            secs: self.secs,
            nanos: self.nanos,
        }
    }
}

/// Every file of the members' package directories at save.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceManifest {
    pub files: Vec<SourceRecord>,
}

/// The files under `package_dirs` (inside `root`), skipping `skip` (the build
/// directory) and hidden directories (`.git`), each once, sorted.
fn files_of(
    root: &Path,
    package_dirs: &[PathBuf],
    skip: &[PathBuf],
) -> io::Result<BTreeMap<String, PathBuf>> {
    let mut found = BTreeMap::new();
    for dir in package_dirs {
        let walk = WalkDir::new(dir).into_iter().filter_entry(|e| {
            let hidden = e.depth() > 0 && e.file_name().to_string_lossy().starts_with('.');
            !hidden && !skip.iter().any(|s| e.path().starts_with(s))
        });
        for entry in walk {
            let entry = entry.map_err(io::Error::other)?;
            if !entry.file_type().is_file() {
                continue;
            }
            let Ok(rel) = entry.path().strip_prefix(root) else {
                continue;
            };
            let Some(rel) = rel.to_str() else { continue };
            found.insert(rel.to_owned(), entry.path().to_owned());
        }
    }
    Ok(found)
}

/// Records the files of `package_dirs` with their content hash and mtime.
pub fn record(
    root: &Path,
    package_dirs: &[PathBuf],
    skip: &[PathBuf],
) -> io::Result<SourceManifest> {
    let mut files = Vec::new();
    for (rel, path) in files_of(root, package_dirs, skip)? {
        let mtime = Mtime::of(&fs::metadata(&path)?);
        files.push(SourceRecord {
            path: rel,
            sha256: file_sha256(&path)?,
            secs: mtime.secs,
            nanos: mtime.nanos,
        });
    }
    Ok(SourceManifest { files })
}

/// The checkout against a manifest.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Files with the recorded content: (path, recorded mtime).
    pub unchanged: Vec<(PathBuf, Mtime)>,
    /// Relative paths whose content differs, that are new, or that are gone.
    pub changed: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// The oldest mtime among changed and added files.
    pub oldest_changed: Option<Mtime>,
}

/// Compares the files under `package_dirs` now with `manifest`.
pub fn compare(
    root: &Path,
    package_dirs: &[PathBuf],
    skip: &[PathBuf],
    manifest: &SourceManifest,
) -> io::Result<Comparison> {
    let mut now = files_of(root, package_dirs, skip)?;
    let mut out = Comparison::default();
    let mut oldest_changed: Option<Mtime> = None;
    let mut note = |path: &Path| -> io::Result<()> {
        let m = Mtime::of(&fs::metadata(path)?);
        if oldest_changed.is_none_or(|o| m.as_nanos() < o.as_nanos()) {
            oldest_changed = Some(m);
        }
        Ok(())
    };
    for rec in &manifest.files {
        match now.remove(&rec.path) {
            Some(path) if file_sha256(&path)? == rec.sha256 => {
                out.unchanged.push((path, rec.mtime()));
            }
            Some(path) => {
                note(&path)?;
                out.changed.push(rec.path.clone());
            }
            None => out.removed.push(rec.path.clone()),
        }
    }
    for (rel, path) in now {
        note(&path)?;
        out.added.push(rel);
    }
    out.oldest_changed = oldest_changed;
    Ok(out)
}

/// The shift (nanoseconds, zero or negative) that puts `newest_recorded` — the newest
/// of the recorded source times and restored output times — one second before both
/// `now` and the oldest changed file.
pub fn shift(newest_recorded: Mtime, oldest_changed: Option<Mtime>, now: Mtime) -> i128 {
    const MARGIN: i128 = 1_000_000_000;
    let limit = oldest_changed.map_or(now.as_nanos(), |o| o.as_nanos().min(now.as_nanos()));
    (limit - MARGIN - newest_recorded.as_nanos()).min(0)
}

/// Restored outputs (not followed) with their times as restored, each inode once:
/// Cargo hard-links final artefacts to their `deps/` files, and a link must not be
/// moved twice. Read once, for the shift and for the move. Directories are left out:
/// Cargo compares no directory of the build directory, and the restore itself makes
/// theirs new, which would force a shift on every restore.
pub struct Outputs(Vec<(PathBuf, Mtime)>);

impl Outputs {
    pub fn scan(paths: impl IntoIterator<Item = PathBuf>) -> io::Result<Outputs> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for path in paths {
            let meta = fs::symlink_metadata(&path)?;
            if !meta.is_dir() && seen.insert((meta.dev(), meta.ino())) {
                out.push((path, Mtime::of(&meta)));
            }
        }
        Ok(Outputs(out))
    }

    pub fn newest(&self) -> Option<Mtime> {
        self.0.iter().map(|(_, m)| *m).max_by_key(|m| m.as_nanos())
    }
}

/// Gives each unchanged source its recorded mtime moved by `shift`, and moves each of
/// `outputs` by `shift`. Returns the files touched.
pub fn apply(unchanged: &[(PathBuf, Mtime)], outputs: &Outputs, shift: i128) -> io::Result<usize> {
    for (path, recorded) in unchanged {
        Mtime::from_nanos(recorded.as_nanos() + shift).apply(path)?;
    }
    let mut moved = 0;
    if shift != 0 {
        for (path, restored) in &outputs.0 {
            Mtime::from_nanos(restored.as_nanos() + shift).apply(path)?;
            moved += 1;
        }
    }
    Ok(unchanged.len() + moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Mtime {
        Mtime { secs, nanos: 0 }
    }

    fn write(path: &Path, text: &str, secs: i64) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
        at(secs).apply(path).unwrap();
    }

    fn mtime(path: &Path) -> i64 {
        Mtime::of(&fs::metadata(path).unwrap()).secs
    }

    #[test]
    fn only_files_with_the_recorded_content_get_their_recorded_time_back() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for (root, t) in [(a.path(), 1_000), (b.path(), 9_000)] {
            write(&root.join("core/src/lib.rs"), "pub fn f() {}", t);
            write(&root.join("app/src/main.rs"), "fn main() {}", t);
            write(&root.join("app/src/gone.rs"), "", t);
            write(&root.join("target/debug/x"), "built", t);
            write(&root.join("app/.git/HEAD"), "ref", t);
        }
        let dirs = |root: &Path| vec![root.join("app"), root.join("core")];
        let skip = |root: &Path| vec![root.join("target")];
        let manifest = record(a.path(), &dirs(a.path()), &skip(a.path())).unwrap();
        let paths: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            ["app/src/gone.rs", "app/src/main.rs", "core/src/lib.rs"]
        );

        // Job B's checkout: one file changed, one removed, one added, all at time 9000.
        write(
            &b.path().join("app/src/main.rs"),
            "fn main() { changed() }",
            9_000,
        );
        fs::remove_file(b.path().join("app/src/gone.rs")).unwrap();
        write(&b.path().join("app/src/new.rs"), "", 8_000);
        let cmp = compare(b.path(), &dirs(b.path()), &skip(b.path()), &manifest).unwrap();
        assert_eq!(cmp.changed, ["app/src/main.rs"]);
        assert_eq!(cmp.removed, ["app/src/gone.rs"]);
        assert_eq!(cmp.added, ["app/src/new.rs"]);
        assert_eq!(cmp.oldest_changed, Some(at(8_000)));
        assert_eq!(cmp.unchanged.len(), 1);

        apply(&cmp.unchanged, &Outputs::scan([]).unwrap(), 0).unwrap();
        assert_eq!(mtime(&b.path().join("core/src/lib.rs")), 1_000);
        assert_eq!(
            mtime(&b.path().join("app/src/main.rs")),
            9_000,
            "a changed file was touched"
        );
    }

    #[test]
    fn a_saving_clock_ahead_moves_outputs_and_sources_before_every_changed_file() {
        // Job A's clock ran an hour ahead: its outputs are "newer" than job B's edits.
        let now = at(100_000);
        let newest_recorded = at(100_000 + 3_600);
        let changed = Some(at(99_990));
        let s = shift(newest_recorded, changed, now);
        assert_eq!(newest_recorded.as_nanos() + s, at(99_989).as_nanos());
        // A past job on a sane clock: nothing moves.
        assert_eq!(shift(at(50_000), Some(at(99_990)), now), 0);
        // No changed file: before now.
        assert_eq!(
            at(100_500).as_nanos() + shift(at(100_500), None, now),
            at(99_999).as_nanos()
        );

        let dir = tempfile::tempdir().unwrap();
        let (out, link, src) = (
            dir.path().join("deps/libx.rlib"),
            dir.path().join("libx.rlib"),
            dir.path().join("src/lib.rs"),
        );
        write(&out, "rlib", 103_000);
        fs::hard_link(&out, &link).unwrap();
        write(&src, "src", 5);
        let s = shift(at(103_000), changed, now);
        // The directory, new since the writes, is neither the newest output nor moved.
        let outputs = Outputs::scan([dir.path().join("deps"), out.clone(), link.clone()]).unwrap();
        assert_eq!(outputs.newest(), Some(at(103_000)));
        apply(&[(src.clone(), at(102_000))], &outputs, s).unwrap();
        // The hard link was moved once, and both stay in their recorded order.
        assert_eq!(mtime(&out), 99_989);
        assert_eq!(mtime(&link), 99_989);
        assert_eq!(mtime(&src), 98_989);
    }

    #[test]
    fn nanoseconds_round_trip_before_and_after_the_epoch() {
        for m in [
            at(0),
            at(-1),
            Mtime { secs: -2, nanos: 5 },
            Mtime {
                secs: 7,
                nanos: 999_999_999,
            },
        ] {
            assert_eq!(Mtime::from_nanos(m.as_nanos()), m);
        }
    }
}
