//! `bmat cache rust key|save|restore`: a dependency cache for a Cargo workspace.
//!
//! The key comes from the toolchain, the third-party part of Cargo.lock and the flags
//! that change artefacts ([`inputs`]); the files are the third-party units of every
//! profile directory of the build directory ([`artefacts`]) and what Cargo's home holds
//! for the locked packages ([`cargo_home`]). Both commands then reuse the generic save
//! and restore with the build directory as the main tree and Cargo's home as an extra
//! one (see [`crate::roots`]), so a `CARGO_TARGET_DIR` outside the working tree and a
//! `CARGO_HOME` anywhere work like any other. After a restore, the units are carried
//! to this job's Cargo home ([`relocate`]).

pub mod artefacts;
pub mod cargo_home;
pub mod inputs;
pub mod lockfile;
pub mod relocate;
pub mod toolchain;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::context::JobContext;
use crate::outcome::UsageError;
use crate::paths::RelPath;
use crate::restore::RestoreRequest;
use crate::roots::{Extra, Tree, TreePath};
use crate::save::SaveRequest;
use inputs::{HomeKey, KeyInputs};

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
    Restore(RestoreRequest, AfterRestore),
}

/// What a Rust restore does once the archive is in place.
pub struct AfterRestore {
    pub build_dir: PathBuf,
    pub cargo_home: PathBuf,
    /// Whether the key promised units that can be carried to this home.
    pub relocate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Key,
    Save,
    Restore,
}

/// Why a Rust command could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The job script is wrong: no manifest, a bad key suffix.
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// Cargo or rustc could not answer, or the build directory has nothing to save:
    /// the cache steps aside and the build goes on.
    #[error(transparent)]
    Unavailable(#[from] anyhow::Error),
}

/// Checks the manifest and the key suffix (usage errors: the job script is wrong),
/// then asks cargo and rustc (an infrastructure failure when they cannot answer: the
/// cache steps aside and the build goes on).
pub fn plan(action: Action, manifest: &Path, ctx: &JobContext) -> Result<Plan, PlanError> {
    let suffix = ctx.flags.key_suffix.clone();
    let manifest = check_manifest(manifest)?;
    if let Some(suffix) = &suffix {
        inputs::validate_suffix(suffix)
            .map_err(|e| UsageError(format!("invalid key suffix {suffix:?}: it {e}")))?;
    }
    let workspace = locate(&manifest)?;
    let roots = ctx.trees_at(&workspace.build_dir);
    let Some(cargo_home) = ctx.cargo_home().map(Path::to_owned) else {
        return Err(anyhow::anyhow!(
            "neither CARGO_HOME nor HOME is set to an absolute path: no Cargo home"
        )
        .into());
    };
    let inputs = key_inputs(&workspace, &cargo_home, ctx)?.with_suffix(suffix);
    let relocate = matches!(inputs.home, HomeKey::Relocatable { .. });
    Ok(match action {
        Action::Key => Plan::Key(inputs),
        // A fresh checkout has no build directory yet: the restore makes it (only when
        // there is something to unpack into it).
        Action::Restore => Plan::Restore(
            RestoreRequest {
                key: inputs.key(),
                fallbacks: vec![inputs.prefix()],
                roots,
            },
            AfterRestore {
                build_dir: workspace.build_dir,
                cargo_home,
                relocate,
            },
        ),
        Action::Save => Plan::Save(SaveRequest {
            key: inputs.key(),
            paths: select(&workspace, &inputs, &cargo_home, relocate)?,
            roots,
        }),
    })
}

/// The entries of a Rust cache: the build directory's third-party units, and what
/// Cargo's home holds for the packages of Cargo.lock.
fn select(
    workspace: &Workspace,
    inputs: &KeyInputs,
    cargo_home: &Path,
    relocate: bool,
) -> anyhow::Result<Vec<TreePath>> {
    let build_dir = &workspace.build_dir;
    let selection =
        artefacts::select(build_dir, &inputs.packages, &workspace.members).map_err(|e| {
            anyhow::anyhow!(
                "cannot read the build directory {}: {e}",
                build_dir.display()
            )
        })?;
    if selection.units.is_empty() {
        anyhow::bail!(
            "no third-party artefacts under {}: run cargo build before saving",
            build_dir.display()
        );
    }
    if relocate {
        // The key promises units any Cargo home can use: never save one that is not.
        let unit_dirs: Vec<PathBuf> = selection.units.iter().map(|u| build_dir.join(u)).collect();
        relocate::verify(&unit_dirs).map_err(|e| {
            anyhow::anyhow!(
                "{e}; not saving a cache that runners with another CARGO_HOME could not use"
            )
        })?;
    }
    if !selection.pruned.is_empty() {
        let _ = crate::output::eprintln(&format!(
            "leaving out {} build units of package versions no longer in Cargo.lock",
            selection.pruned.len()
        ));
    }
    let home = cargo_home::select(cargo_home, &inputs.packages)
        .map_err(|e| anyhow::anyhow!("cannot read the Cargo home {}: {e}", cargo_home.display()))?;
    let in_tree = |tree, path: &PathBuf| {
        RelPath::from_input(path.as_os_str().as_encoded_bytes())
            .map(|path| TreePath { tree, path })
            .map_err(|e| anyhow::anyhow!("{e}"))
    };
    let mut entries = Vec::with_capacity(selection.paths.len() + home.paths.len());
    for path in &selection.paths {
        entries.push(in_tree(Tree::Main, path)?);
    }
    for path in &home.paths {
        entries.push(in_tree(Tree::Extra(Extra::CargoHome), path)?);
    }
    Ok(entries)
}

/// After a hit: carries the restored units to this job's Cargo home. Best effort: a
/// unit left as it was is rebuilt by Cargo, never wrongly reused. Returns a line to
/// show, if anything was done or went wrong.
pub fn after_restore(after: &AfterRestore) -> Option<String> {
    if !after.relocate {
        return None;
    }
    match relocate::relocate(&after.build_dir, &after.cargo_home) {
        Ok(r) if r.rewritten == 0 => None,
        Ok(r) => Some(format!(
            "relocated {} of {} build units to CARGO_HOME {}",
            r.rewritten,
            r.units,
            after.cargo_home.display()
        )),
        Err(e) => Some(format!(
            "warning: could not relocate the restored build units to CARGO_HOME {} ({e}): cargo will rebuild them",
            after.cargo_home.display()
        )),
    }
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

pub fn key_inputs(
    workspace: &Workspace,
    cargo_home: &Path,
    ctx: &JobContext,
) -> anyhow::Result<KeyInputs> {
    let lock_path = workspace.root.join("Cargo.lock");
    let lock_text = std::fs::read_to_string(&lock_path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read {}: {e} (commit Cargo.lock, or run `cargo generate-lockfile` before bmat)",
            lock_path.display()
        )
    })?;
    let packages = lockfile::third_party(&lock_text)?;
    let toolchain = toolchain::detect(&ctx.rust_tools.rustc, &workspace.root)?;
    let config = inputs::config_tables(&workspace.root, cargo_home)?;
    let cargo = toolchain::cargo_version(&ctx.rust_tools.cargo, &workspace.root)?;
    let home =
        if toolchain::minor_of(&cargo).is_some_and(|v| relocate::RELOCATABLE_CARGO.contains(&v)) {
            HomeKey::Relocatable { cargo }
        } else {
            HomeKey::Pinned {
                cargo,
                sources: cargo_home.join("registry/src"),
            }
        };
    Ok(KeyInputs::new(toolchain, packages, ctx.env.utf8_vars(), config).with_home(home))
}
