//! Keeps restored build units fresh when Cargo's home is at another path.
//!
//! Cargo decides a unit is fresh when the hash of its fingerprint, computed now, equals
//! the hash stored in `.fingerprint/{unit}/{kind}` beside the fingerprint's JSON. For a
//! package from a registry or git, one field of that fingerprint is an absolute path:
//! `path`, the hash of the unit's root source file, under `$CARGO_HOME/registry/src/…`
//! or `$CARGO_HOME/git/checkouts/…` (rust-lang/cargo#10915). Restored under another
//! `$CARGO_HOME`, every third-party unit would rebuild. So after a restore we compute
//! what Cargo will compute there: the path hash of the same source under the new home,
//! then each unit's hash again, dependencies first (a unit's hash covers its
//! dependencies' hashes), and write both back.
//!
//! Never a wrong answer: a unit is rewritten only when our hash of its stored JSON
//! reproduces the stored hash (so we read the format as Cargo wrote it) and when its
//! stored `path` is the hash of a source file its dep-info names under a Cargo home
//! (so we know what the path was). Anything else is left as it was, and Cargo rebuilds
//! it. Only `path` and the dependency hashes change: every other input (flags,
//! features, profile, compiler) is still compared by Cargo against the new build.
//! [`verify`] runs at save time, so that a cache under a home-independent key is one
//! whose units this code can carry to another home.
//!
//! Every file read or rewritten is a regular file inside the build directory, reached
//! through real directories and opened without following a link
//! ([`crate::trees::confined`]): a restored cache may hold symlinks anywhere, and a
//! fingerprint or dep-info that is one is left alone (its unit rebuilds).
//!
//! The hash is `rustc-stable-hash`'s SipHasher128 over the fields in the order of
//! Cargo's `impl Hash for Fingerprint` (Cargo 1.85 and later; checked here on the
//! Cargo versions listed in [`RELOCATABLE_CARGO`]).

use std::collections::HashMap;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::artefacts::{file_name, read_dir_sorted};
use crate::trees::confined;

/// Cargo minor versions whose fingerprints this module was checked against (the
/// `rust_cache` tests check the installed one on every run).
pub const RELOCATABLE_CARGO: &[(u64, u64)] = &[(1, 95)];

/// Where registry and git sources live under a Cargo home.
const SOURCE_DIRS: [&str; 2] = ["/registry/src/", "/git/checkouts/"];

/// Cargo's `LocalFingerprint`, same variants in the same order (the derived `Hash`
/// hashes the variant index, then the fields) and the same serde form.
#[derive(Debug, Deserialize, Serialize, Hash)]
enum LocalFingerprint {
    Precalculated(String),
    CheckDepInfo {
        dep_info: PathBuf,
        checksum: bool,
    },
    RerunIfChanged {
        output: PathBuf,
        paths: Vec<PathBuf>,
    },
    RerunIfEnvChanged {
        var: String,
        val: Option<String>,
    },
}

/// The serialised `Fingerprint` (Cargo's `{kind}.json`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fingerprint {
    rustc: u64,
    features: String,
    declared_features: String,
    target: u64,
    profile: u64,
    path: u64,
    /// (package id hash, crate name, public, fingerprint hash).
    deps: Vec<(u64, String, bool, u64)>,
    local: Vec<LocalFingerprint>,
    rustflags: Vec<String>,
    config: u64,
    compile_kind: u64,
}

impl Hash for Fingerprint {
    fn hash<H: Hasher>(&self, h: &mut H) {
        (
            self.rustc,
            &self.features,
            &self.declared_features,
            self.target,
            self.path,
            self.profile,
            &self.local,
            self.config,
            self.compile_kind,
            &self.rustflags,
        )
            .hash(h);
        h.write_usize(self.deps.len());
        for (pkg_id, name, public, fingerprint) in &self.deps {
            pkg_id.hash(h);
            name.hash(h);
            public.hash(h);
            h.write_u64(*fingerprint);
        }
    }
}

