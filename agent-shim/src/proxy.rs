//! The forwarding itself: every request goes to the signer unchanged but for the
//! `Authorization` header; answers stream through (request bodies were read whole by
//! `guard`).

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Clone)]
pub struct Upstream {
    base: String,
    bearer: HeaderValue,
    http: reqwest::Client,
}

impl Upstream {
    pub fn new(base: String, token: String) -> anyhow::Result<Upstream> {
        let mut bearer = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            anyhow::anyhow!("the token holds characters not allowed in an HTTP header")
        })?;
        bearer.set_sensitive(true);
        // No overall timeout: answers may stream; the signer's own limits apply.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Upstream { base, bearer, http })
    }
}

pub fn router(upstream: Upstream) -> Router {
    Router::new().fallback(forward).with_state(upstream)
}

async fn forward(State(up): State<Upstream>, req: Request) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let url = format!("{}{}", up.base, path);

    let mut out = up
        .http
        .request(method.clone(), &url)
        // Whatever the client sent is replaced: the shim's token is the job's identity.
        .header(header::AUTHORIZATION, up.bearer.clone());
    if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
        out = out.header(header::CONTENT_TYPE, ct.clone());
    }
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH) {
        out = out.header(header::CONTENT_LENGTH, len.clone());
    }
    let body = reqwest::Body::wrap_stream(req.into_body().into_data_stream());

    let response = match out.body(body).send().await {
        Ok(answer) => {
            let status = answer.status();
            let mut builder = Response::builder().status(status);
            for name in [header::CONTENT_TYPE, header::CONTENT_LENGTH] {
                if let Some(v) = answer.headers().get(&name) {
                    builder = builder.header(name, v.clone());
                }
            }
            builder
                .body(Body::from_stream(answer.bytes_stream()))
                .unwrap_or_else(|e| unreachable_signer(&up.base, &e.to_string()))
        }
        Err(e) => unreachable_signer(&up.base, &error_chain(&e)),
    };
    tracing::info!(
        "{} {} {} {}ms",
        method,
        path,
        response.status().as_u16(),
        started.elapsed().as_millis()
    );
    response
}

fn unreachable_signer(base: &str, detail: &str) -> Response {
    let body = bmat_wire::api::ErrorBody {
        error: format!("signer unreachable at {base}: {detail}"),
        code: None,
    };
    (StatusCode::BAD_GATEWAY, axum::Json(body)).into_response()
}

/// reqwest's Display stops at the outer layer ("error sending request"); the cause
/// ("connection refused") is what a person needs.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
