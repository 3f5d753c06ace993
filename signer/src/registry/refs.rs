//! What content-addressed caches need besides their own object (docs/design.md,
//! "Content-addressed caches"). The signer never reads objects; it keeps track of
//! which objects each cache reads contents from, so that a lookup hands out a URL for
//! each, nothing a live cache needs is deleted, and a job reads only what it may.
//!
//! - `refs`: cache (ULID) → object (ULID) and its size; written at an upload's
//!   completion under the upload's ULID, which is also its cache's, so the rows hold
//!   from `finished` on with no copy. A row counts while its cache exists or its
//!   upload is live.
//! - `retained`: the object of a deleted cache that a counted row still names, with
//!   the deleted cache's owner, scope and size (its scope keeps paying for it).
//! - `released`: objects that stopped being needed and when: the orphan sweep spares
//!   them for the download grace (a URL handed out just before may still be used).

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::error::RegistryError;
use super::schema::Registry;
use super::values::{to_i64, unsigned};

/// Another cache's object a cache reads contents from, and its size as that cache
/// recorded it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectRef {
    pub id: String,
    pub size: u64,
}

/// What a job may read: its owner's caches in these scopes (its own, then its read
/// scopes), and the objects those caches read.
#[derive(Debug, Clone, Copy)]
pub struct Readable<'a> {
    pub owner: &'a str,
    pub scopes: &'a [String],
}

/// What removing a cache's row did with its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheRemoval {
    /// No such row (removed meanwhile).
    Gone,
    /// Nothing needs the object any more.
    Unneeded,
    /// Live caches still read the object: it is retained.
    Retained,
}

/// `?1` is named by a counted reference: one whose cache exists or whose upload is
/// live.
const REFERENCED: &str = "EXISTS (SELECT 1 FROM refs r WHERE r.object = ?1 AND (
        EXISTS (SELECT 1 FROM caches c WHERE c.ulid = r.cache)
        OR EXISTS (SELECT 1 FROM uploads u WHERE u.ulid = r.cache
                   AND u.state IN ('creating', 'uploading', 'finished'))))";

fn referenced(conn: &Connection, object: &str) -> Result<bool, RegistryError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {REFERENCED}"))?
        .query_row(params![object], |r| r.get(0))?)
}

/// The objects `ids` with their sizes, if `job` may read each: the object of a cache
/// of its owner in one of its scopes, or an object such a cache reads. Else the first
/// id it may not read.
pub(super) fn readable_refs(
    conn: &Connection,
    job: &Readable<'_>,
    ids: &[String],
) -> Result<Result<Vec<ObjectRef>, String>, RegistryError> {
    let scopes = serde_json::to_string(job.scopes)?;
    let mut st = conn.prepare_cached(
        "SELECT size FROM caches
         WHERE ulid = ?1 AND owner = ?2 AND scope IN (SELECT value FROM json_each(?3))
         UNION ALL
         SELECT r.size FROM refs r JOIN caches c ON c.ulid = r.cache
         WHERE r.object = ?1 AND c.owner = ?2 AND c.scope IN (SELECT value FROM json_each(?3))
         LIMIT 1",
    )?;
    let mut found = Vec::with_capacity(ids.len());
    for id in ids {
        let size: Option<i64> = st
            .query_row(params![id, job.owner, scopes], |r| r.get(0))
            .optional()?;
        match size {
            Some(size) => found.push(ObjectRef {
                id: id.clone(),
                size: unsigned(size),
            }),
            None => return Ok(Err(id.clone())),
        }
    }
    Ok(Ok(found))
}

pub(super) fn insert_refs(
    conn: &Connection,
    cache: &str,
    refs: &[ObjectRef],
) -> Result<(), RegistryError> {
    let mut st =
        conn.prepare_cached("INSERT INTO refs (cache, object, size) VALUES (?1, ?2, ?3)")?;
    for r in refs {
        st.execute(params![cache, r.id, to_i64(r.size)?])?;
    }
    Ok(())
}

