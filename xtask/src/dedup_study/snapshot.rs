//! A snapshot: the files `bmat cache rust save --deps-only` would store, as bmat
//! selects them (`bmat::rust::artefacts` in the build directory, `cargo_home` in the
//! Cargo home), each hashed whole (BLAKE3) and cut into chunks. Contents not seen in
//! an earlier snapshot are compressed once to learn their zstd size.

use std::collections::HashSet;
use std::collections::hash_map::Entry;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bmat::rust::{artefacts, cargo_home, lockfile};
use serde::Serialize;
use sha2::Digest as _;

use super::accounting::{Catalogue, File, Hash, Size, Snapshot};
use super::chunks;

/// Below this a file is "small": small files decide how contents are packed.
pub const SMALL: u64 = 64 << 10;

/// A snapshot and what it is made of.
pub struct Taken {
    pub snapshot: Snapshot,
    pub stats: Stats,
    /// SHA-256 and BLAKE3 over the snapshot's bytes, when asked for.
    pub hashing: Option<Hashing>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Stats {
    pub bytes: u64,
    pub files: u64,
    pub small_files: u64,
    pub small_bytes: u64,
    pub chunks: u64,
    pub units: u64,
}

/// Single-thread hashing throughput over one snapshot's bytes (read first, so only
/// the hashing is timed).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Hashing {
    pub mib: f64,
    pub sha256_mib_s: f64,
    pub blake3_mib_s: f64,
}

/// Takes the snapshot of `build_dir` and `cargo_home` for the packages of
/// `lock_text`, adding its new contents to `catalogue`.
pub fn take(
    build_dir: &Path,
    home: &Path,
    lock_text: &str,
    catalogue: &mut Catalogue,
    time_hashes: bool,
) -> Result<Taken> {
    let packages = lockfile::third_party(lock_text)?;
    // No member set: bmat passes the members only to leave out a third-party package
    // named like one, and the bench workspace's members (`bench-*`) are not in
    // `packages` (they have no source), so `select` never looks at them.
    let selection = artefacts::select(build_dir, &packages, &HashSet::new())
        .with_context(|| format!("cannot select artefacts in {}", build_dir.display()))?;
    let home_selection = cargo_home::select(home, &packages)
        .with_context(|| format!("cannot select from {}", home.display()))?;

    let mut listed: Vec<(PathBuf, String, String)> = Vec::new();
    for rel in &selection.paths {
        for file in files_under(&build_dir.join(rel))? {
            let rel = file.strip_prefix(build_dir).unwrap_or(&file).to_owned();
            listed.push((
                file.clone(),
                format!("target/{}", rel.display()),
                unit_of(&rel),
            ));
        }
    }
    for rel in &home_selection.paths {
        // Each selected entry of the Cargo home (a `.crate`, an index entry) is a unit.
        let unit = format!("home/{}", rel.display());
        for file in files_under(&home.join(rel))? {
            let path = format!(
                "home/{}",
                file.strip_prefix(home).unwrap_or(&file).display()
            );
            listed.push((file, path, unit.clone()));
        }
    }

    let mut stats = Stats::default();
    let mut timing = (0u64, Duration::ZERO, Duration::ZERO);
    let mut files = Vec::with_capacity(listed.len());
    let mut units = HashSet::new();
    for (full, path, unit) in listed {
        let data = fs::read(&full).with_context(|| format!("cannot read {}", full.display()))?;
        if time_hashes {
            let t = Instant::now();
            std::hint::black_box(sha2::Sha256::digest(&data));
            timing.1 += t.elapsed();
            let t = Instant::now();
            std::hint::black_box(blake3::hash(&data));
            timing.2 += t.elapsed();
            timing.0 += data.len() as u64;
        }
        let hash = catalogue_content(catalogue, &data)?;
        let mut file_chunks = Vec::new();
        for range in chunks::boundaries(&data) {
            file_chunks.push(catalogue_content(catalogue, &data[range])?);
        }
        let len = data.len() as u64;
        stats.bytes += len;
        stats.files += 1;
        if len < SMALL {
            stats.small_files += 1;
            stats.small_bytes += len;
        }
        stats.chunks += file_chunks.len() as u64;
        units.insert(unit.clone());
        files.push(File {
            path,
            unit,
            hash,
            chunks: file_chunks,
        });
    }
    stats.units = units.len() as u64;
    let hashing = time_hashes.then(|| {
        let mib = timing.0 as f64 / (1 << 20) as f64;
        Hashing {
            mib,
            sha256_mib_s: mib / timing.1.as_secs_f64().max(1e-9),
            blake3_mib_s: mib / timing.2.as_secs_f64().max(1e-9),
        }
    });
    Ok(Taken {
        snapshot: Snapshot { files },
        stats,
        hashing,
    })
}

/// The hash of `data`, catalogued with its sizes if it is new.
fn catalogue_content(catalogue: &mut Catalogue, data: &[u8]) -> Result<Hash> {
    let hash = *blake3::hash(data).as_bytes();
    if let Entry::Vacant(entry) = catalogue.entry(hash) {
        let zstd = zstd::bulk::compress(data, 3).context("zstd failed")?.len() as u64;
        entry.insert(Size {
            raw: data.len() as u64,
            zstd,
        });
    }
    Ok(hash)
}

/// `path` if it is a file, the files under it if it is a directory (symlinks left
/// out: Cargo's build directory and home have none in what bmat selects).
fn files_under(path: &Path) -> Result<Vec<PathBuf>> {
    let meta =
        fs::symlink_metadata(path).with_context(|| format!("cannot stat {}", path.display()))?;
    if meta.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let mut found = Vec::new();
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = fs::read_dir(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for entry in entries {
            found.extend(files_under(&entry)?);
        }
    }
    Ok(found)
}

/// The Cargo unit a file of the build directory belongs to: `{profile}/{hash}`, the
/// hash that names its `.fingerprint/NAME-HASH`, `build/NAME-HASH` and
/// `deps/…NAME-HASH.ext` entries; the path itself when it has none.
pub fn unit_of(rel: &Path) -> String {
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let kind = parts
        .iter()
        .position(|p| matches!(p.as_str(), ".fingerprint" | "build" | "deps"));
    let hash = kind.and_then(|i| {
        let name = parts.get(i + 1)?;
        let stem = name.split('.').next()?;
        let (_, hash) = stem.rsplit_once('-')?;
        Some((i, hash))
    });
    match hash {
        Some((i, hash)) => format!("{}/{hash}", parts[..i].join("/")),
        None => rel.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_units_files_share_its_hash() {
        let unit = |p: &str| unit_of(Path::new(p));
        for p in [
            "debug/.fingerprint/serde_json-0123456789abcdef/lib-serde_json.json",
            "debug/deps/libserde_json-0123456789abcdef.rlib",
            "debug/deps/serde_json-0123456789abcdef.d",
        ] {
            assert_eq!(unit(p), "debug/0123456789abcdef", "{p}");
        }
        assert_eq!(
            unit("debug/build/proc-macro2-fedcba9876543210/out/x.rs"),
            "debug/fedcba9876543210"
        );
        assert_eq!(unit("debug/stray"), "debug/stray");
    }
}
