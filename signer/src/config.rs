//! `signer.toml`: listen address, registry file, S3 settings, limits, timings, static
//! job tokens and operator credentials. Every field but `s3.endpoint`, `s3.bucket` and
//! at least one `[[tokens]]` or `[[operators]]` entry has a default. Secrets (S3
//! credentials, tokens) never appear in `Debug` output or logs.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

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
    /// Objects are stored as `{prefix}/caches/{ULID}`. One registry per prefix: the
    /// signer claims it in `{prefix}/registry-id` and refuses a prefix another
    /// registry claimed.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Claim the prefix even though another registry did (the old registry is gone
    /// for good: lost, or replaced by this one). Its objects become orphans that the
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
    /// Total bytes of caches an owner may keep; least recently used go first.
    pub owner_quota: u64,
    /// Caches unused for this many days are deleted (fractions allowed).
    pub ttl_days: f64,
    /// Uploads an owner may have in progress at once (under a live lease); more
    /// begins are answered 429.
    pub max_live_uploads: u64,
    /// HTTP connections open at once; more wait in the listen backlog until one
    /// closes. Keep it below the process's file descriptor limit.
    pub max_connections: usize,
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
    pub part_url_expiry_secs: u64,
    pub download_url_expiry_secs: u64,
    /// How long a begun upload blocks other begins of its key without a sign of life
    /// (a part URL request renews it).
    pub lease_secs: u64,
    /// Added to the part URL expiry before an idle upload counts as abandoned.
    pub stale_margin_secs: u64,
    pub reaper_interval_secs: u64,
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

fn default_listen() -> SocketAddr {
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
            ttl_days: 7.0,
            max_live_uploads: 32,
            max_connections: 512,
        }
    }
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            header_read_timeout_secs: 10,
            idle_timeout_secs: 60,
            part_url_expiry_secs: 900,
            download_url_expiry_secs: 300,
            lease_secs: 300,
            stale_margin_secs: 300,
            reaper_interval_secs: 60,
            completion_give_up_after_secs: 6 * 3600,
            completion_backoff_ms: 500,
            completion_max_backoff_ms: 60_000,
            worker_start_delay_secs: 0,
        }
    }
}

impl Config {
    /// Reads, parses and validates a config file. Errors are one line naming the file,
    /// the line and the field.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Config::parse(&text).map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, String> {
        let cfg: Config = toml::from_str(text).map_err(|e| describe_toml_error(text, &e))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Serialises to TOML (what the test stack writes for the binary to read).
    pub fn to_toml(&self) -> anyhow::Result<String> {
        toml::to_string(self).context("cannot serialise the signer config")
    }