/// Removes the cache row `ulid`: its object is retained when a counted reference
/// still names it, and what the cache read is let go ([`drop_refs`]). Inside the
/// caller's transaction.
pub(super) fn remove_cache(
    conn: &Connection,
    ulid: &str,
    now: i64,
) -> Result<CacheRemoval, RegistryError> {
    let row: Option<(String, String, i64)> = conn
        .query_row(
            "SELECT owner, scope, size FROM caches WHERE ulid = ?1",
            params![ulid],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((owner, scope, size)) = row else {
        return Ok(CacheRemoval::Gone);
    };
    conn.execute("DELETE FROM caches WHERE ulid = ?1", params![ulid])?;
    let removal = if referenced(conn, ulid)? {
        conn.execute(
            "INSERT INTO retained (object, owner, scope, size, since)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (object) DO NOTHING",
            params![ulid, owner, scope, size, now],
        )?;
        CacheRemoval::Retained
    } else {
        CacheRemoval::Unneeded
    };
    drop_refs(conn, ulid, now)?;
    Ok(removal)
}

/// Forgets what `cache` read: every object it named that nothing needs any more
/// (neither a cache's own object nor named by a counted reference) is released, its
/// retained row gone.
pub(super) fn drop_refs(conn: &Connection, cache: &str, now: i64) -> Result<(), RegistryError> {
    let objects: Vec<String> = conn
        .prepare_cached("SELECT object FROM refs WHERE cache = ?1")?
        .query_map(params![cache], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    conn.execute("DELETE FROM refs WHERE cache = ?1", params![cache])?;
    for object in objects {
        let own: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM caches WHERE ulid = ?1)",
            params![object],
            |r| r.get(0),
        )?;
        if !own && !referenced(conn, &object)? {
            release(conn, &object, now)?;
        }
    }
    Ok(())
}

/// `object` stops being needed at `now`: no longer retained, spared for the download
/// grace.
pub(super) fn release(conn: &Connection, object: &str, now: i64) -> Result<(), RegistryError> {
    conn.execute("DELETE FROM retained WHERE object = ?1", params![object])?;
    conn.execute(
        "INSERT INTO released (object, released_at) VALUES (?1, ?2)
         ON CONFLICT (object) DO UPDATE SET released_at = max(released_at, excluded.released_at)",
        params![object, now],
    )?;
    Ok(())
}

