//! What became of a restore, as its job reports it, and healing. A success reported by
//! a job of the cache's own scope moves the cache's last use; one from a job that only
//! reads the scope moves nothing. A problem may drop the cache, so that the next lookup finds the
//! next candidate and the next save of the key writes a good one, instead of every
//! restore failing on it while every save says "exists":
//! - missing, or corrupt: the signer checks S3 itself (the object's presence, size and
//!   SHA-256) and drops the cache only if S3 confirms, so no job can drop a good cache
//!   by lying or by a bad download. That check reads the whole object, so it runs at
//!   most once per cache and window however many report it (`docs/design.md`,
//!   "Healing"), and each token may send only so many reports per window;
//! - undecodable (the bytes are intact but do not unpack): only S3 can be checked, the
//!   archive's content cannot. Only a writing job of the cache's own scope may drop
//!   it, and its word is taken only when no job has reported a good restore since its
//!   lookup, whose time the signer reads from its own lookup id (`crate::lookup_id`),
//!   never from the client; a job that only reads the scope (a pull request reading
//!   main, a read-only token) cannot drop it.

use bmat_wire::api::{CacheProblem, ReportAnswer, ReportRequest};
use tracing::{info, warn};

use super::delete::delete;
use super::error::{CacheError, s3};
use crate::auth::JobGrant;
use crate::lookup_id::Looked;
use crate::names;
use crate::registry::{CacheRow, Place};
use crate::state::{AppState, now_ms};

pub async fn report(
    st: &AppState,
    job: &JobGrant,
    req: ReportRequest,
) -> Result<ReportAnswer, CacheError> {
    spend_budget(st, job)?;
    names::key(&req.key)?;
    names::scope("scope", &req.scope)?;
    // Only caches the job may read; anything else is as unknown as a missing one.
    let found = if job.search_order().contains(&req.scope) {
        let (owner, scope, key) = (job.owner.clone(), req.scope.clone(), req.key.clone());
        st.db
            .read(move |r| {
                r.find_cache(
                    &Place {
                        owner: &owner,
                        scope: &scope,
                    },
                    &key,
                )
            })
            .await?
    } else {
        None
    };
    // Another archive of the key (replaced meanwhile): the report is not about it.
    let Some(cache) = found.filter(|c| c.sha256 == req.sha256) else {
        return Ok(ReportAnswer { dropped: false });
    };
    let Some(problem) = req.problem else {
        // A good restore moves the last use (LRU) and the heal guard (`restored_at`), and
        // only a job of the cache's own scope may move them: a pull request reading main
        // would otherwise keep main's broken cache from being dropped by main's report.
        if cache.scope == job.scope {
            let ulid = cache.ulid.clone();
            st.db.run(move |r| r.touch_cache(&ulid, now_ms())).await?;
        }
        return Ok(ReportAnswer { dropped: false });
    };
    let drop_it = match problem {
        CacheProblem::Missing | CacheProblem::Corrupt => !intact(st, &cache).await?,
        CacheProblem::Undecodable => {
            // The time of the job's lookup, as the signer's own lookup id proves it.
            let looked_up_at = req.lookup_id.as_deref().and_then(|id| {
                st.lookup_key.verify(
                    &Looked {
                        owner: &job.owner,
                        job_scope: &job.scope,
                        cache_scope: &cache.scope,
                        key: &cache.key,
                        sha256: &cache.sha256,
                    },
                    id,
                )
            });
            job.write
                && cache.scope == job.scope
                && (looked_up_at.is_some_and(|at| cache.restored_at.is_none_or(|t| t < at))
                    || !intact(st, &cache).await?)
        }
    };
    if !drop_it {
        info!(owner = %job.owner, scope = %cache.scope, key = %cache.key, ?problem, "cache reported broken; kept");
        return Ok(ReportAnswer { dropped: false });
    }
    delete(st, &cache).await?;
    warn!(owner = %job.owner, scope = %cache.scope, key = %cache.key, ?problem, "cache reported broken; dropped");
    Ok(ReportAnswer { dropped: true })
}

/// Counts the report against its token's budget: `limits.reports_per_token` per
/// window. A success counts too, cheap as it is.
fn spend_budget(st: &AppState, job: &JobGrant) -> Result<(), CacheError> {
    let limit = st.cfg().limits.reports_per_token;
    if st.report_budget.spend(&job.token, limit) {
        return Ok(());
    }
    Err(CacheError::ReportBudgetSpent {
        limit,
        window_secs: st.report_budget.window().as_secs(),
    })
}

/// Whether S3 holds the cache's object whole (present, its size, its SHA-256). The
/// object is read at most once per cache and window: reports that come meanwhile wait
/// for that read's verdict, later ones get it remembered; a delete forgets it.
async fn intact(st: &AppState, cache: &CacheRow) -> Result<bool, CacheError> {
    st.report_checks
        .get_or_check(&cache.ulid, || async {
            st.metrics.report_check();
            let digest = st
                .s3
                .object_digest(&st.object_name(&cache.ulid))
                .await
                .map_err(s3("checking a reported cache"))?;
            Ok(digest.is_some_and(|d| d == (cache.size, cache.sha256.clone())))
        })
        .await
}