    /// Checks the rules serde cannot express; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        let s3 = &self.s3;
        if s3.endpoint.trim().is_empty() {
            return Err("s3.endpoint is empty".into());
        }
        match url::Url::parse(&s3.endpoint) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => {
                return Err(format!(
                    "s3.endpoint {:?} is not an http(s) URL",
                    s3.endpoint
                ));
            }
        }
        if s3.bucket.trim().is_empty() {
            return Err("s3.bucket is empty".into());
        }
        if s3.region.trim().is_empty() {
            return Err("s3.region is empty".into());
        }
        let prefix_ok = !s3.prefix.is_empty()
            && !s3.prefix.starts_with('/')
            && !s3.prefix.ends_with('/')
            && !s3.prefix.contains("//")
            && s3
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'));
        if !prefix_ok {
            return Err(format!(
                "s3.prefix {:?} must be non-empty, use only letters, digits, '/', '.', '_', '-', \
                 and not start or end with '/'",
                s3.prefix
            ));
        }

        if let Some(m) = &self.metrics
            && m.listen.port() != 0
            && m.listen == self.listen
        {
            return Err(format!(
                "metrics.listen = {} is also listen: the metrics need an address of their own",
                m.listen
            ));
        }

        let l = &self.limits;
        if l.part_size < MIN_PART_SIZE {
            return Err(format!(
                "limits.part_size = {} is below S3's minimum part size of {MIN_PART_SIZE} (5 MiB)",
                l.part_size
            ));
        }
        if l.part_size > MAX_PART_SIZE {
            return Err(format!(
                "limits.part_size = {} is above S3's maximum part size of {MAX_PART_SIZE} (5 GiB)",
                l.part_size
            ));
        }
        if l.max_cache_size == 0 {
            return Err("limits.max_cache_size must be greater than 0".into());
        }
        // SQLite stores sizes as i64.
        if i64::try_from(l.max_cache_size).is_err() || i64::try_from(l.owner_quota).is_err() {
            return Err("limits.max_cache_size and limits.owner_quota must be below 2^63".into());
        }
        if l.max_live_uploads == 0 {
            return Err("limits.max_live_uploads must be at least 1".into());
        }
        if l.max_connections == 0 {
            return Err("limits.max_connections must be at least 1".into());
        }
        if !(l.ttl_days.is_finite() && l.ttl_days > 0.0) {
            return Err(format!(
                "limits.ttl_days = {} must be a positive number",
                l.ttl_days
            ));
        }

        let t = &self.timing;
        for (name, v) in [
            ("timing.part_url_expiry_secs", t.part_url_expiry_secs),
            (
                "timing.download_url_expiry_secs",
                t.download_url_expiry_secs,
            ),
            ("timing.lease_secs", t.lease_secs),
            ("timing.reaper_interval_secs", t.reaper_interval_secs),
            (
                "timing.header_read_timeout_secs",
                t.header_read_timeout_secs,
            ),
            ("timing.idle_timeout_secs", t.idle_timeout_secs),
        ] {
            if v == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        // SigV4 presigned URLs are valid for at most 7 days.
        for (name, v) in [
            ("timing.part_url_expiry_secs", t.part_url_expiry_secs),
            (
                "timing.download_url_expiry_secs",
                t.download_url_expiry_secs,
            ),
        ] {
            if v > 7 * 24 * 3600 {
                return Err(format!(
                    "{name} = {v} is above SigV4's limit of 604800 (7 days)"
                ));
            }
        }
        if t.completion_give_up_after_secs == 0 {
            return Err("timing.completion_give_up_after_secs must be at least 1".into());
        }
        if t.completion_backoff_ms == 0 || t.completion_max_backoff_ms < t.completion_backoff_ms {
            return Err(format!(
                "timing.completion_backoff_ms = {} must be at least 1 and not above \
                 timing.completion_max_backoff_ms = {}",
                t.completion_backoff_ms, t.completion_max_backoff_ms
            ));
        }

        let p = &self.job_tokens;
        if p.default_ttl_secs == 0 || p.max_ttl_secs == 0 {
            return Err("job_tokens.default_ttl_secs and max_ttl_secs must be at least 1".into());
        }
        if p.default_ttl_secs > p.max_ttl_secs {
            return Err(format!(
                "job_tokens.default_ttl_secs = {} is above job_tokens.max_ttl_secs = {}",
                p.default_ttl_secs, p.max_ttl_secs
            ));
        }

        if self.tokens.is_empty() && self.operators.is_empty() {
            return Err("tokens: at least one [[tokens]] or [[operators]] entry is needed".into());
        }
        let name_rule = |field: String, v: &str| {
            bmat_wire::validate_scope(v).map_err(|e| format!("{field} {v:?} {e}"))
        };
        for (i, tok) in self.tokens.iter().enumerate() {
            if tok.owner.trim().is_empty() {
                return Err(format!("tokens[{i}].owner is empty"));
            }
            name_rule(format!("tokens[{i}].scope"), &tok.scope)?;
            for (j, r) in tok.read_scopes.iter().enumerate() {
                name_rule(format!("tokens[{i}].read_scopes[{j}]"), r)?;
            }
        }
        for (i, op) in self.operators.iter().enumerate() {
            if op.name.trim().is_empty() {
                return Err(format!("operators[{i}].name is empty"));
            }
            if op.owners.is_empty() {
                return Err(format!("operators[{i}].owners is empty"));
            }
            for (j, pattern) in op.owners.iter().enumerate() {
                let exact = pattern.strip_suffix('*').unwrap_or(pattern);
                if exact.contains('*') || (exact.is_empty() && pattern != "*") {
                    return Err(format!(
                        "operators[{i}].owners[{j}] = {pattern:?}: an owner, or a prefix \
                         ending in '*'"
                    ));
                }
            }
        }
        let secrets = self
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("tokens[{i}].token"), &t.token))
            .chain(
                self.operators
                    .iter()
                    .enumerate()
                    .map(|(i, o)| (format!("operators[{i}].token"), &o.token)),
            );
        let mut seen = std::collections::HashSet::new();
        for (field, secret) in secrets {
            if secret.trim().is_empty() {
                return Err(format!("{field} is empty"));
            }
            if !seen.insert(secret.as_str()) {
                return Err(format!("{field} repeats an earlier token"));
            }
        }
        Ok(())
    }

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
    /// An upload idle for longer than this is abandoned: its last part URL has expired
    /// and a margin has passed for a PUT that started just before the expiry.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_secs)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }
    pub fn stale_after(&self) -> Duration {
        Duration::from_secs(self.part_url_expiry_secs + self.stale_margin_secs)
    }
    pub fn completion_give_up_after(&self) -> Duration {
        Duration::from_secs(self.completion_give_up_after_secs)
    }
}

