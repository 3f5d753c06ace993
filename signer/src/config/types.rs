//! The config's shape (`signer.toml`): its sections and fields, their defaults, and
//! the values derived from them (durations, object names, S3 settings, credentials).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::names::Patterns;
use crate::s3::{Credentials, S3Settings};

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;

/// S3's smallest part (every part but the last); AWS and MinIO enforce it.
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// S3's largest part.
pub const MAX_PART_SIZE: u64 = 5 * GIB;
/// S3 numbers parts 1..=10000.
pub const MAX_PARTS: u32 = 10_000;

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on; port 0 picks a free one (see `--ready-file`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The SQLite registry file (created if missing).
    #[serde(default = "default_database")]
    pub database: PathBuf,
    pub s3: S3Config,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub timing: Timing,
    #[serde(default)]
    pub job_tokens: JobTokenPolicy,
    /// Static job tokens (small setups): each acts for one owner in one scope.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Operator credentials: mint and revoke job tokens, list and delete caches, for
    /// the owners they are allowed.
    #[serde(default)]
    pub operators: Vec<OperatorConfig>,
    /// `GET /metrics` (Prometheus) on its own address; absent: not served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsConfig>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where scrapers connect; no token is asked, so keep it on a private network.
    pub listen: SocketAddr,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub endpoint: String,
    #[serde(default = "default_region")]
    pub region: String,
    pub bucket: String,
    /// `https://endpoint/bucket/object` instead of `https://bucket.endpoint/object`;
    /// needed by most non-AWS servers.
    #[serde(default = "default_true")]
    pub path_style: bool,
    /// Objects are stored as `{prefix}/caches/{ULID}`, each described by
    /// `{prefix}/index/{ULID}` (for `signer registry rebuild`). One registry per
    /// prefix: the signer claims it in `{prefix}/registry-id` and refuses a prefix
    /// another registry claimed or another running signer holds.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Claim the prefix even though another registry did (the old registry is gone
    /// for good: lost and not rebuilt, or replaced by this one). Its objects become orphans that the
    /// reaper deletes once older than the stale window.
    #[serde(default)]
    pub take_over_prefix: bool,
    /// Names of the environment variables holding the credentials (used when
    /// `credentials_file` is not set).
    #[serde(default = "default_access_key_id_env")]
    pub access_key_id_env: String,
    #[serde(default = "default_secret_access_key_env")]
    pub secret_access_key_env: String,
    /// A TOML file with `access_key_id` and `secret_access_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest compressed archive accepted, in bytes.
    pub max_cache_size: u64,
    /// Size of every part but the last, in bytes (≥ 5 MiB), for uploads whose client
    /// asks for no size of its own.
    pub part_size: u64,
    /// Total bytes of caches an owner may keep, across its scopes. Over it, the
    /// unprotected scope holding the most bytes loses its least recently used cache,
    /// again and again; protected scopes' caches go (least recently used first) only
    /// when no unprotected cache is left.
    pub owner_quota: u64,
    /// Scopes no other scope's saves can evict or block: exact scopes, or prefixes
    /// ending in `*`. Every other scope (a pull request's) is unprotected.
    pub protected_scopes: Patterns,
    /// Bytes of caches each unprotected scope may keep; over it, its own least
    /// recently used caches go.
    pub scope_quota: u64,
    /// Caches unused for this many days are deleted (fractions allowed).
    pub ttl_days: f64,
    /// Uploads a scope may have in progress at once (under a live lease); more begins
    /// of that scope are answered 429.
    pub max_live_uploads: u64,
    /// Uploads an owner's unprotected scopes may have in progress at once, together;
    /// more begins of unprotected scopes are answered 429. Protected scopes' uploads
    /// neither count nor wait.
    pub max_live_unprotected_uploads: u64,
    /// Reports (`POST /v1/reports`) a token may send per
    /// `timing.report_check_window_secs`; more are answered 429.
    pub reports_per_token: u64,
    /// HTTP connections open at once; more wait in the listen backlog until one
    /// closes. Keep it below the process's file descriptor limit.
    pub max_connections: usize,
    /// API requests in progress at once with one token (each holds a connection);
    /// more are answered 429 at once, so one token cannot take every connection.
    pub max_connections_per_token: usize,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Timing {
    /// A client must send each request's line and headers within this; also how long
    /// an idle keep-alive connection stays open.
    pub header_read_timeout_secs: u64,
    /// A connection on which no byte moves either way for this long is closed (a
    /// half-sent body, a client that does not read its answer).
    pub idle_timeout_secs: u64,
    /// A request's whole body must arrive within this of its head; past it the
    /// request is answered 408 and the connection closed.
    pub body_read_timeout_secs: u64,
    pub part_url_expiry_secs: u64,
    pub download_url_expiry_secs: u64,
    /// How long a begun upload blocks other begins of its key without a sign of life
    /// (a part URL request renews it).
    pub lease_secs: u64,
    /// Added to the part URL expiry before an idle upload counts as abandoned.
    pub stale_margin_secs: u64,
    /// The signer reads a cache reported missing or corrupt from S3 at most once per
    /// this window, and remembers the verdict for it; also the window of
    /// `limits.reports_per_token`.
    pub report_check_window_secs: u64,
    pub reaper_interval_secs: u64,
    /// The running signer's lease on its S3 prefix, renewed every third of it. A signer
    /// that starts while another one holds the prefix waits this long for it to lapse
    /// (a crashed signer), then refuses to start; a clean stop releases it at once.
    pub prefix_lease_secs: u64,
    /// The completion worker retries a failed CompleteMultipartUpload (S3 down,
    /// throttling, 5xx) for this long after the client finished the upload before it
    /// gives up and aborts it. Failures that can never succeed (the multipart upload
    /// is gone, a part does not match) end it at once.
    pub completion_give_up_after_secs: u64,
    /// The first retry's delay; each next one doubles, up to
    /// `completion_max_backoff_ms`.
    pub completion_backoff_ms: u64,
    pub completion_max_backoff_ms: u64,
    /// Delays the completion worker's first pass after start. Only for crash tests
    /// (complete, then kill the signer before the worker ran); keep 0 otherwise.
    pub worker_start_delay_secs: u64,
}

/// Lifetimes of minted job tokens.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct JobTokenPolicy {
    /// When a mint request names none.
    pub default_ttl_secs: u64,
    /// Longer requests are refused.
    pub max_ttl_secs: u64,
}

