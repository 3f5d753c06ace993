//! The HTTP API under `/v1` (see `bmat_wire::api` for the table of endpoints).
//!
//! Every endpoint but health needs `Authorization: Bearer <token>`. A job token acts in
//! one owner's scope and reads its read scopes ([`crate::auth`]); an operator credential
//! mints tokens ([`tokens`]) and lists and deletes caches of its owners. Nothing crosses
//! owners: another owner's (or scope's) upload is answered 404, like an unknown one.
//! Every error is an `ErrorBody` with one line a person can act on.

pub mod metrics;
mod report;
mod stats;
mod tokens;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bmat_wire::api::{
    BeginRequest, BeginResponse, CacheHit, CacheInfo, CacheList, CacheRef, CacheSelector,
    CompleteRequest, Deleted, ErrorBody, ErrorCode, Health, LookupRequest, LookupResponse,
    PartUrlsRequest, PartUrlsResponse, UploadStatus,
};
use bmat_wire::{validate_key, validate_owner, validate_prefix, validate_scope};
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use crate::auth::{AuthError, JobGrant, OperatorGrant, Principal, bearer};
use crate::registry::{CacheRow, Place, UsageEvent};
use crate::s3::S3Error;
use crate::shown;
use crate::state::{AppState, DeleteError, now_ms};
use crate::uploads::{self, UploadError};

/// More fallbacks than this is a client bug, not a search.
const MAX_FALLBACKS: usize = 32;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/lookup", post(lookup))
        .route("/v1/uploads", post(begin))
        .route("/v1/uploads/{id}", get(status).delete(abort))
        .route("/v1/uploads/{id}/parts", post(part_urls))
        .route("/v1/uploads/{id}/complete", post(complete))
        .route("/v1/caches", get(list_caches))
        // An empty key in the path: answer like any invalid key, not "no route".
        .route("/v1/caches/", delete(delete_empty_key))
        .route("/v1/caches/{key}", delete(delete_cache))
        .route("/v1/caches/report", post(report::report))
        .route("/v1/tokens", post(tokens::mint))
        .route("/v1/tokens/{id}", delete(tokens::revoke))
        .route("/v1/stats", get(stats::stats))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::observe,
        ))
        .with_state(state)
}

// ---- errors ----

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    code: Option<ErrorCode>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            code: None,
        }
    }
    fn bad_request(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, m)
    }
    fn not_found(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, m)
    }
    /// S3 failed: the signer's upstream, hence 502. The details (endpoint, bucket,
    /// object name, S3's own message) go to the log only: they describe the operator's
    /// storage, which is none of the client's business.
    fn s3(doing: &str, e: &S3Error) -> ApiError {
        warn!("S3 failed while {doing}: {e}");
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("the storage backend failed while {doing}; try again later"),
        )
    }
}

impl ApiError {
    /// A cache could not be deleted: S3 failed (502) or the registry did (503).
    fn deleting(e: DeleteError) -> ApiError {
        match e {
            DeleteError::S3(e) => ApiError::s3("deleting the cache object", &e),
            DeleteError::Registry(e) => e.into(),
        }
    }
}

/// The one place where the upload lifecycle's errors become statuses.
impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> ApiError {
        use UploadError as E;
        // Upstream failures answer as everywhere else: S3 502, registry 503.
        let e = match e {
            E::S3 { doing, source } => return ApiError::s3(doing, &source),
            E::Registry(e) => return e.into(),
            e => e,
        };
        let status = match &e {
            E::S3 { .. } | E::Registry(_) => StatusCode::INTERNAL_SERVER_ERROR,
            E::InvalidKey { .. }
            | E::InvalidId(_)
            | E::NoPartNumbers
            | E::TooManyPartNumbers(_)
            | E::SizeForOnePart
            | E::PartOutOfRange(_)
            | E::PartTwice(_)
            | E::NoParts
            | E::PartsNotAscending { .. }
            | E::BadSha256(_)
            | E::PartNotUploaded(_)
            | E::EtagMismatch { .. }
            | E::SizeMismatch { .. } => StatusCode::BAD_REQUEST,
            E::NotFound(_) => StatusCode::NOT_FOUND,
            E::ExpectedTooLarge { .. }
            | E::PartPastCap { .. }
            | E::PartSize { .. }
            | E::SizeOverCap { .. }
            | E::PartsOverCap { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            E::TooManyLive { .. } => StatusCode::TOO_MANY_REQUESTS,
            E::AbortedWhileCreating(_)
            | E::WrongState { .. }
            | E::NoLongerUploading(_)
            | E::NoS3Upload(_)
            | E::GoneFromS3(_) => StatusCode::CONFLICT,
        };
        ApiError::new(status, e.to_string())
    }
}

