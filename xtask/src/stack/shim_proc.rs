//! The agent-shim as a child process on the stack's Unix socket.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{Context, Result};

use super::children::child_log_filter;
use super::process::Proc;

pub struct ShimProc {
    proc: Proc,
    socket: PathBuf,
}

impl ShimProc {
    pub fn start(
        bin: &Path,
        dir: &Path,
        socket: &Path,
        signer_url: &str,
        token: &str,
    ) -> Result<ShimProc> {
        // A token file, as README recommends (the stack's dir is owner-only).
        let token_file = dir.join("agent-shim.token");
        std::fs::write(&token_file, token)
            .with_context(|| format!("cannot write {}", token_file.display()))?;
        let proc = Proc::new("agent-shim", bin, dir.join("agent-shim.log"))
            .arg("--socket")
            .arg(socket)
            .arg("--signer")
            .arg(signer_url)
            .arg("--token-file")
            .arg(&token_file)
            .env("RUST_LOG", child_log_filter());
        let mut shim = ShimProc {
            proc,
            socket: socket.to_path_buf(),
        };
        shim.restart()?;
        Ok(shim)
    }

    /// Spawns the shim (again) and waits until `GET /v1/health` over the socket answers 200.
    pub fn restart(&mut self) -> Result<()> {
        self.proc.spawn()?;
        let socket = self.socket.clone();
        self.proc
            .wait_ready("GET /v1/health over its socket = 200", move || {
                let socket = socket.clone();
                async move {
                    if !socket.exists() {
                        return Ok(false);
                    }
                    // A stale socket file from a killed shim exists but refuses connections;
                    // the request then fails and the loop tries again.
                    let http = reqwest::Client::builder()
                        .unix_socket(socket)
                        .timeout(Duration::from_secs(5))
                        .build()?;
                    let status = http
                        .get("http://agent-shim/v1/health")
                        .send()
                        .await?
                        .status();
                    Ok(status == reqwest::StatusCode::OK)
                }
            })
    }

    pub fn kill(&mut self) -> Result<()> {
        self.proc.kill()
    }

    pub fn terminate(&mut self) -> Result<Option<ExitStatus>> {
        self.proc.terminate()
    }

    pub fn proc_mut(&mut self) -> &mut Proc {
        &mut self.proc
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    pub fn log_path(&self) -> &Path {
        self.proc.log_path()
    }
}