/// Cargo's `util::hash_u64`.
fn stable_hash(value: impl Hash) -> u64 {
    let mut hasher = rustc_stable_hash::StableSipHasher128::new();
    value.hash(&mut hasher);
    Hasher::finish(&hasher)
}

/// One fingerprint file pair of a unit, read and checked.
struct FingerprintFile {
    /// `.fingerprint/{unit}/{kind}`: the hash, 16 hex digits of little-endian bytes.
    hash_file: PathBuf,
    json_file: PathBuf,
    /// The unit's directory name, `{package}-{metadata hash}`.
    dir_name: String,
    /// The profile directory (`debug`, `x86_64-…/release`).
    profile: PathBuf,
    json: serde_json::Value,
    fingerprint: Fingerprint,
    stored: u64,
}

/// What [`relocate`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Relocated {
    /// Fingerprints found.
    pub units: usize,
    /// Rewritten for the new home.
    pub rewritten: usize,
    /// Left alone: a format we do not read, or a source we could not place.
    pub unknown: usize,
}

/// Why a build directory's fingerprints cannot be carried to another home.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{count} of Cargo's fingerprints (first: {first}) are not in the format bmat knows")]
    Format { count: usize, first: String },
}

/// Checks that every fingerprint of the units in `unit_dirs` (`.fingerprint/{unit}`
/// directories) is one we read exactly as Cargo wrote it; returns how many there are.
pub fn verify(unit_dirs: &[PathBuf]) -> Result<usize, VerifyError> {
    let mut count = 0;
    let mut unknown = Vec::new();
    for dir in unit_dirs {
        let files = sorted_dir(dir).map_err(|(path, source)| VerifyError::Read { path, source })?;
        for json_file in files {
            let Some(kind) = file_name(&json_file)
                .strip_suffix(".json")
                .map(str::to_owned)
            else {
                continue;
            };
            count += 1;
            if read_unit(dir, &json_file, &dir.join(kind)).is_none() {
                unknown.push(json_file);
            }
        }
    }
    match unknown.first() {
        Some(first) => Err(VerifyError::Format {
            count: unknown.len(),
            first: first.display().to_string(),
        }),
        None => Ok(count),
    }
}

/// Rewrites the fingerprints under `build_dir` of units built under another Cargo
/// home for `cargo_home` (see the module doc). Mtimes of rewritten files are kept:
/// Cargo compares them.
pub fn relocate(build_dir: &Path, cargo_home: &Path) -> io::Result<Relocated> {
    let (mut units, unknown) = load(build_dir).map_err(|(path, e)| {
        io::Error::new(e.kind(), format!("reading {}: {e}", path.display()))
    })?;
    let mut report = Relocated {
        units: units.len() + unknown.len(),
        unknown: unknown.len(),
        ..Relocated::default()
    };
    let dep_infos = DepInfos::index(build_dir)?;
    let new_home = cargo_home
        .to_string_lossy()
        .trim_end_matches('/')
        .to_owned();
    // New path hashes, and the homes the units were built under.
    let mut homes: Vec<String> = Vec::new();
    let mut moved_any = false;
    for unit in &mut units {
        if unit.fingerprint.path == 0 {
            continue; // a build-script run: no source path of its own
        }
        match dep_infos.source_of(unit)? {
            Some((old_home, rel)) if old_home != new_home => {
                unit.fingerprint.path = stable_hash(PathBuf::from(format!("{new_home}{rel}")));
                if !homes.contains(&old_home) {
                    homes.push(old_home);
                }
                moved_any = true;
            }
            Some(_) => {}
            None => report.unknown += 1,
        }
    }
    if !moved_any {
        return Ok(report);
    }
    // Absolute paths under the old home in build-script inputs (rare: most are
    // package-relative) follow the sources.
    for unit in &mut units {
        for local in &mut unit.fingerprint.local {
            if let LocalFingerprint::RerunIfChanged { paths, .. } = local {
                for path in paths.iter_mut() {
                    *path = rehome(path, &homes, &new_home);
                }
            }
        }
    }
    // Dependencies first: a unit's hash covers its dependencies' new hashes.
    let by_stored: HashMap<u64, usize> = units
        .iter()
        .enumerate()
        .map(|(i, u)| (u.stored, i))
        .collect();
    let mut new_hash: HashMap<u64, u64> = HashMap::new();
    for i in 0..units.len() {
        rehash(i, &mut units, &by_stored, &mut new_hash);
    }
    for unit in &units {
        let hash = new_hash.get(&unit.stored).copied().unwrap_or(unit.stored);
        if hash == unit.stored {
            continue;
        }
        if !write_unit(build_dir, unit, hash)? {
            report.unknown += 1;
            continue;
        }
        dep_infos.rehome(unit, &homes, &new_home)?;
        report.rewritten += 1;
    }
    Ok(report)
}

