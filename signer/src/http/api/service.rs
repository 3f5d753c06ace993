//! What answers about the service itself: health, and every request that matches no
//! route or no method.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use bmat_wire::api::Health;

use crate::http::error::ApiError;
use crate::state::AppState;

pub(super) async fn health(State(st): State<AppState>) -> Result<Json<Health>, ApiError> {
    st.db.run(|r| r.ping()).await?;
    Ok(Json(Health {
        ok: true,
        version: env!("CARGO_PKG_VERSION").to_owned(),
    }))
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
