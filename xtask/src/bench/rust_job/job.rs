//! One CI job of the benchmark: a fresh checkout of the workspace and an empty Cargo
//! home, with the environment of a fresh runner (nothing of xtask's own: no
//! `CARGO_TARGET_DIR`, no `RUSTFLAGS`, no `CARGO_*` that `cargo run` sets).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};

use super::super::measure::{Io, Usage, pipeline, settle};
use super::super::ops::{expect_outcome, json_outcome};
use super::units::{self, Unit};
use crate::copy::copy_tree;

/// Variables a job keeps from xtask's environment (the runner's basics).
const KEPT: [&str; 6] = ["PATH", "HOME", "USER", "LANG", "LC_ALL", "TMPDIR"];

pub struct Job {
    pub name: String,
    /// The workspace root of the checkout.
    pub ws: PathBuf,
    cargo_home: PathBuf,
    rustup_home: PathBuf,
    bmat: PathBuf,
    agent_socket: PathBuf,
    /// Where each step's stdout and stderr go.
    logs: PathBuf,
    /// Variables of the job besides the runner's (a compiler wrapper's).
    env: Vec<(String, String)>,
}

/// Which of bmat's Rust caches a job restores and saves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caches {
    /// `--deps-only`: the dependency cache (and Cargo's home) alone.
    DepsOnly,
    /// The dependency cache and the workspace layer.
    WithLayer,
}