impl Registry {
    /// The objects the cache `ulid` reads besides its own, by id.
    pub fn refs_of(&self, ulid: &str) -> Result<Vec<ObjectRef>, RegistryError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT object, size FROM refs WHERE cache = ?1 ORDER BY object")?;
        let rows = st.query_map(params![ulid], |r| {
            Ok(ObjectRef {
                id: r.get(0)?,
                size: unsigned(r.get(1)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Removes a cache's row (see [`remove_cache`]), by ULID, so that a newer cache of
    /// the same key is never removed by mistake.
    pub fn delete_cache(&mut self, ulid: &str, now: i64) -> Result<CacheRemoval, RegistryError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let removal = remove_cache(&tx, ulid, now)?;
        tx.commit()?;
        Ok(removal)
    }

    /// Forgets the references of uploads that ended without a cache (aborted, or their
    /// key taken), and releases the retained objects no counted reference names any
    /// more. Returns how many were released.
    pub fn release_unreferenced(&mut self, now: i64) -> Result<usize, RegistryError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "DELETE FROM refs
             WHERE NOT EXISTS (SELECT 1 FROM caches c WHERE c.ulid = refs.cache)
             AND NOT EXISTS (SELECT 1 FROM uploads u WHERE u.ulid = refs.cache
                             AND u.state IN ('creating', 'uploading', 'finished'))",
            [],
        )?;
        let orphaned: Vec<String> = tx
            .prepare(&format!(
                "SELECT object FROM retained WHERE NOT ({})",
                REFERENCED.replace("?1", "retained.object")
            ))?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for object in &orphaned {
            release(&tx, object, now)?;
        }
        tx.commit()?;
        Ok(orphaned.len())
    }

    /// Whether the object `ulid` must stay: a cache's or a live upload's own, named by
    /// a counted reference, retained, or released after `released_after`.
    pub fn object_needed(&self, ulid: &str, released_after: i64) -> Result<bool, RegistryError> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT EXISTS (SELECT 1 FROM caches WHERE ulid = ?1)
                     OR EXISTS (SELECT 1 FROM uploads WHERE ulid = ?1
                                AND state IN ('creating', 'uploading', 'finished'))
                     OR EXISTS (SELECT 1 FROM retained WHERE object = ?1)
                     OR EXISTS (SELECT 1 FROM released WHERE object = ?1 AND released_at > ?2)
                     OR {REFERENCED}"
            ))?
            .query_row(params![ulid, released_after], |r| r.get(0))?)
    }

    /// The bytes of `owner`'s retained objects, by scope.
    pub fn retained_bytes(&self, owner: &str) -> Result<Vec<(String, u64)>, RegistryError> {
        let mut st = self.conn.prepare_cached(
            "SELECT scope, sum(size) FROM retained WHERE owner = ?1 GROUP BY scope ORDER BY scope",
        )?;
        let rows = st.query_map(params![owner], |r| Ok((r.get(0)?, unsigned(r.get(1)?))))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forgets objects released before `cutoff`: their grace is over.
    pub fn prune_released(&self, cutoff: i64) -> Result<usize, RegistryError> {
        Ok(self.conn.execute(
            "DELETE FROM released WHERE released_at < ?1",
            params![cutoff],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use bmat_wire::api::UploadState;

    use super::*;
    use crate::registry::schema::testing::open;
    use crate::registry::uploads::testing::{add_cache_at, archive, created, rules};
    use crate::registry::{CompletedOutcome, FinishOutcome, Finished, Place, UploadRules};

    const MAIN: &str = "refs/heads/main";
    const PR: &str = "refs/pull/1/merge";

    fn at(scope: &str) -> Place<'_> {
        Place { owner: "o", scope }
    }

    /// Begins `ulid` in `scope` and finishes it as a cache of contents reading `refs`,
    /// as a job of that scope reading `reads` too.
    fn finish(
        reg: &mut Registry,
        scope: &str,
        reads: &[&str],
        ulid: &str,
        refs: &[&str],
        t: i64,
    ) -> FinishOutcome {
        let key = format!("k-{ulid}");
        assert!(created(
            reg.begin_upload(&at(scope), &key, ulid, 1, t, &rules(100))
                .unwrap()
        ));
        reg.set_uploading(ulid, "s3", t).unwrap();
        let scopes: Vec<String> = std::iter::once(scope)
            .chain(reads.iter().copied())
            .map(str::to_owned)
            .collect();
        let done = Finished {
            format: 2,
            logical_size: Some(100),
            refs: refs.iter().map(|r| r.to_string()).collect(),
            ..archive(&[(1, "e".into())], 1, "00")
        };
        let job = Readable {
            owner: "o",
            scopes: &scopes,
        };
        reg.finish_upload(ulid, &done, &job, t).unwrap()
    }

    /// A completed cache of contents in `scope` reading `refs`.
    fn add_contents(reg: &mut Registry, scope: &str, ulid: &str, refs: &[&str], t: i64) {
        assert_eq!(
            finish(reg, scope, &[], ulid, refs, t),
            FinishOutcome::Finished
        );
        assert_eq!(
            reg.record_completed(ulid, t).unwrap(),
            CompletedOutcome::Recorded
        );
    }

    fn ids(refs: Vec<ObjectRef>) -> Vec<(String, u64)> {
        refs.into_iter().map(|r| (r.id, r.size)).collect()
    }

    #[test]
    fn a_job_may_name_objects_of_its_own_and_read_scopes_only() {
        let (_d, mut reg) = open();
        add_cache_at(&mut reg, &at(MAIN), "main", "M", 10, 1);
        add_cache_at(&mut reg, &at(PR), "pr", "P", 20, 1);
        add_cache_at(
            &mut reg,
            &Place {
                owner: "x",
                scope: MAIN,
            },
            "theirs",
            "X",
            5,
            1,
        );
        // Its own scope, and a read scope.
        assert_eq!(
            finish(&mut reg, MAIN, &[], "U1", &["M"], 2),
            FinishOutcome::Finished
        );
        assert_eq!(
            finish(&mut reg, PR, &[MAIN], "U2", &["M", "P"], 2),
            FinishOutcome::Finished
        );
        assert_eq!(
            ids(reg.refs_of("U2").unwrap()),
            [("M".into(), 10), ("P".into(), 20)]
        );
        // Main never reads a pull request's object; nobody reads another owner's; an
        // unknown id is no one's. Nothing is written then: the upload stays uploading.
        for (ulid, refs) in [
            ("U3", ["M", "P"]),
            ("U4", ["M", "X"]),
            ("U5", ["M", "NOPE"]),
        ] {
            let refused = refs[1].to_owned();
            assert_eq!(
                finish(&mut reg, MAIN, &[], ulid, &refs, 2),
                FinishOutcome::Unreadable(refused)
            );
            let up = reg.get_upload(ulid).unwrap().unwrap();
            assert_eq!(up.state, UploadState::Uploading);
            assert!(reg.refs_of(ulid).unwrap().is_empty());
        }
        // What a readable cache reads is readable too, at the size it recorded.
        assert_eq!(
            reg.record_completed("U2", 3).unwrap(),
            CompletedOutcome::Recorded
        );
        reg.delete_cache("P", 4).unwrap();
        assert_eq!(
            finish(&mut reg, PR, &[], "U6", &["P"], 5),
            FinishOutcome::Finished
        );
        assert_eq!(ids(reg.refs_of("U6").unwrap()), [("P".into(), 20)]);
    }

    #[test]
    fn a_read_object_outlives_its_cache_until_the_last_reader_goes() {
        let (_d, mut reg) = open();
        add_cache_at(&mut reg, &at(MAIN), "a", "A", 10, 1);
        add_contents(&mut reg, MAIN, "B", &["A"], 2);
        add_contents(&mut reg, MAIN, "C", &["A"], 3);
        assert_eq!(reg.delete_cache("A", 4).unwrap(), CacheRemoval::Retained);
        // Its scope keeps paying for it; the sweep keeps it.
        assert_eq!(reg.retained_bytes("o").unwrap(), [(MAIN.into(), 10)]);
        assert_eq!(reg.place_bytes().unwrap(), [("o".into(), MAIN.into(), 12)]);
        assert!(reg.object_needed("A", i64::MAX).unwrap());
        assert_eq!(reg.release_unreferenced(5).unwrap(), 0);
        // One reader left: still retained.
        assert_eq!(reg.delete_cache("B", 6).unwrap(), CacheRemoval::Unneeded);
        assert!(reg.object_needed("A", i64::MAX).unwrap());
        // The last one: released at 7, spared for the grace only.
        assert_eq!(reg.delete_cache("C", 7).unwrap(), CacheRemoval::Unneeded);
        assert!(reg.retained_bytes("o").unwrap().is_empty());
        assert!(reg.object_needed("A", 6).unwrap());
        assert!(!reg.object_needed("A", 7).unwrap());
        assert_eq!(reg.prune_released(7).unwrap(), 0);
        assert_eq!(reg.prune_released(8).unwrap(), 1);
        assert!(!reg.object_needed("A", 0).unwrap());
    }

    #[test]
    fn an_upload_that_ends_without_a_cache_lets_go_of_what_it_read() {
        let (_d, mut reg) = open();
        add_cache_at(&mut reg, &at(MAIN), "a", "A", 10, 1);
        // A finished upload reads A: A's object stays when its cache goes.
        assert_eq!(
            finish(&mut reg, MAIN, &[], "U", &["A"], 2),
            FinishOutcome::Finished
        );
        assert_eq!(reg.delete_cache("A", 3).unwrap(), CacheRemoval::Retained);
        assert!(reg.object_needed("A", i64::MAX).unwrap());
        // The worker gives up on it: the next reaper pass releases A.
        assert!(reg.mark_aborted("U", &[UploadState::Finished], 4).unwrap());
        assert_eq!(reg.release_unreferenced(5).unwrap(), 1);
        assert!(reg.retained_bytes("o").unwrap().is_empty());
        assert!(reg.object_needed("A", 4).unwrap());
        assert!(!reg.object_needed("A", 5).unwrap());
        assert!(reg.refs_of("U").unwrap().is_empty());
    }

    #[test]
    fn a_refresh_that_reads_the_cache_it_replaces_retains_its_object() {
        let (_d, mut reg) = open();
        add_cache_at(&mut reg, &at(MAIN), "k", "OLD", 10, 1);
        let refresh = UploadRules {
            replace_created_before: Some(2),
            ..rules(100)
        };
        assert!(created(
            reg.begin_upload(&at(MAIN), "k", "NEW", 1, 3, &refresh)
                .unwrap()
        ));
        reg.set_uploading("NEW", "s3", 3).unwrap();
        let done = Finished {
            format: 2,
            logical_size: Some(12),
            refs: vec!["OLD".into()],
            ..archive(&[(1, "e".into())], 2, "00")
        };
        let scopes = [MAIN.to_owned()];
        let job = Readable {
            owner: "o",
            scopes: &scopes,
        };
        assert_eq!(
            reg.finish_upload("NEW", &done, &job, 4).unwrap(),
            FinishOutcome::Finished
        );
        assert_eq!(
            reg.record_completed("NEW", 5).unwrap(),
            CompletedOutcome::Recorded
        );
        let new = reg.find_cache(&at(MAIN), "k").unwrap().unwrap();
        assert_eq!(
            (new.ulid.as_str(), new.format, new.logical_size),
            ("NEW", 2, Some(12))
        );
        assert_eq!(reg.retained_bytes("o").unwrap(), [(MAIN.into(), 10)]);
        assert!(reg.object_needed("OLD", i64::MAX).unwrap());
    }

    #[test]
    fn the_sweep_keeps_what_caches_uploads_and_references_need() {
        let (_d, mut reg) = open();
        add_cache_at(&mut reg, &at(MAIN), "a", "A", 10, 1);
        assert!(reg.object_needed("A", 0).unwrap());
        // A live upload's own object, and what its references name.
        assert!(created(
            reg.begin_upload(&at(MAIN), "b", "B", 1, 1, &rules(100))
                .unwrap()
        ));
        assert!(reg.object_needed("B", 0).unwrap());
        assert!(!reg.object_needed("NOBODY", 0).unwrap());
    }
}
