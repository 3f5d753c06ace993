//! `POST /v1/tokens` and `DELETE /v1/tokens/{id}`: an operator credential mints job
//! tokens for its owners and revokes them. The token is returned once; the registry
//! keeps its SHA-256.

use axum::Json;
use axum::extract::State;
use bmat_wire::api::{MintRequest, MintedToken, Revoked};
use tracing::info;

use super::extract::{ApiJson, ApiPath, OperatorCaller};
use crate::auth::{new_token_secret, token_hash};
use crate::http::error::ApiError;
use crate::names;
use crate::registry::JobTokenRow;
use crate::state::{AppState, now_ms};
use crate::uploads::lifecycle::canonical_ulid;

/// More read scopes than this is a mistake, not a search order.
const MAX_READ_SCOPES: usize = 16;

pub(super) async fn mint(
    OperatorCaller(op): OperatorCaller,
    State(st): State<AppState>,
    ApiJson(req): ApiJson<MintRequest>,
) -> Result<Json<MintedToken>, ApiError> {
    names::owner(&req.owner)?;
    op.require_owner(&req.owner)?;
    names::scope("scope", &req.scope)?;
    if req.read_scopes.len() > MAX_READ_SCOPES {
        return Err(ApiError::bad_request(format!(
            "{} read scopes given; at most {MAX_READ_SCOPES} are allowed",
            req.read_scopes.len()
        )));
    }
    for r in &req.read_scopes {
        names::scope("read scope", r)?;
    }
    let cfg = st.cfg();
    let policy = &cfg.job_tokens;
    let ttl = req.ttl_seconds.unwrap_or(policy.default_ttl_secs);
    if ttl == 0 || ttl > policy.max_ttl_secs {
        return Err(ApiError::bad_request(format!(
            "ttl_seconds = {ttl}: must be from 1 to {} (job_tokens.max_ttl_secs)",
            policy.max_ttl_secs
        )));
    }
    let now = now_ms();
    let secret = new_token_secret();
    let row = JobTokenRow {
        id: ulid::Ulid::new().to_string(),
        owner: req.owner,
        scope: req.scope,
        read_scopes: req.read_scopes,
        write: req.write,
        minted_by: op.name.clone(),
        created_at: now,
        // ttl ≤ max_ttl_secs, which the config keeps small: no overflow.
        expires_at: now.saturating_add(i64::try_from(ttl.saturating_mul(1000)).unwrap_or(i64::MAX)),
        revoked_at: None,
    };
    {
        let (row, hash) = (row.clone(), token_hash(&secret));
        st.db.run(move |r| r.insert_job_token(&row, &hash)).await?;
    }
    info!(
        operator = %op.name, token = %row.id, owner = %row.owner, scope = %row.scope,
        read_scopes = ?row.read_scopes, write = row.write, ttl_secs = ttl,
        "job token minted"
    );
    Ok(Json(MintedToken {
        token: secret,
        id: row.id,
        expires_at: row.expires_at.div_euclid(1000),
    }))
}

pub(super) async fn revoke(
    OperatorCaller(op): OperatorCaller,
    State(st): State<AppState>,
    ApiPath(id): ApiPath,
) -> Result<Json<Revoked>, ApiError> {
    let id = canonical_ulid(&id).ok_or_else(|| ApiError::bad_request("invalid token id"))?;
    let found = {
        let id = id.clone();
        st.db.run(move |r| r.job_token(&id)).await?
    };
    // A token of an owner the operator may not act for is as unknown as a missing one.
    match found {
        Some(t) if op.allows(&t.owner) => {
            let id = t.id.clone();
            st.db
                .run(move |r| r.revoke_job_token(&id, now_ms()))
                .await?;
            info!(operator = %op.name, token = %t.id, owner = %t.owner, "job token revoked");
            Ok(Json(Revoked { revoked: true }))
        }
        _ => Err(ApiError::not_found(format!("no job token {id}"))),
    }
}
