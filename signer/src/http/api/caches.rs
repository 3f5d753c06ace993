//! Handlers of the cache routes: lookup, report, list, delete. Each parses, calls
//! [`crate::caches`] and lets [`ApiError`] map the failure.

use axum::Json;
use axum::extract::State;
use bmat_wire::api::{
    CacheList, CacheSelector, Deleted, DeletedCaches, LookupRequest, LookupResponse, ReportAnswer,
    ReportRequest,
};

use super::extract::{ApiJson, ApiPath, ApiQuery, Caller, JobCaller};
use crate::caches::{delete, list, lookup, report};
use crate::http::error::ApiError;
use crate::names;
use crate::state::AppState;

pub(super) async fn lookup(
    JobCaller(job): JobCaller,
    State(st): State<AppState>,
    ApiJson(req): ApiJson<LookupRequest>,
) -> Result<Json<LookupResponse>, ApiError> {
    Ok(Json(lookup::lookup(&st, &job, req).await?))
}

pub(super) async fn report(
    JobCaller(job): JobCaller,
    State(st): State<AppState>,
    ApiJson(req): ApiJson<ReportRequest>,
) -> Result<Json<ReportAnswer>, ApiError> {
    Ok(Json(report::report(&st, &job, req).await?))
}

pub(super) async fn list(
    Caller(caller): Caller,
    State(st): State<AppState>,
    ApiQuery(sel): ApiQuery<CacheSelector>,
) -> Result<Json<CacheList>, ApiError> {
    Ok(Json(list::list(&st, &caller, sel).await?))
}

/// An empty key in the path: answered like any invalid key, not "no route".
pub(super) async fn delete_empty_key(_caller: Caller) -> ApiError {
    match names::key("") {
        Err(e) => e.into(),
        Ok(()) => ApiError::bad_request("invalid key \"\""),
    }
}

pub(super) async fn delete(
    Caller(caller): Caller,
    State(st): State<AppState>,
    ApiPath(key): ApiPath,
    ApiQuery(sel): ApiQuery<CacheSelector>,
) -> Result<Json<Deleted>, ApiError> {
    delete::delete_by_key(&st, &caller, key, sel).await?;
    Ok(Json(Deleted { deleted: true }))
}

pub(super) async fn delete_matching(
    Caller(caller): Caller,
    State(st): State<AppState>,
    ApiQuery(sel): ApiQuery<CacheSelector>,
) -> Result<Json<DeletedCaches>, ApiError> {
    Ok(Json(delete::delete_matching(&st, &caller, sel).await?))
}
