//! The next commit's job (issue 18): job A built commit 1 and saved; job B, on a fresh
//! runner (a fresh clone, an empty Cargo home), builds commit 2, where (a) the leaf
//! member changed or (b) the core crate many members use changed. Side by side, in
//! one run (see [`SETUPS`]):
//!
//! - the persistent runner: job A's own tree moved to commit 2, built (the floor);
//! - bmat `--deps-only` at another path: the dependency cache, every member compiled;
//! - bmat with the workspace layer at another path; and once at commit 1 itself, which
//!   is what is not compiling: restore, Cargo unpacking the `.crate` files into the
//!   fresh home, its freshness checks;
//! - bmat with the layer at job A's path (fixed checkout paths are the common case:
//!   rustc's incremental state counts there);
//! - bmat with the layer at another path with `CARGO_INCREMENTAL=0` in jobs A and B
//!   (the compiler settings sccache runs with);
//! - sccache at job A's paths (its best case: a clone where job A's was, job A's Cargo
//!   home kept, so nothing is downloaded and every path hashes alike), after its own
//!   job A filled the S3 cache.
//!
//! Commit 2 is commit 1 with one item appended to a crate root ([`line`]): an API
//! change Cargo must rebuild the crate and its dependents for. Its value differs per
//! repetition, so that no repetition finds what an earlier one compiled in sccache's
//! cache.

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

/// What commit 2 appends to the changed crate's root in repetition `rep`.
pub fn line(rep: u32) -> String {
    format!("pub const BENCH_COMMIT: u32 = {};", 2 + rep)
}

/// The ways job B is run: (id, what the table calls it).
pub const SETUPS: [(&str, &str); 6] = [
    (
        PERSISTENT,
        "persistent runner: job A's tree moved to commit 2, built",
    ),
    (
        "deps-only",
        "bmat `--deps-only`, another path: restore + build",
    ),
    (
        LAYER,
        "bmat with the workspace layer, another path: restore + build",
    ),
    (
        "layer-same-path",
        "bmat with the workspace layer, job A's path: restore + build",
    ),
    (
        LAYER_NO_INCREMENTAL,
        "bmat with the workspace layer, another path, `CARGO_INCREMENTAL=0` in jobs A and B: \
         restore + build",
    ),
    (
        SCCACHE,
        "sccache, job A's paths and Cargo home, `CARGO_INCREMENTAL=0` (as sccache needs): build",
    ),
];

pub const PERSISTENT: &str = "persistent";
pub const LAYER: &str = "layer";
pub const LAYER_NO_INCREMENTAL: &str = "layer-no-incremental";
pub const SCCACHE: &str = "sccache";

/// One job B (or persistent build) of one case.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// One of [`SETUPS`].
    pub how: &'static str,
    /// A [`Change::name`], `none` (commit 1), or `fill` (a job A).
    pub case: &'static str,
    /// The repetition, from 0.
    pub rep: u32,
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

    /// A fresh clone at `ws` (whatever was there set aside) with the Cargo home `home`.
    pub fn at(&self, name: &str, ws: &Path, home: &Path) -> Result<Job> {
        self.set_aside(ws)?;
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
    (how, case, rep): (&'static str, &'static str, u32),
    restore: Option<Usage>,
    (usage, counts, offline): (Usage, Counts, bool),
) -> Row {
    let restore_s = restore.map(|u| u.wall.as_secs_f64());
    let build_s = usage.wall.as_secs_f64();
    let row = Row {
        how,
        case,
        rep,
        restore_s,
        build_s,
        total_s: restore_s.unwrap_or(0.0) + build_s,
        counts,
        offline,
        sccache: None,
        workspace: None,
    };
    say(&format!(
        "{how}, {case}, repetition {}: {:.1} s ({} members compiled, {} third-party)",
        rep + 1,
        row.total_s,
        row.counts.members_rebuilt.len(),
        row.counts.third_party_rebuilt.len()
    ));
    row
}

/// The persistent runner: job A's tree (built, saved) moved to each case's commit 2
/// and built, then moved back.
pub fn persistent(a: &Job, source: &Path, rep: u32) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for change in CHANGES {
        a.append(change.file, &line(rep))?;
        let built = build(a, &format!("persistent-{}-r{rep}", change.name))?;
        rows.push(row((PERSISTENT, change.name, rep), None, built));
        // Back to commit 1, built (untimed), so the next case starts from it.
        a.reset(source, change.file)?;
        build(a, &format!("persistent-back-{}-r{rep}", change.name))?;
    }
    Ok(rows)
}

/// bmat's jobs B: commit 1 with the layer (`none`), then each case with
/// `--deps-only`, with the layer, and with the layer at job A's paths (job A's tree
/// and home moved out of the way meanwhile, and back after).
pub fn bmat(jobs: &Jobs, a: &Job, rep: u32) -> Result<Vec<Row>> {
    let mut rows = vec![job_b(
        &jobs.fresh(&format!("b-none-r{rep}"))?,
        (LAYER, None, rep),
        Caches::WithLayer,
    )?];
    for change in CHANGES {
        let case = change.name;
        let elsewhere = |how| jobs.fresh(&format!("b-{how}-{case}-r{rep}"));
        let b = elsewhere("deps-only")?;
        rows.push(job_b(
            &b,
            ("deps-only", Some(change), rep),
            Caches::DepsOnly,
        )?);
        let b = elsewhere(LAYER)?;
        rows.push(job_b(&b, (LAYER, Some(change), rep), Caches::WithLayer)?);
        rows.push(jobs.without_job_a(a, |ws, home| {
            let b = jobs.at(&format!("b-same-path-{case}-r{rep}"), ws, home)?;
            job_b(
                &b,
                ("layer-same-path", Some(change), rep),
                Caches::WithLayer,
            )
        })?);
    }
    Ok(rows)
}

