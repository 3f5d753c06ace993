//! What keeps one token holder from starving the signer with slow requests
//! (`docs/design.md`, "Processes and deployment"): each token may have
//! `limits.max_connections_per_token` API requests in progress at once (more are
//! answered 429 at once), and each request's body must arrive whole within
//! `timing.body_read_timeout_secs` of its head (else 408). Both answers close the
//! connection. Health is not guarded: it carries no token and reads no body.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use crate::auth::{bearer, token_hash};
use crate::state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error(
        "this token already has {limit} requests in progress \
         (limits.max_connections_per_token); try again when one has ended"
    )]
    TooManyInProgress { limit: usize },
    #[error("the request body did not arrive within {} s (timing.body_read_timeout_secs)", .0.as_secs())]
    BodyTooSlow(Duration),
}

/// When the request's body must have arrived whole; the API's body extractor reads it.
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline {
    pub at: Instant,
    pub after: Duration,
}

/// Requests in progress, by token digest.
#[derive(Clone, Default)]
pub struct InProgress(Arc<Mutex<HashMap<String, usize>>>);

/// One request's place in [`InProgress`], given back when it ends.
struct Place {
    counts: InProgress,
    token: String,
}

impl InProgress {
    fn enter(&self, token: String, limit: usize) -> Option<Place> {
        let mut counts = self.lock();
        let n = counts.entry(token.clone()).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(Place {
            counts: self.clone(),
            token,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut counts = self.counts.lock();
        if let Some(n) = counts.get_mut(&self.token) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.token);
            }
        }
    }
}

/// The middleware: sets the body deadline, and counts the request against its token
/// (a request without a well-formed bearer token is refused by its route before it
/// reads a body).
pub async fn guard(
    State((st, in_progress)): State<(AppState, InProgress)>,
    mut req: Request,
    next: Next,
) -> Response {
    let cfg = st.cfg();
    let after = cfg.timing.body_read_timeout();
    req.extensions_mut().insert(BodyDeadline {
        at: Instant::now() + after,
        after,
    });
    let token = bearer(
        req.headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes()),
    )
    .ok()
    .map(token_hash);
    let Some(token) = token else {
        return next.run(req).await;
    };
    let limit = cfg.limits.max_connections_per_token;
    let Some(_place) = in_progress.enter(token, limit) else {
        return GuardError::TooManyInProgress { limit }.into_response();
    };
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_token_has_its_own_places_given_back_when_a_request_ends() {
        let p = InProgress::default();
        let a1 = p.enter("a".into(), 2).expect("a first");
        let _a2 = p.enter("a".into(), 2).expect("a second");
        assert!(p.enter("a".into(), 2).is_none());
        assert!(p.enter("b".into(), 2).is_some());
        drop(a1);
        assert!(p.enter("a".into(), 2).is_some());
    }
}
