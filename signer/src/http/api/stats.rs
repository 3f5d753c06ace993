//! `GET /v1/stats[?owner=O][&scope=S]`: an operator reads the usage of its owners —
//! bytes stored against the quota (caches' and retained objects'), logical bytes
//! (what the caches would weigh as archives), caches, and the hits, misses and evictions of the
//! last day and week, per owner and per scope. Other owners are left out (an owner
//! named outright that the credential does not cover is refused).

use axum::Json;
use axum::extract::State;
use bmat_wire::api::{Activity, OwnerUsage, ScopeUsage, Usage, UsageSelector};

use super::extract::{ApiQuery, OperatorCaller};
use crate::http::error::ApiError;
use crate::names;
use crate::registry::{PlaceUsage, UsageFilter};
use crate::state::{AppState, now_ms};

pub(super) async fn stats(
    OperatorCaller(op): OperatorCaller,
    State(st): State<AppState>,
    ApiQuery(sel): ApiQuery<UsageSelector>,
) -> Result<Json<Usage>, ApiError> {
    if let Some(owner) = &sel.owner {
        names::owner(owner)?;
        op.require_owner(owner)?;
    }
    if let Some(scope) = &sel.scope {
        names::scope("scope", scope)?;
    }
    let places = {
        let (owner, scope) = (sel.owner.clone(), sel.scope.clone());
        st.db
            .read(move |r| {
                let filter = UsageFilter {
                    owner: owner.as_deref(),
                    scope: scope.as_deref(),
                };
                r.usage(filter, now_ms())
            })
            .await?
    };
    let places = places.into_iter().filter(|p| op.allows(&p.owner));
    let mut usage = by_owner(places, st.cfg().limits.owner_quota);
    // An owner asked for by name is answered even when it has nothing yet.
    if let Some(owner) = sel.owner
        && usage.owners.is_empty()
    {
        usage.owners.push(OwnerUsage {
            owner,
            quota: st.cfg().limits.owner_quota,
            ..OwnerUsage::default()
        });
    }
    Ok(Json(usage))
}

/// Places (sorted by owner, then scope) grouped under their owners, with the owners'
/// totals.
fn by_owner(places: impl IntoIterator<Item = PlaceUsage>, quota: u64) -> Usage {
    let mut owners: Vec<OwnerUsage> = Vec::new();
    for p in places {
        if owners.last().is_none_or(|o| o.owner != p.owner) {
            owners.push(OwnerUsage {
                owner: p.owner.clone(),
                quota,
                ..OwnerUsage::default()
            });
        }
        let Some(o) = owners.last_mut() else {
            continue;
        };
        o.bytes = o.bytes.saturating_add(p.bytes);
        o.logical_bytes = o.logical_bytes.saturating_add(p.logical_bytes);
        o.caches = o.caches.saturating_add(p.caches);
        add(&mut o.last_day, p.last_day);
        add(&mut o.last_week, p.last_week);
        o.scopes.push(ScopeUsage {
            scope: p.scope,
            bytes: p.bytes,
            logical_bytes: p.logical_bytes,
            caches: p.caches,
            last_day: p.last_day,
            last_week: p.last_week,
        });
    }
    Usage { owners }
}

fn add(sum: &mut Activity, a: Activity) {
    sum.hits = sum.hits.saturating_add(a.hits);
    sum.misses = sum.misses.saturating_add(a.misses);
    sum.evictions = sum.evictions.saturating_add(a.evictions);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(owner: &str, scope: &str, bytes: u64, hits: u64) -> PlaceUsage {
        let a = Activity {
            hits,
            ..Activity::default()
        };
        PlaceUsage {
            owner: owner.into(),
            scope: scope.into(),
            bytes,
            logical_bytes: 2 * bytes,
            caches: 1,
            last_day: a,
            last_week: a,
        }
    }

    #[test]
    fn owners_sum_their_scopes() {
        let u = by_owner(
            [
                place("a", "main", 10, 1),
                place("a", "pr", 5, 2),
                place("b", "main", 1, 0),
            ],
            100,
        );
        assert_eq!(u.owners.len(), 2);
        let a = &u.owners[0];
        assert_eq!(
            (a.bytes, a.logical_bytes, a.caches, a.quota, a.last_day.hits),
            (15, 30, 2, 100, 3)
        );
        assert_eq!(a.scopes.len(), 2);
        assert_eq!(u.owners[1].scopes[0].scope, "main");
    }
}
