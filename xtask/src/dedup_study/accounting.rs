//! What each storage design would upload or store for one snapshot, given the
//! contents already held: pure accounting over content hashes, no I/O.
//!
//! - **files**: a file's bytes are new when no held file has the same hash;
//! - **chunks**: the same per content-defined chunk;
//! - **units**: a Cargo unit (or a Cargo home entry) is stored whole, keyed by its
//!   listing (every file's path and hash): new when any of its files changed, or its
//!   paths did; then all of its bytes are new.
//!
//! A content found twice in one snapshot counts once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::AddAssign;

use serde::Serialize;

pub type Hash = [u8; 32];

/// A content's size: raw, and compressed alone with zstd at level 3.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Size {
    pub raw: u64,
    pub zstd: u64,
}

impl AddAssign for Size {
    fn add_assign(&mut self, other: Size) {
        self.raw += other.raw;
        self.zstd += other.zstd;
    }
}

/// The size of every content seen so far (files and chunks alike), by hash.
pub type Catalogue = HashMap<Hash, Size>;

/// One file of a snapshot.
#[derive(Debug, Clone)]
pub struct File {
    /// Relative to the snapshot's root (`target/…` or `home/…`).
    pub path: String,
    /// The unit it belongs to.
    pub unit: String,
    pub hash: Hash,
    /// Its content-defined chunks, in order.
    pub chunks: Vec<Hash>,
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub files: Vec<File>,
}

impl Snapshot {
    /// Each unit's key (a hash of its sorted listing) and its files.
    fn units(&self) -> Vec<(Hash, Vec<&File>)> {
        let mut by_unit: BTreeMap<&str, Vec<&File>> = BTreeMap::new();
        for f in &self.files {
            by_unit.entry(&f.unit).or_default().push(f);
        }
        by_unit
            .into_values()
            .map(|mut files| {
                files.sort_by(|a, b| a.path.cmp(&b.path));
                let mut key = blake3::Hasher::new();
                for f in &files {
                    key.update(f.path.as_bytes());
                    key.update(b"\0");
                    key.update(&f.hash);
                }
                (*key.finalize().as_bytes(), files)
            })
            .collect()
    }

    /// Every file's size added up: what one full save holds.
    pub fn full(&self, catalogue: &Catalogue) -> Size {
        let mut total = Size::default();
        for f in &self.files {
            total += size(catalogue, &f.hash);
        }
        total
    }
}

/// What a design holds: the files, chunks and unit keys of some snapshots.
#[derive(Debug, Clone, Default)]
pub struct Held {
    files: HashSet<Hash>,
    chunks: HashSet<Hash>,
    units: HashSet<Hash>,
}

impl Held {
    pub fn of(snapshot: &Snapshot) -> Held {
        Held {
            files: snapshot.files.iter().map(|f| f.hash).collect(),
            chunks: snapshot
                .files
                .iter()
                .flat_map(|f| f.chunks.iter().copied())
                .collect(),
            units: snapshot.units().into_iter().map(|(key, _)| key).collect(),
        }
    }

    pub fn add(&mut self, other: &Held) {
        self.files.extend(&other.files);
        self.chunks.extend(&other.chunks);
        self.units.extend(&other.units);
    }
}

/// Bytes of new content per design.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PerDesign {
    pub files: Size,
    pub chunks: Size,
    pub units: Size,
}

/// The content of `snapshot` that `held` lacks, per design.
pub fn new_content(snapshot: &Snapshot, catalogue: &Catalogue, held: &Held) -> PerDesign {
    let mut new = PerDesign::default();
    let mut counted: HashSet<Hash> = HashSet::new();
    for f in &snapshot.files {
        if !held.files.contains(&f.hash) && counted.insert(f.hash) {
            new.files += size(catalogue, &f.hash);
        }
    }
    counted.clear();
    for c in snapshot.files.iter().flat_map(|f| &f.chunks) {
        if !held.chunks.contains(c) && counted.insert(*c) {
            new.chunks += size(catalogue, c);
        }
    }
    counted.clear();
    for (key, files) in snapshot.units() {
        if !held.units.contains(&key) && counted.insert(key) {
            for f in files {
                new.units += size(catalogue, &f.hash);
            }
        }
    }
    new
}

/// The whole-file bytes of `snapshot` that `held` lacks, by package (the `NAME` of
/// its unit's `.fingerprint/NAME-HASH`, else the unit's last path component: a
/// `.crate` file), largest first: which packages' files changed.
pub fn new_by_package(
    snapshot: &Snapshot,
    catalogue: &Catalogue,
    held: &Held,
) -> Vec<(String, u64)> {
    let mut by_package: BTreeMap<String, u64> = BTreeMap::new();
    let mut counted: HashSet<Hash> = HashSet::new();
    for (_, files) in snapshot.units() {
        let package = files
            .iter()
            .find_map(|f| {
                let (_, after) = f.path.split_once("/.fingerprint/")?;
                let dir = after.split('/').next()?;
                Some(
                    dir.rsplit_once('-')
                        .map_or(dir, |(name, _)| name)
                        .to_owned(),
                )
            })
            .unwrap_or_else(|| {
                let unit = &files[0].unit;
                unit.rsplit('/').next().unwrap_or(unit).to_owned()
            });
        for f in files {
            if !held.files.contains(&f.hash) && counted.insert(f.hash) {
                *by_package.entry(package.clone()).or_default() += size(catalogue, &f.hash).raw;
            }
        }
    }
    let mut sorted: Vec<(String, u64)> = by_package.into_iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    sorted
}

