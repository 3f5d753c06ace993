//! The toolchain part of a Rust cache key, from `rustc -vV`.
//!
//! Artefacts are only reusable by the exact compiler that made them, so the key names
//! the release (`1.95.0`) or, for nightly and beta, the channel and commit date
//! (`nightly-2026-04-14`), and the host triple.

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::Command;

/// The programs a Rust key asks: `$CARGO` and `$RUSTC` of the job, by default
/// `cargo` and `rustc` from `PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RustTools {
    pub cargo: OsString,
    pub rustc: OsString,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toolchain {
    /// `1.95.0`, `nightly-2026-04-14` or `beta-2026-04-14`.
    pub name: String,
    /// `x86_64-unknown-linux-gnu`.
    pub host: String,
    /// The whole `rustc -vV` answer, shown by `bmat cache rust key`.
    pub verbose_version: String,
}

/// Runs `rustc -vV` in `dir`, so a `rust-toolchain.toml` there applies.
pub fn detect(rustc: &OsStr, dir: &Path) -> anyhow::Result<Toolchain> {
    parse(&version_of(rustc, "-vV", dir)?)
}

/// `cargo -V` in `dir`: `1.95.0` of `cargo 1.95.0 (f2d3ce0bd 2026-03-21)`.
pub fn cargo_version(cargo: &OsStr, dir: &Path) -> anyhow::Result<String> {
    let text = version_of(cargo, "-V", dir)?;
    text.split_whitespace()
        .nth(1)
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("cargo -V said {:?}", text.trim()))
}

/// What `program flag` prints, run in `dir`.
fn version_of(program: &OsStr, flag: &str, dir: &Path) -> anyhow::Result<String> {
    let shown = program.to_string_lossy();
    let output = Command::new(program)
        .arg(flag)
        .current_dir(dir)
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run {shown} {flag}: {e}"))?;
    if !output.status.success() {
        anyhow::bail!(
            "{shown} {flag} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// (major, minor) of a version like `1.95.0` or `1.97.0-nightly`.
pub fn minor_of(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.split(['.', '-']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

pub fn parse(verbose_version: &str) -> anyhow::Result<Toolchain> {
    let field = |name: &str| {
        verbose_version
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
            .map(str::trim)
    };
    let release =
        field("release").ok_or_else(|| anyhow::anyhow!("rustc -vV printed no release"))?;
    let host = field("host").ok_or_else(|| anyhow::anyhow!("rustc -vV printed no host"))?;
    let date = field("commit-date").unwrap_or("unknown");
    let name = if release.contains("-nightly") {
        format!("nightly-{date}")
    } else if release.contains("-beta") {
        format!("beta-{date}")
    } else if release.contains('-') {
        // e.g. `1.95.0-dev` from a locally built compiler: the release alone says too little.
        format!("{}-{date}", release.replace('-', "_"))
    } else {
        release.to_string()
    };
    Ok(Toolchain {
        name,
        host: host.to_string(),
        verbose_version: verbose_version.trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STABLE: &str = "rustc 1.95.0 (59807616e 2026-04-14)\nbinary: rustc\ncommit-hash: 59807616e1fa2540724bfbac14d7976d7e4a3860\ncommit-date: 2026-04-14\nhost: x86_64-unknown-linux-gnu\nrelease: 1.95.0\nLLVM version: 22.1.2\n";

    #[test]
    fn names_stable_nightly_and_beta() {
        let stable = parse(STABLE).expect("stable");
        assert_eq!(
            (stable.name.as_str(), stable.host.as_str()),
            ("1.95.0", "x86_64-unknown-linux-gnu")
        );
        let nightly =
            parse(&STABLE.replace("release: 1.95.0", "release: 1.97.0-nightly")).expect("nightly");
        assert_eq!(nightly.name, "nightly-2026-04-14");
        let beta =
            parse(&STABLE.replace("release: 1.95.0", "release: 1.96.0-beta.3")).expect("beta");
        assert_eq!(beta.name, "beta-2026-04-14");
    }

    #[test]
    fn refuses_an_answer_without_release_or_host() {
        assert!(parse("rustc 1.95.0\nhost: x\n").is_err());
        assert!(parse("release: 1.95.0\n").is_err());
    }
}