fn rehash(
    i: usize,
    units: &mut [FingerprintFile],
    by_stored: &HashMap<u64, usize>,
    new_hash: &mut HashMap<u64, u64>,
) -> u64 {
    if let Some(hash) = new_hash.get(&units[i].stored) {
        return *hash;
    }
    let deps: Vec<u64> = units[i].fingerprint.deps.iter().map(|d| d.3).collect();
    let mut mapped = Vec::with_capacity(deps.len());
    for dep in deps {
        mapped.push(match by_stored.get(&dep) {
            Some(&j) if j != i => rehash(j, units, by_stored, new_hash),
            _ => dep,
        });
    }
    for (dep, hash) in units[i].fingerprint.deps.iter_mut().zip(mapped) {
        dep.3 = hash;
    }
    let hash = stable_hash(&units[i].fingerprint);
    new_hash.insert(units[i].stored, hash);
    hash
}

fn rehome(path: &Path, homes: &[String], new_home: &str) -> PathBuf {
    let text = path.to_string_lossy();
    for home in homes {
        if let Some(rest) = text.strip_prefix(home.as_str())
            && rest.starts_with('/')
        {
            return PathBuf::from(format!("{new_home}{rest}"));
        }
    }
    path.to_owned()
}

/// Writes the JSON (the fields we changed, the rest as Cargo wrote it) and the hash,
/// keeping their mtimes. False when either is no longer a regular file of
/// `build_dir` (Cargo then finds the unit stale and rebuilds it).
fn write_unit(build_dir: &Path, unit: &FingerprintFile, hash: u64) -> io::Result<bool> {
    let mut json = unit.json.clone();
    json["path"] = unit.fingerprint.path.into();
    if let Some(deps) = json["deps"].as_array_mut() {
        for (dep, ours) in deps.iter_mut().zip(&unit.fingerprint.deps) {
            dep[3] = ours.3.into();
        }
    }
    json["local"] = serde_json::to_value(&unit.fingerprint.local).map_err(io::Error::other)?;
    let text = serde_json::to_string(&json).map_err(io::Error::other)?;
    Ok(
        confined::rewrite_keeping_mtime(build_dir, &unit.json_file, text.as_bytes())?
            && confined::rewrite_keeping_mtime(
                build_dir,
                &unit.hash_file,
                hex::encode(hash.to_le_bytes()).as_bytes(),
            )?,
    )
}

