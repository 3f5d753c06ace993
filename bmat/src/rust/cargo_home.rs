//! What of Cargo's home goes into a Rust cache: what a fresh runner would otherwise
//! download before the restored artefacts are of any use.
//!
//! - `registry/index/{index}/config.json` and the index cache entries
//!   (`.cache/…/{name}`) of the packages in Cargo.lock: `--offline` resolves from them;
//! - `registry/cache/{index}/{name}-{version}.crate` of those packages: Cargo unpacks
//!   them into `registry/src` itself, which is therefore not cached;
//! - `git/db/{repo}` and `git/checkouts/{repo}/{rev}` of git dependencies at their
//!   locked commits.
//!
//! Nothing else: not `bin/` (installed tools), not credentials or config. Selecting
//! from Cargo.lock also prunes: `.crate` files and checkouts of versions that left it
//! are not saved again.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::artefacts::{file_name, read_dir_sorted};
use super::lockfile::LockedPackage;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct HomeSelection {
    /// Paths relative to the Cargo home, directories included whole.
    pub paths: Vec<PathBuf>,
    /// `.crate` files taken.
    pub crates: usize,
    /// Git checkouts taken.
    pub checkouts: usize,
}

pub fn select(cargo_home: &Path, packages: &[LockedPackage]) -> io::Result<HomeSelection> {
    let mut selection = HomeSelection::default();
    let registry_packages: Vec<&LockedPackage> =
        packages.iter().filter(|p| p.git_rev().is_none()).collect();
    for index in subdirs(&cargo_home.join("registry/cache"))? {
        let name = file_name(&index);
        for p in &registry_packages {
            let file = index.join(format!("{}-{}.crate", p.name, p.version));
            if file.is_file() {
                selection.paths.push(
                    Path::new("registry/cache")
                        .join(&name)
                        .join(file_name(&file)),
                );
                selection.crates += 1;
            }
        }
    }
    for index in subdirs(&cargo_home.join("registry/index"))? {
        let rel = Path::new("registry/index").join(file_name(&index));
        if index.join("config.json").is_file() {
            selection.paths.push(rel.join("config.json"));
        }
        for p in &registry_packages {
            let entry = Path::new(".cache").join(index_path(&p.name));
            if index.join(&entry).is_file() {
                selection.paths.push(rel.join(entry));
            }
        }
    }
    let revs: Vec<&str> = packages.iter().filter_map(LockedPackage::git_rev).collect();
    for repo in subdirs(&cargo_home.join("git/checkouts"))? {
        let repo_name = file_name(&repo);
        let mut taken = false;
        for checkout in subdirs(&repo)? {
            let short = file_name(&checkout);
            if !short.is_empty() && revs.iter().any(|rev| rev.starts_with(short.as_str())) {
                selection
                    .paths
                    .push(Path::new("git/checkouts").join(&repo_name).join(short));
                selection.checkouts += 1;
                taken = true;
            }
        }
        let db = Path::new("git/db").join(&repo_name);
        if taken && cargo_home.join(&db).is_dir() {
            selection.paths.push(db);
        }
    }
    selection.paths.sort();
    selection.paths.dedup();
    Ok(selection)
}

/// Where the index cache keeps a package's entry: Cargo's layout by name length,
/// lowercased (`1/a`, `2/ab`, `3/a/abc`, `ab/cd/abcd…`).
fn index_path(name: &str) -> PathBuf {
    let name = name.to_lowercase();
    match name.len() {
        1 => Path::new("1").join(&name),
        2 => Path::new("2").join(&name),
        3 => Path::new("3").join(&name[..1]).join(&name),
        _ => Path::new(&name[..2]).join(&name[2..4]).join(&name),
    }
}

fn subdirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(read_dir_sorted(dir)?
        .into_iter()
        .filter(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(name: &str, version: &str, source: &str) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            version: version.into(),
            source: Some(source.into()),
            checksum: None,
        }
    }

    fn touch(root: &Path, rel: &str) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, b"x").expect("write");
    }

    #[test]
    fn index_entries_follow_cargos_layout() {
        assert_eq!(index_path("a"), Path::new("1/a"));
        assert_eq!(index_path("cc"), Path::new("2/cc"));
        assert_eq!(index_path("syn"), Path::new("3/s/syn"));
        assert_eq!(index_path("Serde_JSON"), Path::new("se/rd/serde_json"));
    }

    #[test]
    fn takes_what_the_lock_uses_and_nothing_else() {
        let home = tempfile::tempdir().expect("tmp");
        let h = home.path();
        let idx = "index.crates.io-1949cf8c6b5b557f";
        for rel in [
            format!("registry/cache/{idx}/itoa-1.0.19.crate"),
            format!("registry/cache/{idx}/itoa-1.0.18.crate"),
            format!("registry/index/{idx}/config.json"),
            format!("registry/index/{idx}/.cache/it/oa/itoa"),
            format!("registry/index/{idx}/.cache/3/s/syn"),
            format!("registry/src/{idx}/itoa-1.0.19/src/lib.rs"),
            "git/db/dep-0123/HEAD".to_owned(),
            "git/checkouts/dep-0123/abcdef1/src/lib.rs".to_owned(),
            "git/checkouts/dep-0123/9999999/src/lib.rs".to_owned(),
            "git/db/other-4567/HEAD".to_owned(),
            "bin/cargo-nextest".to_owned(),
            "credentials.toml".to_owned(),
        ] {
            touch(h, &rel);
        }
        let lock = [
            package(
                "itoa",
                "1.0.19",
                "registry+https://github.com/rust-lang/crates.io-index",
            ),
            package(
                "dep",
                "0.1.0",
                "git+https://example.com/dep#abcdef1234567890",
            ),
        ];
        let got = select(h, &lock).expect("select");
        let paths: Vec<String> = got.paths.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            paths,
            [
                "git/checkouts/dep-0123/abcdef1".to_owned(),
                "git/db/dep-0123".to_owned(),
                format!("registry/cache/{idx}/itoa-1.0.19.crate"),
                format!("registry/index/{idx}/.cache/it/oa/itoa"),
                format!("registry/index/{idx}/config.json"),
            ]
        );
        assert_eq!((got.crates, got.checkouts), (1, 1));
    }
}
