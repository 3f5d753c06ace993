//! What answers about the service itself: health, and every request that matches no
//! route or no method.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use bmat_wire::api::Health;

use crate::http::error::ApiError;
use crate::state::AppState;

/// 200 when the registry answers and every background task is up; 503 naming the
/// tasks that are down otherwise.
pub(super) async fn health(
    State(st): State<AppState>,
) -> Result<(StatusCode, Json<Health>), ApiError> {
    st.db.run(|r| r.ping()).await?;
    let down: Vec<String> = st.tasks.down().into_iter().map(str::to_owned).collect();
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
