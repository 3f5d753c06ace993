//! Deleting a cache: row first, then object. The row goes in one transaction with the
//! check whether live caches still read its object (then it is retained, not deleted:
//! docs/design.md, "Content-addressed caches"), so no completion can come to read an
//! object being deleted. A row without an object would be a broken hit; an object
//! without a row is only a leak the reaper's orphan sweep removes. By ULID, so a newer
//! cache of the same key is never touched. The cache's index object goes after its
//! row, before its object (best effort: the sweep deletes what is left).

use bmat_wire::api::{CacheSelector, DeletedCaches};
use tracing::info;

use super::access::{may_drop, selected};
use super::error::{CacheError, s3};
use crate::auth::Principal;
use crate::cache_index;
use crate::names;
use crate::registry::{CacheRemoval, CacheRow, Place};
use crate::state::{AppState, now_ms};

/// Deletes one cache (see the module doc).
pub async fn delete(st: &AppState, c: &CacheRow) -> Result<(), CacheError> {
    let ulid = c.ulid.clone();
    let removal = st.db.run(move |r| r.delete_cache(&ulid, now_ms())).await?;
    st.report_checks.forget(&c.ulid);
    if removal != CacheRemoval::Gone {
        // Retained or not, the object is no cache's any more: a rebuild must not find it.
        cache_index::forget(st, &c.ulid).await;
    }
    if removal == CacheRemoval::Unneeded {
        // Failing, the object is an orphan the reaper's sweep deletes.
        st.s3
            .delete_object(&st.object_name(&c.ulid))
            .await
            .map_err(s3("deleting the cache object"))?;
    }
    Ok(())
}

/// `DELETE /v1/caches/{key}`: a caller drops a cache of a place it may write.
pub async fn delete_by_key(
    st: &AppState,
    caller: &Principal,
    key: String,
    sel: CacheSelector,
) -> Result<(), CacheError> {
    may_drop(caller)?;
    names::key(&key)?;
    let (owner, scope) = selected(caller, sel, true)?;
    let scope = scope.unwrap_or_default();
    let found = {
        let (o, s, k) = (owner.clone(), scope.clone(), key.clone());
        st.db
            .run(move |r| {
                r.find_cache(
                    &Place {
                        owner: &o,
                        scope: &s,
                    },
                    &k,
                )
            })
            .await?
    };
    let Some(c) = found else {
        return Err(CacheError::NotFound { key, scope });
    };
    delete(st, &c).await?;
    info!(owner = %owner, scope = %scope, key = %key, "cache deleted by the client");
    Ok(())
}

/// Caches a delete by prefix lists and deletes at a time.
const DELETE_BATCH: u32 = 500;

/// `DELETE /v1/caches?scope=S&prefix=P`: a caller drops every cache of one place it
/// may write whose key starts with the prefix (the whole scope without one): a closed
/// pull request's caches in one call. A cache completed meanwhile may survive it.
pub async fn delete_matching(
    st: &AppState,
    caller: &Principal,
    sel: CacheSelector,
) -> Result<DeletedCaches, CacheError> {
    may_drop(caller)?;
    let prefix = sel.prefix.clone();
    if let Some(p) = &prefix {
        names::prefix("prefix", p)?;
    }
    let (owner, scope) = selected(caller, sel, true)?;
    let scope = scope.unwrap_or_default();
    let mut done = DeletedCaches {
        deleted: 0,
        bytes: 0,
    };
    let mut after: Option<String> = None;
    loop {
        let batch = {
            let (o, s, p, a) = (owner.clone(), scope.clone(), prefix.clone(), after.clone());
            st.db
                .read(move |r| {
                    let after = a.as_deref().map(|k| (s.as_str(), k));
                    r.list_caches(&o, Some(&s), p.as_deref(), after, DELETE_BATCH)
                })
                .await?
        };
        let Some(last) = batch.last() else { break };
        after = Some(last.key.clone());
        for c in &batch {
            delete(st, c).await?;
            done.deleted += 1;
            done.bytes += c.size;
        }
    }
    info!(
        owner = %owner,
        scope = %scope,
        prefix = prefix.as_deref().unwrap_or(""),
        deleted = done.deleted,
        bytes = done.bytes,
        "caches deleted by prefix"
    );
    Ok(done)
}
