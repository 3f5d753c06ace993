//! The local stack: an S3 server (Garage, or the one `BMAT_TEST_S3_*` points at), a
//! signer with a fresh SQLite registry and an agent-shim on a Unix socket, all real
//! child processes on loopback. `cargo xtask stack`, the demo and every integration
//! test use it.
//!
//! ```no_run
//! let stack = xtask::stack::Stack::start()?;
//! let env = stack.env(); // signer_url, token, agent_socket, s3_* …
//! # anyhow::Ok(())
//! ```
//!
//! The API is synchronous so that both plain and `#[tokio::test]` tests can use it
//! (readiness checks run on a private runtime in a scoped thread). Every stack is
//! independent — its own temp dir, ports and Garage — so tests may run in parallel.
//! Dropping the stack kills every child and removes the temp dir; children also get
//! SIGKILL if the thread that started them dies (PR_SET_PDEATHSIG), so create and
//! restart a stack from the test's own thread — not from `spawn_blocking` or another
//! short-lived thread — and do not share one between tests through a static.

pub mod bins;
mod children;
pub mod garage;
pub mod process;
mod s3_target;
mod shim_proc;
mod signer_proc;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bmat_wire::api::{MintRequest, MintedToken};
use signer::config::{
    Config, JobTokenPolicy, Limits, MetricsConfig, OperatorConfig, S3Config, Timing, TokenConfig,
};
use signer::s3::S3Client;

pub use bins::GARAGE_VERSION;
use children::{free_port, random_hex};
use garage::Garage;
use s3_target::s3_ready_check;
pub use s3_target::{S3Target, install_crypto};
use shim_proc::ShimProc;
use signer_proc::SignerProc;

/// Owners of the two tokens every stack's signer knows.
pub const OWNER: &str = "alpha";
pub const OTHER_OWNER: &str = "beta";
/// The scope of both: main's caches, as a CI job on main would write them.
pub const SCOPE: &str = "refs/heads/main";
/// Name of the stack's operator credential (allowed both owners).
pub const OPERATOR: &str = "stack-operator";

/// What a job, a test or a person needs to talk to the stack.
#[derive(Debug, Clone)]
pub struct StackEnv {
    /// `http://127.0.0.1:PORT`; stays the same across signer restarts.
    pub signer_url: String,
    /// A writing job token of owner [`OWNER`] in scope [`SCOPE`] (the one the shim
    /// uses).
    pub token: String,
    /// The same for owner [`OTHER_OWNER`].
    pub other_token: String,
    /// An operator credential allowed both owners: mints tokens for other scopes.
    pub operator_token: String,
    pub agent_socket: PathBuf,
    pub s3_endpoint: String,
    pub s3_bucket: String,
    pub s3_access_key_id: String,
    pub s3_secret_access_key: String,
    pub s3_region: String,
    pub s3_path_style: bool,
    /// The signer's object prefix (`bmat`, or a unique one on a shared server).
    pub s3_prefix: String,
    /// `http://127.0.0.1:PORT/metrics` (no token), unless a test's config turned the
    /// metrics address off.
    pub metrics_url: Option<String>,
}

impl StackEnv {
    /// The `BMAT_*` variables, as `cargo xtask stack` writes them.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        let mut vars = vec![
            ("BMAT_AGENT_SOCKET", self.agent_socket.display().to_string()),
            ("BMAT_SIGNER_URL", self.signer_url.clone()),
            ("BMAT_TOKEN", self.token.clone()),
            ("BMAT_OPERATOR_TOKEN", self.operator_token.clone()),
            ("BMAT_OWNER", OWNER.to_owned()),
            ("BMAT_SCOPE", SCOPE.to_owned()),
            ("BMAT_S3_ENDPOINT", self.s3_endpoint.clone()),
            ("BMAT_S3_BUCKET", self.s3_bucket.clone()),
            ("BMAT_S3_ACCESS_KEY_ID", self.s3_access_key_id.clone()),
            (
                "BMAT_S3_SECRET_ACCESS_KEY",
                self.s3_secret_access_key.clone(),
            ),
            ("BMAT_S3_REGION", self.s3_region.clone()),
        ];
        if let Some(url) = &self.metrics_url {
            vars.push(("BMAT_METRICS_URL", url.clone()));
        }
        vars
    }
}

