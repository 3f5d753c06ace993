//! A job's lookup: its own scope first, then each read scope in order; in each, the
//! exact key, then each fallback prefix in order, passing over candidates the client
//! already tried. A hit comes with a presigned GET of its object.

use bmat_wire::api::{CacheHit, LookupRequest, LookupResponse};

use super::error::{CacheError, MAX_FALLBACKS, s3};
use super::usage;
use crate::auth::JobGrant;
use crate::lookup_id::Looked;
use crate::names;
use crate::registry::{CacheRow, Place, UsageEvent};
use crate::state::{AppState, now_ms};

pub async fn lookup(
    st: &AppState,
    job: &JobGrant,
    req: LookupRequest,
) -> Result<LookupResponse, CacheError> {
    names::key(&req.key)?;
    if req.fallbacks.len() > MAX_FALLBACKS {
        return Err(CacheError::TooManyFallbacks(req.fallbacks.len()));
    }
    for p in &req.fallbacks {
        names::prefix("fallback prefix", p)?;
    }
    if req.exclude.len() > MAX_FALLBACKS {
        return Err(CacheError::TooManyExcluded(req.exclude.len()));
    }
    let found = find(st, job, req).await?;
    // Counted in the asking job's own scope, whichever scope the hit came from.
    st.metrics.lookup(found.is_some());
    let event = match found {
        Some(_) => UsageEvent::Hit,
        None => UsageEvent::Miss,
    };
    usage::count(st, &job.owner, &job.scope, event).await;
    let Some(c) = found else {
        return Ok(LookupResponse { hit: None });
    };
    let url = st
        .s3
        .presign_get(
            &st.object_name(&c.ulid),
            st.cfg().timing.download_url_expiry(),
        )
        .map_err(s3("presigning the download"))?;
    // The last use moves when the job reports a successful restore, not here: a cache
    // that fails every restore must age out.
    let issued_at_ms = now_ms();
    let lookup_id = st.lookup_key.issue(
        &Looked {
            owner: &job.owner,
            job_scope: &job.scope,
            cache_scope: &c.scope,
            key: &c.key,
            sha256: &c.sha256,
        },
        issued_at_ms,
    );
    Ok(LookupResponse {
        hit: Some(CacheHit {
            key: c.key,
            url,
            size: c.size,
            sha256: c.sha256,
            created_at: c.created_at.div_euclid(1000),
            own_scope: c.scope == job.scope,
            scope: c.scope,
            extent: c.extent,
            issued_at_ms,
            lookup_id: Some(lookup_id),
            format: bmat_wire::api::FORMAT_ARCHIVE,
            id: None,
            objects: vec![],
        }),
    })
}

/// The first cache in the job's search order (see the module doc).
async fn find(
    st: &AppState,
    job: &JobGrant,
    req: LookupRequest,
) -> Result<Option<CacheRow>, CacheError> {
    let (owner, scopes) = (job.owner.clone(), job.search_order());
    let LookupRequest {
        key,
        fallbacks,
        exclude,
        formats: _,
        for_save: _,
    } = req;
    let found = st
        .db
        .read(move |r| {
            for scope in &scopes {
                let at = Place {
                    owner: &owner,
                    scope,
                };
                let excluded: Vec<&str> = exclude
                    .iter()
                    .filter(|e| e.scope == *scope)
                    .map(|e| e.key.as_str())
                    .collect();
                if !excluded.contains(&key.as_str())
                    && let Some(c) = r.find_cache(&at, &key)?
                {
                    return Ok(Some(c));
                }
                for p in &fallbacks {
                    if let Some(c) = r.newest_with_prefix(&at, p, &excluded)? {
                        return Ok(Some(c));
                    }
                }
            }
            Ok(None)
        })
        .await?;
    Ok(found)
}
