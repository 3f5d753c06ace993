//! `cargo xtask test`: build the binaries the integration tests start, then run every
//! test of the workspace. One target dir for both, so nothing is built twice.

use std::ffi::OsString;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::garage_install;
use crate::stack::bins;

pub fn run(extra: &[OsString]) -> Result<()> {
    // The S3 server the tests need first, installed if missing, before a long build.
    let garage = garage_install::ensure_for_stack()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    step(
        "cargo build --workspace --bins",
        Command::new(&cargo).args(["build", "--workspace", "--bins"]),
    )?;
    let mut test = Command::new(&cargo);
    test.args(["test", "--workspace"]).args(extra);
    if let Some(garage) = garage {
        test.env("BMAT_GARAGE_BIN", garage);
    }
    step("cargo test --workspace", &mut test)
}

/// Runs one command with inherited stdio (output streams as it comes) and reports its time.
fn step(name: &str, cmd: &mut Command) -> Result<()> {
    let started = Instant::now();
    eprintln!("xtask: running {name}");
    let status = cmd
        .current_dir(bins::workspace_root())
        .status()
        .with_context(|| format!("cannot run {name}"))?;
    let secs = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("{name} failed ({status}) after {secs:.1} s");
    }
    eprintln!("xtask: {name} passed in {secs:.1} s");
    Ok(())
}