/// Every fingerprint under the profile directories of `build_dir`: those we read
/// exactly, and the files of those we do not.
#[allow(clippy::type_complexity)]
fn load(build_dir: &Path) -> Result<(Vec<FingerprintFile>, Vec<PathBuf>), (PathBuf, io::Error)> {
    let mut units = Vec::new();
    let mut unknown = Vec::new();
    let profiles = super::artefacts::profile_dirs(build_dir).map_err(|e| (build_dir.into(), e))?;
    for profile in profiles {
        let fingerprints = profile.join(".fingerprint");
        for dir in sorted_dir(&fingerprints)? {
            let dir_name = file_name(&dir);
            for json_file in sorted_dir(&dir)? {
                let Some(kind) = file_name(&json_file)
                    .strip_suffix(".json")
                    .map(str::to_owned)
                else {
                    continue;
                };
                let hash_file = dir.join(kind);
                match read_unit(build_dir, &json_file, &hash_file) {
                    Some((json, fingerprint, stored)) => units.push(FingerprintFile {
                        hash_file,
                        json_file,
                        dir_name: dir_name.clone(),
                        profile: profile.clone(),
                        json,
                        fingerprint,
                        stored,
                    }),
                    None => unknown.push(json_file),
                }
            }
        }
    }
    Ok((units, unknown))
}

/// The unit's JSON and stored hash, when both are regular files of `root` and our
/// hash of the one is the other.
fn read_unit(
    root: &Path,
    json_file: &Path,
    hash_file: &Path,
) -> Option<(serde_json::Value, Fingerprint, u64)> {
    let text = confined::read_to_string(root, json_file).ok()??;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let fingerprint: Fingerprint = serde_json::from_value(json.clone()).ok()?;
    let stored = hex::decode(confined::read_to_string(root, hash_file).ok()??.trim()).ok()?;
    let stored = u64::from_le_bytes(stored.try_into().ok()?);
    (stable_hash(&fingerprint) == stored).then_some((json, fingerprint, stored))
}

fn sorted_dir(dir: &Path) -> Result<Vec<PathBuf>, (PathBuf, io::Error)> {
    read_dir_sorted(dir).map_err(|e| (dir.to_owned(), e))
}

/// rustc's dep-info files (`*.d`) of each profile directory, by unit hash: they name
/// a unit's source files by absolute path. Only regular files of `build_dir` are read
/// or rewritten.
struct DepInfos {
    build_dir: PathBuf,
    by_unit: HashMap<(PathBuf, String), Vec<PathBuf>>,
}

impl DepInfos {
    fn index(build_dir: &Path) -> io::Result<DepInfos> {
        let mut by_unit: HashMap<(PathBuf, String), Vec<PathBuf>> = HashMap::new();
        for profile in super::artefacts::profile_dirs(build_dir)? {
            // deps/{crate}-{hash}.d: a library's, keyed by the unit hash.
            for file in fs::read_dir(profile.join("deps"))
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = file.file_name().to_string_lossy().into_owned();
                if let Some(hash) = name
                    .strip_suffix(".d")
                    .and_then(|stem| stem.rsplit_once('-'))
                    .map(|(_, hash)| hash.to_owned())
                {
                    by_unit
                        .entry((profile.clone(), hash))
                        .or_default()
                        .push(file.path());
                }
            }
            // build/{package}-{hash}/*.d: a build script's.
            for dir in fs::read_dir(profile.join("build"))
                .into_iter()
                .flatten()
                .flatten()
            {
                let dir_name = dir.file_name().to_string_lossy().into_owned();
                let Some((_, hash)) = dir_name.rsplit_once('-') else {
                    continue;
                };
                for file in fs::read_dir(dir.path()).into_iter().flatten().flatten() {
                    if file.path().extension().is_some_and(|e| e == "d") {
                        by_unit
                            .entry((profile.clone(), hash.to_owned()))
                            .or_default()
                            .push(file.path());
                    }
                }
            }
        }
        Ok(DepInfos {
            build_dir: build_dir.to_owned(),
            by_unit,
        })
    }

    fn files_of(&self, unit: &FingerprintFile) -> &[PathBuf] {
        let hash = unit
            .dir_name
            .rsplit_once('-')
            .map_or("", |(_, hash)| hash)
            .to_owned();
        self.by_unit
            .get(&(unit.profile.clone(), hash))
            .map_or(&[], Vec::as_slice)
    }

    /// The Cargo home the unit was built under and its source's path below it
    /// (`/registry/src/…`), if a source its dep-info names hashes to its `path`.
    fn source_of(&self, unit: &FingerprintFile) -> io::Result<Option<(String, String)>> {
        for file in self.files_of(unit) {
            let Some(text) = confined::read_to_string(&self.build_dir, file)? else {
                continue;
            };
            for source in first_rule_sources(&text) {
                if stable_hash(PathBuf::from(&source)) != unit.fingerprint.path {
                    continue;
                }
                return Ok(SOURCE_DIRS.iter().find_map(|dir| {
                    let at = source.find(dir)?;
                    Some((source[..at].to_owned(), source[at..].to_owned()))
                }));
            }
        }
        Ok(None)
    }

    /// Rewrites the old homes in the unit's dep-info files for the new one, so that a
    /// cache saved from here can be carried on again.
    fn rehome(&self, unit: &FingerprintFile, homes: &[String], new_home: &str) -> io::Result<()> {
        if needs_escape(new_home) {
            return Ok(());
        }
        for file in self.files_of(unit) {
            let Some(text) = confined::read_to_string(&self.build_dir, file)? else {
                continue;
            };
            let mut out = text.clone();
            for home in homes.iter().filter(|h| !needs_escape(h)) {
                out = out.replace(&format!("{home}/"), &format!("{new_home}/"));
            }
            if out != text {
                confined::rewrite_keeping_mtime(&self.build_dir, file, out.as_bytes())?;
            }
        }
        Ok(())
    }
}

