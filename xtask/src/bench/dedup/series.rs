//! One job of a series on the stack, measured: a fresh checkout at a lock with an
//! empty Cargo home at a new path, `bmat cache rust restore --deps-only` (but job 0),
//! `cargo build --locked`, `bmat cache rust save --deps-only` with the bucket listed
//! before and after, then (for a bump) the key just saved restored on another fresh
//! runner. The build is online: a bump's package is never in the cache restored from
//! the lock before it.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::super::rust_job::job::{Caches, Job};
use super::super::rust_job::next_commit::Jobs;
use super::super::rust_job::units::Counts;
use super::super::say;
use super::report::{JobFigures, Saved};
use crate::stack::{Stack, process};

/// What a job of a series is.
#[derive(Clone, Copy)]
pub enum Kind<'a> {
    /// Job 0: nothing to restore.
    Cold,
    /// A bump of main: restores the series' previous cache (a fallback hit), and its
    /// save is restored again on a fresh runner.
    Bump,
    /// A pull request's job with its own token (its scope reading main's), which it
    /// hands the signer itself: the stack's shim holds main's.
    PullRequest { token: &'a str },
}

/// Where the jobs run.
pub struct Bench<'a> {
    pub jobs: Jobs<'a>,
    pub stack: &'a Stack,
    /// Leave every job's files as they are (else they are emptied once measured).
    pub keep: bool,
}

impl Bench<'_> {
    /// The job `name` of the series `format` at `lock`.
    pub fn job(&self, format: &str, name: &str, lock: &str, kind: Kind) -> Result<JobFigures> {
        let job = self.checkout(&format!("{format}-{name}"), lock, self.env(format, kind))?;
        let restore_s = match kind {
            Kind::Cold => None,
            Kind::Bump | Kind::PullRequest { .. } => {
                let (usage, _) = job.bmat_rust("restore", Caches::DepsOnly, "hit")?;
                Some(usage.wall.as_secs_f64())
            }
        };
        let (build, units) = job.cargo_build("build", &[])?;
        let saved = self.save(&job)?;
        self.done_with(&job);
        let fresh_restores_s = match kind {
            Kind::Bump => vec![self.fresh_restore(format, name, lock, &saved.key)?],
            Kind::Cold | Kind::PullRequest { .. } => Vec::new(),
        };
        say(&format!(
            "{format} {name}: uploaded {:.1} MiB of {:.1} MiB, stored {:+.1} MiB, S3 holds \
             {:.1} MiB for the cache, save {:.1} s, restore on a fresh runner {}",
            saved.uploaded_bytes as f64 / (1 << 20) as f64,
            saved.logical_bytes as f64 / (1 << 20) as f64,
            saved.growth_bytes as f64 / (1 << 20) as f64,
            saved.stored_bytes as f64 / (1 << 20) as f64,
            saved.save_s,
            fresh_restores_s
                .first()
                .map_or("–".to_owned(), |s| format!("{s:.1} s")),
        ));
        Ok(JobFigures {
            restore_s,
            build_s: build.wall.as_secs_f64(),
            rebuilt: Counts::of(&units).third_party_rebuilt.len(),
            saved,
            fresh_restores_s,
        })
    }

    /// The series' tuning and key suffix (both its format's name), and for a pull
    /// request the signer and its token instead of the shim (an empty socket is none).
    fn env(&self, format: &str, kind: Kind) -> Vec<(String, String)> {
        let mut env = vec![
            ("BMAT_CACHE_FORMAT".to_owned(), format.to_owned()),
            ("BMAT_RUST_KEY_SUFFIX".to_owned(), format.to_owned()),
        ];
        if let Kind::PullRequest { token } = kind {
            env.extend([
                ("BMAT_AGENT_SOCKET".to_owned(), String::new()),
                (
                    "BMAT_SIGNER_URL".to_owned(),
                    self.stack.env().signer_url.clone(),
                ),
                ("BMAT_TOKEN".to_owned(), token.to_owned()),
            ]);
        }
        env
    }

    fn checkout(&self, name: &str, lock: &str, env: Vec<(String, String)>) -> Result<Job> {
        let job = self.jobs.fresh(name)?.with_env(env);
        job.set_lock(lock)?;
        Ok(job)
    }

    /// The save, timed, with the bytes it added to the bucket.
    fn save(&self, job: &Job) -> Result<Saved> {
        let before = self.stored()?;
        let (usage, json) = job.bmat_rust("save", Caches::DepsOnly, "saved")?;
        let after = self.stored()?;
        let field = |name: &str| json[name].as_u64();
        let key = json["key"]
            .as_str()
            .with_context(|| format!("job {}: the save's --json has no key", job.name))?;
        let archive = field("archive_bytes");
        let missing = || format!("job {}: the save's --json has no size: {json}", job.name);
        let saved = Saved {
            uploaded_bytes: field("uploaded_bytes").or(archive).with_context(missing)?,
            logical_bytes: field("logical_bytes").or(archive).with_context(missing)?,
            stored_bytes: field("stored_bytes").or(archive).with_context(missing)?,
            bytes: field("bytes"),
            growth_bytes: after as i64 - before as i64,
            save_s: usage.wall.as_secs_f64(),
            key: key.to_owned(),
        };
        Ok(saved)
    }

    /// A restore of exactly `key` into a fresh checkout with an empty Cargo home: what
    /// the next job pays. Its wall time.
    pub fn fresh_restore(&self, format: &str, name: &str, lock: &str, key: &str) -> Result<f64> {
        let job = self.checkout(
            &format!("{format}-{name}-fresh"),
            lock,
            self.env(format, Kind::Bump),
        )?;
        let (usage, json) = job.bmat_rust("restore", Caches::DepsOnly, "hit")?;
        self.done_with(&job);
        if json["matched_key"].as_str() != Some(key) {
            bail!(
                "job {}: restored {}, not the key just saved ({key})",
                job.name,
                json["matched_key"]
            );
        }
        Ok(usage.wall.as_secs_f64())
    }

    /// Bytes of every object under the stack's S3 prefix.
    fn stored(&self) -> Result<u64> {
        let target = self.stack.s3_target().clone();
        let prefix = format!("{}/", self.stack.env().s3_prefix);
        let objects = process::block_on(async move {
            let s3 = target.client()?;
            anyhow::Ok(s3.list_objects(&prefix).await?)
        })?
        .context("cannot list the bucket")?;
        Ok(objects.iter().map(|(_, size)| size).sum())
    }

    /// Empties every file of a measured job's checkout and Cargo home (unless
    /// [`Bench::keep`]): a whole run's trees would take some 25 GiB. Files are
    /// truncated, not deleted: deleting thousands of inodes slows the inode allocation
    /// of the restores that follow on this VM's ext4 (see `ops::Ctx::set_aside`); the
    /// temp dir goes at the end. Best effort: a file left whole only takes space.
    fn done_with(&self, job: &Job) {
        if !self.keep {
            empty_files(&job.ws);
            empty_files(job.cargo_home());
        }
    }
}

fn empty_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => empty_files(&entry.path()),
            Ok(kind) if kind.is_file() => {
                let _ = fs::File::options()
                    .write(true)
                    .open(entry.path())
                    .and_then(|f| f.set_len(0));
            }
            _ => {}
        }
    }
}
