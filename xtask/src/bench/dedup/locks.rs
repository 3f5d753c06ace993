//! The locks the jobs build: the workspace's own, then [`BUMPS`] replayed one at a
//! time, each on top of the ones before, in a scratch checkout of its own (with its
//! own Cargo home: no job's home sees the replay's downloads). A bump that does not
//! resolve is skipped and said.

use std::path::Path;

use anyhow::Result;
use bmat::rust::lockfile;
use serde::Serialize;

use super::super::bumps::{self, BUMPS};
use super::super::rust_job::job::Job;
use super::super::say;

/// One bump replayed: the lock after it.
#[derive(Debug, Clone, Serialize)]
pub struct Lock {
    /// The lock change as done (`clap 4.6.9 → 4.6.8, clap_derive 4.6.9 → 4.6.8`).
    pub bump: String,
    pub package: &'static str,
    #[serde(skip)]
    pub text: String,
}

pub struct Replayed {
    /// `cargo -V` with a job's environment.
    pub cargo: String,
    /// The workspace's own Cargo.lock.
    pub initial: String,
    /// In the order of [`BUMPS`].
    pub bumps: Vec<Lock>,
    /// `cargo update -p syn --precise 3.0.9: error: …`, for each that did not resolve.
    pub skipped: Vec<String>,
}

/// Replays bumps in `dir` (created) until `want` of them resolved (all without).
pub fn replay(source: &Path, dir: &Path, logs: &Path, want: Option<usize>) -> Result<Replayed> {
    // Cargo only: no bmat binary, no agent socket.
    let job = Job::checkout(
        "replay",
        source,
        &dir.join("ws"),
        &dir.join("cargo-home"),
        Path::new(""),
        Path::new(""),
        logs,
    )?;
    let initial = job.lock()?;
    let mut out = Replayed {
        cargo: job.cargo_version()?,
        initial: initial.clone(),
        bumps: Vec::new(),
        skipped: Vec::new(),
    };
    let mut before = initial;
    for bump in BUMPS {
        if want.is_some_and(|n| out.bumps.len() >= n) {
            break;
        }
        let update = ["update", "-p", bump.package, "--precise", bump.precise];
        if let Err(e) = job.cargo(&format!("update-{}", bump.package), &update) {
            let line = format!("`cargo {}`: {e}", update.join(" "));
            say(&format!("skipped {line}"));
            out.skipped.push(line);
            continue;
        }
        let after = job.lock()?;
        let described = bumps::describe(
            bump.package,
            &lockfile::third_party(&before)?,
            &lockfile::third_party(&after)?,
        );
        out.bumps.push(Lock {
            bump: described,
            package: bump.package,
            text: after.clone(),
        });
        before = after;
    }
    Ok(out)
}