/// The one place where refusals of [`crate::auth`] become statuses.
impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        let (status, code) = match &e {
            AuthError::MissingHeader | AuthError::MalformedHeader | AuthError::UnknownToken => {
                (StatusCode::UNAUTHORIZED, None)
            }
            AuthError::Expired { .. } => (StatusCode::UNAUTHORIZED, Some(ErrorCode::TokenExpired)),
            AuthError::Revoked { .. } => (StatusCode::UNAUTHORIZED, Some(ErrorCode::TokenRevoked)),
            AuthError::ReadOnly => (StatusCode::FORBIDDEN, Some(ErrorCode::ReadOnly)),
            AuthError::NeedsJobToken
            | AuthError::NeedsOperator
            | AuthError::OwnerNotAllowed { .. } => (StatusCode::FORBIDDEN, None),
        };
        ApiError {
            status,
            message: e.to_string(),
            code,
        }
    }
}

/// Registry failures (SQLite busy, disk full…): the request may succeed later.
impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        warn!("registry error: {e:#}");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the signer's registry failed: {e:#}").replace('\n', " "),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(ErrorBody {
                error: self.message,
                code: self.code,
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

async fn no_route() -> ApiError {
    ApiError::not_found("no such endpoint; the API lives under /v1")
}

async fn wrong_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint",
    )
}

// ---- extractors ----

/// `Json` whose rejections are `ErrorBody` answers too.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rej) => Err(json_rejection(rej)),
        }
    }
}

fn json_rejection(rej: JsonRejection) -> ApiError {
    let status = match rej.status() {
        s if s.is_client_error() => s,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(
        status,
        format!("invalid request body: {}", rej.body_text()).replace('\n', " "),
    )
}

/// One path parameter, with `ErrorBody` rejections.
pub struct ApiPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ApiPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(ApiPath(v)),
            Err(rej) => Err(path_rejection(rej)),
        }
    }
}

fn path_rejection(rej: PathRejection) -> ApiError {
    ApiError::bad_request(format!("invalid path: {}", rej.body_text()).replace('\n', " "))
}

/// The query string (`?owner=…&scope=…`), with `ErrorBody` rejections.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(ApiQuery(v)),
            Err(rej) => Err(ApiError::bad_request(
                format!("invalid query: {}", rej.body_text()).replace('\n', " "),
            )),
        }
    }
}

/// Whoever the request's bearer token names.
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        let token = bearer(header)?;
        Ok(Caller(state.principal(token).await??))
    }
}

/// A job token's grant; operator credentials are refused.
pub struct Job(pub JobGrant);

impl FromRequestParts<AppState> for Job {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match Caller::from_request_parts(parts, state).await?.0 {
            Principal::Job(grant) => Ok(Job(grant)),
            Principal::Operator(_) => Err(AuthError::NeedsJobToken.into()),
        }
    }
}

/// An operator credential's grant; job tokens are refused.
pub struct Operator(pub OperatorGrant);

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match Caller::from_request_parts(parts, state).await?.0 {
            Principal::Operator(grant) => Ok(Operator(grant)),
            Principal::Job(_) => Err(AuthError::NeedsOperator.into()),
        }
    }
}

// ---- validation helpers ----

fn check_key(key: &str) -> Result<(), ApiError> {
    validate_key(key).map_err(|e| ApiError::bad_request(format!("invalid key {}: {e}", shown(key))))
}

fn check_scope(what: &str, scope: &str) -> Result<(), ApiError> {
    validate_scope(scope)
        .map_err(|e| ApiError::bad_request(format!("invalid {what} {}: {e}", shown(scope))))
}

fn check_owner(owner: &str) -> Result<(), ApiError> {
    validate_owner(owner)
        .map_err(|e| ApiError::bad_request(format!("invalid owner {}: {e}", shown(owner))))
}

fn check_prefix(prefix: &str) -> Result<(), ApiError> {
    validate_prefix(prefix).map_err(|e| {
        ApiError::bad_request(format!("invalid fallback prefix {}: {e}", shown(prefix)))
    })
}

fn cache_info(c: CacheRow) -> CacheInfo {
    CacheInfo {
        owner: c.owner,
        scope: c.scope,
        key: c.key,
        size: c.size,
        sha256: c.sha256,
        created_at: c.created_at.div_euclid(1000),
        last_used_at: c.last_used_at.div_euclid(1000),
    }
}

// ---- handlers ----

