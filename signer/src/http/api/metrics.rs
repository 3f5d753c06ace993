//! The API's side of [`crate::metrics`]: every answer counted and timed by route
//! template, and `GET /metrics` on the metrics address.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::http::error::ApiError;
use crate::state::AppState;

/// Counts and times each request under its route template (`unmatched` when no route
/// matched).
pub(super) async fn observe(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| template(p.as_str()));
    let method = req.method().clone();
    let started = Instant::now();
    let resp = next.run(req).await;
    st.metrics.request(
        &endpoint,
        method.as_str(),
        resp.status().as_u16(),
        started.elapsed(),
    );
    resp
}

/// `/v1/uploads/{id}` as `/v1/uploads/:id`: braces in a label value trip up simple
/// exposition parsers and grep alike.
fn template(route: &str) -> String {
    route.replace('{', ":").replace('}', "")
}

/// The router of the metrics address: `GET /metrics`, no token.
pub fn router(st: AppState) -> Router {
    Router::new().route("/metrics", get(scrape)).with_state(st)
}

const OPENMETRICS: &str = "application/openmetrics-text";

async fn scrape(State(st): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let totals = st.db.read(|r| r.totals()).await?;
    // Prometheus asks for OpenMetrics when it can take it; anything else gets the
    // classic text format.
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(OPENMETRICS));
    let body = st.metrics.render(totals, openmetrics).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the metrics: {e}"),
        )
    })?;
    let content_type = if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    };
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn templates_name_parameters_with_a_colon() {
        assert_eq!(
            super::template("/v1/uploads/{id}/parts"),
            "/v1/uploads/:id/parts"
        );
        assert_eq!(super::template("/v1/lookup"), "/v1/lookup");
    }
}
