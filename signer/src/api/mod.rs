//! The HTTP API under `/v1` (see `bmat_wire::api` for the table of endpoints).
//!
//! Every endpoint but health needs `Authorization: Bearer <token>`. A job token acts in
//! one owner's scope and reads its read scopes ([`crate::auth`]); an operator credential
//! mints tokens ([`tokens`]) and lists and deletes caches of its owners. Nothing crosses
//! owners: another owner's (or scope's) upload is answered 404, like an unknown one.
//! Every error is an `ErrorBody` with one line a person can act on.

mod report;
mod tokens;

use std::collections::HashMap;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bmat_wire::api::{
    BeginRequest, BeginResponse, CacheHit, CacheInfo, CacheList, CacheRef, CacheSelector,
    CompleteRequest, Deleted, ErrorBody, ErrorCode, Health, LookupRequest, LookupResponse, PartUrl,
    PartUrlsRequest, PartUrlsResponse, SkipReason, UploadState, UploadStatus,
};
use bmat_wire::{validate_key, validate_owner, validate_prefix, validate_scope};
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use crate::auth::{AuthError, JobGrant, OperatorGrant, Principal, bearer};
use crate::config::{MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE};
use crate::registry::{BeginOutcome, CacheRow, Place, UploadRow, UploadRules};
use crate::s3::S3Error;
use crate::state::{AppState, DeleteError, now_ms};

/// More fallbacks than this is a client bug, not a search.
const MAX_FALLBACKS: usize = 32;
/// Part URLs in one answer: plenty for a client that asks ahead, small enough that
/// one request cannot make the signer presign thousands of URLs.
const MAX_URLS_PER_REQUEST: usize = 256;

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
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
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
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
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
    fn conflict(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, m)
    }
    fn too_large(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, m)
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

/// `?owner=…&scope=…`, with `ErrorBody` rejections.
pub struct ApiQuery(pub CacheSelector);

