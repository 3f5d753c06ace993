//! `bmat cache rust key|save|restore`: a dependency cache for a Cargo workspace.
//!
//! The key comes from the toolchain, the third-party part of Cargo.lock and the flags
//! that change artefacts ([`inputs`]); the files are the third-party units of every
//! profile directory of the build directory ([`artefacts`]). Both commands then reuse
//! the generic save and restore with the build directory as their root, so a
//! `CARGO_TARGET_DIR` outside the working tree works like any other.

pub mod artefacts;
pub mod inputs;
pub mod lockfile;
pub mod toolchain;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::outcome::{Outcome, UsageError};
use crate::paths::RelPath;
use crate::restore::RestoreRequest;
use crate::save::SaveRequest;
use inputs::KeyInputs;

/// What `cargo metadata` tells about the workspace.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub root: PathBuf,
    /// `build_directory` (Cargo ≥ 1.91), else the target directory.
    pub build_dir: PathBuf,
    pub members: HashSet<String>,
}

/// A Rust command made ready: key computed, files selected.
pub enum Plan {
    Key(KeyInputs),
    Save(SaveRequest),
    Restore(RestoreRequest),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Key,
    Save,
    Restore,
}

/// Checks the manifest (a usage error when it is missing: the job script names the
/// wrong file), then asks cargo and rustc (an infrastructure failure when they cannot
/// answer: the cache steps aside and the build goes on).
pub fn plan(action: Action, manifest: &Path) -> Result<Result<Plan, Outcome>, UsageError> {
    let manifest = check_manifest(manifest)?;
    let failed = |error: anyhow::Error| Outcome::Failed {
        key: "rust-deps".into(),
        action: "rust",
        error: crate::save::one_line(&error),
        elapsed: Duration::ZERO,
    };
    let workspace = match locate(&manifest) {
        Ok(w) => w,
        Err(e) => return Ok(Err(failed(e))),
    };
    let inputs = match key_inputs(&workspace) {
        Ok(i) => i,
        Err(e) => return Ok(Err(failed(e))),
    };
    Ok(Ok(match action {
        Action::Key => Plan::Key(inputs),
        Action::Restore => {
            // A fresh checkout has no build directory yet; the archive unpacks into it.
            if let Err(e) = std::fs::create_dir_all(&workspace.build_dir) {
                return Ok(Err(failed(anyhow::anyhow!(
                    "cannot create the build directory {}: {e}",
                    workspace.build_dir.display()
                ))));
            }
            Plan::Restore(RestoreRequest {
                key: inputs.key(),
                fallbacks: vec![inputs.prefix()],
                root: workspace.build_dir,
            })
        }
        Action::Save => {
            let selection =
                match artefacts::select(&workspace.build_dir, &inputs.packages, &workspace.members)
                {
                    Ok(s) => s,
                    Err(e) => {
                        return Ok(Err(failed(anyhow::anyhow!(
                            "cannot read the build directory {}: {e}",
                            workspace.build_dir.display()
                        ))));
                    }
                };
            if selection.units.is_empty() {
                return Ok(Err(failed(anyhow::anyhow!(
                    "no third-party artefacts under {}: run cargo build before saving",
                    workspace.build_dir.display()
                ))));
            }
            if !selection.pruned.is_empty() {
                let _ = crate::output::eprintln(&format!(
                    "leaving out {} build units of package versions no longer in Cargo.lock",
                    selection.pruned.len()
                ));
            }
            let paths = match selection
                .paths
                .iter()
                .map(|p| RelPath::from_input(p.as_os_str().as_encoded_bytes()))
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(paths) => paths,
                Err(e) => return Ok(Err(failed(anyhow::anyhow!("{e}")))),
            };
            Plan::Save(SaveRequest {
                key: inputs.key(),
                root: workspace.build_dir,
                paths,
            })
        }
    }))
}

fn check_manifest(manifest: &Path) -> Result<PathBuf, UsageError> {
    if manifest.is_dir() {
        return check_manifest(&manifest.join("Cargo.toml"));
    }
    if !manifest.is_file() {
        let hint = if manifest == Path::new("Cargo.toml") || manifest.ends_with("Cargo.toml") {
            "; run this in the workspace root or name its Cargo.toml"
        } else {
            ""
        };
        return Err(UsageError(format!(
            "no Cargo manifest at {}{hint}",
            manifest.display()
        )));
    }
    Ok(manifest.to_path_buf())
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

pub fn key_inputs(workspace: &Workspace) -> anyhow::Result<KeyInputs> {
    let lock_path = workspace.root.join("Cargo.lock");
    let lock_text = std::fs::read_to_string(&lock_path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read {}: {e} (commit Cargo.lock, or run `cargo generate-lockfile` before bmat)",
            lock_path.display()
        )
    })?;
    let packages = lockfile::third_party(&lock_text)?;
    let toolchain = toolchain::detect(&workspace.root)?;
    let config = inputs::config_tables(&workspace.root)?;
    Ok(KeyInputs::new(
        toolchain,
        packages,
        std::env::vars(),
        config,
    ))
}
