//! Which files of a Cargo build directory make up a Rust dependency cache.
//!
//! Cargo keeps one directory per profile (`debug/`, `release/`, `<triple>/debug/`, …),
//! recognisable by its `.fingerprint/`. Each compiled unit — a library, a build script,
//! a build-script run — has `.fingerprint/{package}-{hash}/`, and its outputs carry the
//! same hash: `deps/lib{crate}-{hash}.rlib`, `deps/{crate}-{hash}.d`,
//! `build/{package}-{hash}/`. We take the units of third-party packages only, and only
//! those built from a version that is still in Cargo.lock:
//! - a unit with a dep-info file (`*.d`) names its sources, whose paths hold
//!   `{package}-{version}/` (registry) or the commit (git): current or stale is read off;
//! - a build-script run has no dep-info; it is current when a current unit depends on it
//!   (fingerprint JSON `deps` hold the dependency's fingerprint, which the unit's own
//!   fingerprint file stores as little-endian hex).
//!
//! So a save after a partial restore drops the artefacts of replaced versions, without
//! trusting mtimes. One more case: a dependent rebuilt at the same version because a
//! dependency changed (regex-automata after a memchr bump) gets a new hash, and its
//! old unit still names a locked version. Units of one package that differ only in
//! their dependencies (same target, features, profile, compiler: in one build graph
//! Cargo makes one such unit) are variants from different builds; the one built last
//! is kept. (Should a lock go back to an older state, Cargo reuses the older variant
//! without rebuilding it, and a save keeps the newer one: the next job rebuilds that
//! unit. Slower once, never stale.)

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::lockfile::LockedPackage;

#[derive(Debug, Default)]
pub struct Selection {
    /// Paths relative to the build directory, directories included whole.
    pub paths: Vec<PathBuf>,
    /// `{profile}/.fingerprint/{package}-{hash}` of every unit taken.
    pub units: Vec<String>,
    /// The same for third-party units left out because their version left Cargo.lock.
    pub pruned: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Current,
    Stale,
    Unknown,
}

#[derive(Debug)]
struct FingerprintedUnit {
    package: String,
    hash: String,
    /// The unit's own fingerprint(s), as found in its fingerprint files.
    fingerprints: Vec<u64>,
    /// Fingerprints of the units it depends on.
    deps: Vec<u64>,
    /// What the unit is apart from its dependencies: its fingerprint files' names and
    /// their JSON without `deps` and `local` (target, features, profile, compiler,
    /// flags, …). Units with the same are variants of one unit from different builds.
    variant_of: String,
    /// The newest mtime in its fingerprint directory: when it was last built.
    built_at: Option<std::time::SystemTime>,
    status: Status,
}

/// Selects the third-party artefacts under `build_dir`. `members` are the workspace's
/// package names: a third-party package of the same name is left out rather than risk
/// caching workspace artefacts.
pub fn select(
    build_dir: &Path,
    packages: &[LockedPackage],
    members: &HashSet<String>,
) -> io::Result<Selection> {
    let mut by_name: HashMap<&str, Vec<&LockedPackage>> = HashMap::new();
    for p in packages {
        if !members.contains(&p.name) {
            by_name.entry(p.name.as_str()).or_default().push(p);
        }
    }
    let mut selection = Selection::default();
    for profile in profile_dirs(build_dir)? {
        select_in_profile(build_dir, &profile, &by_name, &mut selection)?;
    }
    selection.paths.sort();
    selection.units.sort();
    selection.pruned.sort();
    Ok(selection)
}

/// The units of workspace members under `build_dir` (their `.fingerprint/`, `build/`
/// and `deps/` entries, relative to `build_dir`): the workspace layer's files. Final
/// artefacts (`debug/app`) are left out: Cargo links them again from `deps/` for a
/// fresh unit.
pub fn select_members(build_dir: &Path, members: &HashSet<String>) -> io::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for profile in profile_dirs(build_dir)? {
        let deps_by_hash = deps_by_hash(&profile)?;
        for dir in read_dir_sorted(&profile.join(".fingerprint"))? {
            let name = file_name(&dir);
            let Some((package, hash)) = name.rsplit_once('-') else {
                continue;
            };
            if !members.contains(package) {
                continue;
            }
            paths.push(dir.clone());
            let build = profile.join("build").join(&name);
            if build.is_dir() {
                paths.push(build);
            }
            paths.extend(deps_by_hash.get(hash).into_iter().flatten().cloned());
        }
    }
    let mut relative: Vec<PathBuf> = paths
        .iter()
        .filter_map(|p| p.strip_prefix(build_dir).ok().map(Path::to_path_buf))
        .collect();
    relative.sort();
    relative.dedup();
    Ok(relative)
}

