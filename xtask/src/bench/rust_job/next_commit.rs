//! The next commit's job (issue 18): job A built commit 1 and saved; job B, on a fresh
//! runner (a clone at another path, an empty Cargo home), builds commit 2, where
//! (a) the leaf member changed or (b) the core crate many members use changed.
//! Side by side, in one run:
//!
//! - the persistent runner: job A's own tree moved to commit 2, built (the floor);
//! - bmat `--deps-only`: the dependency cache, every member compiled;
//! - bmat with the workspace layer; and once at commit 1 itself, which is the rest
//!   that is not compiling: restore, Cargo unpacking the `.crate` files into the fresh
//!   home, its freshness checks;
//! - sccache at job A's paths (its best case: a clone where job A's was, job A's Cargo
//!   home kept, so nothing is downloaded and every path hashes alike), after its own
//!   job A filled the S3 cache.
//!
//! Commit 2 is commit 1 with one item appended to a crate root ([`LINE`]): an API
//! change Cargo must rebuild the crate and its dependents for.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::super::measure::Usage;
use super::super::say;
use super::job::{Caches, Job};
use super::sccache::{Sccache, Stats};
use super::units::Counts;

/// One change between commit 1 and commit 2.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Change {
    pub name: &'static str,
    /// The crate root the line is appended to, relative to the workspace.
    pub file: &'static str,
    pub what: &'static str,
}

pub const CHANGES: [Change; 2] = [
    Change {
        name: "leaf",
        file: "audit/src/lib.rs",
        what: "the leaf changed (`bench-audit`: no member depends on it)",
    },
    Change {
        name: "core",
        file: "core/src/lib.rs",
        what: "the core crate changed (`bench-core`: most members depend on it)",
    },
];

/// What commit 2 appends to the changed crate's root.
pub const LINE: &str = "pub const BENCH_COMMIT: u32 = 2;";

/// One job B (or persistent build) of one case.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `persistent`, `deps-only`, `layer`, `sccache`.
    pub how: &'static str,
    /// A [`Change::name`], or `none` (commit 1).
    pub case: &'static str,
    pub restore_s: Option<f64>,
    pub build_s: f64,
    pub total_s: f64,
    pub counts: Counts,
    /// Built with `--offline` (nothing downloaded).
    pub offline: bool,
    pub sccache: Option<Stats>,
    /// What bmat said of the layer (`layer hit: 9 of 10 members fresh`).
    pub workspace: Option<String>,
}

/// Where and with what the jobs run.
pub struct Jobs<'a> {
    pub source: &'a Path,
    pub root: &'a Path,
    pub bmat: &'a Path,
    pub socket: &'a Path,
    pub logs: &'a Path,
}

impl Jobs<'_> {
    /// A fresh clone at `root/NAME/checkout/ws` with an empty home `root/NAME/home`.
    pub fn fresh(&self, name: &str) -> Result<Job> {
        let dir = self.root.join(name);
        self.at(name, &dir.join("checkout/ws"), &dir.join("home"))
    }

    /// A fresh clone at `ws` (whatever was there removed) with the Cargo home `home`.
    pub fn at(&self, name: &str, ws: &Path, home: &Path) -> Result<Job> {
        if ws.exists() {
            fs::remove_dir_all(ws).with_context(|| format!("cannot remove {}", ws.display()))?;
        }
        Job::checkout(
            name,
            self.source,
            ws,
            home,
            self.bmat,
            self.socket,
            self.logs,
        )
    }
}

/// `cargo build --locked --offline`, or without `--offline` when that fails: the
/// usage of the build that worked, its units, and whether it was offline.
pub fn build(job: &Job, step: &str) -> Result<(Usage, Counts, bool)> {
    match job.cargo_build(&format!("{step}-offline"), &["--offline"]) {
        Ok((usage, units)) => Ok((usage, Counts::of(&units), true)),
        Err(e) => {
            say(&format!("{e:#}; building again without --offline"));
            let (usage, units) = job.cargo_build(&format!("{step}-online"), &[])?;
            Ok((usage, Counts::of(&units), false))
        }
    }
}

