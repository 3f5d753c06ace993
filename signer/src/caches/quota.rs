//! Which caches the quotas take, and in which order (docs/design.md, "Registry and S3
//! layout"): each unprotected scope keeps at most `limits.scope_quota` bytes, its least
//! recently used caches going first; then an owner over `limits.owner_quota` loses the
//! least recently used cache of the unprotected scope holding the most bytes, again and
//! again, and a protected scope's cache (least recently used first) only when no
//! unprotected one is left. So no scope's saves evict a protected scope's caches. Only
//! picks: the reaper's eviction ([`super::evict`]) deletes them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::config::Limits;
use crate::registry::CacheRow;

/// The owners a quota takes caches from: those over `owner_quota`, and those with an
/// unprotected scope over `scope_quota`. `places` is (owner, scope, bytes).
pub fn owners_over(places: &[(String, String, u64)], limits: &Limits) -> Vec<String> {
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    let mut over = BTreeSet::new();
    for (owner, scope, bytes) in places {
        let total = totals.entry(owner).or_default();
        *total = total.saturating_add(*bytes);
        if !limits.protects(scope) && *bytes > limits.scope_quota {
            over.insert(owner.as_str());
        }
    }
    over.extend(
        totals
            .into_iter()
            .filter(|(_, total)| *total > limits.owner_quota)
            .map(|(owner, _)| owner),
    );
    over.into_iter().map(str::to_owned).collect()
}

/// The caches of one owner that the quotas take, in the order they go. `lru` holds all
/// of the owner's caches, least recently used first; `retained` the bytes of its
/// retained objects by scope: a fixed cost of their scope, which only evicting the
/// caches that read them frees (later, once released).
pub fn victims(lru: Vec<CacheRow>, retained: &[(String, u64)], limits: &Limits) -> Vec<CacheRow> {
    let mut protected = Scope::default();
    let mut unprotected: BTreeMap<String, Scope> = BTreeMap::new();
    for (scope, bytes) in retained {
        let s = if limits.protects(scope) {
            &mut protected
        } else {
            unprotected.entry(scope.clone()).or_default()
        };
        s.bytes = s.bytes.saturating_add(*bytes);
    }
    for c in lru {
        if limits.protects(&c.scope) {
            protected.push(c);
        } else {
            unprotected.entry(c.scope.clone()).or_default().push(c);
        }
    }
    let mut taken = Vec::new();
    for scope in unprotected.values_mut() {
        while scope.bytes > limits.scope_quota
            && let Some(c) = scope.pop()
        {
            taken.push(c);
        }
    }
    let held = |u: &BTreeMap<String, Scope>, p: &Scope| {
        u.values()
            .fold(p.bytes, |sum, s| sum.saturating_add(s.bytes))
    };
    while held(&unprotected, &protected) > limits.owner_quota {
        let biggest = unprotected
            .values_mut()
            .filter(|s| !s.lru.is_empty())
            .max_by_key(|s| s.bytes);
        let Some(c) = biggest.unwrap_or(&mut protected).pop() else {
            break;
        };
        taken.push(c);
    }
    taken
}

/// The caches of one scope (or of all protected scopes), least recently used first,
/// and their bytes.
#[derive(Default)]
struct Scope {
    bytes: u64,
    lru: VecDeque<CacheRow>,
}

impl Scope {
    fn push(&mut self, c: CacheRow) {
        self.bytes = self.bytes.saturating_add(c.size);
        self.lru.push_back(c);
    }

