//! `cargo xtask demo`: the main job end to end on the local stack.

use anyhow::{Result, bail};

pub fn run() -> Result<()> {
    bail!("cargo xtask demo is not implemented yet")
}
