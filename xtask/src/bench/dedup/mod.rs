//! `cargo xtask bench-dedup`: issue 19's measure of content-addressed caches on the
//! real stack, replaying real lock bumps of `testdata/bench-workspace` (the list of
//! [`super::bumps`]) as CI jobs on fresh runners, `--deps-only` throughout.
//!
//! Two series on one stack, told apart by key suffix: `archive` (`BMAT_CACHE_FORMAT=
//! archive` in its jobs: today's format) and `contents` (the new one). Each: job 0
//! builds the workspace's lock from scratch and saves; then, per bump, a job at that
//! bump's lock restores the series' previous cache (a fallback hit), builds, saves
//! (see [`series`]); the series take turns going first. Then a pull request's job
//! (its own token: scope `refs/pull/1/merge`, reading main's) at one more bump
//! restores main's last cache of its series, builds and saves.
//!
//! Per save: uploaded bytes, the bucket's growth, the save's time and a restore of it
//! on a fresh runner; then each series' summary and issue 19's goals, judged and
//! printed, never failing the run. Results: a table on stdout,
//! `target/bench/dedup-<time>.json`, `dedup.json` and `dedup.md`; each step's output
//! in `target/bench/dedup-logs/`.

mod locks;
mod report;
mod series;

use std::time::Instant;

use anyhow::{Context, Result, bail};
use bmat_wire::api::MintRequest;

use super::rust_job::next_commit::Jobs;
use super::{Scratch, build_binaries, machine, say};
use crate::stack::{OWNER, SCOPE, Stack, bins};
use locks::Lock;
use report::{ARCHIVE, JobFigures, LAST_RESTORES, Report, Series};
use series::{Bench, Kind};

/// The workspace the jobs build, relative to the repository.
const WORKSPACE: &str = "testdata/bench-workspace";

/// The series, in this order in the table: the archive (today's) and the new format.
const FORMATS: [&str; 2] = [ARCHIVE, "contents"];

/// The pull request's own scope.
const PULL_REQUEST: &str = "refs/pull/1/merge";

/// Main's bumps the default run must have.
const REQUIRED: usize = 10;

/// `cargo xtask bench-dedup` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Lock bumps main's jobs replay (default: every one that resolves but the last,
    /// which the pull request's job takes; at least 10).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub bumps: Option<u32>,
    /// Keep the jobs' temp dir (checkouts, Cargo homes, build dirs) and print where.
    #[arg(long)]
    pub keep: bool,
}

pub fn run(opts: &Options) -> Result<()> {
    let started = Instant::now();
    let scratch = Scratch::new("dedup")?;
    let logs = scratch.logs.clone();
    let bmat = build_binaries()?;
    let source = bins::workspace_root().join(WORKSPACE);
    let t = scratch.tmp.path();

    say("replaying the lock bumps");
    let want = opts.bumps.map(|n| n as usize + 1);
    let replayed = locks::replay(&source, &t.join("replay"), &logs, want)?;
    let (bumps, pr_bump) = split(replayed.bumps, opts.bumps)?;
    say(&format!(
        "{}; {} bumps of main and the pull request's; temp dir {}",
        replayed.cargo,
        bumps.len(),
        t.display()
    ));

    say("starting the local stack");
    let stack = Stack::start()?;
    let socket = stack.env().agent_socket.clone();
    let bench = Bench {
        jobs: Jobs {
            source: &source,
            root: t,
            bmat: &bmat,
            socket: &socket,
            logs: &logs,
        },
        stack: &stack,
        keep: opts.keep,
    };

    let (cold, figures) = main_jobs(&bench, &replayed.initial, &bumps)?;
    say(&format!("pull request: {}", pr_bump.bump));
    let token = stack
        .mint(&MintRequest {
            owner: OWNER.to_owned(),
            scope: PULL_REQUEST.to_owned(),
            read_scopes: vec![SCOPE.to_owned()],
            write: true,
            ttl_seconds: None,
        })?
        .token;
    let mut series = Vec::new();
    for ((format, cold), bumps) in FORMATS.into_iter().zip(cold).zip(figures) {
        let kind = Kind::PullRequest { token: &token };
        let pull_request = bench.job(format, "pr", &pr_bump.text, kind)?;
        series.push(Series {
            format,
            cold,
            bumps,
            pull_request,
        });
    }
    drop(stack);

    let (summaries, goals) = Report::judge(&series);
    let report = Report {
        machine: machine(command(opts))?,
        cargo: replayed.cargo,
        workspace: format!("`{WORKSPACE}`"),
        shared: SHARED.to_owned(),
        bumps,
        pull_request_bump: pr_bump,
        skipped: replayed.skipped,
        series,
        summaries,
        goals,
        total_seconds: started.elapsed().as_secs_f64(),
    };
    scratch.finish(&report, opts.keep, report.total_seconds)
}

