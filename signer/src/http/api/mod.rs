//! The HTTP API under `/v1` (see `bmat_wire::api` for the table of endpoints).
//!
//! Every endpoint but health needs `Authorization: Bearer <token>`. A job token acts in
//! one owner's scope and reads its read scopes ([`crate::auth`]); an operator credential
//! mints tokens ([`tokens`]) and lists and deletes caches of its owners. Nothing crosses
//! owners: another owner's (or scope's) upload is answered 404, like an unknown one.
//! Every error is an `ErrorBody` with one line a person can act on.

mod caches;
mod extract;
pub mod metrics;
mod service;
mod stats;
mod tokens;
mod uploads;

use axum::Router;
use axum::routing::{delete, get, post};

use crate::http::guard::{InProgress, guard};
use crate::state::AppState;

/// Every route of the API, observed by the metrics layer.
pub fn router(state: AppState) -> Router {
    let guarded = (state.clone(), InProgress::default());
    Router::new()
        .route("/v1/lookup", post(caches::lookup))
        .route("/v1/uploads", post(uploads::begin))
        .route(
            "/v1/uploads/{id}",
            get(uploads::status).delete(uploads::abort),
        )
        .route("/v1/uploads/{id}/parts", post(uploads::part_urls))
        .route("/v1/uploads/{id}/complete", post(uploads::complete))
        .route(
            "/v1/caches",
            get(caches::list).delete(caches::delete_matching),
        )
        .route("/v1/caches/", delete(caches::delete_empty_key))
        .route("/v1/caches/{key}", delete(caches::delete))
        .route("/v1/reports", post(caches::report))
        .route("/v1/tokens", post(tokens::mint))
        .route("/v1/tokens/{id}", delete(tokens::revoke))
        .route("/v1/stats", get(stats::stats))
        // Every route above; health stays answered whatever one token does.
        .route_layer(axum::middleware::from_fn_with_state(guarded, guard))
        .route("/v1/health", get(service::health))
        .fallback(service::no_route)
        .method_not_allowed_fallback(service::wrong_method)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::observe,
        ))
        .with_state(state)
}
