//! Extractors whose rejections are `ErrorBody` answers: the body, a path parameter,
//! the query string, and who the bearer token names.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::auth::{AuthError, JobGrant, OperatorGrant, Principal, bearer};
use crate::http::error::ApiError;
use crate::http::guard::{BodyDeadline, GuardError};
use crate::state::AppState;

/// `Json` whose rejections are `ErrorBody` answers too, read within the request's
/// body deadline.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let deadline = req.extensions().get::<BodyDeadline>().copied();
        let read = Json::<T>::from_request(req, state);
        let read = match deadline {
            Some(d) => tokio::time::timeout_at(d.at, read)
                .await
                .map_err(|_| GuardError::BodyTooSlow(d.after))?,
            None => read.await,
        };
        match read {
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
        Ok(Caller(state.principal(token).await?))
    }
}

/// A job token's grant; operator credentials are refused.
pub struct JobCaller(pub JobGrant);

impl FromRequestParts<AppState> for JobCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match Caller::from_request_parts(parts, state).await?.0 {
            Principal::Job(grant) => Ok(JobCaller(grant)),
            Principal::Operator(_) => Err(AuthError::NeedsJobToken.into()),
        }
    }
}

/// An operator credential's grant; job tokens are refused.
pub struct OperatorCaller(pub OperatorGrant);

impl FromRequestParts<AppState> for OperatorCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match Caller::from_request_parts(parts, state).await?.0 {
            Principal::Operator(grant) => Ok(OperatorCaller(grant)),
            Principal::Job(_) => Err(AuthError::NeedsOperator.into()),
        }
    }
}
