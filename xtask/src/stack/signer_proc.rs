//! The signer as a child process: config written once, restartable on the same
//! database and port.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use signer::config::Config;

use super::children::{child_log_filter, free_port, port_taken};
use super::process::Proc;
use super::s3_target::S3Target;

pub struct SignerProc {
    proc: Proc,
    config_path: PathBuf,
    url: String,
    ready_file: PathBuf,
}

impl SignerProc {
    /// Writes the config and starts the signer. When its port was taken meanwhile,
    /// picks another one (updating `config.listen`) and tries again.
    pub fn start(bin: &Path, dir: &Path, config: &mut Config, s3: &S3Target) -> Result<SignerProc> {
        let mut attempt = 1;
        loop {
            match SignerProc::start_once(bin, dir, config, s3) {
                Err(e) if attempt < 3 && port_taken(&e) => {
                    attempt += 1;
                    config.listen.set_port(free_port()?);
                    if let Some(m) = &mut config.metrics {
                        m.listen.set_port(free_port()?);
                    }
                }
                other => return other,
            }
        }
    }

    fn start_once(bin: &Path, dir: &Path, config: &Config, s3: &S3Target) -> Result<SignerProc> {
        let config_path = dir.join("signer.toml");
        write_config(&config_path, config)?;
        let ready_file = dir.join("signer.ready");
        let proc = Proc::new("signer", bin, dir.join("signer.log"))
            .arg("--config")
            .arg(&config_path)
            .arg("--ready-file")
            .arg(&ready_file)
            .env(&config.s3.access_key_id_env, &s3.access_key_id)
            .env(&config.s3.secret_access_key_env, &s3.secret_access_key)
            .env("RUST_LOG", child_log_filter());
        let mut signer = SignerProc {
            proc,
            config_path,
            url: format!("http://{}", config.listen),
            ready_file,
        };
        signer.restart()?;
        Ok(signer)
    }

    /// Spawns the signer (again) and waits for its ready file and `GET /v1/health`.
    pub fn restart(&mut self) -> Result<()> {
        // A ready file left by the previous run would say "ready" too early.
        match std::fs::remove_file(&self.ready_file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e)
                    .with_context(|| format!("cannot remove {}", self.ready_file.display()));
            }
            _ => {}
        }
        self.proc.spawn()?;
        let ready_file = self.ready_file.clone();
        let health = format!("{}/v1/health", self.url);
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5));
        let http = http.build()?;
        self.proc
            .wait_ready("its ready file and GET /v1/health = 200", move || {
                let (ready_file, health, http) = (ready_file.clone(), health.clone(), http.clone());
                async move {
                    if !ready_file.exists() {
                        return Ok(false);
                    }
                    let status = http.get(&health).send().await?.status();
                    Ok(status == reqwest::StatusCode::OK)
                }
            })
    }

    /// Replaces the config file the next [`SignerProc::restart`] reads.
    pub fn write_config(&mut self, config: &Config) -> Result<()> {
        if self.proc.pid().is_some() {
            bail!("the signer is running; kill it before changing its config");
        }
        self.url = format!("http://{}", config.listen);
        write_config(&self.config_path, config)
    }

    pub fn kill(&mut self) -> Result<()> {
        self.proc.kill()
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn proc_mut(&mut self) -> &mut Proc {
        &mut self.proc
    }

    pub fn proc(&self) -> &Proc {
        &self.proc
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    pub fn log_path(&self) -> &Path {
        self.proc.log_path()
    }
}

fn write_config(path: &Path, config: &Config) -> Result<()> {
    std::fs::write(path, config.to_toml()?)
        .with_context(|| format!("cannot write {}", path.display()))
}
