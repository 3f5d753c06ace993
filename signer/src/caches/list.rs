//! `GET /v1/caches`: a page of the caches of one owner (one scope or all), by scope
//! and key, with where the next page starts.

use bmat_wire::api::{CacheInfo, CacheList, CacheRef, CacheSelector};

use super::access::selected;
use super::error::CacheError;
use crate::auth::Principal;
use crate::names;
use crate::registry::CacheRow;
use crate::state::AppState;

/// Caches in one page of a list, at most (and by default).
const MAX_LIST_PAGE: u32 = 1000;

pub async fn list(
    st: &AppState,
    caller: &Principal,
    sel: CacheSelector,
) -> Result<CacheList, CacheError> {
    let limit = sel.limit.unwrap_or(MAX_LIST_PAGE).clamp(1, MAX_LIST_PAGE);
    let after = match (sel.after_scope.clone(), sel.after_key.clone()) {
        (Some(scope), Some(key)) => Some((scope, key)),
        (None, None) => None,
        _ => return Err(CacheError::HalfCursor),
    };
    let prefix = sel.prefix.clone();
    if let Some(p) = &prefix {
        names::prefix("prefix", p)?;
    }
    let (owner, scope) = selected(caller, sel, false)?;
    // One more than asked: whether there is a next page.
    let mut rows = st
        .db
        .read(move |r| {
            let after = after.as_ref().map(|(s, k)| (s.as_str(), k.as_str()));
            r.list_caches(
                &owner,
                scope.as_deref(),
                prefix.as_deref(),
                after,
                limit + 1,
            )
        })
        .await?;
    let next = (rows.len() > limit as usize).then(|| {
        rows.truncate(limit as usize);
        rows.last().map(|c| CacheRef {
            scope: c.scope.clone(),
            key: c.key.clone(),
        })
    });
    Ok(CacheList {
        caches: rows.into_iter().map(cache_info).collect(),
        next: next.flatten(),
    })
}

fn cache_info(c: CacheRow) -> CacheInfo {
    CacheInfo {
        owner: c.owner,
        scope: c.scope,
        key: c.key,
        size: c.size,
        sha256: c.sha256,
        created_at: c.created_at.div_euclid(1000),
        last_used_at: c.last_used_at.div_euclid(1000),
    }
}
