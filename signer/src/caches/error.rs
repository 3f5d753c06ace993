//! What can go wrong in a cache's lifecycle, one variant per failure; the HTTP edge
//! maps each to a status in one place (`crate::http::error`).

use crate::auth::AuthError;
use crate::names::InvalidName;
use crate::registry::RegistryError;
use crate::s3::S3Error;
use crate::text::shown;

/// More fallbacks (or excluded caches) than this is a client bug, not a search.
pub const MAX_FALLBACKS: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Invalid(#[from] InvalidName),
    #[error("{0} fallback prefixes given; at most {MAX_FALLBACKS} are allowed")]
    TooManyFallbacks(usize),
    #[error("{0} caches excluded; at most {MAX_FALLBACKS} are allowed")]
    TooManyExcluded(usize),
    #[error("after_scope and after_key go together")]
    HalfCursor,
    #[error("an operator credential names the owner: ?owner=…")]
    OwnerNotNamed,
    #[error("an operator credential names the scope to delete in: ?owner=…&scope=…")]
    ScopeNotNamed,
    #[error("a job token lists and deletes in its own owner and scope only")]
    OutsideOwnPlace,
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(
        "this token has sent {limit} reports in {window_secs} s (limits.reports_per_token); \
         report again later"
    )]
    ReportBudgetSpent { limit: u64, window_secs: u64 },
    #[error("no cache with key {} in scope {}", shown(.key), shown(.scope))]
    NotFound { key: String, scope: String },
    #[error("S3 failed while {doing}")]
    S3 {
        doing: &'static str,
        #[source]
        source: S3Error,
    },
    #[error("the registry failed")]
    Registry(#[from] RegistryError),
}

/// Wraps an S3 failure with what the cache lifecycle was doing.
pub(crate) fn s3(doing: &'static str) -> impl FnOnce(S3Error) -> CacheError {
    move |source| CacheError::S3 { doing, source }
}