fn size(catalogue: &Catalogue, hash: &Hash) -> Size {
    // Every content of a snapshot is catalogued when the snapshot is taken.
    catalogue.get(hash).copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny snapshot: contents are named by a byte, each of size `100 × byte`
    /// (zstd: a tenth); a file's chunks are the bytes of `chunks`.
    struct Tiny {
        catalogue: Catalogue,
    }

    impl Tiny {
        fn new() -> Tiny {
            let mut catalogue = Catalogue::new();
            for b in 1..=20u8 {
                let raw = 100 * u64::from(b);
                catalogue.insert(
                    h(b),
                    Size {
                        raw,
                        zstd: raw / 10,
                    },
                );
            }
            Tiny { catalogue }
        }

        fn file(&self, path: &str, unit: &str, chunks: &[u8]) -> File {
            // A file's own hash: its chunks' bytes summed plus 10 (contents 11..=20
            // are whole files; 1..=10 are chunks), so equal chunks make equal files.
            let id = chunks.iter().sum::<u8>() + 10;
            File {
                path: path.into(),
                unit: unit.into(),
                hash: h(id),
                chunks: chunks.iter().map(|&c| h(c)).collect(),
            }
        }
    }

    fn h(b: u8) -> Hash {
        [b; 32]
    }

    fn raw(s: Size) -> u64 {
        s.raw
    }

    #[test]
    fn counts_new_files_chunks_and_units() {
        let t = Tiny::new();
        let before = Snapshot {
            files: vec![
                t.file("deps/liba-1.rlib", "a", &[1, 2]),
                t.file("deps/a-1.d", "a", &[6]),
                t.file("deps/libb-2.rlib", "b", &[4]),
            ],
        };
        // b's rlib changed in one of two chunks (4 → 4 + 5, a new file 19); a is
        // byte-identical; c is new, with a chunk b had before.
        let after = Snapshot {
            files: vec![
                t.file("deps/liba-1.rlib", "a", &[1, 2]),
                t.file("deps/a-1.d", "a", &[6]),
                t.file("debug/.fingerprint/b-2/lib-b", "b", &[6]),
                t.file("deps/libb-2.rlib", "b", &[4, 5]),
                t.file("deps/libc-3.rlib", "c", &[4]),
            ],
        };
        let held = Held::of(&before);
        let new = new_content(&after, &t.catalogue, &held);
        assert_eq!(
            raw(new.files),
            1_900,
            "b's new rlib (19); c's equals b's old one"
        );
        assert_eq!(raw(new.chunks), 500, "chunk 5 only");
        assert_eq!(raw(new.units), 1_600 + 1_900 + 1_400, "units b and c whole");
        assert_eq!(new.files.zstd, 190);
        assert_eq!(
            new_by_package(&after, &t.catalogue, &held),
            [("b".to_owned(), 1_900)]
        );
        assert_eq!(
            raw(after.full(&t.catalogue)),
            1_300 + 1_600 + 1_600 + 1_900 + 1_400
        );
    }

    #[test]
    fn a_content_twice_in_a_snapshot_counts_once_and_a_moved_unit_is_new() {
        let t = Tiny::new();
        let before = Snapshot {
            files: vec![t.file("deps/liba-1.rlib", "a-1", &[1])],
        };
        // The same bytes under a unit of another hash (another path), twice.
        let after = Snapshot {
            files: vec![
                t.file("deps/liba-2.rlib", "a-2", &[1]),
                t.file("deps/liba-2.rmeta", "a-2", &[1]),
            ],
        };
        let new = new_content(&after, &t.catalogue, &Held::of(&before));
        assert_eq!(raw(new.files), 0);
        assert_eq!(raw(new.chunks), 0);
        assert_eq!(raw(new.units), 2 * 1_100, "the unit's listing is new");
        assert_eq!(raw(after.full(&t.catalogue)), 2 * 1_100);
    }

    #[test]
    fn growth_is_measured_against_the_union_of_earlier_snapshots() {
        let t = Tiny::new();
        let s0 = Snapshot {
            files: vec![t.file("x", "x", &[1])],
        };
        let s1 = Snapshot {
            files: vec![t.file("x", "x", &[2])],
        };
        // Back to s0's content: new against s1, not against s0 ∪ s1.
        let s2 = Snapshot {
            files: vec![t.file("x", "x", &[1])],
        };
        let mut union = Held::of(&s0);
        union.add(&Held::of(&s1));
        let previous = Held::of(&s1);
        assert_eq!(new_content(&s2, &t.catalogue, &previous).units.raw, 1_100);
        assert_eq!(new_content(&s2, &t.catalogue, &union), PerDesign::default());
    }
}
