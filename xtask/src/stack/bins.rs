//! Where the stack finds its programs: the workspace's own binaries and Garage.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// The Garage release the stack is tested with. `.ci/run` installs the same version.
pub const GARAGE_VERSION: &str = "2.5.0";

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Directory holding `signer`, `agent-shim` and `bmat`: `BMAT_BIN_DIR`, else
/// `$CARGO_TARGET_DIR/debug`, else `<workspace>/target/debug`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BMAT_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| {
            if t.is_relative() {
                workspace_root().join(t)
            } else {
                t
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("debug")
}

/// Path of one of the workspace's binaries (`signer`, `agent-shim`, `bmat`).
pub fn workspace_bin(name: &str) -> Result<PathBuf> {
    workspace_bin_in(&bin_dir(), name)
}

fn workspace_bin_in(dir: &Path, name: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} not found; run `cargo build --workspace --bins` first (or set BMAT_BIN_DIR)",
            path.display()
        );
    }
    Ok(path)
}

/// The Garage binary: `BMAT_GARAGE_BIN`, else `$CARGO_HOME/bin/garage` (default
/// `~/.cargo/bin`), where `cargo xtask garage` installs it. Never another `garage` on
/// PATH: its version is anyone's guess.
pub fn garage_bin() -> Result<PathBuf> {
    match garage_location() {
        GarageLocation::Given(bin) if !bin.is_file() => {
            bail!("BMAT_GARAGE_BIN={} does not exist", bin.display())
        }
        GarageLocation::Given(bin) => Ok(bin),
        GarageLocation::CargoHome(bin) if bin.is_file() => Ok(bin),
        GarageLocation::CargoHome(bin) => bail!(
            "garage (the S3 server of the local stack) is not installed at {}; \
             `cargo xtask garage` installs version {GARAGE_VERSION} there (about 12 minutes, once), \
             or set BMAT_GARAGE_BIN, or point the stack at another S3 server with BMAT_TEST_S3_ENDPOINT",
            bin.display()
        ),
    }
}

/// Where the stack takes Garage from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GarageLocation {
    /// `BMAT_GARAGE_BIN`: used as it is, whatever its version.
    Given(PathBuf),
    /// `$CARGO_HOME/bin/garage`: installed there with the pinned version if missing.
    CargoHome(PathBuf),
}

pub fn garage_location() -> GarageLocation {
    if let Some(bin) = std::env::var_os("BMAT_GARAGE_BIN").filter(|v| !v.is_empty()) {
        return GarageLocation::Given(PathBuf::from(bin));
    }
    GarageLocation::CargoHome(cargo_home().join("bin").join("garage"))
}

/// `$CARGO_HOME`, else `~/.cargo` (else `.cargo` in the working directory, as cargo
/// itself would fail without a home).
pub fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from(".cargo"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_is_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let msg = workspace_bin_in(dir.path(), "signer")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("signer") && msg.contains("cargo build --workspace --bins"),
            "{msg}"
        );
        std::fs::write(dir.path().join("signer"), "").unwrap();
        assert_eq!(
            workspace_bin_in(dir.path(), "signer").unwrap(),
            dir.path().join("signer")
        );
    }
}
