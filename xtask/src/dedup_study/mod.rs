//! `cargo xtask dedup-study`: issue 19's phase 0. How many bytes of a Rust
//! dependency cache are new after a lock bump, for three ways of storing it: whole
//! files by content hash, content-defined chunks inside files, whole Cargo units.
//!
//! In a temp dir, no stack: a copy of `testdata/bench-workspace` with an empty Cargo
//! home (a fresh runner's environment, as `bench-rust`'s jobs), `cargo build
//! --locked`, snapshot 0; then each bump of [`bumps::BUMPS`] on top of the previous
//! ones (`cargo update -p NAME --precise OLDER`; one that does not resolve is
//! skipped and reported), `cargo build`, a snapshot. Per bump: the bytes new against
//! the previous snapshot (a save after restoring it uploads them) and against all
//! earlier ones (storage grows by them). Results: a table on stdout,
//! `target/bench/dedup-study-<time>.json`, `dedup-study-latest.json` and `.md`; each
//! step's output in `target/bench/dedup-study-logs/`.

mod accounting;
mod chunks;
mod report;
mod snapshot;

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail};
use bmat::rust::lockfile::{self, LockedPackage};

use crate::bench::bumps;
use crate::bench::rust_job::job::Job;
use crate::bench::rust_job::units::Counts;
use crate::bench::{Scratch, machine};
use crate::stack::bins;
use accounting::{Catalogue, Held, new_content};
use report::{Report, Row, Skipped};

/// The workspace the study builds, relative to the repository.
const WORKSPACE: &str = "testdata/bench-workspace";

/// Bumps that must succeed for the study to mean something.
const REQUIRED: usize = 10;

/// `cargo xtask dedup-study` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Keep the temp dir (checkout, Cargo home, build dir) and print where.
    #[arg(long)]
    pub keep: bool,
}

pub fn run(opts: &Options) -> Result<()> {
    let started = Instant::now();
    let scratch = Scratch::new("dedup-study")?;
    let logs = scratch.logs.clone();
    let t = scratch.tmp.path();
    // The study runs Cargo only: no bmat binary, no agent socket.
    let job = Job::checkout(
        "study",
        &bins::workspace_root().join(WORKSPACE),
        &t.join("ws"),
        &t.join("cargo-home"),
        Path::new(""),
        Path::new(""),
        &logs,
    )?;
    let cargo = job.cargo_version()?;
    say(&format!("{cargo}; temp dir {}", t.display()));

    say("cold build");
    job.cargo_build("cold", &[])?;
    let mut catalogue = Catalogue::new();
    let first = take(&job, &mut catalogue, true)?;
    say(&format!(
        "snapshot 0: {} files, {:.0} MiB",
        first.stats.files,
        first.stats.bytes as f64 / (1 << 20) as f64
    ));
    let mut previous = Held::of(&first.snapshot);
    let mut union = previous.clone();

    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    for bump in bumps::BUMPS {
        let before = locked(&job)?;
        let step = format!("update-{}", bump.package);
        let update = ["update", "-p", bump.package, "--precise", bump.precise];
        if let Err(e) = job.cargo(&step, &update) {
            say(&format!("skipped {} {}: {e:#}", bump.package, bump.precise));
            skipped.push(Skipped {
                package: bump.package.to_owned(),
                precise: bump.precise.to_owned(),
                // Cargo's reason alone (the chain adds the command and its log).
                error: e.to_string(),
            });
            continue;
        }
        let described = bumps::describe(bump.package, &before, &locked(&job)?);
        let (_, units) = job.cargo_build(&format!("build-{}", bump.package), &[])?;
        let taken = take(&job, &mut catalogue, false)?;
        let upload = new_content(&taken.snapshot, &catalogue, &previous);
        let growth = new_content(&taken.snapshot, &catalogue, &union);
        let changed = accounting::new_by_package(&taken.snapshot, &catalogue, &previous);
        previous = Held::of(&taken.snapshot);
        union.add(&previous);
        let full = taken.snapshot.full(&catalogue);
        say(&format!(
            "{described}: upload files {:.1} / chunks {:.1} / units {:.1} MiB of {:.0} MiB",
            upload.files.raw as f64 / (1 << 20) as f64,
            upload.chunks.raw as f64 / (1 << 20) as f64,
            upload.units.raw as f64 / (1 << 20) as f64,
            full.raw as f64 / (1 << 20) as f64,
        ));
        rows.push(Row {
            bump: described,
            why: bump.why.to_owned(),
            rebuilt: Counts::of(&units).third_party_rebuilt.len(),
            stats: taken.stats,
            full,
            upload,
            growth,
            changed,
        });
    }

    let done = rows.len();
    let report = Report {
        machine: machine("cargo xtask dedup-study".to_owned())?,
        cargo,
        workspace: format!("`{WORKSPACE}`"),
        cold: first.stats,
        cold_full: first.snapshot.full(&catalogue),
        rows,
        skipped,
        hashing: first.hashing,
        total_seconds: started.elapsed().as_secs_f64(),
    };
    scratch.finish(&report, opts.keep, report.total_seconds)?;
    if done < REQUIRED {
        bail!("only {done} bumps succeeded; the study needs {REQUIRED}");
    }
    Ok(())
}

/// The snapshot of the job's build directory (its `target/`: the job's environment
/// sets no other) and Cargo home.
fn take(job: &Job, catalogue: &mut Catalogue, time_hashes: bool) -> Result<snapshot::Taken> {
    snapshot::take(
        &job.ws.join("target"),
        job.cargo_home(),
        &job.lock()?,
        catalogue,
        time_hashes,
    )
}

fn locked(job: &Job) -> Result<Vec<LockedPackage>> {
    lockfile::third_party(&job.lock()?)
}

fn say(line: &str) {
    eprintln!("dedup-study: {line}");
}
