//! What answers about the service itself: health, and every request that matches no
//! route or no method.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use bmat_wire::api::Health;

use crate::http::error::ApiError;
use crate::state::AppState;

/// 200 when the registry answers, every background task is up and no other signer has
/// taken the prefix's lease; 503 naming what is down otherwise (`prefix lease`: another
/// signer holds the prefix, so this one deletes and aborts nothing).
pub(super) async fn health(
    State(st): State<AppState>,
) -> Result<(StatusCode, Json<Health>), ApiError> {
    st.db.run(|r| r.ping()).await?;
    let mut down: Vec<String> = st.tasks.down().into_iter().map(str::to_owned).collect();
    if st.lease.lost().is_some() {
        down.push("prefix lease".to_owned());
    }
    let status = if down.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((
        status,
        Json(Health {
            ok: down.is_empty(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            down,
        }),
    ))
}

pub(super) async fn no_route() -> ApiError {
    ApiError::not_found("no such endpoint; the API lives under /v1")
}

pub(super) async fn wrong_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint",
    )
}