impl Default for JobTokenPolicy {
    fn default() -> Self {
        JobTokenPolicy {
            default_ttl_secs: 4 * 3600,
            max_ttl_secs: 24 * 3600,
        }
    }
}

/// A job token written in the config, with the fields of a minted one.
#[derive(Serialize, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub token: String,
    pub owner: String,
    #[serde(default = "default_scope")]
    pub scope: String,
    #[serde(default)]
    pub read_scopes: Vec<String>,
    #[serde(default = "default_true")]
    pub write: bool,
}

impl TokenConfig {
    /// A writing token of `owner` in the default scope.
    pub fn new(token: impl Into<String>, owner: impl Into<String>) -> TokenConfig {
        TokenConfig {
            token: token.into(),
            owner: owner.into(),
            scope: default_scope(),
            read_scopes: Vec::new(),
            write: true,
        }
    }
}

impl fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenConfig")
            .field("token", &"<redacted>")
            .field("owner", &self.owner)
            .field("scope", &self.scope)
            .field("read_scopes", &self.read_scopes)
            .field("write", &self.write)
            .finish()
    }
}

/// An operator credential (a CI controller, an admin).
#[derive(Serialize, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    pub token: String,
    /// Shown in logs and recorded with each token it mints.
    pub name: String,
    /// Owners it acts for: exact names, or a prefix ending in `*` (`acme/*`; `*` is
    /// every owner).
    pub owners: Vec<String>,
}

impl fmt::Debug for OperatorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OperatorConfig")
            .field("token", &"<redacted>")
            .field("name", &self.name)
            .field("owners", &self.owners)
            .finish()
    }
}

/// The shape of `s3.credentials_file`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    access_key_id: String,
    secret_access_key: String,
}

pub(super) fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_database() -> PathBuf {
    PathBuf::from("/var/lib/bmat/registry.sqlite")
}
fn default_region() -> String {
    "us-east-1".to_owned()
}
fn default_true() -> bool {
    true
}
fn default_scope() -> String {
    bmat_wire::DEFAULT_SCOPE.to_owned()
}
fn default_prefix() -> String {
    "bmat".to_owned()
}
fn default_access_key_id_env() -> String {
    "BMAT_S3_ACCESS_KEY_ID".to_owned()
}
fn default_secret_access_key_env() -> String {
    "BMAT_S3_SECRET_ACCESS_KEY".to_owned()
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_cache_size: 10 * GIB,
            part_size: 16 * MIB,
            owner_quota: 50 * GIB,
            protected_scopes: Patterns(vec![
                bmat_wire::DEFAULT_SCOPE.to_owned(),
                "refs/heads/*".to_owned(),
            ]),
            scope_quota: 10 * GIB,
            ttl_days: 7.0,
            max_live_uploads: 32,
            max_live_unprotected_uploads: 64,
            reports_per_token: 100,
            max_connections: 512,
            max_connections_per_token: 64,
        }
    }
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            header_read_timeout_secs: 10,
            idle_timeout_secs: 60,
            body_read_timeout_secs: 30,
            part_url_expiry_secs: 900,
            download_url_expiry_secs: 300,
            lease_secs: 300,
            stale_margin_secs: 300,
            report_check_window_secs: 600,
            reaper_interval_secs: 60,
            prefix_lease_secs: 30,
            completion_give_up_after_secs: 6 * 3600,
            completion_backoff_ms: 500,
            completion_max_backoff_ms: 60_000,
            worker_start_delay_secs: 0,
        }
    }
}

