//! The workspace layer: the members' build units, saved beside the dependency cache
//! under a key derived from the dependency key and the members' state, restored after
//! it, and kept fresh by content ([`super::freshness`]). Its manifest
//! ([`MANIFEST`], in the build directory) records the members' files as they were
//! built and the units saved.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::artefacts;
use super::freshness::{self, SourceManifest};
use super::workspace::{MemberPackage, Workspace};
use crate::trees::times::Mtime;

/// The layer's manifest, in the build directory (saved and restored with the units).
pub const MANIFEST: &str = ".bmat-workspace-layer.json";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerManifest {
    /// The units' paths, relative to the build directory.
    pub units: Vec<String>,
    pub sources: SourceManifest,
    /// The workspace root the saved `incremental/` state was made at, if any: rustc
    /// reuses it only there. Not in the key.
    #[serde(default)]
    pub incremental_at: Option<String>,
}

/// Every layer of a dependency key starts with this: `rust-deps-REST` → `rust-ws-REST-`.
pub fn prefix(deps_key: &str) -> String {
    format!(
        "rust-ws-{}-",
        deps_key.strip_prefix("rust-deps-").unwrap_or(deps_key)
    )
}

/// The layer's key: the prefix and a hash of the members' sources and units, so an
/// unchanged workspace saves under the key it restored (and uploads nothing).
pub fn key(prefix: &str, manifest: &LayerManifest) -> String {
    let mut hasher = Sha256::new();
    for unit in &manifest.units {
        hasher.update(format!("unit {unit}\n"));
    }
    for f in &manifest.sources.files {
        hasher.update(format!("source {} {}\n", f.path, f.sha256));
    }
    format!("{prefix}{}", &hex::encode(hasher.finalize())[..20])
}

/// A layer ready to save.
#[derive(Debug)]
pub struct LayerSave {
    pub key: String,
    /// Relative to the build directory, the manifest included.
    pub paths: Vec<PathBuf>,
    pub units: usize,
}

/// Selects the members' units and records their sources; writes the manifest into
/// the build directory. `None` when no member has been built.
pub fn prepare_save(workspace: &Workspace, deps_key: &str) -> io::Result<Option<LayerSave>> {
    let build_dir = &workspace.build_dir;
    let units = artefacts::select_members(build_dir, &workspace.members)?;
    if units.is_empty() {
        return Ok(None);
    }
    let dirs: Vec<PathBuf> = workspace.packages.iter().map(|p| p.dir.clone()).collect();
    let mut sources = freshness::record(&workspace.root, &dirs, std::slice::from_ref(build_dir))?;
    // A file changed after its member was last built must not pass for what the
    // outputs were built from: left out, it counts as added at restore (a rebuild).
    let built_at = built_at(build_dir, &units, &workspace.packages)?;
    sources.files.retain(|f| {
        let member = owner(&workspace.packages, &workspace.root.join(&f.path));
        let mtime = Mtime {
            secs: f.secs,
            nanos: f.nanos,
        };
        member
            .and_then(|m| built_at.iter().find(|(name, _)| name == m))
            .is_some_and(|(_, at)| mtime.as_nanos() <= at.as_nanos())
    });
    // Incremental state spares a rebuilt member most of its work, but rustc reuses
    // it only at the checkout path it was made at (measured on the bench workspace, a
    // core change: 1.6 s with it at that path, 6.6 s without; 6.8 s with it at another
    // path, 7.2 s without). rustc checks it, so it is never a stale-code risk.
    let incremental = artefacts::incremental_dirs(build_dir)?;
    let manifest = LayerManifest {
        units: units.iter().map(|u| u.display().to_string()).collect(),
        sources,
        incremental_at: (!incremental.is_empty()).then(|| workspace.root.display().to_string()),
    };
    let text = serde_json::to_vec(&manifest).map_err(io::Error::other)?;
    fs::write(build_dir.join(MANIFEST), text)?;
    let mut paths = units.clone();
    paths.extend(incremental);
    paths.push(PathBuf::from(MANIFEST));
    Ok(Some(LayerSave {
        key: key(&prefix(deps_key), &manifest),
        paths,
        units: units.len(),
    }))
}

