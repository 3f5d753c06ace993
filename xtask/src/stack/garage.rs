//! A throw-away single-node Garage S3 server on loopback.
//!
//! Garage ≥ 2.3 bootstraps itself with `server --single-node --default-bucket`: layout,
//! access key and bucket come from `GARAGE_DEFAULT_*`, idempotently, so a restart on
//! the same data directory just works (fault tests SIGKILL it mid-transfer).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::bins::garage_bin;
use super::children::{free_port, port_taken, random_hex};
use super::process::Proc;
use super::s3_target::{S3Target, s3_ready_check};

pub struct Garage {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    proc: Proc,
}

impl Garage {
    /// Writes a fresh config and data directory under `dir` and starts the server.
    pub fn start(dir: &Path) -> Result<Garage> {
        let mut attempt = 1;
        loop {
            match Garage::start_once(dir) {
                // Another process took one of the free ports before Garage bound it.
                Err(e) if attempt < 3 && port_taken(&e) => attempt += 1,
                other => return other,
            }
        }
    }

    fn start_once(dir: &Path) -> Result<Garage> {
        let bin = garage_bin()?;
        let garage_dir = dir.join("garage");
        if garage_dir.exists() {
            fs::remove_dir_all(&garage_dir)?;
        }
        fs::create_dir_all(garage_dir.join("meta"))?;
        fs::create_dir_all(garage_dir.join("data"))?;
        let (api, rpc, admin) = (free_port()?, free_port()?, free_port()?);
        let region = "us-east-1".to_owned();
        let config = config_text(&garage_dir, &region, api, rpc, admin);
        let config_path = garage_dir.join("garage.toml");
        fs::write(&config_path, config)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        fs::set_permissions(&config_path, fs::Permissions::from_mode(0o600))?;

        // Key ids are >= 8 chars of [A-Za-z0-9._-] (Garage's own `GK…` form), secrets >= 16.
        let access_key_id = format!("GK{}", random_hex(12));
        let secret_access_key = random_hex(32);
        let bucket = "bmat-test".to_owned();
        let proc = Proc::new("garage", &bin, dir.join("garage.log"))
            .arg("server")
            .arg("--single-node")
            .arg("--default-bucket")
            .env("GARAGE_CONFIG_FILE", &config_path)
            .env("GARAGE_DEFAULT_ACCESS_KEY", &access_key_id)
            .env("GARAGE_DEFAULT_SECRET_KEY", &secret_access_key)
            .env("GARAGE_DEFAULT_BUCKET", &bucket)
            .env("RUST_LOG", "garage=warn")
            // A panic's message, not its backtrace, must end the log: errors show the tail.
            .env("RUST_BACKTRACE", "0");
        let mut garage = Garage {
            endpoint: format!("http://127.0.0.1:{api}"),
            region,
            bucket,
            access_key_id,
            secret_access_key,
            proc,
        };
        garage.restart()?;
        Ok(garage)
    }

    /// Starts the server again on the same data, ports and config (after [`Garage::kill`]).
    pub fn restart(&mut self) -> Result<()> {
        self.proc.spawn()?;
        let check = s3_ready_check(self.s3_target());
        self.proc
            .wait_ready("a signed ListObjectsV2 to answer 200", check)
    }

    /// SIGKILL; the data stays for [`Garage::restart`].
    pub fn kill(&mut self) -> Result<()> {
        self.proc.kill()
    }

    pub fn proc_mut(&mut self) -> &mut Proc {
        &mut self.proc
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    pub fn s3_target(&self) -> S3Target {
        S3Target {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            bucket: self.bucket.clone(),
            path_style: true,
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.proc.log_path().to_path_buf()
    }
}

fn config_text(dir: &Path, region: &str, api: u16, rpc: u16, admin: u16) -> String {
    let dir = dir.display();
    let rpc_secret = random_hex(32);
    let admin_token = random_hex(16);
    format!(
        r#"metadata_dir = "{dir}/meta"
data_dir = "{dir}/data"
db_engine = "sqlite"
replication_factor = 1
# test data is throw-away: skip fsync for speed
metadata_fsync = false
data_fsync = false
# no zstd on stored blocks: the archives are compressed already, and CPU is scarce
compression_level = "none"
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{rpc_secret}"

[s3_api]
s3_region = "{region}"
api_bind_addr = "127.0.0.1:{api}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
admin_token = "{admin_token}"
"#
    )
}
