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

/// The Garage binary: `BMAT_GARAGE_BIN`, else `garage` on PATH, else
/// `$CARGO_HOME/bin/garage` (default `~/.cargo/bin`).
pub fn garage_bin() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("BMAT_GARAGE_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("BMAT_GARAGE_BIN={} does not exist", bin.display());
        }
        return Ok(bin);
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("garage"))
            .find(|p| p.is_file())
    });
    if let Some(found) = on_path {
        return Ok(found);
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(bin) = cargo_home
        .map(|h| h.join("bin").join("garage"))
        .filter(|p| p.is_file())
    {
        return Ok(bin);
    }
    bail!(
        "garage (the S3 server of the local stack) is not installed; install it with \
         `cargo install --locked garage@{GARAGE_VERSION}` (about 12 minutes), or set BMAT_GARAGE_BIN, \
         or point the stack at another S3 server with BMAT_TEST_S3_ENDPOINT"
    )
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
