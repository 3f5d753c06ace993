//! sccache, the peer the next-commit job is measured against (issue 18): version
//! [`VERSION`] with its S3 backend on the stack's S3, as a fleet would run it. Taken
//! from `PATH` or `$CARGO_HOME/bin` when that version is there, else installed with
//! `cargo install --locked` (several minutes on 2 cores, once per machine).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::super::{say, which};
use crate::stack::S3Target;

pub const VERSION: &str = "0.19.0";

/// sccache's `--version` line, when `bin` runs.
fn version_of(bin: &Path) -> Option<String> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The sccache binary of [`VERSION`], installed when missing.
pub fn find_or_install() -> Result<PathBuf> {
    let wanted = format!("sccache {VERSION}");
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|home| home.join("bin/sccache"));
    let candidates = which("sccache").into_iter().chain(cargo_bin.clone());
    for bin in candidates {
        if version_of(&bin).as_deref() == Some(wanted.as_str()) {
            return Ok(bin);
        }
    }
    say(&format!(
        "installing {wanted} (S3 backend only) with cargo install: several minutes, once"
    ));
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args([
            "install",
            "--locked",
            "--no-default-features",
            "--features",
            "s3",
        ])
        .arg(format!("sccache@{VERSION}"))
        .status()
        .context("cannot run cargo install")?;
    if !status.success() {
        bail!("cargo install sccache@{VERSION} failed: {status}");
    }
    cargo_bin
        .filter(|bin| version_of(bin).as_deref() == Some(wanted.as_str()))
        .with_context(|| format!("{wanted} is not in $CARGO_HOME/bin after cargo install"))
}

/// One sccache setup: a server port of its own and a key prefix in the stack's bucket.
pub struct Sccache {
    pub bin: PathBuf,
    port: u16,
    s3: S3Target,
    prefix: String,
}

/// What the server counted during one build.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub compile_requests: u64,
    pub hits: u64,
    pub misses: u64,
    /// The other requests: compilations sccache does not cache (binaries, proc
    /// macros, build scripts), and calls that compile nothing (`rustc -vV`).
    pub not_cached: u64,
    /// Where the server kept its cache (`S3, bucket: …`): the backend in use.
    pub location: String,
}

impl Stats {
    /// `94 requests: 61 hits, 2 misses, 31 not cacheable`
    pub fn note(&self) -> String {
        format!(
            "{} requests: {} hits, {} misses, {} not cacheable",
            self.compile_requests, self.hits, self.misses, self.not_cached
        )
    }
}

impl Sccache {
    pub fn new(bin: PathBuf, s3: &S3Target, prefix: String) -> Result<Sccache> {
        // A port of our own, so no other sccache server on the machine answers.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("cannot pick a port for the sccache server")?
            .port();
        Ok(Sccache {
            bin,
            port,
            s3: s3.clone(),
            prefix,
        })
    }

    /// The variables of a job that compiles through sccache. Incremental compilation
    /// off, as sccache's README asks (it caches no incremental unit); `basedir` is the
    /// checkout, so paths under it hash alike wherever the job runs.
    pub fn env(&self, basedir: &Path) -> Vec<(String, String)> {
        let s3 = &self.s3;
        let mut endpoint = s3.endpoint.clone();
        if !endpoint.contains("://") {
            endpoint = format!("http://{endpoint}");
        }
        [
            ("RUSTC_WRAPPER", self.bin.display().to_string()),
            ("CARGO_INCREMENTAL", "0".to_owned()),
            ("SCCACHE_SERVER_PORT", self.port.to_string()),
            ("SCCACHE_BUCKET", s3.bucket.clone()),
            ("SCCACHE_ENDPOINT", endpoint.clone()),
            ("SCCACHE_REGION", s3.region.clone()),
            (
                "SCCACHE_S3_USE_SSL",
                endpoint.starts_with("https").to_string(),
            ),
            ("SCCACHE_S3_KEY_PREFIX", self.prefix.clone()),
            ("SCCACHE_BASEDIRS", basedir.display().to_string()),
            ("AWS_ACCESS_KEY_ID", s3.access_key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    fn command(&self, arg: &str) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg(arg)
            .env("SCCACHE_SERVER_PORT", self.port.to_string());
        cmd
    }

    /// `sccache 0.19.0`.
    pub fn version(&self) -> String {
        version_of(&self.bin).unwrap_or_else(|| format!("sccache {VERSION}"))
    }

    /// The counts of the running server (started by the last build).
    pub fn stats(&self) -> Result<Stats> {
        let out = self
            .command("--show-stats")
            .args(["--stats-format", "json"])
            .output()
            .context("cannot run sccache --show-stats")?;
        if !out.status.success() {
            bail!(
                "sccache --show-stats failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let json: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("sccache's stats are not JSON")?;
        Ok(stats_of(&json))
    }

    /// Stops the server, if one runs: the next build starts a fresh one, as a fresh
    /// runner would.
    pub fn stop_server(&self) {
        let _ = self.command("--stop-server").output();
    }
}

impl Drop for Sccache {
    fn drop(&mut self) {
        self.stop_server();
    }
}

/// Sums the per-language counts of `--show-stats --stats-format json`.
fn stats_of(json: &serde_json::Value) -> Stats {
    let stats = &json["stats"];
    let sum = |field: &str| -> u64 {
        stats[field]["counts"]
            .as_object()
            .map(|m| m.values().filter_map(serde_json::Value::as_u64).sum())
            .unwrap_or(0)
    };
    let (hits, misses) = (sum("cache_hits"), sum("cache_misses"));
    let compile_requests = stats["compile_requests"].as_u64().unwrap_or(0);
    Stats {
        compile_requests,
        hits,
        misses,
        not_cached: compile_requests.saturating_sub(hits + misses),
        location: json["cache_location"].as_str().unwrap_or("?").to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_sum_the_languages_and_count_the_rest_as_not_cached() {
        // The shape sccache 0.19 prints (fields it has but we do not read left out).
        let json = serde_json::json!({
            "stats": {
                "compile_requests": 10,
                "requests_not_cacheable": 3,
                "cache_hits": {"counts": {"Rust": 4, "C/C++": 1}, "adv_counts": {}},
                "cache_misses": {"counts": {"Rust": 2}, "adv_counts": {}},
            },
            "cache_location": "S3, bucket: Bucket(name=bmat, base=https://127.0.0.1:3900/)",
        });
        let stats = stats_of(&json);
        assert_eq!((stats.hits, stats.misses, stats.not_cached), (5, 2, 3));
        assert_eq!(
            stats.note(),
            "10 requests: 5 hits, 2 misses, 3 not cacheable"
        );
        assert!(stats.location.starts_with("S3"));
    }
}