/// Each profile's `incremental/` under `build_dir`, relative to it. Cargo compiles
/// only path packages incrementally, so it holds nothing of a third-party unit.
pub fn incremental_dirs(build_dir: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(profile_dirs(build_dir)?
        .into_iter()
        .map(|profile| profile.join("incremental"))
        .filter(|dir| dir.is_dir())
        .filter_map(|dir| dir.strip_prefix(build_dir).ok().map(Path::to_path_buf))
        .collect())
}

/// Directories at depth 1 or 2 holding a `.fingerprint/` (`debug`, `x86_64-…/release`).
pub(crate) fn profile_dirs(build_dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in read_dir_sorted(build_dir)? {
        if !entry.is_dir() {
            continue;
        }
        if entry.join(".fingerprint").is_dir() {
            found.push(entry);
            continue;
        }
        for inner in read_dir_sorted(&entry)? {
            if inner.is_dir() && inner.join(".fingerprint").is_dir() {
                found.push(inner);
            }
        }
    }
    Ok(found)
}

/// The entries of `dir`, sorted; none when it does not exist.
pub(super) fn read_dir_sorted(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut paths = match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.map(|e| e.path()))
            .collect::<io::Result<Vec<_>>>()?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    paths.sort();
    Ok(paths)
}

pub(super) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn select_in_profile(
    build_dir: &Path,
    profile: &Path,
    by_name: &HashMap<&str, Vec<&LockedPackage>>,
    selection: &mut Selection,
) -> io::Result<()> {
    let deps_by_hash = deps_by_hash(profile)?;

    let mut units = Vec::new();
    for dir in read_dir_sorted(&profile.join(".fingerprint"))? {
        let name = file_name(&dir);
        let Some((package, hash)) = name.rsplit_once('-') else {
            continue;
        };
        let Some(locked) = by_name.get(package) else {
            continue; // a workspace member, or a package no longer in Cargo.lock at all
        };
        let mut unit = read_unit(&dir, package, hash)?;
        let dep_infos = deps_by_hash
            .get(hash)
            .into_iter()
            .flatten()
            .filter(|p| p.extension().is_some_and(|e| e == "d"))
            .cloned()
            .chain(build_dep_infos(&profile.join("build").join(&name))?);
        unit.status = status_from_dep_info(dep_infos, package, locked)?;
        units.push(unit);
    }

    keep_last_built_variants(&mut units);

    // A unit without dep-info (a build-script run) is current when a current unit
    // depends on it. Iterate: chains are short.
    loop {
        let current: HashSet<u64> = units
            .iter()
            .filter(|u| u.status == Status::Current)
            .flat_map(|u| u.deps.iter().copied())
            .collect();
        let mut changed = false;
        for unit in units.iter_mut().filter(|u| u.status == Status::Unknown) {
            if unit.fingerprints.iter().any(|f| current.contains(f)) {
                unit.status = Status::Current;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }

    let relative = |p: &Path| {
        p.strip_prefix(build_dir)
            .map(Path::to_path_buf)
            .unwrap_or_default()
    };
    for unit in units {
        let dir_name = format!("{}-{}", unit.package, unit.hash);
        let fingerprint_dir = profile.join(".fingerprint").join(&dir_name);
        let label = relative(&fingerprint_dir).display().to_string();
        if unit.status != Status::Current {
            selection.pruned.push(label);
            continue;
        }
        selection.units.push(label);
        selection.paths.push(relative(&fingerprint_dir));
        let build = profile.join("build").join(&dir_name);
        if build.is_dir() {
            selection.paths.push(relative(&build));
        }
        for output in deps_by_hash.get(&unit.hash).into_iter().flatten() {
            selection.paths.push(relative(output));
        }
    }
    Ok(())
}

/// `deps/` holds every unit's outputs side by side: indexed by hash once per profile.
fn deps_by_hash(profile: &Path) -> io::Result<HashMap<String, Vec<PathBuf>>> {
    let mut by_hash: HashMap<String, Vec<PathBuf>> = HashMap::new();
    for path in read_dir_sorted(&profile.join("deps"))? {
        if let Some(hash) = hash_suffix(&file_name(&path)) {
            by_hash.entry(hash.to_string()).or_default().push(path);
        }
    }
    Ok(by_hash)
}

/// `libfoo-0123456789abcdef.rlib` → `0123456789abcdef`.
fn hash_suffix(name: &str) -> Option<&str> {
    let stem = name.split('.').next()?;
    let (_, hash) = stem.rsplit_once('-')?;
    (hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hash)
}

fn build_dep_infos(build_unit_dir: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(read_dir_sorted(build_unit_dir)?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "d"))
        .collect())
}