async fn health(State(st): State<AppState>) -> Result<Json<Health>, ApiError> {
    st.db.run(|r| r.ping()).await?;
    Ok(Json(Health {
        ok: true,
        version: env!("CARGO_PKG_VERSION").to_owned(),
    }))
}

async fn lookup(
    Job(job): Job,
    State(st): State<AppState>,
    ApiJson(req): ApiJson<LookupRequest>,
) -> Result<Json<LookupResponse>, ApiError> {
    check_key(&req.key)?;
    if req.fallbacks.len() > MAX_FALLBACKS {
        return Err(ApiError::bad_request(format!(
            "{} fallback prefixes given; at most {MAX_FALLBACKS} are allowed",
            req.fallbacks.len()
        )));
    }
    for p in &req.fallbacks {
        check_prefix(p)?;
    }
    if req.exclude.len() > MAX_FALLBACKS {
        return Err(ApiError::bad_request(format!(
            "{} caches excluded; at most {MAX_FALLBACKS} are allowed",
            req.exclude.len()
        )));
    }
    // Own scope first, then each read scope in order; in each, the exact key, then
    // each fallback prefix in order; candidates the client already tried are passed
    // over.
    let found = {
        let (owner, scopes) = (job.owner.clone(), job.search_order());
        let (key, fallbacks, exclude) = (req.key.clone(), req.fallbacks.clone(), req.exclude);
        st.db
            .read(move |r| {
                for scope in &scopes {
                    let at = Place {
                        owner: &owner,
                        scope,
                    };
                    let excluded: Vec<&str> = exclude
                        .iter()
                        .filter(|e| e.scope == *scope)
                        .map(|e| e.key.as_str())
                        .collect();
                    if !excluded.contains(&key.as_str())
                        && let Some(c) = r.find_cache(&at, &key)?
                    {
                        return Ok(Some(c));
                    }
                    for p in &fallbacks {
                        if let Some(c) = r.newest_with_prefix(&at, p, &excluded)? {
                            return Ok(Some(c));
                        }
                    }
                }
                Ok(None)
            })
            .await?
    };
    // Counted in the asking job's own scope, whichever scope the hit came from.
    st.metrics.lookup(found.is_some());
    let event = match found {
        Some(_) => UsageEvent::Hit,
        None => UsageEvent::Miss,
    };
    st.count_usage(&job.owner, &job.scope, event).await;
    let Some(c) = found else {
        return Ok(Json(LookupResponse { hit: None }));
    };
    let url = st
        .s3
        .presign_get(
            &st.object_name(&c.ulid),
            st.cfg().timing.download_url_expiry(),
        )
        .map_err(|e| ApiError::s3("presigning the download", &e))?;
    // The last use moves when the job reports a successful restore, not here: a cache
    // that fails every restore must age out.
    Ok(Json(LookupResponse {
        hit: Some(CacheHit {
            key: c.key,
            url,
            size: c.size,
            sha256: c.sha256,
            created_at: c.created_at.div_euclid(1000),
            own_scope: c.scope == job.scope,
            scope: c.scope,
            extent: c.extent,
            issued_at_ms: now_ms(),
        }),
    }))
}

async fn begin(
    Job(job): Job,
    State(st): State<AppState>,
    ApiJson(req): ApiJson<BeginRequest>,
) -> Result<Json<BeginResponse>, ApiError> {
    job.require_write()?;
    Ok(Json(uploads::begin(&st, &job, &req).await?))
}

async fn part_urls(
    Job(job): Job,
    State(st): State<AppState>,
    ApiPath(id): ApiPath,
    ApiJson(req): ApiJson<PartUrlsRequest>,
) -> Result<Json<PartUrlsResponse>, ApiError> {
    job.require_write()?;
    Ok(Json(uploads::part_urls(&st, &job, &id, &req).await?))
}

async fn complete(
    Job(job): Job,
    State(st): State<AppState>,
    ApiPath(id): ApiPath,
    ApiJson(req): ApiJson<CompleteRequest>,
) -> Result<Json<UploadStatus>, ApiError> {
    job.require_write()?;
    Ok(Json(uploads::complete(&st, &job, &id, &req).await?))
}

async fn status(
    Job(job): Job,
    State(st): State<AppState>,
    ApiPath(id): ApiPath,
) -> Result<Json<UploadStatus>, ApiError> {
    Ok(Json(uploads::status(&st, &job, &id).await?))
}

async fn abort(
    Job(job): Job,
    State(st): State<AppState>,
    ApiPath(id): ApiPath,
) -> Result<Json<UploadStatus>, ApiError> {
    job.require_write()?;
    Ok(Json(uploads::abort(&st, &job, &id).await?))
}