    fn pop(&mut self) -> Option<CacheRow> {
        let c = self.lru.pop_front()?;
        self.bytes = self.bytes.saturating_sub(c.size);
        Some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: &str = "refs/heads/main";

    fn limits(owner_quota: u64, scope_quota: u64) -> Limits {
        Limits {
            owner_quota,
            scope_quota,
            ..Limits::default()
        }
    }

    /// `(scope, key, size)`, least recently used first.
    fn caches(list: &[(&str, &str, u64)]) -> Vec<CacheRow> {
        list.iter()
            .enumerate()
            .map(|(i, (scope, key, size))| CacheRow {
                owner: "o".into(),
                scope: (*scope).into(),
                key: (*key).into(),
                ulid: format!("U{i}"),
                size: *size,
                sha256: "00".into(),
                extent: Default::default(),
                created_at: i as i64,
                last_used_at: i as i64,
                restored_at: None,
                format: 1,
                logical_size: None,
            })
            .collect()
    }

    fn keys(taken: Vec<CacheRow>) -> Vec<String> {
        taken.into_iter().map(|c| c.key).collect()
    }

    #[test]
    fn a_pull_request_filling_the_owner_quota_pays_with_its_own_caches() {
        // Issue 17's numbers in MiB: main saved two 9 MiB caches, then a pull request
        // three; the owner quota is 30 MiB.
        let lru = caches(&[
            (MAIN, "main-1", 9),
            (MAIN, "main-2", 9),
            ("refs/pull/7/merge", "pr-1", 9),
            ("refs/pull/7/merge", "pr-2", 9),
            ("refs/pull/7/merge", "pr-3", 9),
        ]);
        assert_eq!(keys(victims(lru, &[], &limits(30, 1000))), ["pr-1", "pr-2"]);
    }

    #[test]
    fn among_unprotected_scopes_the_biggest_pays() {
        let lru = caches(&[
            ("refs/pull/2/merge", "b-1", 4),
            ("refs/pull/1/merge", "a-1", 5),
            (MAIN, "main-1", 10),
            ("refs/pull/1/merge", "a-2", 5),
            ("refs/pull/2/merge", "b-2", 4),
            ("refs/pull/1/merge", "a-3", 5),
        ]);
        // 33 bytes held, 20 allowed: a (15) pays twice, then b (8 against a's 5).
        assert_eq!(
            keys(victims(lru, &[], &limits(20, 1000))),
            ["a-1", "a-2", "b-1"]
        );
    }

    #[test]
    fn an_unprotected_scope_over_its_quota_loses_its_own_caches() {
        let lru = caches(&[
            ("refs/pull/1/merge", "a-1", 5),
            (MAIN, "main-1", 50),
            ("refs/pull/1/merge", "a-2", 5),
            ("refs/pull/1/merge", "a-3", 5),
            ("default", "old", 50),
        ]);
        // Owner within its quota; the PR over its 10, main and `default` never.
        let l = limits(1000, 10);
        assert_eq!(keys(victims(lru.clone(), &[], &l)), ["a-1"]);
        let places = |rows: &[CacheRow]| -> Vec<(String, String, u64)> {
            let mut by: BTreeMap<(String, String), u64> = BTreeMap::new();
            for c in rows {
                *by.entry((c.owner.clone(), c.scope.clone())).or_default() += c.size;
            }
            by.into_iter().map(|((o, s), b)| (o, s, b)).collect()
        };
        assert_eq!(owners_over(&places(&lru), &l), ["o"]);
        assert!(owners_over(&places(&lru[..3]), &l).is_empty());
        // A protected scope counts only towards its owner's quota.
        let main = places(&lru[1..2]);
        assert!(owners_over(&main, &limits(50, 0)).is_empty());
        assert_eq!(owners_over(&main, &limits(49, 0)), ["o"]);
    }

    #[test]
    fn retained_objects_are_a_fixed_cost_of_their_scope() {
        let lru = caches(&[
            ("refs/pull/1/merge", "a-1", 5),
            (MAIN, "main-1", 10),
            ("refs/pull/1/merge", "a-2", 5),
        ]);
        // The pull request stores 10 in caches and 6 retained: over its 12, it pays
        // with its oldest cache; its retained bytes stay.
        let retained = [("refs/pull/1/merge".to_owned(), 6)];
        assert_eq!(
            keys(victims(lru.clone(), &retained, &limits(1000, 12))),
            ["a-1"]
        );
        // Owner quota: 26 held, 20 allowed; main's retained bytes count too.
        let retained = [(MAIN.to_owned(), 6)];
        assert_eq!(
            keys(victims(lru, &retained, &limits(20, 1000))),
            ["a-1", "a-2"]
        );
    }

    #[test]
    fn protected_caches_go_least_recently_used_first_once_no_unprotected_is_left() {
        let lru = caches(&[
            (MAIN, "main-1", 10),
            ("default", "old", 10),
            ("refs/pull/1/merge", "a-1", 5),
            (MAIN, "main-2", 10),
        ]);
        assert_eq!(
            keys(victims(lru, &[], &limits(12, 1000))),
            ["a-1", "main-1", "old"]
        );
    }
}
