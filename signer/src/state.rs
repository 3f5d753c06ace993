//! What request handlers and background tasks share: the live config (swapped whole
//! by a reload), the registry, the S3 client, the metrics, the worker's wake-up, the
//! background tasks' health, the prefix lease, the key of lookup ids, the verdicts on
//! reported caches and the report budgets.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use crate::auth::{
    AuthError, Principal, PrincipalError, StaticTokens, check_job_token, token_hash,
};
use crate::config::Config;
use crate::lease::Lease;
use crate::lookup_id::LookupKey;
use crate::metrics::Metrics;
use crate::registry::Db;
use crate::s3::S3Client;
use crate::tasks::Tasks;
use crate::window::{Budget, Verdicts};

/// Caches and tokens remembered at once by the report checks and budgets: far more
/// than a signer sees in a window, small enough to bound the memory.
const REMEMBERED: usize = 100_000;

#[derive(Clone)]
pub struct AppState {
    /// The config and its tokens, replaced whole by a reload (SIGHUP): a request holds
    /// the `Arc` it started with, so one in flight never sees half of each.
    live: Arc<RwLock<Arc<Live>>>,
    pub db: Db,
    pub s3: S3Client,
    /// Wakes the completion worker when `complete` queued an upload.
    pub worker_wake: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    /// Which supervised background tasks are down, for health.
    pub tasks: Arc<Tasks>,
    /// This process's lease on the S3 prefix: destructive background work only while
    /// it holds it (see [`AppState::holds_prefix`]).
    pub lease: Arc<Lease>,
    /// Signs the lookup ids that reports echo.
    pub lookup_key: Arc<LookupKey>,
    /// Whether S3 holds a cache reported missing or corrupt intact, by ULID.
    pub report_checks: Arc<Verdicts<String, bool>>,
    /// Reports each job token sent in the window.
    pub report_budget: Arc<Budget<String>>,
}

struct Live {
    cfg: Arc<Config>,
    /// The config's tokens, by hash.
    tokens: StaticTokens,
}

impl Live {
    fn new(cfg: Config) -> Arc<Live> {
        Arc::new(Live {
            tokens: StaticTokens::from_config(&cfg),
            cfg: Arc::new(cfg),
        })
    }
}

impl AppState {
    pub fn new(cfg: Config, db: Db, s3: S3Client) -> AppState {
        let window = cfg.timing.report_check_window();
        AppState {
            lease: Arc::new(Lease::new(cfg.timing.prefix_lease())),
            live: Arc::new(RwLock::new(Live::new(cfg))),
            db,
            s3,
            worker_wake: Arc::new(Notify::new()),
            metrics: Arc::new(Metrics::new()),
            tasks: Arc::new(Tasks::default()),
            lookup_key: Arc::new(LookupKey::random()),
            report_checks: Arc::new(Verdicts::new(window, REMEMBERED)),
            report_budget: Arc::new(Budget::new(window, REMEMBERED)),
        }
    }

    fn live(&self) -> Arc<Live> {
        self.live
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The config as of now (a reload may replace it for later calls).
    pub fn cfg(&self) -> Arc<Config> {
        self.live().cfg.clone()
    }

    /// Swaps in a validated config and its tokens, for every request that starts
    /// from now on (see [`crate::ops::reload`] for what it may change).
    pub fn replace_config(&self, cfg: Config) {
        let next = Live::new(cfg);
        *self.live.write().unwrap_or_else(PoisonError::into_inner) = next;
    }

    /// Who a bearer token is: a token of the config, else a minted job token that has
    /// neither expired nor been revoked and whose operator is still in the config.
    pub async fn principal(&self, token: &str) -> Result<Principal, PrincipalError> {
        let hash = token_hash(token);
        let live = self.live();
        if let Some(p) = live.tokens.get(&hash) {
            return Ok(p.clone());
        }
        let row = self.db.read(move |r| r.job_token_by_hash(&hash)).await?;
        match row {
            Some(row) => Ok(check_job_token(row, now_ms(), &live.tokens)?),
            None => Err(AuthError::UnknownToken.into()),
        }
    }

    /// True when this process holds the prefix, by the claim object read now: asked
    /// before every destructive background action (docs/design.md, "Registry and S3
    /// layout").
    pub async fn holds_prefix(&self) -> bool {
        let object = self.cfg().s3.claim_object();
        self.lease.confirm(&self.s3, &object, now_ms()).await
    }

    pub fn object_name(&self, ulid: &str) -> String {
        self.cfg().s3.object_name(ulid)
    }
}

/// Unix time in milliseconds (the registry's clock).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(millis)
        .unwrap_or(0)
}

/// `d` in milliseconds, saturated at `i64::MAX`.
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The registry time `d` ago: saturates, so a huge `d` means "before any time", never
/// a wrapped-around future.
pub fn ms_ago(d: Duration) -> i64 {
    now_ms().saturating_sub(millis(d))
}
