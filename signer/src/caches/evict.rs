//! Eviction, one routine for both reasons: caches unused for `limits.ttl_days`, and the
//! least recently used caches of owners over `limits.owner_quota`. Each cache goes as
//! a delete does (object first, then row) and counts as an eviction in its place.

use tracing::info;

use super::delete::delete;
use super::error::CacheError;
use super::usage;
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
    evict(st, old, Reason::Expired, None, out).await;
    Ok(())
}

/// Evicts each owner's least recently used caches until it is within its quota.
pub async fn over_quota(st: &AppState, out: &mut Evicted) -> Result<(), CacheError> {
    let quota = st.cfg().limits.owner_quota;
    let owners = st.db.run(move |r| r.owners_over_quota(quota)).await?;
    for (owner, total) in owners {
        let lru = st.db.run(move |r| r.caches_lru(&owner)).await?;
        evict(st, lru, Reason::OverQuota, Some(total - quota), out).await;
    }
    Ok(())
}

/// Deletes `candidates` in order until `to_free` bytes are freed (all of them when
/// `None`).
async fn evict(
    st: &AppState,
    candidates: Vec<CacheRow>,
    reason: Reason,
    to_free: Option<u64>,
    out: &mut Evicted,
) {
    let mut freed = 0u64;
    for c in candidates {
        if to_free.is_some_and(|bytes| freed >= bytes) {
            break;
        }
        if let Err(e) = delete(st, &c).await {
            out.errors.push(match reason {
                Reason::Expired => format!("deleting expired cache {}: {}", c.ulid, chain(&e)),
                Reason::OverQuota => format!("deleting cache {} for quota: {}", c.ulid, chain(&e)),
            });
            continue;
        }
        freed = freed.saturating_add(c.size);
        match reason {
            Reason::Expired => {
                info!(owner = %c.owner, key = %c.key, "cache unused past the TTL deleted")
            }
            Reason::OverQuota => {
                info!(owner = %c.owner, key = %c.key, size = c.size, "least recently used cache deleted: owner over quota")
            }
        }
        usage::count(st, &c.owner, &c.scope, UsageEvent::Eviction).await;
        out.ulids.push(c.ulid);
    }
}