/// The owner and scope a caller lists or deletes in. A job token: its own (the
/// selector may only repeat them); an operator: the selector's, for an owner it is
/// allowed (`scope` may be left out to list every scope, never to delete).
fn selected(
    caller: &Principal,
    sel: CacheSelector,
    scope_needed: bool,
) -> Result<(String, Option<String>), ApiError> {
    match caller {
        Principal::Job(job) => {
            if sel.owner.as_ref().is_some_and(|o| *o != job.owner)
                || sel.scope.as_ref().is_some_and(|s| *s != job.scope)
            {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "a job token lists and deletes in its own owner and scope only",
                ));
            }
            Ok((job.owner.clone(), Some(job.scope.clone())))
        }
        Principal::Operator(op) => {
            let Some(owner) = sel.owner else {
                return Err(ApiError::bad_request(
                    "an operator credential names the owner: ?owner=…",
                ));
            };
            check_owner(&owner)?;
            op.require_owner(&owner)?;
            if let Some(scope) = &sel.scope {
                check_scope("scope", scope)?;
            } else if scope_needed {
                return Err(ApiError::bad_request(
                    "an operator credential names the scope to delete in: ?owner=…&scope=…",
                ));
            }
            Ok((owner, sel.scope))
        }
    }
}

/// Caches in one page of a list, at most (and by default).
const MAX_LIST_PAGE: u32 = 1000;

async fn list_caches(
    Caller(caller): Caller,
    State(st): State<AppState>,
    ApiQuery(sel): ApiQuery<CacheSelector>,
) -> Result<Json<CacheList>, ApiError> {
    let limit = sel.limit.unwrap_or(MAX_LIST_PAGE).clamp(1, MAX_LIST_PAGE);
    let after = match (sel.after_scope.clone(), sel.after_key.clone()) {
        (Some(scope), Some(key)) => Some((scope, key)),
        (None, None) => None,
        _ => {
            return Err(ApiError::bad_request(
                "after_scope and after_key go together",
            ));
        }
    };
    let prefix = sel.prefix.clone();
    if let Some(p) = &prefix {
        validate_prefix(p)
            .map_err(|e| ApiError::bad_request(format!("invalid prefix {}: {e}", shown(p))))?;
    }
    let (owner, scope) = selected(&caller, sel, false)?;
    // One more than asked: whether there is a next page.
    let mut rows = st
        .db
        .read(move |r| {
            let after = after.as_ref().map(|(s, k)| (s.as_str(), k.as_str()));
            r.list_caches(
                &owner,
                scope.as_deref(),
                prefix.as_deref(),
                after,
                limit + 1,
            )
        })
        .await?;
    let next = (rows.len() > limit as usize).then(|| {
        rows.truncate(limit as usize);
        rows.last().map(|c| CacheRef {
            scope: c.scope.clone(),
            key: c.key.clone(),
        })
    });
    Ok(Json(CacheList {
        caches: rows.into_iter().map(cache_info).collect(),
        next: next.flatten(),
    }))
}

async fn delete_empty_key(_caller: Caller) -> ApiError {
    match check_key("") {
        Err(e) => e,
        Ok(()) => ApiError::bad_request("invalid key \"\""),
    }
}

async fn delete_cache(
    Caller(caller): Caller,
    State(st): State<AppState>,
    ApiPath(key): ApiPath,
    ApiQuery(sel): ApiQuery<CacheSelector>,
) -> Result<Json<Deleted>, ApiError> {
    if let Principal::Job(job) = &caller {
        job.require_write()?;
    }
    check_key(&key)?;
    let (owner, scope) = selected(&caller, sel, true)?;
    let scope = scope.unwrap_or_default();
    let found = {
        let (o, s, k) = (owner.clone(), scope.clone(), key.clone());
        st.db
            .run(move |r| {
                r.find_cache(
                    &Place {
                        owner: &o,
                        scope: &s,
                    },
                    &k,
                )
            })
            .await?
    };
    let Some(c) = found else {
        return Err(ApiError::not_found(format!(
            "no cache with key {} in scope {}",
            shown(&key),
            shown(&scope)
        )));
    };
    st.delete_cache(&c).await.map_err(ApiError::deleting)?;
    info!(owner = %owner, scope = %scope, key = %key, "cache deleted by the client");
    Ok(Json(Deleted { deleted: true }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_keys_stay_on_one_line() {
        assert_eq!(shown("a\nb"), "\"a\\nb\"");
        assert!(shown(&"k".repeat(500)).len() < 200);
    }
}