/// bmat with `CARGO_INCREMENTAL=0` in job A (its build: the row `fill`) and in the
/// jobs B of each case, at paths of their own, `reps` times.
pub fn bmat_without_incremental(jobs: &Jobs, reps: u32) -> Result<Vec<Row>> {
    let env = || vec![("CARGO_INCREMENTAL".to_owned(), "0".to_owned())];
    let a = jobs.fresh("n-a")?.with_env(env());
    // Its own dependency key (the variable is in it): a fallback to job A's, the
    // members compiled, then a save of both caches under the new key.
    a.bmat_rust("restore", Caches::WithLayer, "hit")?;
    let fill = row((LAYER_NO_INCREMENTAL, "fill", 0), None, build(&a, "build")?);
    a.bmat_rust("save", Caches::WithLayer, "saved")?;
    let mut rows = vec![fill];
    for rep in 0..reps {
        for change in CHANGES {
            let b = jobs
                .fresh(&format!("n-b-{}-r{rep}", change.name))?
                .with_env(env());
            let what = (LAYER_NO_INCREMENTAL, Some(change), rep);
            rows.push(job_b(&b, what, Caches::WithLayer)?);
        }
    }
    Ok(rows)
}

/// One bmat job B: the change, restore (a hit), build.
fn job_b(
    b: &Job,
    (how, change, rep): (&'static str, Option<Change>, u32),
    caches: Caches,
) -> Result<Row> {
    if let Some(change) = change {
        b.append(change.file, &line(rep))?;
    }
    let (restored, json) = b.bmat_rust("restore", caches, "hit")?;
    let case = change.map_or("none", |c| c.name);
    let mut row = row((how, case, rep), Some(restored), build(b, "build")?);
    row.workspace = layer_note(&json["workspace"]);
    Ok(row)
}

/// sccache's job A (a cold build that fills its cache; the row `sccache`, `fill`)
/// and its jobs B of each case, `reps` times, at job A's paths.
pub fn sccache(jobs: &Jobs, sccache: &Sccache, reps: u32) -> Result<Vec<Row>> {
    let ws: PathBuf = jobs.root.join("s/ws");
    let home = jobs.root.join("s/cargo-home");
    let mut runs = vec![("fill", None, 0)];
    for rep in 0..reps {
        runs.extend(CHANGES.map(|c| (c.name, Some(c), rep)));
    }
    let mut rows = Vec::new();
    for (case, change, rep) in runs {
        let job = jobs
            .at(&format!("s-{case}-r{rep}"), &ws, &home)?
            .with_env(sccache.env(&ws));
        if let Some(change) = change {
            job.append(change.file, &line(rep))?;
        }
        sccache.stop_server();
        let built = build(&job, "build")?;
        let stats = sccache.stats()?;
        sccache.stop_server();
        if !stats.location.to_ascii_lowercase().starts_with("s3") {
            bail!(
                "sccache kept its cache in {}, not in the stack's S3: its numbers would \
                 mean nothing",
                stats.location
            );
        }
        let mut row = row((SCCACHE, case, rep), None, built);
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

impl Jobs<'_> {
    /// Runs `f` at job A's checkout and Cargo home paths (given to it), job A's own
    /// moved out of the way meanwhile and back after (what `f` left set aside).
    fn without_job_a<T>(&self, a: &Job, f: impl FnOnce(&Path, &Path) -> Result<T>) -> Result<T> {
        let (ws, home) = (a.ws.as_path(), a.cargo_home());
        let kept = |p: &Path| p.with_extension("kept");
        for dir in [ws, home] {
            fs::rename(dir, kept(dir))
                .with_context(|| format!("cannot move {} out of the way", dir.display()))?;
        }
        let result = f(ws, home);
        for dir in [ws, home] {
            self.set_aside(dir)?;
            fs::rename(kept(dir), dir)
                .with_context(|| format!("cannot move {} back", dir.display()))?;
        }
        result
    }

    /// Moves `dir`, if it exists, out of the way into `root/aside/`, deleted with the
    /// temp dir at the end: deleting a build directory of a gigabyte just before a
    /// measured step slowed that step by half (the disk was still busy with it).
    fn set_aside(&self, dir: &Path) -> Result<()> {
        if !dir.exists() {
            return Ok(());
        }
        let aside = self.root.join("aside");
        fs::create_dir_all(&aside)?;
        let to = tempfile::Builder::new()
            .tempdir_in(&aside)
            .context("cannot create a dir to set a tree aside")?
            .keep();
        fs::rename(dir, to.join("tree"))
            .with_context(|| format!("cannot move {} aside", dir.display()))
    }
}
