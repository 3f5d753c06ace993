//! Counting lookups and evictions in the registry's usage table, for operators' eyes:
//! a failure to count is logged, never the caller's failure.

use tracing::warn;

use crate::registry::{Place, UsageEvent};
use crate::state::{AppState, now_ms};

/// Counts a lookup or an eviction of `owner`'s `scope`.
pub async fn count(st: &AppState, owner: &str, scope: &str, event: UsageEvent) {
    let (owner, scope) = (owner.to_owned(), scope.to_owned());
    let counted = st
        .db
        .run(move |r| {
            let at = Place {
                owner: &owner,
                scope: &scope,
            };
            r.record_usage(&at, event, now_ms())
        })
        .await;
    if let Err(e) = counted {
        warn!("cannot count usage ({event:?}): {e:#}");
    }
}