/// Of the current units that are variants of one (see the module doc), only the one
/// built last stays current; the others are stale. A unit whose variant or build time
/// could not be read is left as it is.
fn keep_last_built_variants(units: &mut [FingerprintedUnit]) {
    let mut newest: HashMap<(&str, &str), std::time::SystemTime> = HashMap::new();
    for u in units.iter().filter(|u| u.status == Status::Current) {
        if let (false, Some(at)) = (u.variant_of.is_empty(), u.built_at) {
            let e = newest.entry((&u.package, &u.variant_of)).or_insert(at);
            *e = (*e).max(at);
        }
    }
    let stale: Vec<usize> = units
        .iter()
        .enumerate()
        .filter(|(_, u)| u.status == Status::Current && !u.variant_of.is_empty())
        .filter(|(_, u)| {
            let last = newest.get(&(u.package.as_str(), u.variant_of.as_str()));
            u.built_at.zip(last).is_some_and(|(at, last)| at < *last)
        })
        .map(|(i, _)| i)
        .collect();
    for i in stale {
        units[i].status = Status::Stale;
    }
}

fn read_unit(dir: &Path, package: &str, hash: &str) -> io::Result<FingerprintedUnit> {
    let mut unit = FingerprintedUnit {
        package: package.to_string(),
        hash: hash.to_string(),
        fingerprints: Vec::new(),
        deps: Vec::new(),
        variant_of: String::new(),
        built_at: None,
        status: Status::Unknown,
    };
    for file in read_dir_sorted(dir)? {
        let name = file_name(&file);
        if let Ok(modified) = fs::symlink_metadata(&file).and_then(|m| m.modified()) {
            unit.built_at = unit.built_at.max(Some(modified));
        }
        if name.ends_with(".json") {
            let text = fs::read_to_string(&file)?;
            let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            // Everything but the dependencies and the local inputs (which name the
            // unit's own hashed directory), printed in serde_json's fixed key order.
            if let Some(fields) = json.as_object() {
                let mut rest = fields.clone();
                rest.remove("deps");
                rest.remove("local");
                unit.variant_of
                    .push_str(&format!("{name} {};", serde_json::Value::Object(rest)));
            }
            // `deps`: [[package id hash, name, public, fingerprint], ...]
            for dep in json["deps"].as_array().into_iter().flatten() {
                if let Some(f) = dep.get(3).and_then(serde_json::Value::as_u64) {
                    unit.deps.push(f);
                }
            }
        } else if !name.starts_with("dep-") && name != "invoked.timestamp" {
            // The fingerprint file: the unit's hash as 16 hex digits of little-endian bytes.
            let text = fs::read_to_string(&file).unwrap_or_default();
            if let Some(f) = parse_le_hex(text.trim()) {
                unit.fingerprints.push(f);
            }
        }
    }
    Ok(unit)
}

