//! What a rebuild keeps (docs/design.md, "Registry and S3 layout": the registry is an
//! index), from the index objects read and the cache objects that exist: the caches
//! to insert, the objects they read that no kept cache owns (retained), and what is
//! skipped and why. No I/O.

use std::collections::{HashMap, HashSet};

use bmat_wire::api::FORMAT_CONTENTS;
use serde::Serialize;

use crate::cache_index::CacheIndex;
use crate::registry::RetainedObject;

/// An index object that gives no cache, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub id: String,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Plan {
    /// By owner, scope and key.
    pub caches: Vec<CacheIndex>,
    pub retained: Vec<RetainedObject>,
    pub skipped: Vec<Skipped>,
}

impl Plan {
    pub fn contents(&self) -> usize {
        self.caches
            .iter()
            .filter(|c| c.format == FORMAT_CONTENTS)
            .count()
    }

    pub fn owners(&self) -> usize {
        self.caches
            .iter()
            .map(|c| c.owner.as_str())
            .collect::<HashSet<_>>()
            .len()
    }
}

/// `found`: each index object's id and what it held (or why it could not be read);
/// `objects`: the size of each cache object under the prefix, by id; `protected`: the
/// config's protected scopes.
pub fn plan(
    found: Vec<(String, Result<CacheIndex, String>)>,
    objects: &HashMap<String, u64>,
    protected: impl Fn(&str) -> bool,
) -> Plan {
    let mut out = Plan::default();
    let mut skip = |id: &str, reason: String| {
        out.skipped.push(Skipped {
            id: id.to_owned(),
            reason,
        })
    };
    // Its own object, of the size it recorded.
    let mut whole = Vec::new();
    for (id, index) in found {
        match index {
            Err(why) => skip(&id, why),
            Ok(ix) => match objects.get(&id) {
                None => skip(&id, "its cache object is missing".to_owned()),
                Some(&n) if n != ix.size => skip(
                    &id,
                    format!("its cache object holds {n} bytes, not {}", ix.size),
                ),
                Some(_) => whole.push(ix),
            },
        }
    }
    // One cache per key: the newest (a refresh whose replaced cache kept its index).
    whole.sort_by(|a, b| {
        (&a.owner, &a.scope, &a.key, b.created_at, &b.id).cmp(&(
            &b.owner,
            &b.scope,
            &b.key,
            a.created_at,
            &a.id,
        ))
    });
    let mut newest: Vec<CacheIndex> = Vec::new();
    for ix in whole {
        match newest.last() {
            Some(n) if (&n.owner, &n.scope, &n.key) == (&ix.owner, &ix.scope, &ix.key) => {
                skip(&ix.id, format!("cache {} of the same key is newer", n.id))
            }
            _ => newest.push(ix),
        }
    }
    // Every object it reads, of the size it recorded: else it could not restore.
    for ix in newest {
        let missing = ix.refs.iter().find(|r| objects.get(&r.id) != Some(&r.size));
        match missing {
            Some(r) => skip(
                &ix.id,
                format!(
                    "it reads object {}, which is missing or of another size",
                    r.id
                ),
            ),
            None => out.caches.push(ix),
        }
    }
    out.retained = retained(&out.caches, protected);
    out
}

