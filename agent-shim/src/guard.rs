//! What keeps slow requests from piling up in the shim (it holds one token, so one cap
//! for all): at most `--max-in-flight` requests are forwarded at once, more are
//! answered 429 at once; each request's body must arrive whole within
//! `--body-timeout-secs` of its head, else 408. Both answers close the connection.
//! Health is never held back. Request bodies are small JSON (archives go straight to
//! S3), so the shim reads one whole, up to [`MAX_BODY`], before forwarding it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

/// The largest request body forwarded: the signer's own limit.
pub const MAX_BODY: usize = 2 * 1024 * 1024;

#[derive(Clone)]
pub struct Guard {
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    body_timeout: Duration,
}

impl Guard {
    pub fn new(max_in_flight: usize, body_timeout: Duration) -> Guard {
        Guard {
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
            body_timeout,
        }
    }
}

pub async fn guard(State(g): State<Guard>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/v1/health" {
        return next.run(req).await;
    }
    let Ok(_forwarding) = g.in_flight.clone().try_acquire_owned() else {
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "the shim already forwards {} requests (--max-in-flight); try again when one has ended",
                g.max_in_flight
            ),
        );
    };
    let (parts, body) = req.into_parts();
    let body =
        match tokio::time::timeout(g.body_timeout, axum::body::to_bytes(body, MAX_BODY)).await {
            Ok(Ok(body)) => body,
            Ok(Err(e)) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the request body (at most {MAX_BODY} bytes): {e}"),
                );
            }
            Err(_) => {
                return refuse(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request body did not arrive within {} s (--body-timeout-secs)",
                        g.body_timeout.as_secs()
                    ),
                );
            }
        };
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// An error answer after which the connection closes: the body may be left unread.
fn refuse(status: StatusCode, error: String) -> Response {
    let body = bmat_wire::api::ErrorBody { error, code: None };
    let mut resp = (status, axum::Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}