fn parse_le_hex(text: &str) -> Option<u64> {
    let bytes = hex::decode(text).ok()?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

fn status_from_dep_info(
    dep_infos: impl Iterator<Item = PathBuf>,
    package: &str,
    locked: &[&LockedPackage],
) -> io::Result<Status> {
    let markers: Vec<String> = locked
        .iter()
        .flat_map(|p| {
            let mut m = vec![format!("/{package}-{}/", p.version)];
            if let Some(rev) = p.git_rev() {
                m.push(format!("/{}/", &rev[..rev.len().min(7)]));
            }
            m
        })
        .collect();
    let mut status = Status::Unknown;
    for path in dep_infos {
        let text = fs::read_to_string(&path)?;
        if markers.iter().any(|m| text.contains(m.as_str())) {
            return Ok(Status::Current);
        }
        status = Status::Stale;
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// A third-party lib unit of regex-automata 0.4.9 as Cargo lays it out, built at
    /// `at`, with `features` and dependencies `deps` in its fingerprint.
    fn lib_unit(profile: &Path, hash: &str, features: &str, deps: &str, at: u64) {
        let dir = profile.join(format!(".fingerprint/regex-automata-{hash}"));
        fs::create_dir_all(&dir).expect("mkdir");
        fs::create_dir_all(profile.join("deps")).expect("mkdir");
        let json = format!(
            r#"{{"rustc":1,"features":"{features}","declared_features":"","target":2,"profile":3,"path":4,"deps":{deps},"local":[{{"CheckDepInfo":{{"dep_info":"lib-regex_automata-{hash}","checksum":false}}}}],"rustflags":[],"config":5,"compile_kind":6}}"#
        );
        let files = [
            (dir.join("lib-regex_automata"), hash.to_string()),
            (dir.join("lib-regex_automata.json"), json),
            (dir.join("dep-lib-regex_automata"), String::new()),
            (
                profile.join(format!("deps/regex_automata-{hash}.d")),
                "/reg/regex-automata-0.4.9/src/lib.rs:\n".into(),
            ),
            (
                profile.join(format!("deps/libregex_automata-{hash}.rlib")),
                "rlib".into(),
            ),
        ];
        for (path, text) in files {
            fs::write(&path, text).expect("write");
            fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(UNIX_EPOCH + Duration::from_secs(at)))
                .expect("set mtime");
        }
    }

    #[test]
    fn a_dependent_rebuilt_at_the_same_version_keeps_only_its_last_build() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let profile = tmp.path().join("debug");
        // Built before and after its dependency (memchr) changed; and a variant with
        // other features, which the same build graph may hold beside it.
        lib_unit(
            &profile,
            "0000000000000001",
            "[]",
            "[[7,\"memchr\",false,8]]",
            1_000,
        );
        lib_unit(
            &profile,
            "0000000000000002",
            "[]",
            "[[7,\"memchr\",false,9]]",
            2_000,
        );
        lib_unit(
            &profile,
            "0000000000000003",
            "[\"std\"]",
            "[[7,\"memchr\",false,8]]",
            1_000,
        );
        let locked = [LockedPackage {
            name: "regex-automata".into(),
            version: "0.4.9".into(),
            source: Some("registry+https://github.com/rust-lang/crates.io-index".into()),
            checksum: None,
        }];
        let s = select(tmp.path(), &locked, &HashSet::new()).expect("select");
        assert_eq!(
            s.units,
            [
                "debug/.fingerprint/regex-automata-0000000000000002",
                "debug/.fingerprint/regex-automata-0000000000000003"
            ]
        );
        assert_eq!(
            s.pruned,
            ["debug/.fingerprint/regex-automata-0000000000000001"]
        );
        assert!(
            !s.paths
                .iter()
                .any(|p| p.to_string_lossy().contains("0000000000000001")),
            "{:?}",
            s.paths
        );
    }

    #[test]
    fn reads_hash_suffixes() {
        assert_eq!(
            hash_suffix("libitoa-e44c1924346ebe9d.rlib"),
            Some("e44c1924346ebe9d")
        );
        assert_eq!(
            hash_suffix("itoa-e44c1924346ebe9d.d"),
            Some("e44c1924346ebe9d")
        );
        assert_eq!(
            hash_suffix("fixture_app-9629eacf2a9c8e88"),
            Some("9629eacf2a9c8e88")
        );
        assert_eq!(hash_suffix("libfoo.rlib"), None);
        assert_eq!(hash_suffix("build-script-build"), None);
    }

    #[test]
    fn fingerprint_files_are_little_endian_hex() {
        // Seen in a real target dir: file `f161f0b493523d08`, referenced as 593721520232096241.
        assert_eq!(
            parse_le_hex("f161f0b493523d08"),
            Some(593_721_520_232_096_241)
        );
        assert_eq!(parse_le_hex("nonsense"), None);
    }
}