/// The running stack. Dropping it kills the shim and the signer, cleans its prefix on
/// a shared S3 server, then (fields drop in order) stops Garage and removes the temp dir.
pub struct Stack {
    shim: ShimProc,
    signer: SignerProc,
    garage: Option<Garage>,
    s3: S3Target,
    env: StackEnv,
    config: Config,
    dir: tempfile::TempDir,
}

impl Stack {
    /// Starts S3 (unless `BMAT_TEST_S3_ENDPOINT` is set), the signer and the shim, and
    /// returns once all three answer.
    pub fn start() -> Result<Stack> {
        Stack::start_with(|_| {})
    }

    /// Like [`Stack::start`], letting the caller adjust the signer's config (limits,
    /// timings, part size) before the signer starts.
    pub fn start_with(tweak: impl FnOnce(&mut Config)) -> Result<Stack> {
        install_crypto();
        let signer_bin = bins::workspace_bin("signer")?;
        let shim_bin = bins::workspace_bin("agent-shim")?;
        let dir = tempfile::Builder::new()
            .prefix("bmat-stack-")
            .tempdir()
            .context("cannot create the stack's temp dir")?;
        // It holds tokens, S3 keys and the shim's socket: owner only.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .context("cannot restrict the stack's temp dir")?;

        let (garage, s3, prefix) = match S3Target::from_env()? {
            // A shared server: a unique prefix keeps parallel stacks' objects and
            // multipart uploads apart (the reaper lists by prefix).
            Some(target) => (None, target, format!("bmat-test/{}", random_hex(8))),
            None => {
                let garage = Garage::start(dir.path())?;
                let target = garage.s3_target();
                (Some(garage), target, "bmat".to_owned())
            }
        };
        if garage.is_none() {
            let mut check = s3_ready_check(s3.clone());
            process::block_on(async move { check().await })?
                .with_context(|| format!("S3 server at {} does not answer", s3.endpoint))?;
        }

        let token = random_hex(16);
        let other_token = random_hex(16);
        let operator_token = random_hex(16);
        let job_token = |token: &str, owner: &str| TokenConfig {
            scope: SCOPE.to_owned(),
            ..TokenConfig::new(token, owner)
        };
        let mut config = Config {
            listen: ([127, 0, 0, 1], free_port()?).into(),
            database: dir.path().join("registry.sqlite"),
            s3: S3Config {
                endpoint: s3.endpoint.clone(),
                region: s3.region.clone(),
                bucket: s3.bucket.clone(),
                path_style: s3.path_style,
                prefix,
                take_over_prefix: false,
                access_key_id_env: "BMAT_S3_ACCESS_KEY_ID".to_owned(),
                secret_access_key_env: "BMAT_S3_SECRET_ACCESS_KEY".to_owned(),
                credentials_file: None,
            },
            limits: Limits::default(),
            // A restart after a kill waits for the killed signer's lease to lapse: keep
            // it short (a clean stop releases it at once).
            timing: Timing {
                prefix_lease_secs: 3,
                ..Timing::default()
            },
            job_tokens: JobTokenPolicy::default(),
            tokens: vec![
                job_token(&token, OWNER),
                job_token(&other_token, OTHER_OWNER),
            ],
            operators: vec![OperatorConfig {
                token: operator_token.clone(),
                name: OPERATOR.to_owned(),
                owners: vec![OWNER.to_owned(), OTHER_OWNER.to_owned()],
            }],
            metrics: Some(MetricsConfig {
                listen: ([127, 0, 0, 1], free_port()?).into(),
            }),
        };
        tweak(&mut config);
        let signer = SignerProc::start(&signer_bin, dir.path(), &mut config, &s3)?;
        let signer_url = signer.url().to_owned();
        let agent_socket = dir.path().join("agent.sock");
        let shim = ShimProc::start(&shim_bin, dir.path(), &agent_socket, &signer_url, &token)?;

        let env = StackEnv {
            signer_url,
            token,
            other_token,
            operator_token,
            agent_socket,
            s3_endpoint: s3.endpoint.clone(),
            s3_bucket: s3.bucket.clone(),
            s3_access_key_id: s3.access_key_id.clone(),
            s3_secret_access_key: s3.secret_access_key.clone(),
            s3_region: s3.region.clone(),
            s3_path_style: s3.path_style,
            s3_prefix: config.s3.prefix.clone(),
            metrics_url: metrics_url(&config),
        };
        Ok(Stack {
            shim,
            signer,
            garage,
            s3,
            env,
            config,
            dir,
        })
    }

