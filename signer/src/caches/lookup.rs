//! A job's lookup: its own scope first, then each read scope in order; in each, the
//! exact key, then each fallback prefix in order, passing over candidates the client
//! already tried, and over caches of a format the client does not restore. A hit comes
//! with a presigned GET of its object and, for a cache of contents, of every other
//! object it reads.

use bmat_wire::api::{
    CacheHit, CacheRef, FORMAT_ARCHIVE, LookupRequest, LookupResponse, ObjectUrl,
};

use super::error::{CacheError, MAX_FALLBACKS, s3};
use super::usage;
use crate::auth::JobGrant;
use crate::lookup_id::Looked;
use crate::names;
use crate::registry::{CacheRow, ObjectRef, Place, Registry, RegistryError, UsageEvent};
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
    let Some((c, refs)) = found else {
        return Ok(LookupResponse { hit: None });
    };
    let expiry = st.cfg().timing.download_url_expiry();
    let presign = |ulid: &str| {
        st.s3
            .presign_get(&st.object_name(ulid), expiry)
            .map_err(s3("presigning the download"))
    };
    let url = presign(&c.ulid)?;
    let objects = refs
        .into_iter()
        .map(|r| {
            Ok(ObjectUrl {
                url: presign(&r.id)?,
                id: r.id,
                size: r.size,
            })
        })
        .collect::<Result<_, CacheError>>()?;
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
            format: c.format,
            id: Some(c.ulid),
            objects,
        }),
    })
}

/// The first cache in the job's search order (see the module doc) of a format the
/// client restores, and the other objects it reads, read together.
async fn find(
    st: &AppState,
    job: &JobGrant,
    req: LookupRequest,
) -> Result<Option<(CacheRow, Vec<ObjectRef>)>, CacheError> {
    let (owner, scopes) = (job.owner.clone(), job.search_order());
    let LookupRequest {
        key,
        fallbacks,
        exclude,
        formats,
        for_save: _,
    } = req;
    // A client that does not restore a format never sees its caches, as if absent.
    let unreadable = move |c: &CacheRow| c.format != FORMAT_ARCHIVE && !formats.contains(&c.format);
    let found = st
        .db
        .read(move |r| {
            r.snapshot(|r| {
                let Some(c) = first(r, &owner, &scopes, &key, &fallbacks, &exclude, &unreadable)?
                else {
                    return Ok(None);
                };
                let refs = r.refs_of(&c.ulid)?;
                Ok(Some((c, refs)))
            })
        })
        .await?;
    Ok(found)
}

/// The first candidate in `scopes`, in order: the exact key, then each fallback
/// prefix's newest, passing over those excluded and those `skip` refuses.
fn first(
    r: &Registry,
    owner: &str,
    scopes: &[String],
    key: &str,
    fallbacks: &[String],
    exclude: &[CacheRef],
    skip: &dyn Fn(&CacheRow) -> bool,
) -> Result<Option<CacheRow>, RegistryError> {
    for scope in scopes {
        let at = Place { owner, scope };
        let excluded: Vec<&str> = exclude
            .iter()
            .filter(|e| e.scope == *scope)
            .map(|e| e.key.as_str())
            .collect();
        let pass_over = |c: &CacheRow| excluded.contains(&c.key.as_str()) || skip(c);
        if let Some(c) = r.find_cache(&at, key)?.filter(|c| !pass_over(c)) {
            return Ok(Some(c));
        }
        for p in fallbacks {
            if let Some(c) = r.newest_with_prefix(&at, p, pass_over)? {
                return Ok(Some(c));
            }
        }
    }
    Ok(None)
}