/// Paths that Makefile syntax would escape are left alone (rewriting them safely is
/// not worth it for homes that contain spaces).
fn needs_escape(path: &str) -> bool {
    path.contains([' ', '#', '$', ':', '\\'])
}

/// The prerequisites of the first rule of a dep-info file: the crate's sources, its
/// root first.
fn first_rule_sources(text: &str) -> Vec<String> {
    let Some(line) = text.lines().find(|l| !l.trim().is_empty()) else {
        return Vec::new();
    };
    // `target: dep dep …`, spaces in names escaped as `\ `.
    let Some((_, deps)) = line.split_once(": ") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = deps.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => {
                current.push(' ');
                chars.next();
            }
            ' ' => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Taken from a real build of testdata/rust-fixture with Cargo 1.95.0, CARGO_HOME
    // /tmp/exp/a/home: itoa's library unit.
    const ITOA_JSON: &str = r#"{"rustc":7458672600737419911,"features":"[]","declared_features":"[\"no-panic\"]","target":18426369533666673425,"profile":7635317847884279253,"path":684246354831331206,"deps":[],"local":[{"CheckDepInfo":{"dep_info":"debug/.fingerprint/itoa-e44c1924346ebe9d/dep-lib-itoa","checksum":false}}],"rustflags":[],"config":8247474407144887393,"compile_kind":0}"#;
    const ITOA_HASH: &str = "4d6adcaeda2faad4";
    const ITOA_SOURCE: &str =
        "/tmp/exp/a/home/registry/src/index.crates.io-1949cf8c6b5b557f/itoa-1.0.19/src/lib.rs";

    #[test]
    fn our_hash_is_cargos() {
        let fingerprint: Fingerprint = serde_json::from_str(ITOA_JSON).expect("json");
        assert_eq!(
            hex::encode(stable_hash(&fingerprint).to_le_bytes()),
            ITOA_HASH
        );
        assert_eq!(stable_hash(PathBuf::from(ITOA_SOURCE)), fingerprint.path);
    }

    #[test]
    fn local_fingerprints_serialise_as_cargo_wrote_them() {
        let json: serde_json::Value = serde_json::from_str(ITOA_JSON).expect("json");
        let fingerprint: Fingerprint = serde_json::from_value(json.clone()).expect("ours");
        assert_eq!(
            serde_json::to_value(&fingerprint.local).expect("local"),
            json["local"]
        );
    }

    #[test]
    fn an_unknown_field_is_not_our_format() {
        let changed = ITOA_JSON.replace("\"config\"", "\"new_field\":1,\"config\"");
        assert!(serde_json::from_str::<Fingerprint>(&changed).is_err());
    }

    #[test]
    fn dep_info_sources_come_in_order_with_escapes() {
        let text =
            "/t/deps/x-1.d: /h/registry/src/i/x-1.0/src/lib.rs /h/a\\ b.rs\n\n/h/a\\ b.rs:\n";
        assert_eq!(
            first_rule_sources(text),
            ["/h/registry/src/i/x-1.0/src/lib.rs", "/h/a b.rs"]
        );
    }

    /// A build directory with one unit built under `old_home`, its dep-info
    /// `deps/zz-{hash}.d` a symlink to `outside` (and, with `real_dep_info`, a true
    /// dep-info beside it).
    fn crafted_build_dir(build: &Path, old_home: &str, outside: &Path, real_dep_info: bool) {
        let hash = "e44c1924346ebe9d";
        let unit = build.join(format!("debug/.fingerprint/itoa-{hash}"));
        let deps = build.join("debug/deps");
        fs::create_dir_all(&unit).expect("mkdir");
        fs::create_dir_all(&deps).expect("mkdir");
        let source = format!("{old_home}/registry/src/i/itoa-1.0.19/src/lib.rs");
        let mut json: serde_json::Value = serde_json::from_str(ITOA_JSON).expect("json");
        json["path"] = stable_hash(PathBuf::from(&source)).into();
        let fingerprint: Fingerprint = serde_json::from_value(json.clone()).expect("ours");
        fs::write(unit.join("lib-itoa.json"), json.to_string()).expect("write");
        let stored = hex::encode(stable_hash(&fingerprint).to_le_bytes());
        fs::write(unit.join("lib-itoa"), stored).expect("write");
        let rule = format!(
            "{}: {source}\n",
            deps.join(format!("libitoa-{hash}.rmeta")).display()
        );
        if real_dep_info {
            fs::write(deps.join(format!("itoa-{hash}.d")), &rule).expect("write");
        }
        fs::write(outside, &rule).expect("write");
        std::os::unix::fs::symlink(outside, deps.join(format!("zz-{hash}.d"))).expect("symlink");
    }

    #[test]
    fn a_dep_info_symlinked_out_of_the_build_directory_is_left_alone() {
        for real_dep_info in [true, false] {
            let (build, elsewhere) = (
                tempfile::tempdir().expect("dir"),
                tempfile::tempdir().expect("dir"),
            );
            let outside = elsewhere.path().join("victim");
            crafted_build_dir(build.path(), "/old/home", &outside, real_dep_info);
            let before = fs::read(&outside).expect("read");
            let done = relocate(build.path(), Path::new("/new/home")).expect("relocate");
            assert_eq!(
                fs::read(&outside).expect("read"),
                before,
                "relocation wrote through the symlink (real dep-info: {real_dep_info})"
            );
            // With a dep-info of its own the unit still moves; with only the link it is
            // left for Cargo to rebuild.
            assert_eq!(done.rewritten, usize::from(real_dep_info), "{done:?}");
        }
    }

    #[test]
    fn paths_under_an_old_home_move_to_the_new_one() {
        let homes = ["/home/a/.cargo".to_owned()];
        assert_eq!(
            rehome(Path::new("/home/a/.cargo/registry/src/x"), &homes, "/b"),
            Path::new("/b/registry/src/x")
        );
        assert_eq!(
            rehome(Path::new("/home/a/.cargo2/x"), &homes, "/b"),
            Path::new("/home/a/.cargo2/x")
        );
        assert_eq!(
            rehome(Path::new("build.rs"), &homes, "/b"),
            Path::new("build.rs")
        );
    }
}
