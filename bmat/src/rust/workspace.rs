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
    Ok(Workspace {
        root: metadata.workspace_root.clone().into_std_path_buf(),
        build_dir: build_dir.into_std_path_buf(),
        members: metadata
            .workspace_packages()
            .into_iter()
            .map(|p| p.name.to_string())
            .collect(),
    })
}

fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}