fn row(
    how: &'static str,
    case: &'static str,
    restore: Option<Usage>,
    (usage, counts, offline): (Usage, Counts, bool),
) -> Row {
    let restore_s = restore.map(|u| u.wall.as_secs_f64());
    let build_s = usage.wall.as_secs_f64();
    let row = Row {
        how,
        case,
        restore_s,
        build_s,
        total_s: restore_s.unwrap_or(0.0) + build_s,
        counts,
        offline,
        sccache: None,
        workspace: None,
    };
    say(&format!(
        "{how}, {case}: {:.1} s ({} members compiled, {} third-party)",
        row.total_s,
        row.counts.members_rebuilt.len(),
        row.counts.third_party_rebuilt.len()
    ));
    row
}

/// The persistent runner: job A's tree (built, saved) moved to each case's commit 2
/// and built, then moved back.
pub fn persistent(a: &Job, source: &Path) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for change in CHANGES {
        a.append(change.file, LINE)?;
        let built = build(a, &format!("persistent-{}", change.name))?;
        rows.push(row("persistent", change.name, None, built));
        a.reset(source, change.file)?;
    }
    Ok(rows)
}

/// bmat's job B for commit 1 (`none`, with the layer only) and each case.
pub fn bmat(jobs: &Jobs) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let runs = [
        (Caches::WithLayer, "layer", None),
        (Caches::DepsOnly, "deps-only", Some(CHANGES[0])),
        (Caches::WithLayer, "layer", Some(CHANGES[0])),
        (Caches::DepsOnly, "deps-only", Some(CHANGES[1])),
        (Caches::WithLayer, "layer", Some(CHANGES[1])),
    ];
    for (caches, how, change) in runs {
        let case = change.map_or("none", |c| c.name);
        let b = jobs.fresh(&format!("b-{how}-{case}"))?;
        if let Some(change) = change {
            b.append(change.file, LINE)?;
        }
        let (restored, json) = b.bmat_rust("restore", caches, "hit")?;
        let mut row = row(how, case, Some(restored), build(&b, "build")?);
        row.workspace = layer_note(&json["workspace"]);
        rows.push(row);
        remove(&b.ws)?;
    }
    Ok(rows)
}

/// sccache's job A (a cold build that fills its cache; the row `sccache`, `fill`)
/// and its job B of each case, at job A's paths.
pub fn sccache(jobs: &Jobs, sccache: &Sccache) -> Result<Vec<Row>> {
    let ws: PathBuf = jobs.root.join("s/ws");
    let home = jobs.root.join("s/cargo-home");
    let mut rows = Vec::new();
    let runs = [
        ("fill", None),
        ("leaf", Some(CHANGES[0])),
        ("core", Some(CHANGES[1])),
    ];
    for (case, change) in runs {
        let job = jobs
            .at(&format!("s-{case}"), &ws, &home)?
            .with_env(sccache.env(&ws));
        if let Some(change) = change {
            job.append(change.file, LINE)?;
        }
        sccache.stop_server();
        let built = build(&job, "build")?;
        let stats = sccache.stats()?;
        sccache.stop_server();
        if !stats.location.starts_with("S3") {
            bail!(
                "sccache kept its cache in {}, not in the stack's S3: its numbers would \
                 mean nothing",
                stats.location
            );
        }
        let mut row = row("sccache", case, None, built);
        say(&format!("sccache, {case}: {}", stats.note()));
        row.sccache = Some(stats);
        rows.push(row);
    }
    Ok(rows)
}

/// `layer hit: 9 of 10 members fresh` from bmat's `workspace` JSON.
fn layer_note(workspace: &serde_json::Value) -> Option<String> {
    let outcome = workspace["outcome"].as_str()?;
    let members = workspace["members"].as_u64()?;
    let rebuild = workspace["rebuild"].as_array().map_or(0, Vec::len) as u64;
    Some(format!(
        "layer {outcome}: {} of {members} members fresh",
        members.saturating_sub(rebuild)
    ))
}

fn remove(dir: &Path) -> Result<()> {
    fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))
}
