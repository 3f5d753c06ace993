//! `bmat cache rust key|save|restore`: a dependency cache for a Cargo workspace.
//!
//! The key and the files come from [`crate::rust`]; both commands then reuse the
//! generic save and restore with the build directory as the main tree and Cargo's home
//! as an extra one (see [`crate::trees::roots`]), so a `CARGO_TARGET_DIR` outside the
//! working tree and a `CARGO_HOME` anywhere work like any other. After a restore, the
//! units are carried to this job's Cargo home ([`relocate`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::outcome::{Outcome, UsageError};
use super::restore::{RestoreRequest, restore};
use super::save::{SaveRequest, save};
use crate::context::{JobContext, SavePolicy};
use crate::rust::declared::{self, DeclaredPath, DeclaredVar};
use crate::rust::key::{self, HomeKey, KeyInputs, key_inputs};
use crate::rust::workspace::{Workspace, locate};
use crate::rust::{artefacts, cargo_home, explain, layer, relocate};
use crate::trees::paths::RelPath;
use crate::trees::roots::{Extra, Roots, Tree, TreePath};

/// A Rust command made ready: key computed, files selected.
pub enum Plan {
    Key(KeyInputs),
    /// The dependency cache, and the workspace layer (none with `--deps-only` or when
    /// no member has been built).
    Save(SaveRequest, Option<SaveRequest>),
    Restore(RestoreRequest, Box<AfterRestore>),
}

/// What a Rust restore does once the archive is in place.
pub struct AfterRestore {
    pub build_dir: PathBuf,
    pub cargo_home: PathBuf,
    /// Whether the key promised units that can be carried to this home.
    pub relocate: bool,
    /// The workspace, unless `--deps-only`: its layer is restored after an exact hit.
    pub layer: Option<Workspace>,
    /// This job's key inputs, to say how a fallback hit's differ.
    pub key_record: explain::KeyRecord,
    /// The key's fallback prefix, to say what the scope has instead after a miss.
    pub prefix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Key,
    /// With this job's build time so far, recorded with the cache (see crate::job).
    Save(Option<Duration>),
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
    let with_layer = !ctx.flags.deps_only;
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
            Box::new(AfterRestore {
                build_dir: workspace.build_dir.clone(),
                cargo_home,
                relocate,
                layer: with_layer.then_some(workspace),
                key_record: explain::KeyRecord::of(&inputs),
                prefix: inputs.prefix(),
            }),
        ),
        Action::Save(build) => {
            let layer = with_layer
                .then(|| layer_save(&workspace, &inputs.key(), &roots, &ctx.flags.save_policy))
                .flatten();
            let mut paths = select(&workspace, &inputs, &cargo_home, relocate)?;
            paths.extend(key_record(&workspace.build_dir, &inputs, build));
            Plan::Save(
                SaveRequest {
                    key: inputs.key(),
                    paths,
                    roots,
                    policy: ctx.flags.save_policy.clone(),
                    // After a lock change, most of the units are the fallback's.
                    reuse_from: Some(vec![inputs.prefix()]),
                },
                layer,
            )
        }
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
    let mut entries = Vec::with_capacity(selection.paths.len() + home.paths.len());
    for path in &selection.paths {
        entries.push(in_tree(Tree::Main, path)?);
    }
    for path in &home.paths {
        entries.push(in_tree(Tree::Extra(Extra::CargoHome), path)?);
    }
    Ok(entries)
}

