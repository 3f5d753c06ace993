//! `cargo xtask bench-rust`: the Rust job as fresh CI runners run it, on the local
//! stack, timed end to end on `testdata/bench-workspace`.
//!
//! - Job A: a checkout and an empty `CARGO_HOME`; `bmat cache rust restore` (a miss),
//!   `cargo build --locked` (the cold time, downloads included), `bmat cache rust save`
//!   (the dependency cache and the workspace layer).
//! - Ideal: in job A's tree and Cargo home, every member made dirty and built again:
//!   what a job that recompiles only the workspace costs.
//! - Job B: a checkout at another path and another empty `CARGO_HOME` (of another
//!   length); `bmat cache rust restore --deps-only`, then `cargo build --locked
//!   --offline` (without `--offline` if that fails, which the report says), both timed.
//! - The next commit's jobs B, beside the persistent runner and sccache: see
//!   [`next_commit`].
//!
//! Job B's third-party units compiled again are read off Cargo's JSON messages. The
//! efficiency is `(cold − (restore + build)) / (cold − ideal)`. Whatever bmat achieves
//! is reported, however bad; a step that fails (a build error, a bmat error, a restore
//! that is not a hit) fails the run. Results: a table on stdout,
//! `target/bench/rust-job-<time>.json`, `rust-job-latest.json` and `rust-job-latest.md`;
//! logs of every step in `target/bench/rust-job-logs/`.

pub(crate) mod job;
pub(crate) mod next_commit;
mod report;
mod sccache;
pub(crate) mod units;

use std::time::Instant;

use anyhow::Result;

use super::measure::Usage;
use super::{Scratch, build_binaries, machine, say};
use crate::stack::{Stack, bins};
use job::Caches;
use next_commit::Jobs;
use report::{BuildB, Report, Step, efficiency, outcome_note, units_note};
use sccache::Sccache;
use units::Counts;

/// The workspace the jobs build, relative to the repository.
const WORKSPACE: &str = "testdata/bench-workspace";

/// `cargo xtask bench-rust` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Keep the jobs' temp dir (checkouts, Cargo homes, build dirs) and print where.
    #[arg(long)]
    pub keep: bool,
    /// Repetitions of each next-commit job B (the table shows the median one).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub reps: u32,
}

pub fn run(opts: &Options) -> Result<()> {
    let started = Instant::now();
    let scratch = Scratch::new("rust-job")?;
    let logs = scratch.logs.clone();
    let bmat = build_binaries()?;
    let sccache_bin = sccache::find_or_install()?;
    let source = bins::workspace_root().join(WORKSPACE);
    let t = scratch.tmp.path();

    say("starting the local stack");
    let stack = Stack::start()?;
    let socket = stack.env().agent_socket.clone();
    let jobs = Jobs {
        source: &source,
        root: t,
        bmat: &bmat,
        socket: &socket,
        logs: &logs,
    };
    let a = jobs.at("a", &t.join("a/ws"), &t.join("a/cargo-home"))?;
    let cargo = a.cargo_version()?;
    say(&format!("jobs run {cargo}; temp dir {}", t.display()));
    let mut steps = Vec::new();
    let mut step = |what: &str, usage: Usage, note: String| {
        say(&format!(
            "{what}: {:.1} s; {note}",
            usage.wall.as_secs_f64()
        ));
        steps.push(Step {
            what: what.to_owned(),
            wall_s: usage.wall.as_secs_f64(),
            cpu_s: usage.cpu.as_secs_f64(),
            note,
        });
        (usage.wall.as_secs_f64(), usage.cpu.as_secs_f64())
    };

    say("job A: restore (a miss), cold build, save");
    let (usage, json) = a.bmat_rust("restore", Caches::WithLayer, "miss")?;
    step(
        "job A: `bmat cache rust restore`",
        usage,
        outcome_note(&json),
    );
    let (usage, cold_units) = a.cargo_build("cold", &[])?;
    let cold_counts = Counts::of(&cold_units);
    let cold = step(
        "job A: `cargo build --locked` (cold)",
        usage,
        format!("{}, downloads included", units_note(&cold_counts)),
    );
    let (usage, json) = a.bmat_rust("save", Caches::WithLayer, "saved")?;
    step(
        "job A: `bmat cache rust save`",
        usage,
        format!(
            "{}; workspace layer {}",
            outcome_note(&json),
            outcome_note(&json["workspace"])
        ),
    );

    let touched = a.touch_sources()?;
    let (usage, ideal_units) = a.cargo_build("ideal", &[])?;
    let ideal_counts = Counts::of(&ideal_units);
    let ideal = step(
        "ideal: members dirty, `cargo build --locked`",
        usage,
        format!(
            "{touched} sources touched in job A's tree; {} member units and {} third-party \
             units compiled",
            ideal_counts.members_rebuilt.len(),
            ideal_counts.third_party_rebuilt.len()
        ),
    );

    say("job B: restore (--deps-only), build");
    let b = jobs.fresh("b")?;
    let (usage, json) = b.bmat_rust("restore", Caches::DepsOnly, "hit")?;
    let restore = step(
        "job B: `bmat cache rust restore --deps-only`",
        usage,
        outcome_note(&json),
    );
    let (usage, b_counts, offline) = next_commit::build(&b, "build")?;
    let b_build = BuildB {
        offline,
        counts: b_counts,
    };
    let what = if b_build.offline {
        "job B: `cargo build --locked --offline`"
    } else {
        "job B: `cargo build --locked` (`--offline` failed)"
    };
    let build = step(
        what,
        usage,
        format!(
            "{} of {} third-party units compiled again",
            b_build.counts.third_party_rebuilt.len(),
            b_build.counts.third_party_units
        ),
    );

    say("the next commit: the persistent runner, bmat's jobs B, sccache's jobs");
    let mut next = Vec::new();
    for rep in 0..opts.reps {
        say(&format!(
            "the next commit, repetition {}/{}",
            rep + 1,
            opts.reps
        ));
        next.extend(next_commit::persistent(&a, &source, rep)?);
        next.extend(next_commit::bmat(&jobs, &a, rep)?);
    }
    next.extend(next_commit::bmat_without_incremental(&jobs, opts.reps)?);
    let sccache = Sccache::new(
        sccache_bin,
        stack.s3_target(),
        format!("sccache-bench-{}/", std::process::id()),
    )?;
    next.extend(next_commit::sccache(&jobs, &sccache, opts.reps)?);
    let sccache_version = sccache.version();
    drop(sccache);
    drop(stack);

    let report = Report {
        machine: machine("cargo xtask bench-rust".to_owned())?,
        cargo,
        sccache: sccache_version,
        workspace: format!("`{WORKSPACE}`"),
        cold_counts,
        ideal_counts,
        b: b_build,
        steps,
        cold_s: cold.0,
        ideal_s: ideal.0,
        restore_s: restore.0,
        build_s: build.0,
        restore_plus_build_s: restore.0 + build.0,
        efficiency: efficiency(cold.0, ideal.0, restore.0, build.0),
        efficiency_cpu: efficiency(cold.1, ideal.1, restore.1, build.1),
        next_commit: next,
        reps: opts.reps,
        total_seconds: started.elapsed().as_secs_f64(),
    };
    scratch.finish(&report, opts.keep, report.total_seconds)
}