/// For each member with units, the oldest time one of its units was built (the
/// mtime of its fingerprints' dep-info files, which Cargo compares sources against).
fn built_at(
    build_dir: &Path,
    units: &[PathBuf],
    packages: &[MemberPackage],
) -> io::Result<Vec<(String, Mtime)>> {
    let mut out: Vec<(String, Mtime)> = Vec::new();
    for unit in units {
        let Some(parent) = unit.parent() else {
            continue;
        };
        if !parent.ends_with(".fingerprint") {
            continue;
        }
        let name = artefacts::file_name(unit);
        let Some(package) = packages
            .iter()
            .find(|p| name.rsplit_once('-').is_some_and(|(n, _)| n == p.name))
        else {
            continue;
        };
        for file in artefacts::read_dir_sorted(&build_dir.join(unit))? {
            if !artefacts::file_name(&file).starts_with("dep-") {
                continue;
            }
            let m = Mtime::of(&fs::metadata(&file)?);
            match out.iter_mut().find(|(n, _)| *n == package.name) {
                Some((_, at)) if m.as_nanos() < at.as_nanos() => *at = m,
                Some(_) => {}
                None => out.push((package.name.clone(), m)),
            }
        }
    }
    Ok(out)
}

/// The member whose directory holds `path`, the innermost one.
fn owner<'a>(packages: &'a [MemberPackage], path: &Path) -> Option<&'a str> {
    packages
        .iter()
        .filter(|p| path.starts_with(&p.dir))
        .max_by_key(|p| p.dir.components().count())
        .map(|p| p.name.as_str())
}

/// What the restore of a layer did to the checkout.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Refreshed {
    pub members: usize,
    /// Members with a changed, added or removed file, and the members that depend on
    /// them: Cargo rebuilds these.
    pub rebuild: Vec<String>,
    /// Files given back their recorded time.
    pub files_restored: usize,
    /// How far recorded times were moved back (the saving clock ran ahead, or a
    /// changed file is older than the outputs), in seconds.
    pub shifted_secs: f64,
    /// Where the layer's incremental state was made, when that is not this
    /// checkout: rustc will not reuse it here.
    pub incremental_at: Option<String>,
}

impl Refreshed {
    /// `workspace: 7 of 9 members restored fresh, 2 to rebuild (ignore, ripgrep)`.
    pub fn line(&self) -> String {
        let fresh = self.members - self.rebuild.len();
        let mut line = format!(
            "workspace: {fresh} of {} members restored fresh",
            self.members
        );
        if !self.rebuild.is_empty() {
            line.push_str(&format!(
                ", {} to rebuild ({})",
                self.rebuild.len(),
                self.rebuild.join(", ")
            ));
        }
        if let Some(at) = &self.incremental_at {
            line.push_str(&format!(
                "; its incremental state is for {at} (rustc reuses it only at that path)"
            ));
        }
        line
    }
}

/// After a layer was restored: gives unchanged sources their recorded times and
/// moves the layer's outputs with them (see [`super::freshness`]).
pub fn refresh(workspace: &Workspace) -> io::Result<Refreshed> {
    let build_dir = &workspace.build_dir;
    let text = fs::read(build_dir.join(MANIFEST))?;
    let manifest: LayerManifest = serde_json::from_slice(&text).map_err(io::Error::other)?;
    let dirs: Vec<PathBuf> = workspace.packages.iter().map(|p| p.dir.clone()).collect();
    let mut cmp = freshness::compare(
        &workspace.root,
        &dirs,
        std::slice::from_ref(build_dir),
        &manifest.sources,
    )?;
    // Cargo runs a build script without `rerun-if-changed` again when its package's
    // newest mtime is not the recorded one. A member that only lost a file, its other
    // files given their recorded times back, would show the recorded newest time, and
    // a script that read the removed file (listed a directory) would not run. Such a
    // member's files keep the checkout's times: a rebuild, never stale.
    let lost: HashSet<&str> = cmp
        .removed
        .iter()
        .filter_map(|rel| owner(&workspace.packages, &workspace.root.join(rel)))
        .collect();
    cmp.unchanged
        .retain(|(path, _)| owner(&workspace.packages, path).is_none_or(|m| !lost.contains(m)));
    // Every unit's outputs, the dependency cache's as well as the layer's, as restored
    // (with the saving clock's times): moved together, a member stays newer than the
    // dependencies it was built against, which Cargo checks too.
    let mut paths = Vec::new();
    for profile in artefacts::profile_dirs(build_dir)? {
        for dir in [".fingerprint", "deps", "build"] {
            let dir = profile.join(dir);
            if !dir.is_dir() {
                continue;
            }
            for entry in walkdir::WalkDir::new(dir) {
                paths.push(entry.map_err(io::Error::other)?.into_path());
            }
        }
    }
    let newest_source = cmp
        .unchanged
        .iter()
        .map(|(_, m)| *m)
        .max_by_key(|m| m.as_nanos());
    let outputs = freshness::Outputs::scan(paths)?;
    let newest_output = outputs.newest();
    let newest = [newest_source, newest_output]
        .into_iter()
        .flatten()
        .max_by_key(|m| m.as_nanos());
    let shift = newest.map_or(0, |n| freshness::shift(n, cmp.oldest_changed, Mtime::now()));
    let files_restored = cmp.unchanged.len();
    freshness::apply(&cmp.unchanged, &outputs, shift)?;

    let dirty: Vec<&str> = cmp
        .changed
        .iter()
        .chain(&cmp.added)
        .chain(&cmp.removed)
        .filter_map(|rel| owner(&workspace.packages, &workspace.root.join(rel)))
        .collect();
    Ok(Refreshed {
        members: workspace.packages.len(),
        rebuild: with_dependents(&workspace.packages, &dirty),
        files_restored,
        shifted_secs: -(shift as f64) / 1e9,
        incremental_at: manifest
            .incremental_at
            .filter(|at| Path::new(at) != workspace.root),
    })
}