impl<S: Send + Sync> FromRequestParts<S> for ApiQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<CacheSelector>::from_request_parts(parts, state).await {
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

/// A key quoted for an error message: escaped, one line, not absurdly long.
fn shown(s: &str) -> String {
    const MAX: usize = 140;
    if s.chars().count() > MAX {
        let head: String = s.chars().take(MAX).collect();
        format!("{head:?}…")
    } else {
        format!("{s:?}")
    }
}

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

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Upload ids are ULIDs (Crockford base 32, any case); returns the canonical form.
fn parse_upload_id(id: &str) -> Result<String, ApiError> {
    ulid::Ulid::from_string(id)
        .map(|u| u.to_string())
        .map_err(|_| ApiError::bad_request(format!("invalid upload id {}: not a ULID", shown(id))))
}

/// ETags are compared without their quotes (clients and servers differ there).
fn etag_eq(a: &str, b: &str) -> bool {
    a.trim().trim_matches('"') == b.trim().trim_matches('"')
}

fn upload_status(up: &UploadRow) -> UploadStatus {
    UploadStatus {
        upload_id: up.ulid.clone(),
        key: up.key.clone(),
        state: up.state,
    }
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

/// The upload `id` if it is the job's: its owner's and its scope's. Anyone else's is
/// answered like an unknown one, so ids reveal nothing.
async fn load_owned_upload(st: &AppState, job: &JobGrant, id: &str) -> Result<UploadRow, ApiError> {
    let ulid = parse_upload_id(id)?;
    let found = {
        let ulid = ulid.clone();
        st.db.read(move |r| r.get_upload(&ulid)).await?
    };
    match found {
        Some(up) if up.owner == job.owner && up.scope == job.scope => Ok(up),
        _ => Err(ApiError::not_found(format!("no upload {ulid}"))),
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
    let Some(c) = found else {
        return Ok(Json(LookupResponse { hit: None }));
    };
    let url = st
        .s3
        .presign_get(
            &st.object_name(&c.ulid),
            st.cfg.timing.download_url_expiry(),
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
    check_key(&req.key)?;
    let limits = &st.cfg.limits;
    if let Some(size) = req.expected_size
        && size > limits.max_cache_size
    {
        return Err(ApiError::too_large(format!(
            "expected size {size} bytes is over the maximum cache size of {} bytes",
            limits.max_cache_size
        )));
    }
    let part_size = req.part_size.map_or(limits.part_size, |asked| {
        allowed_part_size(asked, limits.max_cache_size)
    });
    let ulid = ulid::Ulid::new().to_string();
    let outcome = {
        let (job, key, ulid) = (job.clone(), req.key.clone(), ulid.clone());
        let rules = UploadRules {
            lease: std::time::Duration::from_secs(st.cfg.timing.lease_secs),
            max_live: limits.max_live_uploads,
        };
        st.db
            .run(move |r| r.begin_upload(&job.place(), &key, &ulid, part_size, now_ms(), &rules))
            .await?
    };
    match outcome {
        BeginOutcome::Exists => {
            return Ok(Json(BeginResponse::Skip {
                reason: SkipReason::Exists,
            }));
        }
        BeginOutcome::InProgress => {
            return Ok(Json(BeginResponse::Skip {
                reason: SkipReason::InProgress,
            }));
        }
        BeginOutcome::TooMany(max) => {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "owner {} has {max} uploads in progress, the most allowed \
                     (limits.max_live_uploads); try again when one ends",
                    job.owner
                ),
            ));
        }
        BeginOutcome::Created { took_over } => {
            if let Some(old) = took_over {
                info!(owner = %job.owner, scope = %job.scope, key = %req.key, "lease of upload {old} expired; it was aborted");
            }
        }
    }

    // The row exists, so a multipart upload created now can never leak: if we crash
    // before storing its id, the reaper finds it under the prefix without a live row.
    let object = st.object_name(&ulid);
    let s3_id = match st.s3.create_multipart_upload(&object).await {
        Ok(id) => id,
        Err(e) => {
            let u = ulid.clone();
            st.db
                .run(move |r| r.mark_aborted(&u, &[UploadState::Creating], now_ms()))
                .await?;
            return Err(ApiError::s3("creating the multipart upload", &e));
        }
    };
    let stored = {
        let (u, id) = (ulid.clone(), s3_id.clone());
        st.db
            .run(move |r| r.set_uploading(&u, &id, now_ms()))
            .await?
    };
    if !stored {
        // Aborted while CreateMultipartUpload ran (explicit abort or lease take-over).
        let (u, id) = (ulid.clone(), s3_id.clone());
        st.db
            .run(move |r| r.record_orphan_upload_id(&u, &id, now_ms()))
            .await?;
        if st.s3.abort_multipart_upload(&object, &s3_id).await.is_ok() {
            let u = ulid.clone();
            st.db.run(move |r| r.s3_aborted(&u)).await?;
        }
        return Err(ApiError::conflict(format!(
            "upload {ulid} was aborted while it was being created; begin again"
        )));
    }
    info!(owner = %job.owner, scope = %job.scope, key = %req.key, upload = %ulid, "upload begun");
    Ok(Json(BeginResponse::Upload {
        upload_id: ulid,
        part_size,
        max_size: limits.max_cache_size,
    }))
}

/// A part size a client asked for, brought within S3's limits: at least 5 MiB, at most
/// 5 GiB, and large enough that a cache of `max_cache_size` fits in 10,000 parts.
fn allowed_part_size(asked: u64, max_cache_size: u64) -> u64 {
    let floor = MIN_PART_SIZE.max(max_cache_size.div_ceil(u64::from(MAX_PARTS)));
    asked.clamp(floor.min(MAX_PART_SIZE), MAX_PART_SIZE)
}

async fn part_urls(
    Job(job): Job,
    State(st): State<AppState>,
    ApiPath(id): ApiPath,
    ApiJson(req): ApiJson<PartUrlsRequest>,
) -> Result<Json<PartUrlsResponse>, ApiError> {
    job.require_write()?;
    let up = load_owned_upload(&st, &job, &id).await?;
    if up.state != UploadState::Uploading {
        return Err(ApiError::conflict(format!(
            "upload {} is {}; part URLs are only issued while it is uploading",
            up.ulid,
            up.state.as_str()
        )));
    }
    let sizes = part_sizes(&req, up.part_size, st.cfg.limits.max_cache_size)?;
    let renewed = {
        let u = up.ulid.clone();
        let lease = std::time::Duration::from_secs(st.cfg.timing.lease_secs);
        st.db
            .run(move |r| r.renew_lease(&u, now_ms(), lease))
            .await?
    };
    if !renewed {
        return Err(ApiError::conflict(format!(
            "upload {} is no longer uploading",
            up.ulid
        )));
    }
    let Some(s3_id) = up.s3_upload_id.as_deref() else {
        return Err(ApiError::conflict(format!(
            "upload {} has no S3 upload yet",
            up.ulid
        )));
    };
    let object = st.object_name(&up.ulid);
    let expiry = st.cfg.timing.part_url_expiry();
    let mut urls = Vec::with_capacity(sizes.len());
    for (n, size) in sizes {
        let url = st
            .s3
            .presign_upload_part(&object, s3_id, n, size, expiry)
            .map_err(|e| ApiError::s3("presigning a part upload", &e))?;
        urls.push(PartUrl {
            part_number: n,
            url,
        });
    }
    Ok(Json(PartUrlsResponse { urls }))
}

/// The parts asked for, each with the body size its URL is signed for: the part size,
/// or less where the size cap ends the archive, or the client's `size` for a short last
/// part. So no part can be larger than the upload's part size, and none can reach past
/// the cap: S3 itself refuses other bodies.
fn part_sizes(
    req: &PartUrlsRequest,
    part_size: u64,
    cap: u64,
) -> Result<Vec<(u32, u64)>, ApiError> {
    if req.part_numbers.is_empty() {
        return Err(ApiError::bad_request("part_numbers is empty"));
    }
    if req.part_numbers.len() > MAX_URLS_PER_REQUEST {
        return Err(ApiError::bad_request(format!(
            "{} part numbers asked; at most {MAX_URLS_PER_REQUEST} per request",
            req.part_numbers.len()
        )));
    }
    if req.size.is_some() && req.part_numbers.len() != 1 {
        return Err(ApiError::bad_request(
            "size is for one part (the last) at a time",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    let mut sizes = Vec::with_capacity(req.part_numbers.len());
    for &n in &req.part_numbers {
        if n == 0 || n > MAX_PARTS {
            return Err(ApiError::bad_request(format!(
                "part number {n} is outside S3's range 1..={MAX_PARTS}"
            )));
        }
        if !seen.insert(n) {
            return Err(ApiError::bad_request(format!(
                "part number {n} is asked for twice"
            )));
        }
        // Every part but the last is `part_size` bytes, so part n starts here; a part
        // that starts at or past the cap can only make the archive too large.
        let start = u64::from(n - 1).saturating_mul(part_size);
        if start >= cap {
            return Err(ApiError::too_large(format!(
                "part {n} would start at byte {start}, past the maximum cache size of {cap} bytes"
            )));
        }
        let largest = part_size.min(cap - start);
        let size = match req.size {
            None => largest,
            Some(s) if (1..=largest).contains(&s) => s,
            Some(s) => {
                return Err(ApiError::too_large(format!(
                    "part {n} of {s} bytes: parts are 1 to {largest} bytes here (part size \
                     {part_size}, maximum cache size {cap})"
                )));
            }
        };
        sizes.push((n, size));
    }
    Ok(sizes)
}

async fn complete(
    Job(job): Job,
    State(st): State<AppState>,
    ApiPath(id): ApiPath,
    ApiJson(req): ApiJson<CompleteRequest>,
) -> Result<Json<UploadStatus>, ApiError> {
    job.require_write()?;
    let up = load_owned_upload(&st, &job, &id).await?;
    match up.state {
        // A retried complete (lost answer): the first one was accepted.
        UploadState::Finished | UploadState::Completed => return Ok(Json(upload_status(&up))),
        UploadState::Creating | UploadState::Aborted => {
            return Err(ApiError::conflict(format!(
                "upload {} is {}; it cannot be completed",
                up.ulid,
                up.state.as_str()
            )));
        }
        UploadState::Uploading => {}
    }
    if req.parts.is_empty() {
        return Err(ApiError::bad_request("parts is empty"));
    }
    let mut previous = 0u32;
    for p in &req.parts {
        if p.part_number == 0 || p.part_number > MAX_PARTS {
            return Err(ApiError::bad_request(format!(
                "part number {} is outside S3's range 1..={MAX_PARTS}",
                p.part_number
            )));
        }
        if p.part_number <= previous {
            return Err(ApiError::bad_request(format!(
                "part numbers must be ascending and unique; {} follows {previous}",
                p.part_number
            )));
        }
        previous = p.part_number;
    }
    if !is_sha256_hex(&req.sha256) {
        return Err(ApiError::bad_request(format!(
            "sha256 {} is not 64 lower-case hex digits",
            shown(&req.sha256)
        )));
    }
    let cap = st.cfg.limits.max_cache_size;
    if req.size > cap {
        st.abort_upload(&up, &[UploadState::Uploading]).await?;
        return Err(ApiError::too_large(format!(
            "size {} bytes is over the maximum cache size of {cap} bytes; the upload was aborted",
            req.size
        )));
    }
    let Some(s3_id) = up.s3_upload_id.as_deref() else {
        return Err(ApiError::conflict(format!(
            "upload {} has no S3 upload",
            up.ulid
        )));
    };

    // Trust S3, not the client: the parts must exist with these ETags, and their real
    // sizes decide the cap (a presigned PUT does not limit the body's size).
    let listed = match st.s3.list_parts(&st.object_name(&up.ulid), s3_id).await {
        Ok(parts) => parts,
        Err(e) if e.is_not_found() => {
            st.abort_upload(&up, &[UploadState::Uploading]).await?;
            return Err(ApiError::conflict(format!(
                "upload {} no longer exists in S3; it was aborted",
                up.ulid
            )));
        }
        Err(e) => return Err(ApiError::s3("listing the uploaded parts", &e)),
    };
    let listed: HashMap<u32, _> = listed.into_iter().map(|p| (p.part_number, p)).collect();
    let mut total = 0u64;
    for p in &req.parts {
        let Some(real) = listed.get(&p.part_number) else {
            return Err(ApiError::bad_request(format!(
                "part {} was not uploaded (S3 does not list it)",
                p.part_number
            )));
        };
        if !etag_eq(&real.etag, &p.etag) {
            return Err(ApiError::bad_request(format!(
                "part {}: ETag {} does not match S3's {}",
                p.part_number, p.etag, real.etag
            )));
        }
        total = total.saturating_add(real.size);
    }
    if total > cap {
        st.abort_upload(&up, &[UploadState::Uploading]).await?;
        return Err(ApiError::too_large(format!(
            "the uploaded parts add up to {total} bytes, over the maximum cache size of {cap} \
             bytes; the upload was aborted"
        )));
    }
    if total != req.size {
        return Err(ApiError::bad_request(format!(
            "size {} does not match the uploaded parts' total of {total} bytes",
            req.size
        )));
    }

    let parts: Vec<(u32, String)> = req
        .parts
        .iter()
        .map(|p| (p.part_number, p.etag.clone()))
        .collect();
    let marked = {
        let (u, sha, extent) = (up.ulid.clone(), req.sha256.clone(), req.extent);
        st.db
            .run(move |r| {
                r.record_extent(&u, extent)?;
                r.mark_finished(&u, &parts, total, &sha, now_ms())
            })
            .await?
    };
    if !marked {
        // A concurrent complete won, or the upload was aborted meanwhile.
        let now = load_owned_upload(&st, &job, &up.ulid).await?;
        return match now.state {
            UploadState::Finished | UploadState::Completed => Ok(Json(upload_status(&now))),
            s => Err(ApiError::conflict(format!(
                "upload {} is {}; it cannot be completed",
                now.ulid,
                s.as_str()
            ))),
        };
    }
    st.worker_wake.notify_one();
    info!(owner = %job.owner, scope = %job.scope, key = %up.key, upload = %up.ulid, size = total, "upload finished, queued for completion");
    Ok(Json(UploadStatus {
        upload_id: up.ulid,
        key: up.key,
        state: UploadState::Finished,
    }))
}

async fn status(
    Job(job): Job,
    State(st): State<AppState>,
    ApiPath(id): ApiPath,
) -> Result<Json<UploadStatus>, ApiError> {
    let up = load_owned_upload(&st, &job, &id).await?;
    Ok(Json(upload_status(&up)))
}

async fn abort(
    Job(job): Job,
    State(st): State<AppState>,
    ApiPath(id): ApiPath,
) -> Result<Json<UploadStatus>, ApiError> {
    job.require_write()?;
    let up = load_owned_upload(&st, &job, &id).await?;
    match up.state {
        UploadState::Aborted => Ok(Json(upload_status(&up))),
        UploadState::Finished | UploadState::Completed => Err(ApiError::conflict(format!(
            "upload {} is already {}; it cannot be aborted",
            up.ulid,
            up.state.as_str()
        ))),
        UploadState::Creating | UploadState::Uploading => {
            st.abort_upload(&up, &[UploadState::Creating, UploadState::Uploading])
                .await?;
            let now = load_owned_upload(&st, &job, &up.ulid).await?;
            if now.state == UploadState::Aborted {
                info!(owner = %job.owner, scope = %job.scope, key = %up.key, upload = %up.ulid, "upload aborted by the client");
                Ok(Json(upload_status(&now)))
            } else {
                Err(ApiError::conflict(format!(
                    "upload {} became {} meanwhile; it cannot be aborted",
                    now.ulid,
                    now.state.as_str()
                )))
            }
        }
    }
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
    ApiQuery(sel): ApiQuery,
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
    let (owner, scope) = selected(&caller, sel, false)?;
    // One more than asked: whether there is a next page.
    let mut rows = st
        .db
        .read(move |r| {
            let after = after.as_ref().map(|(s, k)| (s.as_str(), k.as_str()));
            r.list_caches(&owner, scope.as_deref(), after, limit + 1)
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
    ApiQuery(sel): ApiQuery,
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
    fn asked_part_sizes_are_brought_within_s3_limits() {
        const MIB: u64 = 1 << 20;
        let cap = 10 * 1024 * MIB;
        assert_eq!(allowed_part_size(8 * MIB, cap), 8 * MIB);
        assert_eq!(allowed_part_size(1, cap), 5 * MIB);
        assert_eq!(allowed_part_size(u64::MAX, cap), MAX_PART_SIZE);
        // 1 TiB in at most 10,000 parts: no part under 1 TiB / 10,000.
        let tib = 1024 * 1024 * MIB;
        assert_eq!(allowed_part_size(8 * MIB, tib), tib.div_ceil(10_000));
    }

    #[test]
    fn part_urls_are_signed_for_sizes_within_the_part_size_and_the_cap() {
        let ask = |parts: &[u32], size: Option<u64>| PartUrlsRequest {
            part_numbers: parts.to_vec(),
            size,
        };
        // Part size 10, cap 25: parts 1-2 full, part 3 at most 5 bytes.
        assert_eq!(
            part_sizes(&ask(&[1, 2, 3], None), 10, 25).unwrap(),
            [(1, 10), (2, 10), (3, 5)]
        );
        assert_eq!(part_sizes(&ask(&[2], Some(3)), 10, 25).unwrap(), [(2, 3)]);
        assert!(part_sizes(&ask(&[2], Some(11)), 10, 25).is_err());
        assert!(part_sizes(&ask(&[3], Some(6)), 10, 25).is_err());
        assert!(part_sizes(&ask(&[2], Some(0)), 10, 25).is_err());
        assert!(part_sizes(&ask(&[4], None), 10, 25).is_err());
        assert!(part_sizes(&ask(&[1, 2], Some(3)), 10, 25).is_err());
        assert!(part_sizes(&ask(&[1, 1], None), 10, 25).is_err());
        assert!(part_sizes(&ask(&[], None), 10, 25).is_err());
        let many: Vec<u32> = (1..=257).collect();
        assert!(part_sizes(&ask(&many, None), 10, 1 << 40).is_err());
    }

    #[test]
    fn sha256_hex_is_strict() {
        assert!(is_sha256_hex(&"ab".repeat(32)));
        assert!(!is_sha256_hex(&"AB".repeat(32)));
        assert!(!is_sha256_hex(&"ab".repeat(31)));
        assert!(!is_sha256_hex(&"zz".repeat(32)));
    }

    #[test]
    fn etags_compare_without_quotes() {
        assert!(etag_eq("\"abc\"", "abc"));
        assert!(!etag_eq("\"abc\"", "\"abd\""));
    }

    #[test]
    fn upload_ids_are_canonical_ulids() {
        let u = ulid::Ulid::new().to_string();
        assert_eq!(parse_upload_id(&u.to_lowercase()).unwrap(), u);
        assert!(parse_upload_id("../etc").is_err());
    }

    #[test]
    fn shown_keys_stay_on_one_line() {
        assert_eq!(shown("a\nb"), "\"a\\nb\"");
        assert!(shown(&"k".repeat(500)).len() < 200);
    }
}
