//! The workspace as `cargo metadata` describes it: its root, build directory and
//! members.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// What `cargo metadata` tells about the workspace.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub root: PathBuf,
    /// `build_directory` (Cargo ≥ 1.91), else the target directory.
    pub build_dir: PathBuf,
    pub members: HashSet<String>,
    /// Each member's directory and the members it depends on, by name.
    pub packages: Vec<MemberPackage>,
}

/// A workspace member as the workspace layer needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberPackage {
    pub name: String,
    /// The directory of its Cargo.toml.
    pub dir: PathBuf,
    /// Members it depends on (any kind of dependency).
    pub depends_on: Vec<String>,
}

/// `cargo metadata --no-deps`: no dependency resolution, so Cargo.lock is never
/// rewritten and nothing is downloaded.
pub fn locate(manifest: &Path) -> anyhow::Result<Workspace> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .manifest_path(manifest)
        .no_deps()
        .exec()
        .map_err(|e| {
            anyhow::anyhow!(
                "cargo metadata failed for {}: {}",
                manifest.display(),
                first_line(&e.to_string())
            )
        })?;
    let build_dir = metadata
        .build_directory
        .clone()
        .unwrap_or_else(|| metadata.target_directory.clone());
    let members: HashSet<String> = metadata
        .workspace_packages()
        .into_iter()
        .map(|p| p.name.to_string())
        .collect();
    let packages = metadata
        .workspace_packages()
        .into_iter()
        .map(|p| MemberPackage {
            name: p.name.to_string(),
            dir: p
                .manifest_path
                .parent()
                .map(|d| d.to_path_buf().into_std_path_buf())
                .unwrap_or_default(),
            depends_on: p
                .dependencies
                .iter()
                .filter(|d| d.path.is_some() && members.contains(d.name.as_str()))
                .map(|d| d.name.clone())
                .collect(),
        })
        .collect();
    Ok(Workspace {
        root: metadata.workspace_root.clone().into_std_path_buf(),
        build_dir: build_dir.into_std_path_buf(),
        members,
        packages,
    })
}

fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}
