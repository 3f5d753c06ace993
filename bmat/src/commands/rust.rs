//! `bmat cache rust key|save|restore`: a dependency cache for a Cargo workspace.
//!
//! The key and the files come from [`crate::rust`]; both commands then reuse the
//! generic save and restore with the build directory as the main tree and Cargo's home
//! as an extra one (see [`crate::trees::roots`]), so a `CARGO_TARGET_DIR` outside the
//! working tree and a `CARGO_HOME` anywhere work like any other. After a restore, the
//! units are carried to this job's Cargo home ([`relocate`]).

use std::path::{Path, PathBuf};

use super::outcome::UsageError;
use super::restore::RestoreRequest;
use super::save::SaveRequest;
use crate::context::JobContext;
use crate::rust::declared::{self, DeclaredPath, DeclaredVar};
use crate::rust::key::{self, HomeKey, KeyInputs, key_inputs};
use crate::rust::workspace::{Workspace, locate};
use crate::rust::{artefacts, cargo_home, relocate};
use crate::trees::paths::RelPath;
use crate::trees::roots::{Extra, Tree, TreePath};

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
        key::validate_suffix(suffix)
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
    let declared = declared_inputs(ctx)?;
    let inputs = key_inputs(
        &workspace,
        &cargo_home,
        &ctx.rust_tools,
        ctx.env.utf8_vars(),
    )?
    .with_suffix(suffix)
    .with_declared(declared.0, declared.1);
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

/// The `--key-input` paths and `--key-env` variables, hashed; a missing or unreadable
/// path is a usage error (a typo must not silently key on nothing).
fn declared_inputs(ctx: &JobContext) -> Result<(Vec<DeclaredPath>, Vec<DeclaredVar>), UsageError> {
    let usage = |e: declared::DeclaredError| UsageError(e.to_string());
    let paths = ctx
        .flags
        .key_inputs
        .iter()
        .map(|p| declared::hash_path(ctx.working_dir(), p).map_err(usage))
        .collect::<Result<_, _>>()?;
    let vars = ctx
        .flags
        .key_env
        .iter()
        .map(|name| declared::hash_var(name, |n| ctx.env.get(n)).map_err(usage))
        .collect::<Result<_, _>>()?;
    Ok((paths, vars))
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