/// Every series' job 0, then each bump's jobs, then the last bump's saves restored
/// again (a goal rests on them).
fn main_jobs(
    bench: &Bench,
    initial: &str,
    bumps: &[Lock],
) -> Result<(Vec<JobFigures>, [Vec<JobFigures>; 2])> {
    let mut cold = Vec::new();
    for format in FORMATS {
        say(&format!("{format}: job 0, a cold build and a full save"));
        cold.push(bench.job(format, "0", initial, Kind::Cold)?);
    }
    let mut figures: [Vec<JobFigures>; 2] = Default::default();
    for (i, lock) in bumps.iter().enumerate() {
        say(&format!("bump {}/{}: {}", i + 1, bumps.len(), lock.bump));
        for k in turns(i) {
            let job = bench.job(FORMATS[k], &(i + 1).to_string(), &lock.text, Kind::Bump)?;
            figures[k].push(job);
        }
    }
    let Some(lock) = bumps.last() else {
        return Ok((cold, figures));
    };
    say("the last bump's saves restored again on fresh runners");
    for rep in 1..LAST_RESTORES {
        for k in turns(rep + 1) {
            if let Some(job) = figures[k].last_mut() {
                let name = format!("{}-again-{rep}", bumps.len());
                let s = bench.fresh_restore(FORMATS[k], &name, &lock.text, &job.saved.key)?;
                job.fresh_restores_s.push(s);
            }
        }
    }
    Ok((cold, figures))
}

/// The order of the series in turn `i`: neither always runs right after the other.
fn turns(i: usize) -> [usize; 2] {
    if i.is_multiple_of(2) { [0, 1] } else { [1, 0] }
}

/// What the series share (nothing that is measured), for the report's header.
const SHARED: &str = "The series share the stack only: each job is a fresh checkout with \
     an empty Cargo home at a new path that restores its own series' cache (key suffix \
     `archive` or `contents`, one owner and scope) and builds on its own; at each bump \
     the series take turns going first. The saves run one at a time, so each one's \
     growth is its own. The pull request's jobs hand their token to the signer \
     themselves (the shim holds main's).";

/// Main's bumps (`n`, by default every one but the last) and the pull request's (the
/// next).
fn split(mut locks: Vec<Lock>, n: Option<u32>) -> Result<(Vec<Lock>, Lock)> {
    let main = n.map_or(locks.len().saturating_sub(1), |n| n as usize);
    if locks.len() <= main {
        bail!(
            "only {} bumps resolve; {main} of main and the pull request's need {}",
            locks.len(),
            main + 1
        );
    }
    if n.is_none() && main < REQUIRED {
        bail!("only {main} bumps of main resolve; the benchmark needs {REQUIRED}");
    }
    locks.truncate(main + 1);
    let pr = locks.pop().context("no bump resolves")?;
    Ok((locks, pr))
}

fn command(opts: &Options) -> String {
    let mut command = "cargo xtask bench-dedup".to_owned();
    if let Some(n) = opts.bumps {
        command.push_str(&format!(" --bumps {n}"));
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locks(n: usize) -> Vec<Lock> {
        (0..n)
            .map(|i| Lock {
                bump: format!("bump {i}"),
                package: "p",
                text: String::new(),
            })
            .collect()
    }

    fn names(locks: &[Lock]) -> Vec<&str> {
        locks.iter().map(|l| l.bump.as_str()).collect()
    }

    #[test]
    fn the_pull_request_takes_the_bump_after_mains_last() {
        let (main, pr) = split(locks(15), None).expect("all but the last");
        assert_eq!((main.len(), pr.bump.as_str()), (14, "bump 14"));
        let (main, pr) = split(locks(15), Some(2)).expect("two");
        assert_eq!(
            (names(&main), pr.bump.as_str()),
            (vec!["bump 0", "bump 1"], "bump 2")
        );
        assert!(
            split(locks(3), Some(3)).is_err(),
            "none left for the pull request"
        );
        assert!(split(locks(10), None).is_err(), "fewer than 10 of main");
        assert!(split(locks(11), None).is_ok());
    }
}