/// A path relative to one of the job's trees, as a save names it.
fn in_tree(tree: Tree, path: &Path) -> anyhow::Result<TreePath> {
    RelPath::from_input(path.as_os_str().as_encoded_bytes())
        .map(|path| TreePath { tree, path })
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Writes the key's inputs into the build directory, to be saved with the cache (see
/// [`explain`]); best effort: none when it cannot be written.
fn key_record(build_dir: &Path, inputs: &KeyInputs, build: Option<Duration>) -> Option<TreePath> {
    let record = explain::KeyRecord {
        build_ms: build.map(|d| d.as_millis() as u64),
        ..explain::KeyRecord::of(inputs)
    };
    let text = serde_json::to_vec(&record).ok()?;
    std::fs::write(build_dir.join(explain::RECORD), text).ok()?;
    in_tree(Tree::Main, Path::new(explain::RECORD)).ok()
}

/// The workspace layer's save, if a member has been built. Best effort: a layer that
/// cannot be prepared is left out with a warning (the dependency cache still saves).
fn layer_save(
    workspace: &Workspace,
    deps_key: &str,
    roots: &Roots,
    policy: &SavePolicy,
) -> Option<SaveRequest> {
    let prepared = match layer::prepare_save(workspace, deps_key) {
        Ok(Some(prepared)) => prepared,
        Ok(None) => return None,
        Err(e) => {
            let _ = crate::output::eprintln(&format!(
                "warning: workspace layer: cannot read the members' units or sources ({e}); saving the dependency cache only"
            ));
            return None;
        }
    };
    let paths = prepared
        .paths
        .iter()
        .map(|p| in_tree(Tree::Main, p).ok())
        .collect::<Option<Vec<_>>>()?;
    Some(SaveRequest {
        key: prepared.key,
        paths,
        roots: roots.clone(),
        policy: policy.clone(),
        // A layer of the same dependency key: the members that did not change.
        reuse_from: Some(vec![layer::prefix(deps_key)]),
    })
}

/// What the Rust steps around the dependency cache did: lines for stderr, fields for
/// the `--json` object (`workspace`, `explain`).
#[derive(Default)]
pub struct RustReport {
    pub lines: Vec<String>,
    pub fields: Vec<(&'static str, serde_json::Value)>,
}

impl RustReport {
    fn layer(&mut self, layer: LayerReport) {
        self.lines.push(layer.line);
        self.fields.push(("workspace", layer.json));
    }
}

/// What the workspace layer's step did: a line for stderr, an object for `--json`.
struct LayerReport {
    pub line: String,
    pub json: serde_json::Value,
}

impl LayerReport {
    fn of(outcome: &Outcome, refreshed: Option<&layer::Refreshed>) -> LayerReport {
        let mut json = serde_json::to_value(outcome.json()).unwrap_or_default();
        let line = match refreshed {
            Some(r) => {
                json["members"] = r.members.into();
                json["rebuild"] = r.rebuild.clone().into();
                json["files_restored"] = r.files_restored.into();
                json["shifted_seconds"] = r.shifted_secs.into();
                json["incremental_at"] = r.incremental_at.clone().into();
                r.line()
            }
            None => format!("workspace layer: {}", outcome.line(false)),
        };
        LayerReport { line, json }
    }

    fn kept(reason: &str) -> LayerReport {
        LayerReport {
            line: format!("workspace layer: {reason}"),
            json: serde_json::json!({"outcome": "kept", "reason": reason}),
        }
    }
}

/// Saves the workspace layer after the dependency cache.
pub async fn save_layer(req: SaveRequest, ctx: &JobContext) -> RustReport {
    let mut report = RustReport::default();
    report.layer(LayerReport::of(&save(req, ctx).await, None));
    report
}

/// After a hit of the dependency cache: restores the workspace layer (after an exact
/// hit only: the layer's units were built against exactly those dependencies),
/// carries every restored unit to this job's Cargo home, then gives the members'
/// unchanged sources their recorded times. Best effort throughout: a unit left as it
/// was is rebuilt by Cargo, never wrongly reused.
pub async fn after_hit(
    after: &AfterRestore,
    exact: bool,
    deps_key: &str,
    ctx: &JobContext,
) -> RustReport {
    let mut report = RustReport::default();
    if let Some(ms) = restored_record(after).and_then(|r| r.build_ms) {
        report
            .fields
            .push(("cache_build_seconds", (ms as f64 / 1000.0).into()));
    }
    if !exact && let Some(differences) = explain_fallback(after) {
        report.lines.push(format!(
            "the restored cache's key differs in: {}",
            differences.join("; ")
        ));
        report.fields.push(("explain", differences.into()));
    }
    let layer = match (&after.layer, exact) {
        (Some(workspace), true) => Some(restore_layer(workspace, deps_key, ctx).await),
        _ => None,
    };
    if let Some(line) = relocate_units(after) {
        let _ = crate::output::eprintln(&line);
    }
    let (outcome, workspace) = match layer {
        Some(Ok(hit)) => hit,
        Some(Err(layer)) => {
            report.layer(layer);
            return report;
        }
        None => return report,
    };
    report.layer(match layer::refresh(workspace) {
        Ok(refreshed) => LayerReport::of(&outcome, Some(&refreshed)),
        Err(e) => LayerReport::kept(&format!(
            "restored, but the members' sources could not be compared ({e}): cargo rebuilds what it finds stale"
        )),
    });
    report
}

/// After a miss: which Rust caches the scope has instead (another toolchain, host or
/// suffix), if it has any. Best effort: nothing when they cannot be listed.
pub async fn after_miss(after: &AfterRestore, ctx: &JobContext) -> RustReport {
    let mut report = RustReport::default();
    let Ok(api) = ctx.api() else { return report };
    let Ok(list) = api.list_page(Some("rust-deps-"), None, 100).await else {
        return report;
    };
    let keys = list.caches.iter().map(|c| c.key.as_str());
    if let Some(line) = explain::other_prefixes(&after.prefix, keys) {
        report.fields.push(("explain", vec![line.clone()].into()));
        report.lines.push(line);
    }
    report
}

/// After a fallback hit: what differs between this job's key inputs and those the
/// restored cache recorded (none recorded: a cache of an older bmat).
fn explain_fallback(after: &AfterRestore) -> Option<Vec<String>> {
    Some(after.key_record.differences(&restored_record(after)?))
}

/// The key record the restored cache brought (none: a cache of an older bmat).
fn restored_record(after: &AfterRestore) -> Option<explain::KeyRecord> {
    let text = std::fs::read(after.build_dir.join(explain::RECORD)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Restores the newest layer of `deps_key` into the build directory: own scope
/// first, then read scopes. A hit, with the workspace to refresh; else what happened.
async fn restore_layer<'a>(
    workspace: &'a Workspace,
    deps_key: &str,
    ctx: &JobContext,
) -> Result<(Outcome, &'a Workspace), LayerReport> {
    match artefacts::select_members(&workspace.build_dir, &workspace.members) {
        Ok(units) if units.is_empty() => {}
        Ok(_) => {
            return Err(LayerReport::kept(
                "the build directory already has the members' units; kept them",
            ));
        }
        Err(e) => {
            return Err(LayerReport::kept(&format!(
                "cannot read the build directory ({e})"
            )));
        }
    }
    let prefix = layer::prefix(deps_key);
    let req = RestoreRequest {
        key: prefix.clone(),
        fallbacks: vec![prefix],
        roots: ctx.trees_at(&workspace.build_dir),
    };
    let outcome = restore(req, ctx).await;
    match outcome {
        Outcome::Hit { .. } => Ok((outcome, workspace)),
        _ => Err(LayerReport::of(&outcome, None)),
    }
}

/// Carries the restored units to this job's Cargo home. Returns a line to show, if
/// anything was done or went wrong.
fn relocate_units(after: &AfterRestore) -> Option<String> {
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