/// The objects the caches read that none of them owns: a deleted cache's, kept for
/// them. It is charged to the place of a cache that reads it: the oldest in a
/// protected scope, else the oldest (a pull request reads main's objects, main never
/// a pull request's, so a protected reader is likeliest in the object's own place).
fn retained(caches: &[CacheIndex], protected: impl Fn(&str) -> bool) -> Vec<RetainedObject> {
    let own: HashSet<&str> = caches.iter().map(|c| c.id.as_str()).collect();
    let mut readers: Vec<&CacheIndex> = caches.iter().collect();
    readers.sort_by_key(|c| (!protected(&c.scope), c.created_at, c.id.as_str()));
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for c in readers {
        for r in &c.refs {
            if !own.contains(r.id.as_str()) && seen.insert(r.id.as_str()) {
                out.push(RetainedObject {
                    object: r.id.clone(),
                    owner: c.owner.clone(),
                    scope: c.scope.clone(),
                    size: r.size,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use bmat_wire::api::FORMAT_ARCHIVE;

    use super::*;
    use crate::registry::ObjectRef;

    const MAIN: &str = "refs/heads/main";
    const PR: &str = "refs/pull/1/merge";

    fn ix(id: &str, scope: &str, key: &str, created_at: i64, refs: &[&str]) -> CacheIndex {
        CacheIndex {
            v: 1,
            id: id.into(),
            owner: "o".into(),
            scope: scope.into(),
            key: key.into(),
            format: if refs.is_empty() {
                FORMAT_ARCHIVE
            } else {
                FORMAT_CONTENTS
            },
            size: 10,
            sha256: "00".into(),
            unpacked_size: None,
            entries: None,
            logical_size: None,
            refs: refs
                .iter()
                .map(|r| ObjectRef {
                    id: r.to_string(),
                    size: 10,
                })
                .collect(),
            created_at,
        }
    }

    fn is_main(scope: &str) -> bool {
        scope == MAIN
    }

    fn objects(ids: &[&str]) -> HashMap<String, u64> {
        ids.iter().map(|id| (id.to_string(), 10)).collect()
    }

    fn found(list: Vec<CacheIndex>) -> Vec<(String, Result<CacheIndex, String>)> {
        list.into_iter().map(|i| (i.id.clone(), Ok(i))).collect()
    }

    fn kept(p: &Plan) -> Vec<&str> {
        p.caches.iter().map(|c| c.id.as_str()).collect()
    }

    fn skipped(p: &Plan) -> Vec<&str> {
        let mut ids: Vec<&str> = p.skipped.iter().map(|s| s.id.as_str()).collect();
        ids.sort();
        ids
    }

    #[test]
    fn of_two_caches_of_one_key_the_newer_is_kept() {
        let p = plan(
            found(vec![
                ix("OLD", MAIN, "k", 1, &[]),
                ix("NEW", MAIN, "k", 2, &[]),
                ix("PR", PR, "k", 0, &[]),
            ]),
            &objects(&["OLD", "NEW", "PR"]),
            is_main,
        );
        assert_eq!(kept(&p), ["NEW", "PR"]);
        assert_eq!(skipped(&p), ["OLD"]);
        assert!(p.skipped[0].reason.contains("NEW"), "{:?}", p.skipped);
        assert_eq!((p.owners(), p.contents()), (1, 0));
    }

    #[test]
    fn a_cache_without_its_object_or_one_it_reads_is_skipped() {
        // SHORT's object is shorter than its cache and READS_SHORT recorded.
        let mut stored = objects(&["SHORT", "READS_GONE", "READS_SHORT"]);
        stored.insert("SHORT".into(), 9);
        let p = plan(
            found(vec![
                ix("GONE", MAIN, "gone", 1, &[]),
                ix("SHORT", MAIN, "short", 1, &[]),
                ix("READS_GONE", MAIN, "a", 1, &["GONE"]),
                ix("READS_SHORT", MAIN, "b", 1, &["SHORT"]),
            ])
            .into_iter()
            .chain([("BAD".to_owned(), Err("not a cache's index".to_owned()))])
            .collect(),
            &stored,
            is_main,
        );
        assert!(kept(&p).is_empty());
        assert_eq!(
            skipped(&p),
            ["BAD", "GONE", "READS_GONE", "READS_SHORT", "SHORT"]
        );
        assert!(p.retained.is_empty());
    }

    #[test]
    fn an_object_read_but_owned_by_no_kept_cache_is_retained_in_a_readers_place() {
        // DEL's cache was deleted (no index), OLD's was refreshed by NEW, which reads
        // it; the pull request's older cache reads DEL too, and an object of its own.
        let p = plan(
            found(vec![
                ix("OLD", MAIN, "k", 1, &[]),
                ix("NEW", MAIN, "k", 3, &["OLD", "DEL"]),
                ix("PR", PR, "k", 2, &["DEL", "NEW", "PR_OWN"]),
            ]),
            &objects(&["OLD", "NEW", "PR", "DEL", "PR_OWN"]),
            is_main,
        );
        assert_eq!(kept(&p), ["NEW", "PR"]);
        assert_eq!(skipped(&p), ["OLD"]);
        let retained: Vec<(&str, &str)> = p
            .retained
            .iter()
            .map(|r| (r.object.as_str(), r.scope.as_str()))
            .collect();
        assert_eq!(retained, [("OLD", MAIN), ("DEL", MAIN), ("PR_OWN", PR)]);
        assert_eq!((p.owners(), p.contents()), (1, 2));
    }
}