/// `dirty` and every member that depends on one of them, transitively, sorted.
fn with_dependents(packages: &[MemberPackage], dirty: &[&str]) -> Vec<String> {
    let mut set: BTreeSet<String> = dirty.iter().map(|s| s.to_string()).collect();
    loop {
        let before = set.len();
        for p in packages {
            if p.depends_on.iter().any(|d| set.contains(d)) {
                set.insert(p.name.clone());
            }
        }
        if set.len() == before {
            break;
        }
    }
    let members: HashSet<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    set.into_iter()
        .filter(|n| members.contains(n.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, dir: &str, deps: &[&str]) -> MemberPackage {
        MemberPackage {
            name: name.into(),
            dir: PathBuf::from("/ws").join(dir),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn a_change_rebuilds_its_member_and_everything_that_depends_on_it() {
        let packages = [
            member("core", "core", &[]),
            member("store", "store", &["core"]),
            member("cli", "cli", &["store"]),
            member("leaf", "leaf", &[]),
        ];
        assert_eq!(
            owner(&packages, Path::new("/ws/store/src/lib.rs")),
            Some("store")
        );
        assert_eq!(owner(&packages, Path::new("/ws/README.md")), None);
        assert_eq!(
            with_dependents(&packages, &["core"]),
            ["cli", "core", "store"]
        );
        assert_eq!(with_dependents(&packages, &["leaf"]), ["leaf"]);
        let r = Refreshed {
            members: 4,
            rebuild: with_dependents(&packages, &["store"]),
            ..Refreshed::default()
        };
        assert_eq!(
            r.line(),
            "workspace: 2 of 4 members restored fresh, 2 to rebuild (cli, store)"
        );
        let elsewhere = Refreshed {
            incremental_at: Some("/a/ws".into()),
            ..r
        };
        assert_eq!(
            elsewhere.line(),
            "workspace: 2 of 4 members restored fresh, 2 to rebuild (cli, store); its \
             incremental state is for /a/ws (rustc reuses it only at that path)"
        );
    }

    #[test]
    fn the_layer_key_follows_the_dependency_key_and_the_members_state() {
        let deps = "rust-deps-1.95.0-x86_64-unknown-linux-gnu-0123456789abcdef0123";
        let p = prefix(deps);
        assert_eq!(
            p,
            "rust-ws-1.95.0-x86_64-unknown-linux-gnu-0123456789abcdef0123-"
        );
        assert!(
            !p.starts_with("rust-deps-"),
            "a dependency fallback would take a layer"
        );
        let mut m = LayerManifest::default();
        let empty = key(&p, &m);
        m.units
            .push("debug/.fingerprint/core-0123456789abcdef".into());
        assert_ne!(key(&p, &m), empty);
        assert_eq!(bmat_wire::validate_key(&key(&p, &m)), Ok(()));
    }
}