    pub fn env(&self) -> &StackEnv {
        &self.env
    }

    /// The stack's temp dir (logs, registry, socket, Garage data).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Mints a job token with the stack's operator credential (`POST /v1/tokens`).
    pub fn mint(&self, req: &MintRequest) -> Result<MintedToken> {
        let url = format!("{}/v1/tokens", self.env.signer_url);
        let (operator, req) = (self.env.operator_token.clone(), req.clone());
        process::block_on(async move {
            let answer = reqwest::Client::new()
                .post(&url)
                .bearer_auth(operator)
                .json(&req)
                .send()
                .await?;
            let status = answer.status();
            let body = answer.text().await?;
            if !status.is_success() {
                bail!("minting a token: {status}: {body}");
            }
            serde_json::from_str(&body).with_context(|| format!("minting a token: {body}"))
        })?
    }

    /// The config the signer runs with.
    pub fn signer_config(&self) -> &Config {
        &self.config
    }

    /// A client with the stack's S3 credentials (to inspect or tamper with objects).
    /// Build it on the runtime that uses it.
    pub fn s3_client(&self) -> Result<S3Client> {
        self.s3.client()
    }

    pub fn s3_target(&self) -> &S3Target {
        &self.s3
    }

    /// True when the stack runs its own Garage (S3 can then be killed and restarted).
    pub fn owns_s3(&self) -> bool {
        self.garage.is_some()
    }

    /// SIGKILL the S3 server, keeping its data.
    pub fn kill_s3(&mut self) -> Result<()> {
        self.garage_mut()?.kill()
    }

    /// Restart the S3 server on its data and ports; returns once it answers.
    pub fn start_s3(&mut self) -> Result<()> {
        self.garage_mut()?.restart()
    }

    /// SIGKILL the signer (its database stays).
    pub fn kill_signer(&mut self) -> Result<()> {
        self.signer.kill()
    }

    /// SIGTERM the signer and wait for it: a clean stop (it releases its prefix lease).
    pub fn stop_signer(&mut self) -> Result<Option<std::process::ExitStatus>> {
        self.signer.proc_mut().terminate()
    }

    /// Restart the signer on the same database and port; returns once healthy. After
    /// [`Stack::kill_signer`] it first waits for the killed one's prefix lease to lapse.
    pub fn start_signer(&mut self) -> Result<()> {
        self.signer.restart()
    }

    /// Restart the signer with its config changed by `tweak` (same database; a changed
    /// `listen` changes [`StackEnv::signer_url`] but not the shim's target). The signer
    /// must have been killed first.
    pub fn start_signer_with(&mut self, tweak: impl FnOnce(&mut Config)) -> Result<()> {
        if self.signer.pid().is_some() {
            bail!("the signer is running; kill it before changing its config");
        }
        tweak(&mut self.config);
        self.signer.write_config(&self.config)?;
        self.env.signer_url = self.signer.url().to_owned();
        self.env.metrics_url = metrics_url(&self.config);
        self.signer.restart()
    }

