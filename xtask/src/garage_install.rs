//! Garage, the S3 server of the local stack, on a machine that has only Rust: found at
//! `BMAT_GARAGE_BIN` or `$CARGO_HOME/bin/garage` (see [`bins::garage_location`]), else
//! built and installed there with `cargo install --locked garage@VERSION` (the pinned
//! [`GARAGE_VERSION`]) in a throw-away target dir. `cargo xtask demo | test | stack`
//! call [`ensure`] before building anything else; `.ci/run` calls `cargo xtask garage`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::stack::bins::{self, GARAGE_VERSION, GarageLocation};

/// Programs Garage's bundled C libraries need to build (libsodium runs configure +
/// make), and the Debian packages that bring them.
const BUILD_TOOLS: [(&str, &str); 3] = [
    ("cc", "build-essential"),
    ("make", "make"),
    ("pkg-config", "pkg-config"),
];

/// The Garage the stack will run, installed first when missing. `None` when the stack
/// uses another S3 server (`BMAT_TEST_S3_ENDPOINT`).
pub fn ensure_for_stack() -> Result<Option<PathBuf>> {
    if std::env::var_os("BMAT_TEST_S3_ENDPOINT").is_some_and(|v| !v.is_empty()) {
        return Ok(None);
    }
    ensure().map(Some)
}

/// The Garage binary, installing the pinned version into `$CARGO_HOME/bin` when it is
/// not there (or is another version).
pub fn ensure() -> Result<PathBuf> {
    match bins::garage_location() {
        GarageLocation::Given(_) => bins::garage_bin(),
        GarageLocation::CargoHome(bin) if is_pinned_version(&bin) => Ok(bin),
        GarageLocation::CargoHome(bin) => {
            install(&bins::cargo_home())?;
            if !is_pinned_version(&bin) {
                bail!(
                    "cargo install finished but {} is not Garage {GARAGE_VERSION}",
                    bin.display()
                );
            }
            Ok(bin)
        }
    }
}

/// The Garage that [`ensure`] would use, without installing anything.
pub fn installed() -> Option<PathBuf> {
    match bins::garage_location() {
        GarageLocation::Given(_) => bins::garage_bin().ok(),
        GarageLocation::CargoHome(bin) => is_pinned_version(&bin).then_some(bin),
    }
}

/// `garage --version` says `garage cargo:2.5.0 [features: …]` for a crates.io build.
fn is_pinned_version(bin: &Path) -> bool {
    bin.is_file()
        && Command::new(bin)
            .arg("--version")
            .output()
            .is_ok_and(|out| version_matches(&out))
}

fn version_matches(out: &Output) -> bool {
    out.status.success()
        && String::from_utf8_lossy(&out.stdout).contains(&format!("cargo:{GARAGE_VERSION} "))
}

fn install(root: &Path) -> Result<()> {
    let missing: Vec<&(&str, &str)> = BUILD_TOOLS
        .iter()
        .filter(|(tool, _)| on_path(tool).is_none())
        .collect();
    if !missing.is_empty() {
        let tools: Vec<&str> = missing.iter().map(|(t, _)| *t).collect();
        let packages: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
        bail!(
            "Garage {GARAGE_VERSION} (the local stack's S3 server) must be built, which needs {}; \
             install them (Debian/Ubuntu: `apt-get install {}`), or set BMAT_GARAGE_BIN to a \
             garage binary, or BMAT_TEST_S3_ENDPOINT to another S3 server",
            tools.join(", "),
            packages.join(" ")
        );
    }
    eprintln!(
        "xtask: Garage {GARAGE_VERSION} (the local stack's S3 server) is not installed; \
         installing it into {}/bin with `cargo install --locked garage@{GARAGE_VERSION}`. \
         This takes about 12 minutes on 2 cores, once per machine.",
        root.display()
    );
    let started = Instant::now();
    // A throw-away target dir keeps ~800 MB of build products out of the project.
    let build_dir = tempfile::Builder::new()
        .prefix("garage-build-")
        .tempdir()
        .context("cannot create a build dir for Garage")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["install", "--locked", "--root"])
        .arg(root)
        .arg(format!("garage@{GARAGE_VERSION}"))
        .env("CARGO_TARGET_DIR", build_dir.path())
        // Progress to stderr only: `BMAT_GARAGE_BIN=$(cargo xtask garage)` reads stdout.
        .stdout(std::io::stderr())
        .status()
        .context("cannot run cargo install")?;
    if !status.success() {
        bail!("cargo install --locked garage@{GARAGE_VERSION} failed: {status}");
    }
    eprintln!(
        "xtask: Garage {GARAGE_VERSION} installed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    use super::*;

    fn output(code: i32, stdout: &str) -> Output {
        Output {
            status: ExitStatus::from_raw(code << 8),
            stdout: stdout.as_bytes().to_vec(),
            stderr: Vec::new(),
        }
    }

    #[test]
    fn only_the_pinned_crates_io_build_counts() {
        let pinned = format!("garage cargo:{GARAGE_VERSION} [features: bundled-libs]\n");
        assert!(version_matches(&output(0, &pinned)));
        assert!(!version_matches(&output(1, &pinned)));
        assert!(!version_matches(&output(
            0,
            "garage cargo:1.0.1 [features: x]\n"
        )));
        assert!(!version_matches(&output(
            0,
            &format!("garage cargo:{GARAGE_VERSION}1 [x]\n")
        )));
    }
}
