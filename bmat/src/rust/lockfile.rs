//! The third-party entries of a Cargo.lock: the packages whose artefacts we cache.
//!
//! A package with a `source` (`registry+`, `sparse+`, `git+`) comes from outside the
//! workspace; one without is a path package, i.e. part of the workspace (or vendored
//! next to it), and is rebuilt by the job anyway.

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub checksum: Option<String>,
}

impl LockedPackage {
    pub fn is_third_party(&self) -> bool {
        self.source.as_deref().is_some_and(|s| {
            s.starts_with("registry+") || s.starts_with("sparse+") || s.starts_with("git+")
        })
    }

    /// The commit of a git source (`git+URL?branch=x#<rev>`).
    pub fn git_rev(&self) -> Option<&str> {
        let source = self.source.as_deref()?;
        if !source.starts_with("git+") {
            return None;
        }
        source.rsplit_once('#').map(|(_, rev)| rev)
    }

    /// One stable line for the key hash.
    pub fn key_line(&self) -> String {
        format!(
            "{} {} {} {}",
            self.name,
            self.version,
            self.source.as_deref().unwrap_or("-"),
            self.checksum.as_deref().unwrap_or("-")
        )
    }
}

#[derive(Deserialize)]
struct LockFile {
    #[serde(default, rename = "package")]
    packages: Vec<LockedPackage>,
}

/// The third-party packages of a Cargo.lock, sorted.
pub fn third_party(lock_text: &str) -> anyhow::Result<Vec<LockedPackage>> {
    let lock: LockFile =
        toml::from_str(lock_text).map_err(|e| anyhow::anyhow!("Cargo.lock is not valid: {e}"))?;
    let mut packages: Vec<LockedPackage> = lock
        .packages
        .into_iter()
        .filter(LockedPackage::is_third_party)
        .collect();
    packages.sort();
    Ok(packages)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = r#"
version = 4

[[package]]
name = "fixture-app"
version = "0.1.0"
dependencies = ["libc"]

[[package]]
name = "libc"
version = "0.2.191"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "abc"

[[package]]
name = "from-git"
version = "0.3.0"
source = "git+https://example.com/repo?branch=main#0123456789abcdef"

[[package]]
name = "sparse-one"
version = "1.0.0"
source = "sparse+https://index.example.com/"
"#;

    #[test]
    fn keeps_registry_sparse_and_git_packages_only() {
        let names: Vec<String> = third_party(LOCK)
            .expect("lock")
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["from-git", "libc", "sparse-one"]);
    }

    #[test]
    fn reads_the_git_revision() {
        let git = third_party(LOCK).expect("lock").remove(0);
        assert_eq!(git.git_rev(), Some("0123456789abcdef"));
    }

    #[test]
    fn a_broken_lock_is_an_error() {
        assert!(third_party("[[package]]\nname = 3").is_err());
    }
}
