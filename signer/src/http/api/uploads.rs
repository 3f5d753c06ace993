//! Handlers of the upload routes: each checks that the job may write where needed and
//! calls [`crate::uploads`].

use axum::Json;
use axum::extract::State;
use bmat_wire::api::{
    BeginRequest, BeginResponse, CompleteRequest, PartUrlsRequest, PartUrlsResponse, UploadStatus,
};

use super::extract::{ApiJson, ApiPath, JobCaller};
use crate::http::error::ApiError;
use crate::state::AppState;
use crate::uploads::lifecycle as uploads;

pub(super) async fn begin(
    JobCaller(job): JobCaller,
    State(st): State<AppState>,
    ApiJson(req): ApiJson<BeginRequest>,
) -> Result<Json<BeginResponse>, ApiError> {
    job.require_write()?;
    Ok(Json(uploads::begin(&st, &job, &req).await?))
}

pub(super) async fn part_urls(
    JobCaller(job): JobCaller,
    State(st): State<AppState>,
    ApiPath(id): ApiPath,
    ApiJson(req): ApiJson<PartUrlsRequest>,
) -> Result<Json<PartUrlsResponse>, ApiError> {
    job.require_write()?;
    Ok(Json(uploads::part_urls(&st, &job, &id, &req).await?))
}

pub(super) async fn complete(
    JobCaller(job): JobCaller,
    State(st): State<AppState>,
    ApiPath(id): ApiPath,
    ApiJson(req): ApiJson<CompleteRequest>,
) -> Result<Json<UploadStatus>, ApiError> {
    job.require_write()?;
    Ok(Json(uploads::complete(&st, &job, &id, &req).await?))
}

pub(super) async fn status(
    JobCaller(job): JobCaller,
    State(st): State<AppState>,
    ApiPath(id): ApiPath,
) -> Result<Json<UploadStatus>, ApiError> {
    Ok(Json(uploads::status(&st, &job, &id).await?))
}

pub(super) async fn abort(
    JobCaller(job): JobCaller,
    State(st): State<AppState>,
    ApiPath(id): ApiPath,
) -> Result<Json<UploadStatus>, ApiError> {
    job.require_write()?;
    Ok(Json(uploads::abort(&st, &job, &id).await?))
}