impl Limits {
    pub fn ttl(&self) -> Duration {
        Duration::from_secs_f64(self.ttl_days * 86_400.0)
    }
}

/// One line: `line N: `the offending line`: message`. toml's own Display spans
/// several lines with a caret; the line's text keeps the field's name in view.
fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', " ");
    let Some(span) = e.span() else {
        return message;
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
    if line.is_empty() {
        format!("line {line_no}: {message}")
    } else {
        format!("line {line_no}: `{line}`: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[s3]
endpoint = "http://127.0.0.1:3900"
bucket = "caches"

[[tokens]]
token = "t0ken"
owner = "acme/widgets"
"#;

    #[test]
    fn minimal_config_gets_the_defaults() {
        let cfg = Config::parse(MINIMAL).unwrap();
        assert_eq!(cfg.listen, default_listen());
        assert_eq!(cfg.limits.max_cache_size, 10 * GIB);
        assert_eq!(cfg.limits.part_size, 16 * MIB);
        assert_eq!(cfg.timing.part_url_expiry_secs, 900);
        assert_eq!(cfg.s3.prefix, "bmat");
        assert!(cfg.s3.path_style);
        assert_eq!(cfg.s3.object_name("X"), "bmat/caches/X");
    }

    #[test]
    fn round_trips_through_toml() {
        let mut cfg = Config::parse(MINIMAL).unwrap();
        cfg.limits.ttl_days = 0.5;
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        let again = Config::parse(&cfg.to_toml().unwrap()).unwrap();
        assert_eq!(again.limits.ttl_days, 0.5);
        assert_eq!(again.listen.port(), 0);
        assert_eq!(again.tokens[0].token, "t0ken");
    }

    #[test]
    fn integer_ttl_days_is_accepted() {
        let cfg = Config::parse(&format!("{MINIMAL}\n[limits]\nttl_days = 3\n")).unwrap();
        assert_eq!(cfg.limits.ttl_days, 3.0);
    }

    fn err(text: &str) -> String {
        Config::parse(text).unwrap_err()
    }

    #[test]
    fn errors_name_the_field() {
        let e = err(&MINIMAL.replace("bucket = \"caches\"", "bucket = 3"));
        assert!(e.contains("bucket"), "{e}");
        assert!(!e.contains('\n'), "{e}");

        let e = err(&format!("{MINIMAL}\n[limits]\npart_size = \"big\"\n"));
        assert!(e.contains("part_size"), "{e}");

        let e = err(&format!("{MINIMAL}\n[timing]\nlease_sec = 3\n"));
        assert!(e.contains("lease_sec"), "{e}");

        let e = err(&MINIMAL.replace("bucket = \"caches\"", ""));
        assert!(e.contains("bucket"), "{e}");

        let e = err(&format!("listen = \"nowhere\"\n{MINIMAL}"));
        assert!(e.contains("listen"), "{e}");
    }

    #[test]
    fn connection_and_completion_limits_are_checked() {
        let cfg = Config::parse(MINIMAL).unwrap();
        assert_eq!(cfg.limits.max_connections, 512);
        assert_eq!(cfg.timing.header_read_timeout_secs, 10);
        assert_eq!(cfg.timing.completion_give_up_after_secs, 6 * 3600);
        assert!(!cfg.s3.take_over_prefix);
        for (section, line, field) in [
            ("limits", "max_connections = 0", "limits.max_connections"),
            (
                "timing",
                "header_read_timeout_secs = 0",
                "timing.header_read_timeout_secs",
            ),
            (
                "timing",
                "idle_timeout_secs = 0",
                "timing.idle_timeout_secs",
            ),
            (
                "timing",
                "completion_give_up_after_secs = 0",
                "timing.completion_give_up_after_secs",
            ),
            (
                "timing",
                "completion_backoff_ms = 0",
                "timing.completion_backoff_ms",
            ),
            (
                "timing",
                "completion_max_backoff_ms = 10",
                "timing.completion_backoff_ms",
            ),
        ] {
            let e = err(&format!("{MINIMAL}\n[{section}]\n{line}\n"));
            assert!(e.contains(field), "{line}: {e}");
        }
    }

    #[test]
    fn metrics_are_off_unless_given_an_address_of_their_own() {
        assert!(Config::parse(MINIMAL).unwrap().metrics.is_none());
        let cfg = Config::parse(&format!(
            "{MINIMAL}\n[metrics]\nlisten = \"127.0.0.1:9100\"\n"
        ))
        .unwrap();
        assert_eq!(cfg.metrics.unwrap().listen.port(), 9100);
        let e = err(&format!(
            "listen = \"127.0.0.1:9100\"\n{MINIMAL}\n[metrics]\nlisten = \"127.0.0.1:9100\"\n"
        ));
        assert!(e.contains("metrics.listen"), "{e}");
    }

    #[test]
    fn small_part_size_is_refused() {
        let e = err(&format!("{MINIMAL}\n[limits]\npart_size = 1048576\n"));
        assert!(e.contains("limits.part_size"), "{e}");
    }

    #[test]
    fn tokens_are_required_and_unique() {
        let e = err("[s3]\nendpoint = \"http://x\"\nbucket = \"b\"\n");
        assert!(e.contains("tokens"), "{e}");
        let e = err(&format!(
            "{MINIMAL}\n[[tokens]]\ntoken = \"t0ken\"\nowner = \"other\"\n"
        ));
        assert!(e.contains("tokens[1].token"), "{e}");
        let e = err(&format!(
            "{MINIMAL}\n[[operators]]\ntoken = \"t0ken\"\nname = \"ci\"\nowners = [\"*\"]\n"
        ));
        assert!(e.contains("operators[0].token"), "{e}");
    }

    #[test]
    fn static_tokens_default_to_a_writing_token_of_the_default_scope() {
        let cfg = Config::parse(MINIMAL).unwrap();
        let t = &cfg.tokens[0];
        assert_eq!(
            (t.scope.as_str(), t.read_scopes.len(), t.write),
            (bmat_wire::DEFAULT_SCOPE, 0, true)
        );
        assert_eq!(cfg.job_tokens.default_ttl_secs, 4 * 3600);
    }

    #[test]
    fn scopes_and_operator_owners_are_checked() {
        let e = err(&format!("{MINIMAL}scope = \"refs heads\"\n"));
        assert!(e.contains("tokens[0].scope"), "{e}");
        let e = err(&format!(
            "{MINIMAL}\n[[operators]]\ntoken = \"op\"\nname = \"ci\"\nowners = [\"a*b\"]\n"
        ));
        assert!(e.contains("operators[0].owners[0]"), "{e}");
        let op = "[[operators]]\ntoken = \"op\"\nname = \"ci\"\nowners = [\"acme/*\"]\n";
        let cfg = Config::parse(&format!(
            "[s3]\nendpoint = \"http://x\"\nbucket = \"b\"\n{op}"
        ))
        .unwrap();
        assert_eq!(cfg.operators[0].owners, ["acme/*"]);
        assert!(!format!("{cfg:?}").contains("\"op\""));
    }

    #[test]
    fn bad_prefix_and_endpoint_are_refused() {
        let e = err(&MINIMAL.replace("bucket = \"caches\"", "bucket = \"c\"\nprefix = \"/x/\""));
        assert!(e.contains("s3.prefix"), "{e}");
        let e = err(&MINIMAL.replace("http://127.0.0.1:3900", "127.0.0.1:3900"));
        assert!(e.contains("s3.endpoint"), "{e}");
    }

    #[test]
    fn debug_redacts_tokens() {
        let cfg = Config::parse(MINIMAL).unwrap();
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("t0ken"), "{dbg}");
        assert!(dbg.contains("acme/widgets"));
    }

    #[test]
    fn missing_credential_variable_is_named() {
        let mut cfg = Config::parse(MINIMAL).unwrap();
        cfg.s3.access_key_id_env = "BMAT_TEST_SURELY_UNSET_VARIABLE_1".into();
        let e = cfg.credentials().err().unwrap().to_string();
        assert!(e.contains("BMAT_TEST_SURELY_UNSET_VARIABLE_1"), "{e}");
    }

    #[test]
    fn credentials_file_is_read_and_not_echoed_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds.toml");
        std::fs::write(
            &path,
            "access_key_id = \"GKabc\"\nsecret_access_key = \"s3cr3t-0123456789\"\n",
        )
        .unwrap();
        let mut cfg = Config::parse(MINIMAL).unwrap();
        cfg.s3.credentials_file = Some(path.clone());
        let creds = cfg.credentials().unwrap();
        assert_eq!(creds.access_key_id, "GKabc");
        assert_eq!(creds.secret_access_key, "s3cr3t-0123456789");

        std::fs::write(
            &path,
            "access_key_id = \"GKabc\"\nsecret = \"s3cr3t-0123456789\"\n",
        )
        .unwrap();
        let e = cfg.credentials().err().unwrap().to_string();
        assert!(!e.contains("s3cr3t"), "{e}");
        assert!(e.contains("secret"), "{e}");
    }
}