impl Config {
    /// Loads the S3 credentials: from `s3.credentials_file` when set, else from the
    /// environment variables named by `s3.*_env`.
    pub fn credentials(&self) -> anyhow::Result<Credentials> {
        let s3 = &self.s3;
        if let Some(file) = &s3.credentials_file {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read s3.credentials_file {}", file.display()))?;
            let creds: CredentialsFile = toml::from_str(&text).map_err(|e| {
                // Never echo the file's content: it holds the secret.
                anyhow::anyhow!("s3.credentials_file {}: {}", file.display(), e.message())
            })?;
            return Ok(Credentials {
                access_key_id: creds.access_key_id,
                secret_access_key: creds.secret_access_key,
            });
        }
        let var = |name: &str, field: &str| -> anyhow::Result<String> {
            match std::env::var(name) {
                Ok(v) if !v.is_empty() => Ok(v),
                _ => bail!(
                    "S3 credentials: environment variable {name} (named by s3.{field}) is not set; \
                     set it or use s3.credentials_file"
                ),
            }
        };
        Ok(Credentials {
            access_key_id: var(&s3.access_key_id_env, "access_key_id_env")?,
            secret_access_key: var(&s3.secret_access_key_env, "secret_access_key_env")?,
        })
    }
}

impl S3Config {
    pub fn settings(&self) -> S3Settings {
        S3Settings {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            bucket: self.bucket.clone(),
            path_style: self.path_style,
        }
    }

    /// Where every cache object and multipart upload lives.
    pub fn caches_prefix(&self) -> String {
        format!("{}/caches/", self.prefix)
    }

    pub fn object_name(&self, ulid: &str) -> String {
        format!("{}/caches/{ulid}", self.prefix)
    }

    /// Where each cache's self-description lives (docs/design.md, "Registry and S3
    /// layout": the registry is an index).
    pub fn index_prefix(&self) -> String {
        format!("{}/index/", self.prefix)
    }

    pub fn index_name(&self, ulid: &str) -> String {
        format!("{}/index/{ulid}", self.prefix)
    }

    /// The marker naming the registry that owns the prefix.
    pub fn claim_object(&self) -> String {
        format!("{}/registry-id", self.prefix)
    }
}

impl Timing {
    pub fn part_url_expiry(&self) -> Duration {
        Duration::from_secs(self.part_url_expiry_secs)
    }
    pub fn download_url_expiry(&self) -> Duration {
        Duration::from_secs(self.download_url_expiry_secs)
    }
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_secs)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_secs(self.body_read_timeout_secs)
    }
    /// An upload idle for longer than this is abandoned: its last part URL has expired
    /// and a margin has passed for a PUT that started just before the expiry.
    pub fn stale_after(&self) -> Duration {
        Duration::from_secs(
            self.part_url_expiry_secs
                .saturating_add(self.stale_margin_secs),
        )
    }
    /// How long a released object stays (a refresh's replaced cache's, the last read
    /// one of a deleted cache): a download URL handed out just before the release may
    /// be used until it expires, and a GET that started then may run a margin longer.
    pub fn download_grace(&self) -> Duration {
        Duration::from_secs(
            self.download_url_expiry_secs
                .saturating_add(self.stale_margin_secs),
        )
    }
    pub fn prefix_lease(&self) -> Duration {
        Duration::from_secs(self.prefix_lease_secs)
    }
    pub fn report_check_window(&self) -> Duration {
        Duration::from_secs(self.report_check_window_secs)
    }
    pub fn completion_give_up_after(&self) -> Duration {
        Duration::from_secs(self.completion_give_up_after_secs)
    }
}

impl Limits {
    /// Whether `scope` is one of `protected_scopes`.
    pub fn protects(&self, scope: &str) -> bool {
        self.protected_scopes.matches(scope)
    }

    /// The TTL; a value no `Duration` holds (the rules refuse it) saturates rather
    /// than panics.
    pub fn ttl(&self) -> Duration {
        Duration::try_from_secs_f64(self.ttl_days * 86_400.0).unwrap_or(Duration::MAX)
    }
}
