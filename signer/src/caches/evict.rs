//! Eviction, one routine for both reasons: caches unused for `limits.ttl_days`, and the
//! caches the quotas take ([`super::quota`] picks them). Each cache goes as a delete
//! does (row, then object unless retained) and counts as an eviction in its place.

use tracing::info;

use super::delete::delete;
use super::error::CacheError;
use super::{quota, usage};
use crate::registry::{CacheRow, UsageEvent};
use crate::state::{AppState, ms_ago};
use crate::text::chain;

/// Why caches are evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Unused past the TTL.
    Expired,
    /// Their owner is over its quota.
    OverQuota,
}

/// What evictions did: the ULIDs of the caches deleted, and one line per cache that
/// could not be.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Evicted {
    pub ulids: Vec<String>,
    pub errors: Vec<String>,
}

/// Evicts every cache unused since the TTL.
pub async fn expired(st: &AppState, out: &mut Evicted) -> Result<(), CacheError> {
    let cutoff = ms_ago(st.cfg().limits.ttl());
    let old = st.db.run(move |r| r.caches_unused_since(cutoff)).await?;
    evict(st, old, Reason::Expired, out).await;
    Ok(())
}

/// Evicts what the scope and owner quotas take, owner by owner.
pub async fn over_quota(st: &AppState, out: &mut Evicted) -> Result<(), CacheError> {
    let cfg = st.cfg();
    let places = st.db.run(|r| r.place_bytes()).await?;
    for owner in quota::owners_over(&places, &cfg.limits) {
        let (lru, retained) = st
            .db
            .run(move |r| Ok((r.caches_lru(&owner)?, r.retained_bytes(&owner)?)))
            .await?;
        let victims = quota::victims(lru, &retained, &cfg.limits);
        evict(st, victims, Reason::OverQuota, out).await;
    }
    Ok(())
}

/// Deletes `caches`, in order.
async fn evict(st: &AppState, caches: Vec<CacheRow>, reason: Reason, out: &mut Evicted) {
    for c in caches {
        if let Err(e) = delete(st, &c).await {
            out.errors.push(match reason {
                Reason::Expired => format!("deleting expired cache {}: {}", c.ulid, chain(&e)),
                Reason::OverQuota => format!("deleting cache {} for quota: {}", c.ulid, chain(&e)),
            });
            continue;
        }
        match reason {
            Reason::Expired => {
                info!(owner = %c.owner, key = %c.key, "cache unused past the TTL deleted")
            }
            Reason::OverQuota => {
                info!(owner = %c.owner, scope = %c.scope, key = %c.key, size = c.size, "cache deleted for quota")
            }
        }
        usage::count(st, &c.owner, &c.scope, UsageEvent::Eviction).await;
        out.ulids.push(c.ulid);
    }
}