    /// The config file the signer reads (at start and on SIGHUP).
    pub fn signer_config_path(&self) -> &Path {
        self.signer.config_path()
    }

    /// Rewrites the running signer's config file with `tweak` applied and sends it
    /// SIGHUP. The reload is asynchronous: wait for its effect (or for
    /// `bmat_signer_config_reloads_total`) before relying on it.
    pub fn reload_signer_with(&mut self, tweak: impl FnOnce(&mut Config)) -> Result<()> {
        let mut next = self.config.clone();
        tweak(&mut next);
        std::fs::write(self.signer.config_path(), next.to_toml()?)
            .context("cannot rewrite the signer's config")?;
        self.config = next;
        self.hangup_signer()
    }

    /// SIGHUP to the signer: it reads its config file again.
    pub fn hangup_signer(&self) -> Result<()> {
        self.signer.proc().signal(libc::SIGHUP)
    }

    /// SIGKILL the shim (its socket file stays behind, as after a crash).
    pub fn kill_shim(&mut self) -> Result<()> {
        self.shim.kill()
    }

    /// SIGTERM the shim and wait for it; it removes its socket on the way out.
    pub fn terminate_shim(&mut self) -> Result<Option<std::process::ExitStatus>> {
        self.shim.terminate()
    }

    /// Restart the shim on the same socket; returns once it answers.
    pub fn start_shim(&mut self) -> Result<()> {
        self.shim.restart()
    }

    /// An error naming the first child that exited on its own, with its log tail.
    pub fn check_children(&mut self) -> Result<()> {
        let mut procs: Vec<&mut process::Proc> =
            self.garage.iter_mut().map(Garage::proc_mut).collect();
        procs.push(self.signer.proc_mut());
        procs.push(self.shim.proc_mut());
        for proc in procs {
            if let Some(status) = proc.exited() {
                bail!(
                    "{} exited unexpectedly ({status}); log {}:\n{}",
                    proc.name(),
                    proc.log_path().display(),
                    proc.log_tail()
                );
            }
        }
        Ok(())
    }

    /// Pids of the running children (S3 when owned, signer, shim).
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.garage.iter().filter_map(Garage::pid).collect();
        pids.extend(self.signer.pid());
        pids.extend(self.shim.pid());
        pids
    }

    /// Log files of the children, for a test that wants to show them on failure.
    pub fn log_paths(&self) -> Vec<PathBuf> {
        let mut logs: Vec<PathBuf> = self.garage.iter().map(Garage::log_path).collect();
        logs.push(self.signer.log_path().to_path_buf());
        logs.push(self.shim.log_path().to_path_buf());
        logs
    }

    fn garage_mut(&mut self) -> Result<&mut Garage> {
        self.garage.as_mut().context(
            "the stack uses an external S3 server (BMAT_TEST_S3_ENDPOINT); it cannot be killed",
        )
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.shim.kill();
        let _ = self.signer.kill();
        // On a shared server, leave nothing under this stack's prefix (best effort:
        // a failure here must not turn a passing test into a panic).
        if self.garage.is_none() {
            let target = self.s3.clone();
            let prefix = format!("{}/", self.env.s3_prefix);
            match process::block_on(clean_prefix(target, prefix)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) | Err(e) => {
                    eprintln!("xtask: warning: cleaning the test prefix failed: {e:#}")
                }
            }
        }
    }
}

fn metrics_url(config: &Config) -> Option<String> {
    config
        .metrics
        .as_ref()
        .map(|m| format!("http://{}/metrics", m.listen))
}

/// Aborts the multipart uploads and deletes the objects under `prefix`.
async fn clean_prefix(target: S3Target, prefix: String) -> Result<()> {
    let s3 = target.client()?;
    for upload in s3.list_multipart_uploads(&prefix).await? {
        s3.abort_multipart_upload(&upload.key, &upload.upload_id)
            .await?;
    }
    for (object, _) in s3.list_objects(&prefix).await? {
        s3.delete_object(&object).await?;
    }
    Ok(())
}
