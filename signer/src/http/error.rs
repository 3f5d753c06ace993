//! The one place where every failure becomes an HTTP answer: each domain error (of
//! caches, uploads, auth, the registry, client names) maps to a status and a one-line
//! message in an `ErrorBody`. S3 and registry failures are upstream failures: S3 is
//! 502 (its details go to the log only), the registry 503 (the request may succeed
//! later).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bmat_wire::api::{ErrorBody, ErrorCode};
use tracing::warn;

use crate::auth::{AuthError, PrincipalError};
use crate::caches::CacheError;
use crate::http::guard::GuardError;
use crate::names::InvalidName;
use crate::registry::RegistryError;
use crate::s3::S3Error;
use crate::text::chain;
use crate::uploads::UploadError;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    code: Option<ErrorCode>,
    /// Close the connection after the answer (a request whose body is left unread).
    close: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            code: None,
            close: false,
        }
    }

    pub fn bad_request(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, m)
    }

    pub fn not_found(m: impl Into<String>) -> ApiError {
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

/// Registry failures (SQLite busy, disk full…): the request may succeed later.
impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> ApiError {
        let e = chain(&e);
        warn!("registry error: {e}");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the signer's registry failed: {e}"),
        )
    }
}

impl From<InvalidName> for ApiError {
    fn from(e: InvalidName) -> ApiError {
        ApiError::bad_request(e.to_string())
    }
}

impl From<CacheError> for ApiError {
    fn from(e: CacheError) -> ApiError {
        use CacheError as E;
        let status = match e {
            E::S3 { doing, source } => return ApiError::s3(doing, &source),
            E::Registry(e) => return e.into(),
            E::Auth(e) => return e.into(),
            E::Invalid(e) => return e.into(),
            E::TooManyFallbacks(_)
            | E::TooManyExcluded(_)
            | E::HalfCursor
            | E::OwnerNotNamed
            | E::ScopeNotNamed => StatusCode::BAD_REQUEST,
            E::OutsideOwnPlace => StatusCode::FORBIDDEN,
            E::NotFound { .. } => StatusCode::NOT_FOUND,
            // Not a slow-down: the window outlasts any job, so say so with a code.
            E::ReportBudgetSpent { .. } => {
                return ApiError {
                    code: Some(ErrorCode::BudgetSpent),
                    ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string())
                };
            }
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> ApiError {
        use UploadError as E;
        let status = match e {
            E::S3 { doing, source } => return ApiError::s3(doing, &source),
            E::Registry(e) => return e.into(),
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
            | E::SizeMismatch { .. }
            | E::NoExtent(_)
            | E::ImpossibleExtent { .. }
            | E::Contents(_) => StatusCode::BAD_REQUEST,
            E::NotFound(_) => StatusCode::NOT_FOUND,
            E::ExpectedTooLarge { .. }
            | E::PartPastCap { .. }
            | E::PartSize { .. }
            | E::SizeOverCap { .. }
            | E::PartsOverCap { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            E::TooManyLive { .. } | E::TooManyLiveUnprotected { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            E::AbortedWhileCreating(_)
            | E::WrongState { .. }
            | E::NoLongerUploading(_)
            | E::NoS3Upload(_)
            | E::GoneFromS3(_) => StatusCode::CONFLICT,
            E::FinishedWithout { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        let (status, code) = match &e {
            AuthError::MissingHeader | AuthError::MalformedHeader | AuthError::UnknownToken => {
                (StatusCode::UNAUTHORIZED, None)
            }
            AuthError::Expired { .. } => (StatusCode::UNAUTHORIZED, Some(ErrorCode::TokenExpired)),
            // A minter gone from the config revokes what it minted.
            AuthError::Revoked { .. } | AuthError::MinterGone { .. } => {
                (StatusCode::UNAUTHORIZED, Some(ErrorCode::TokenRevoked))
            }
            AuthError::ReadOnly => (StatusCode::FORBIDDEN, Some(ErrorCode::ReadOnly)),
            AuthError::NeedsJobToken
            | AuthError::NeedsOperator
            | AuthError::OwnerNotAllowed { .. } => (StatusCode::FORBIDDEN, None),
        };
        ApiError {
            status,
            message: e.to_string(),
            code,
            close: false,
        }
    }
}

/// One token's slow or piled-up requests: the body is left unread, so the connection
/// closes after the answer.
impl From<GuardError> for ApiError {
    fn from(e: GuardError) -> ApiError {
        let status = match e {
            GuardError::TooManyInProgress { .. } => StatusCode::TOO_MANY_REQUESTS,
            GuardError::BodyTooSlow(_) => StatusCode::REQUEST_TIMEOUT,
        };
        ApiError {
            close: true,
            ..ApiError::new(status, e.to_string())
        }
    }
}

impl IntoResponse for GuardError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

impl From<PrincipalError> for ApiError {
    fn from(e: PrincipalError) -> ApiError {
        match e {
            PrincipalError::Refused(e) => e.into(),
            PrincipalError::Registry(e) => e.into(),
        }
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
        if self.close {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