impl Job {
    /// Copies `source` to `ws` (created, with no `target/`) and creates an empty
    /// `cargo_home`.
    pub fn checkout(
        name: &str,
        source: &Path,
        ws: &Path,
        cargo_home: &Path,
        bmat: &Path,
        agent_socket: &Path,
        logs: &Path,
    ) -> Result<Job> {
        copy_tree(source, ws)
            .with_context(|| format!("cannot copy {} to {}", source.display(), ws.display()))?;
        fs::create_dir_all(cargo_home)?;
        fs::create_dir_all(logs)?;
        // The rustup proxies on PATH look for the toolchains in RUSTUP_HOME, which
        // defaults to ~/.rustup; say so, since the job's CARGO_HOME is not ~/.cargo.
        let rustup_home = std::env::var_os("RUSTUP_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".rustup")))
            .context("neither RUSTUP_HOME nor HOME is set")?;
        Ok(Job {
            name: name.to_owned(),
            ws: ws.to_owned(),
            cargo_home: cargo_home.to_owned(),
            rustup_home,
            bmat: bmat.to_owned(),
            agent_socket: agent_socket.to_owned(),
            logs: logs.to_owned(),
            env: Vec::new(),
        })
    }

    pub fn cargo_home(&self) -> &Path {
        &self.cargo_home
    }

    /// The job with these variables set too.
    pub fn with_env(mut self, env: Vec<(String, String)>) -> Job {
        self.env = env;
        self
    }

    /// A command in the checkout with the job's environment.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.ws);
        // Each variable removed by name rather than `env_clear`, which a measured
        // command wrapped in GNU time would not carry over (see `measure`).
        for (key, _) in std::env::vars_os() {
            if !KEPT.iter().any(|k| key == *k) {
                cmd.env_remove(key);
            }
        }
        for (key, value) in super::super::bmat_tuning_env() {
            cmd.env(key, value);
        }
        cmd.env("CARGO_HOME", &self.cargo_home)
            .env("RUSTUP_HOME", &self.rustup_home)
            .env("BMAT_AGENT_SOCKET", &self.agent_socket)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// `cargo -V` with the job's environment: the toolchain resolves with the empty
    /// Cargo home.
    pub fn cargo_version(&self) -> Result<String> {
        let out = self
            .command("cargo")
            .arg("-V")
            .output()
            .context("cannot run cargo")?;
        if !out.status.success() {
            bail!(
                "`cargo -V` fails with CARGO_HOME={} RUSTUP_HOME={}: {}",
                self.cargo_home.display(),
                self.rustup_home.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    pub fn log_of(&self, step: &str) -> PathBuf {
        self.logs.join(format!("{}-{step}.log", self.name))
    }

    /// `bmat --json --strict cache rust ACTION [--deps-only]`, expecting `want` (a step
    /// that does anything else fails the run: the numbers after it would mean nothing).
    pub fn bmat_rust(
        &self,
        action: &str,
        caches: Caches,
        want: &str,
    ) -> Result<(Usage, serde_json::Value)> {
        let step = format!("bmat-{action}");
        let out = self.logs.join(format!("{}-{step}.json", self.name));
        let mut cmd = self.command(&self.bmat);
        cmd.args(["--json", "--strict", "cache", "rust", action]);
        if caches == Caches::DepsOnly {
            cmd.arg("--deps-only");
        }
        settle();
        let usage = pipeline(vec![cmd], Io::Null, Io::create(&out)?, &self.log_of(&step))
            .with_context(|| format!("job {}: bmat cache rust {action}", self.name))?;
        let json = json_outcome(&out, &["cache", "rust", action])?;
        expect_outcome(&json, want, &format!("job {}'s rust {action}", self.name))?;
        Ok((usage, json))
    }

    /// `cargo build --locked --message-format json EXTRA…`; its units. `step` names
    /// the logs (`<job>-<step>.log` for stderr, `.json` for the messages).
    pub fn cargo_build(&self, step: &str, extra: &[&str]) -> Result<(Usage, Vec<Unit>)> {
        let out = self.logs.join(format!("{}-{step}.json", self.name));
        let log = self.log_of(step);
        let _ = fs::remove_file(&log);
        let mut cmd = self.command("cargo");
        cmd.args(["build", "--locked", "--message-format", "json"])
            .args(extra);
        settle();
        let usage = pipeline(vec![cmd], Io::Null, Io::create(&out)?, &log).with_context(|| {
            format!(
                "job {}: cargo build {} failed: {}",
                self.name,
                extra.join(" "),
                first_error(&log)
            )
        })?;
        let stdout =
            fs::read_to_string(&out).with_context(|| format!("cannot read {}", out.display()))?;
        Ok((usage, units::units(&stdout)))
    }

    /// `cargo ARGS…` in the checkout, its stderr in `<job>-<step>.log`; the error
    /// carries Cargo's first `error:` line.
    pub fn cargo(&self, step: &str, args: &[&str]) -> Result<()> {
        let log = self.log_of(step);
        let _ = fs::remove_file(&log);
        let mut cmd = self.command("cargo");
        cmd.args(args);
        pipeline(vec![cmd], Io::Null, Io::Null, &log)
            .map(drop)
            .with_context(|| first_error(&log))
    }

    /// The checkout's Cargo.lock.
    pub fn lock(&self) -> Result<String> {
        let path = self.ws.join("Cargo.lock");
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    }

    /// Replaces the checkout's Cargo.lock with `text`.
    pub fn set_lock(&self, text: &str) -> Result<()> {
        let path = self.ws.join("Cargo.lock");
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Appends `line` to the file `rel` of the checkout: the next commit's change.
    pub fn append(&self, rel: &str, line: &str) -> Result<()> {
        let path = self.ws.join(rel);
        let mut text =
            fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        text.push_str(line);
        text.push('\n');
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Gives the file `rel` of the checkout the content of `source`'s (a new mtime).
    pub fn reset(&self, source: &Path, rel: &str) -> Result<()> {
        fs::copy(source.join(rel), self.ws.join(rel))
            .map(drop)
            .with_context(|| format!("cannot reset {rel} in {}", self.ws.display()))
    }

    /// Makes every workspace member dirty, as a code change would: sets the mtime of
    /// every `.rs` file of the checkout (outside `target/`) to now.
    pub fn touch_sources(&self) -> Result<usize> {
        touch_rs(&self.ws, SystemTime::now())
    }
}

fn touch_rs(dir: &Path, when: SystemTime) -> Result<usize> {
    let mut touched = 0;
    for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() && entry.file_name() != "target" {
            touched += touch_rs(&path, when)?;
        } else if kind.is_file() && path.extension().is_some_and(|e| e == "rs") {
            fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(when))
                .with_context(|| format!("cannot touch {}", path.display()))?;
            touched += 1;
        }
    }
    Ok(touched)
}

/// Cargo's first `error:` line in `log` (or where to look).
pub fn first_error(log: &Path) -> String {
    fs::read_to_string(log)
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("error"))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| format!("see {}", log.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn touching_makes_every_source_newer_but_leaves_target_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let files = [
            "core/src/lib.rs",
            "cli/src/main.rs",
            "target/debug/build/x/out.rs",
        ];
        for f in files.iter().copied().chain(["core/Cargo.toml"]) {
            let path = dir.path().join(f);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(&path, "").expect("write");
            fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(old))
                .expect("set mtime");
        }
        let now = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        assert_eq!(touch_rs(dir.path(), now).expect("touch"), 2);
        let mtime = |f: &str| {
            fs::metadata(dir.path().join(f))
                .and_then(|m| m.modified())
                .expect("mtime")
        };
        assert_eq!(mtime(files[0]), now);
        assert_eq!(mtime(files[1]), now);
        assert_eq!(mtime(files[2]), old);
        assert_eq!(mtime("core/Cargo.toml"), old);
    }
}
