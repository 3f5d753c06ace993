//! The uploads table: an upload's row through its states (`creating` → `uploading` →
//! `finished` → `completed` | `aborted`), the write-once and one-live-upload rules, the
//! completion worker's queue and its final write (the cache row), and what the reaper
//! aborts and forgets.

use std::time::Duration;

use bmat_wire::api::{Extent, UploadState};
use rusqlite::{OptionalExtension, Row, TransactionBehavior, params};

use super::error::RegistryError;
use super::refs::{self, CacheRemoval, Readable};
use super::schema::Registry;
use super::values::{Place, extent_from_row, to_i64, unsigned};
use crate::names::Patterns;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRow {
    pub ulid: String,
    pub owner: String,
    pub scope: String,
    pub key: String,
    pub s3_upload_id: Option<String>,
    pub state: UploadState,
    pub part_size: u64,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    /// (part number, ETag), ascending; set when the client completes.
    pub parts: Vec<(u32, String)>,
    pub lease_expires_at: i64,
    pub attempts: u32,
    pub next_attempt_at: Option<i64>,
    /// When the client completed it (state `finished` and after).
    pub finished_at: Option<i64>,
    /// The ULID of the cache this upload replaces when it completes (a refresh).
    pub replaces: Option<String>,
    /// What the client's completion recorded (state `finished` and after).
    pub extent: Extent,
    /// `bmat_wire::api::FORMAT_ARCHIVE` or `FORMAT_CONTENTS`.
    pub format: u8,
    pub logical_size: Option<u64>,
    pub needs_abort: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeginOutcome {
    /// A cache exists for the key.
    Exists,
    /// Another upload of the key is live.
    InProgress,
    /// A `creating` row was written. `took_over` names an upload whose lease had
    /// expired and which was marked aborted to make room.
    Created { took_over: Option<String> },
    /// The scope already has this many uploads under a live lease: the most allowed.
    TooManyInScope(u64),
    /// The owner's unprotected scopes, the upload's among them, already have this many
    /// uploads under a live lease: the most allowed.
    TooManyUnprotected(u64),
}

/// What the completion worker's final write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompletedOutcome {
    /// The cache row exists now.
    Recorded,
    /// A cache for the key already existed (kept); the new object is surplus.
    KeyTaken,
    /// The upload was no longer `finished` (nothing written).
    NotFinished,
}

/// What a client's completion records on its upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// (part number, ETag), ascending.
    pub parts: Vec<(u32, String)>,
    pub size: u64,
    pub sha256: String,
    pub extent: Extent,
    /// `bmat_wire::api::FORMAT_ARCHIVE` or `FORMAT_CONTENTS`.
    pub format: u8,
    pub logical_size: Option<u64>,
    /// The other objects the cache reads contents from (ids).
    pub refs: Vec<String>,
}

/// What [`Registry::finish_upload`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishOutcome {
    Finished,
    /// The upload was no longer `uploading` (nothing written).
    NotUploading,
    /// The job may not read this referenced object (nothing written).
    Unreadable(String),
}

/// What a begin must respect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRules {
    /// How long a begun upload holds its key without a sign of life.
    pub lease: Duration,
    /// Uploads a scope may have under a live lease at once.
    pub max_live: u64,
    /// Uploads an owner's unprotected scopes may have under a live lease at once,
    /// together.
    pub max_live_unprotected: u64,
    /// The protected scopes: their uploads never count against
    /// `max_live_unprotected`, nor wait for it.
    pub protected: Patterns,
    /// A refresh: a cache of the key created before this time (ms) does not stop the
    /// begin; the upload replaces it when it completes.
    pub replace_created_before: Option<i64>,
}

fn upload_from_row(r: &Row<'_>) -> rusqlite::Result<UploadRow> {
    let state: String = r.get("state")?;
    let state = UploadState::parse(&state).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("unknown upload state {state:?}").into(),
        )
    })?;
    let parts_json: Option<String> = r.get("parts_json")?;
    let parts = match parts_json {
        Some(j) => serde_json::from_str(&j).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
        })?,
        None => Vec::new(),
    };
    Ok(UploadRow {
        ulid: r.get("ulid")?,
        owner: r.get("owner")?,
        scope: r.get("scope")?,
        key: r.get("key")?,
        s3_upload_id: r.get("s3_upload_id")?,
        state,
        part_size: r.get::<_, i64>("part_size")?.max(0) as u64,
        size: r.get::<_, Option<i64>>("size")?.map(|s| s.max(0) as u64),
        sha256: r.get("sha256")?,
        parts,
        lease_expires_at: r.get("lease_expires_at")?,
        attempts: r.get::<_, i64>("attempts")?.clamp(0, u32::MAX as i64) as u32,
        next_attempt_at: r.get("next_attempt_at")?,
        finished_at: r.get("finished_at")?,
        replaces: r.get("replaces")?,
        extent: extent_from_row(r)?,
        format: r.get("format")?,
        logical_size: r.get::<_, Option<i64>>("logical_size")?.map(unsigned),
        needs_abort: r.get::<_, i64>("needs_abort")? != 0,
        created_at: r.get("created_at")?,
        updated_at: r.get("updated_at")?,
    })
}

/// The live states (`UploadState::is_live`) in SQL.
pub(super) const LIVE: &str = "('creating', 'uploading', 'finished')";

impl Registry {
    /// Write-once and one-live-upload rules in one transaction: a cache for the key
    /// → `Exists`; a live upload → `InProgress` unless it is `creating`/`uploading`
    /// with an expired lease, which is then marked aborted (the reaper aborts its
    /// multipart upload) and replaced. `finished` uploads belong to the completion
    /// worker and always block. The new row is `creating` and is written before
    /// CreateMultipartUpload, so no multipart upload exists without a row.
    pub fn begin_upload(
        &mut self,
        at: &Place<'_>,
        key: &str,
        ulid: &str,
        part_size: u64,
        now: i64,
        rules: &UploadRules,
    ) -> Result<BeginOutcome, RegistryError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Uploads whose lease ran out no longer count: their holder is gone, and the
        // reaper will abort them. One scope's uploads never hold back a protected
        // scope's (docs/design.md, "Registry and S3 layout").
        let live: Vec<(String, u64)> = tx
            .prepare(
                "SELECT scope, count(*) FROM uploads WHERE owner = ?1
                 AND state IN ('creating', 'uploading') AND lease_expires_at > ?2
                 GROUP BY scope",
            )?
            .query_map(params![at.owner, now], |r| {
                Ok((r.get(0)?, unsigned(r.get(1)?)))
            })?
            .collect::<Result<_, _>>()?;
        let in_scope = live.iter().find(|(s, _)| s == at.scope).map_or(0, |l| l.1);
        if in_scope >= rules.max_live {
            return Ok(BeginOutcome::TooManyInScope(rules.max_live));
        }
        let unprotected: u64 = live
            .iter()
            .filter(|(s, _)| !rules.protected.matches(s))
            .map(|l| l.1)
            .sum();
        if !rules.protected.matches(at.scope) && unprotected >= rules.max_live_unprotected {
            return Ok(BeginOutcome::TooManyUnprotected(rules.max_live_unprotected));
        }
        let existing: Option<(String, i64)> = tx
            .query_row(
                "SELECT ulid, created_at FROM caches WHERE owner = ?1 AND scope = ?2 AND key = ?3",
                params![at.owner, at.scope, key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let replaces = match existing {
            None => None,
            Some((ulid, created)) if rules.replace_created_before.is_some_and(|t| created < t) => {
                Some(ulid)
            }
            Some(_) => return Ok(BeginOutcome::Exists),
        };
        let live: Option<UploadRow> = tx
            .query_row(
                &format!(
                    "SELECT * FROM uploads WHERE owner = ?1 AND scope = ?2 AND key = ?3
                     AND state IN {LIVE}"
                ),
                params![at.owner, at.scope, key],
                upload_from_row,
            )
            .optional()?;
        let mut took_over = None;
        if let Some(live) = live {
            if live.state == UploadState::Finished || live.lease_expires_at > now {
                return Ok(BeginOutcome::InProgress);
            }
            tx.execute(
                "UPDATE uploads SET state = 'aborted', needs_abort = (s3_upload_id IS NOT NULL),
                        updated_at = ?2
                 WHERE ulid = ?1",
                params![live.ulid, now],
            )?;
            took_over = Some(live.ulid);
        }
        let lease_ms = to_i64(rules.lease.as_millis() as u64)?;
        let inserted = tx.execute(
            "INSERT INTO uploads (ulid, owner, scope, key, state, part_size, lease_expires_at,
                                  created_at, updated_at, replaces)
             VALUES (?1, ?2, ?3, ?4, 'creating', ?5, ?6, ?7, ?7, ?8)",
            params![
                ulid,
                at.owner,
                at.scope,
                key,
                to_i64(part_size)?,
                now + lease_ms,
                now,
                replaces
            ],
        );
        match inserted {
            Ok(_) => {}
            // The partial unique index: someone else won (cannot happen inside this
            // IMMEDIATE transaction, but the index is the rule, not this code).
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Ok(BeginOutcome::InProgress);
            }
            Err(e) => return Err(e.into()),
        }
        tx.commit()?;
        Ok(BeginOutcome::Created { took_over })
    }

    /// `creating` → `uploading` with the S3 upload id. False when the row is no longer
    /// `creating` (taken over or reaped while CreateMultipartUpload ran).
    pub fn set_uploading(
        &self,
        ulid: &str,
        s3_upload_id: &str,
        now: i64,
    ) -> Result<bool, RegistryError> {
        Ok(self.conn.execute(
            "UPDATE uploads SET state = 'uploading', s3_upload_id = ?2, updated_at = ?3
             WHERE ulid = ?1 AND state = 'creating'",
            params![ulid, s3_upload_id, now],
        )? > 0)
    }

    /// Records an S3 upload id on a row that is no longer live (so the reaper aborts it).
    pub fn record_orphan_upload_id(
        &self,
        ulid: &str,
        s3_upload_id: &str,
        now: i64,
    ) -> Result<(), RegistryError> {
        self.conn.execute(
            "UPDATE uploads SET s3_upload_id = ?2, needs_abort = 1, updated_at = ?3
             WHERE ulid = ?1 AND s3_upload_id IS NULL",
            params![ulid, s3_upload_id, now],
        )?;
        Ok(())
    }

    pub fn get_upload(&self, ulid: &str) -> Result<Option<UploadRow>, RegistryError> {
        Ok(self
            .conn
            .query_row(
                "SELECT * FROM uploads WHERE ulid = ?1",
                params![ulid],
                upload_from_row,
            )
            .optional()?)
    }

    /// A sign of life from the uploader: extends the lease and the stale clock.
    pub fn renew_lease(
        &self,
        ulid: &str,
        now: i64,
        lease: Duration,
    ) -> Result<bool, RegistryError> {
        let lease_ms = to_i64(lease.as_millis() as u64)?;
        Ok(self.conn.execute(
            "UPDATE uploads SET lease_expires_at = max(lease_expires_at, ?2), updated_at = ?3
             WHERE ulid = ?1 AND state = 'uploading'",
            params![ulid, now + lease_ms, now],
        )? > 0)
    }

    /// `uploading` → `finished`, in one transaction: the part list, size, checksum,
    /// extent and contents are recorded, the upload queued for the completion worker
    /// (due at once), and the objects it reads are checked and recorded as its
    /// references ([`super::refs`]), so no cache they belong to is deleted between the
    /// check and the record.
    pub fn finish_upload(
        &mut self,
        ulid: &str,
        done: &Finished,
        job: &Readable<'_>,
        now: i64,
    ) -> Result<FinishOutcome, RegistryError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let signed = |v: Option<u64>| v.map(to_i64).transpose();
        let marked = tx.execute(
            "UPDATE uploads SET state = 'finished', parts_json = ?2, size = ?3, sha256 = ?4,
                    unpacked_size = ?5, entries = ?6, format = ?7, logical_size = ?8,
                    attempts = 0, next_attempt_at = ?9, finished_at = ?9, updated_at = ?9
             WHERE ulid = ?1 AND state = 'uploading'",
            params![
                ulid,
                serde_json::to_string(&done.parts)?,
                to_i64(done.size)?,
                done.sha256,
                signed(done.extent.unpacked_size)?,
                signed(done.extent.entries)?,
                done.format,
                signed(done.logical_size)?,
                now
            ],
        )?;
        if marked == 0 {
            return Ok(FinishOutcome::NotUploading);
        }
        // Refused, the transaction is rolled back: the upload stays `uploading`.
        let refs = match refs::readable_refs(&tx, job, &done.refs)? {
            Ok(refs) => refs,
            Err(id) => return Ok(FinishOutcome::Unreadable(id)),
        };
        refs::insert_refs(&tx, ulid, &refs)?;
        tx.commit()?;
        Ok(FinishOutcome::Finished)
    }

    /// Marks an upload aborted if it is in one of `from`. `needs_abort` is set when an
    /// S3 upload id is known; clear it with [`Registry::s3_aborted`] once
    /// AbortMultipartUpload succeeded.
    pub fn mark_aborted(
        &self,
        ulid: &str,
        from: &[UploadState],
        now: i64,
    ) -> Result<bool, RegistryError> {
        // The states as a JSON array parameter: one prepared statement, no SQL built
        // from values.
        let states: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        Ok(self.conn.execute(
            "UPDATE uploads SET state = 'aborted', needs_abort = (s3_upload_id IS NOT NULL),
                    updated_at = ?2
             WHERE ulid = ?1 AND state IN (SELECT value FROM json_each(?3))",
            params![ulid, now, serde_json::to_string(&states)?],
        )? > 0)
    }

    /// AbortMultipartUpload succeeded (or the upload was already gone).
    pub fn s3_aborted(&self, ulid: &str) -> Result<(), RegistryError> {
        self.conn.execute(
            "UPDATE uploads SET needs_abort = 0 WHERE ulid = ?1",
            params![ulid],
        )?;
        Ok(())
    }

    /// The oldest `finished` upload that is due.
    pub fn next_due_completion(&self, now: i64) -> Result<Option<UploadRow>, RegistryError> {
        Ok(self
            .conn
            .query_row(
                "SELECT * FROM uploads WHERE state = 'finished' AND next_attempt_at <= ?1
                 ORDER BY next_attempt_at, created_at LIMIT 1",
                params![now],
                upload_from_row,
            )
            .optional()?)
    }

    /// When the next `finished` upload becomes due, if any is queued.
    pub fn next_completion_time(&self) -> Result<Option<i64>, RegistryError> {
        Ok(self.conn.query_row(
            "SELECT min(next_attempt_at) FROM uploads WHERE state = 'finished'",
            [],
            |r| r.get(0),
        )?)
    }

    /// The worker's last write: insert the cache row and set the upload `completed`,
    /// in one transaction.
    pub fn record_completed(
        &mut self,
        ulid: &str,
        now: i64,
    ) -> Result<CompletedOutcome, RegistryError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let up: Option<UploadRow> = tx
            .query_row(
                "SELECT * FROM uploads WHERE ulid = ?1",
                params![ulid],
                upload_from_row,
            )
            .optional()?;
        let Some(up) = up.filter(|u| u.state == UploadState::Finished) else {
            return Ok(CompletedOutcome::NotFinished);
        };
        if up.size.is_none() || up.sha256.is_none() {
            return Err(RegistryError::IncompleteUpload(ulid.to_owned()));
        }
        // A refresh: the old row goes in the same transaction as the new one comes, so
        // a lookup finds one or the other; the old object is released, kept for the
        // download grace (lookups that found it may still be downloading:
        // ops::reaper), or retained if caches read it (the new one among them).
        if let Some(old) = &up.replaces
            && refs::remove_cache(&tx, old, now)? == CacheRemoval::Unneeded
        {
            refs::release(&tx, old, now)?;
        }
        let inserted = tx.execute(
            "INSERT INTO caches (owner, scope, key, ulid, size, sha256, created_at, last_used_at,
                                 unpacked_size, entries, format, logical_size)
             SELECT owner, scope, key, ulid, size, sha256, ?2, ?2, unpacked_size, entries,
                    format, logical_size
             FROM uploads WHERE ulid = ?1
             ON CONFLICT (owner, scope, key) DO NOTHING",
            params![up.ulid, now],
        )?;
        if inserted == 0 {
            // No cache reads through this upload's references.
            refs::drop_refs(&tx, &up.ulid, now)?;
        }
        tx.execute(
            "UPDATE uploads SET state = 'completed', needs_abort = 0, updated_at = ?2 WHERE ulid = ?1",
            params![ulid, now],
        )?;
        tx.commit()?;
        Ok(if inserted > 0 {
            CompletedOutcome::Recorded
        } else {
            CompletedOutcome::KeyTaken
        })
    }

    /// A failed completion attempt: count it and schedule the next.
    pub fn schedule_retry(
        &self,
        ulid: &str,
        attempts: u32,
        next_at: i64,
        now: i64,
    ) -> Result<(), RegistryError> {
        self.conn.execute(
            "UPDATE uploads SET attempts = ?2, next_attempt_at = ?3, updated_at = ?4
             WHERE ulid = ?1 AND state = 'finished'",
            params![ulid, attempts, next_at, now],
        )?;
        Ok(())
    }

    /// `creating`/`uploading` uploads without a sign of life since `cutoff`.
    pub fn stale_uploads(&self, cutoff: i64) -> Result<Vec<UploadRow>, RegistryError> {
        let mut st = self.conn.prepare(
            "SELECT * FROM uploads WHERE state IN ('creating', 'uploading') AND updated_at < ?1
             ORDER BY updated_at",
        )?;
        let rows = st.query_map(params![cutoff], upload_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Aborted uploads whose S3 multipart upload may still exist.
    pub fn pending_s3_aborts(&self) -> Result<Vec<UploadRow>, RegistryError> {
        let mut st = self.conn.prepare(
            "SELECT * FROM uploads WHERE state = 'aborted' AND needs_abort = 1
             AND s3_upload_id IS NOT NULL ORDER BY updated_at",
        )?;
        let rows = st.query_map([], upload_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forgets `completed`/`aborted` uploads last touched before `cutoff` (nothing in
    /// S3 depends on them any more).
    pub fn prune_uploads(&self, cutoff: i64) -> Result<usize, RegistryError> {
        Ok(self.conn.execute(
            "DELETE FROM uploads WHERE state IN ('completed', 'aborted') AND needs_abort = 0
             AND updated_at < ?1",
            params![cutoff],
        )?)
    }
}

/// Uploads and caches made the way the API makes them, for the tests of both tables.
#[cfg(test)]
pub(super) mod testing {
    use super::*;

    pub const LEASE: Duration = Duration::from_secs(300);

    /// At most `max_live` uploads per scope and as many in unprotected scopes; the
    /// scope "s" is protected.
    pub fn rules(max_live: u64) -> UploadRules {
        UploadRules {
            lease: LEASE,
            max_live,
            max_live_unprotected: max_live,
            protected: Patterns(vec!["s".into()]),
            replace_created_before: None,
        }
    }

    /// An archive's completion.
    pub fn archive(parts: &[(u32, String)], size: u64, sha256: &str) -> Finished {
        Finished {
            parts: parts.to_vec(),
            size,
            sha256: sha256.into(),
            extent: Extent::default(),
            format: 1,
            logical_size: None,
            refs: vec![],
        }
    }

    /// Completes an archive upload as the client does; whether it was `uploading`.
    pub fn mark_finished(
        reg: &mut Registry,
        ulid: &str,
        parts: &[(u32, String)],
        size: u64,
        sha256: &str,
        t: i64,
    ) -> bool {
        let nobody = Readable {
            owner: "",
            scopes: &[],
        };
        let done = archive(parts, size, sha256);
        reg.finish_upload(ulid, &done, &nobody, t).unwrap() == FinishOutcome::Finished
    }

    /// Owner `owner`'s scope "s".
    pub fn at(owner: &str) -> Place<'_> {
        Place { owner, scope: "s" }
    }

    pub fn created(o: BeginOutcome) -> bool {
        matches!(o, BeginOutcome::Created { .. })
    }

    pub fn add_cache(reg: &mut Registry, owner: &str, key: &str, ulid: &str, size: u64, t: i64) {
        add_cache_at(reg, &at(owner), key, ulid, size, t)
    }

    /// A completed cache of `key` in `place`.
    pub fn add_cache_at(
        reg: &mut Registry,
        place: &Place<'_>,
        key: &str,
        ulid: &str,
        size: u64,
        t: i64,
    ) {
        assert!(created(
            reg.begin_upload(place, key, ulid, 1, t, &rules(100))
                .unwrap()
        ));
        reg.set_uploading(ulid, "s3", t).unwrap();
        assert!(mark_finished(reg, ulid, &[(1, "e".into())], size, "00", t));
        assert_eq!(
            reg.record_completed(ulid, t).unwrap(),
            CompletedOutcome::Recorded
        );
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::{Connection, params};

    use super::testing::*;
    use super::*;
    use crate::registry::schema::testing::open;
    use crate::registry::schema::{MIGRATIONS, SCHEMA_V1};

    #[test]
    fn a_refresh_replaces_only_an_old_enough_cache_and_one_at_a_time() {
        let (_d, mut reg) = open();
        add_cache(&mut reg, "o", "k", "OLD", 10, 1_000);
        let refresh = |before| UploadRules {
            replace_created_before: Some(before),
            ..rules(100)
        };
        // Created after the cutoff: a skip, as without a refresh.
        assert_eq!(
            reg.begin_upload(&at("o"), "k", "N0", 1, 5_000, &refresh(1_000))
                .unwrap(),
            BeginOutcome::Exists
        );
        assert!(created(
            reg.begin_upload(&at("o"), "k", "N1", 1, 5_000, &refresh(2_000))
                .unwrap()
        ));
        // A second refresh meanwhile waits for the first, like any upload of the key.
        assert_eq!(
            reg.begin_upload(&at("o"), "k", "N2", 1, 5_000, &refresh(2_000))
                .unwrap(),
            BeginOutcome::InProgress
        );
        // Until it completes, lookups find the old cache; then the new one, the swap
        // in one transaction.
        assert_eq!(reg.find_cache(&at("o"), "k").unwrap().unwrap().ulid, "OLD");
        reg.set_uploading("N1", "s3", 5_000).unwrap();
        assert!(mark_finished(
            &mut reg,
            "N1",
            &[(1, "e".into())],
            20,
            "00",
            6_000
        ));
        assert_eq!(
            reg.record_completed("N1", 7_000).unwrap(),
            CompletedOutcome::Recorded
        );
        assert_eq!(reg.find_cache(&at("o"), "k").unwrap().unwrap().ulid, "N1");
        assert!(reg.find_cache_by_ulid("OLD").unwrap().is_none());
        // The old object is released: kept for the grace after the swap, not after.
        assert!(reg.object_needed("OLD", 6_999).unwrap());
        assert!(!reg.object_needed("OLD", 7_000).unwrap());
    }

    #[test]
    fn second_begin_is_in_progress_until_the_lease_expires() {
        let (_d, mut reg) = open();
        assert!(created(
            reg.begin_upload(&at("o"), "k", "U1", 1, 1_000, &rules(100))
                .unwrap()
        ));
        assert_eq!(
            reg.begin_upload(&at("o"), "k", "U2", 1, 2_000, &rules(100))
                .unwrap(),
            BeginOutcome::InProgress
        );
        // Another owner's namespace is independent.
        assert!(created(
            reg.begin_upload(&at("p"), "k", "U3", 1, 2_000, &rules(100))
                .unwrap()
        ));
        // Past the lease, the old upload is taken over.
        let later = 1_000 + LEASE.as_millis() as i64 + 1;
        assert_eq!(
            reg.begin_upload(&at("o"), "k", "U4", 1, later, &rules(100))
                .unwrap(),
            BeginOutcome::Created {
                took_over: Some("U1".into())
            }
        );
        let old = reg.get_upload("U1").unwrap().unwrap();
        assert_eq!(old.state, UploadState::Aborted);
        // Still `creating` (no S3 upload id): nothing to abort in S3.
        assert!(!old.needs_abort);
        assert!(reg.get_upload("U2").unwrap().is_none());
    }

    #[test]
    fn a_scope_has_at_most_max_live_uploads_under_a_live_lease() {
        let (_d, mut reg) = open();
        for (i, key) in ["a", "b"].iter().enumerate() {
            let ulid = format!("U{i}");
            assert!(created(
                reg.begin_upload(&at("o"), key, &ulid, 1, 0, &rules(2))
                    .unwrap()
            ));
        }
        assert_eq!(
            reg.begin_upload(&at("o"), "c", "U3", 1, 0, &rules(2))
                .unwrap(),
            BeginOutcome::TooManyInScope(2)
        );
        // Another owner is not affected; nor is the owner once the leases ran out.
        assert!(created(
            reg.begin_upload(&at("p"), "c", "U4", 1, 0, &rules(2))
                .unwrap()
        ));
        let later = LEASE.as_millis() as i64 + 1;
        assert!(created(
            reg.begin_upload(&at("o"), "c", "U5", 1, later, &rules(2))
                .unwrap()
        ));
    }

    #[test]
    fn unprotected_scopes_share_a_limit_that_never_holds_back_a_protected_one() {
        let (_d, mut reg) = open();
        let pr = |n| Place {
            owner: "o",
            scope: ["refs/pull/1/merge", "refs/pull/2/merge"][n],
        };
        let mut begin = |place: &Place<'_>, key: &str| {
            let ulid = ulid::Ulid::new().to_string();
            reg.begin_upload(place, key, &ulid, 1, 0, &rules(2))
                .unwrap()
        };
        // A pull request holds its scope's maximum, which is also the unprotected one.
        assert!(created(begin(&pr(0), "a")) && created(begin(&pr(0), "b")));
        assert_eq!(begin(&pr(0), "c"), BeginOutcome::TooManyInScope(2));
        assert_eq!(begin(&pr(1), "c"), BeginOutcome::TooManyUnprotected(2));
        // The protected scope "s" begins as if they were not there.
        assert!(created(begin(&at("o"), "a")) && created(begin(&at("o"), "b")));
        assert_eq!(begin(&at("o"), "c"), BeginOutcome::TooManyInScope(2));
    }

    #[test]
    fn renewed_lease_keeps_blocking() {
        let (_d, mut reg) = open();
        reg.begin_upload(&at("o"), "k", "U1", 1, 0, &rules(100))
            .unwrap();
        assert!(reg.set_uploading("U1", "s3id", 10).unwrap());
        let near_end = LEASE.as_millis() as i64 - 1;
        assert!(reg.renew_lease("U1", near_end, LEASE).unwrap());
        assert_eq!(
            reg.begin_upload(&at("o"), "k", "U2", 1, near_end + 10, &rules(100))
                .unwrap(),
            BeginOutcome::InProgress
        );
    }

    #[test]
    fn live_means_the_same_in_rust_and_in_sql() {
        for state in UploadState::ALL {
            let quoted = format!("'{}'", state.as_str());
            assert_eq!(LIVE.contains(&quoted), state.is_live(), "{state:?}");
        }
    }

    #[test]
    fn partial_unique_index_allows_one_live_upload_per_key() {
        let (_d, reg) = open();
        let insert = |ulid: &str, state: &str| {
            reg.conn.execute(
                "INSERT INTO uploads (ulid, owner, key, state, part_size, lease_expires_at,
                                      created_at, updated_at)
                 VALUES (?1, 'o', 'k', ?2, 1, 0, 0, 0)",
                params![ulid, state],
            )
        };
        insert("A", "aborted").unwrap();
        insert("B", "completed").unwrap();
        insert("C", "uploading").unwrap();
        assert!(insert("D", "creating").is_err());
        assert!(insert("E", "finished").is_err());
        insert("F", "aborted").unwrap();
    }

    #[test]
    fn finished_uploads_block_even_past_their_lease() {
        let (_d, mut reg) = open();
        reg.begin_upload(&at("o"), "k", "U1", 1, 0, &rules(100))
            .unwrap();
        reg.set_uploading("U1", "s3id", 0).unwrap();
        assert!(mark_finished(
            &mut reg,
            "U1",
            &[(1, "\"e\"".into())],
            5,
            "ab",
            0
        ));
        assert_eq!(
            reg.begin_upload(&at("o"), "k", "U2", 1, i64::MAX / 2, &rules(100))
                .unwrap(),
            BeginOutcome::InProgress
        );
    }

    #[test]
    fn full_life_of_an_upload() {
        let (_d, mut reg) = open();
        reg.begin_upload(&at("o"), "k", "U1", 7, 100, &rules(100))
            .unwrap();
        let up = reg.get_upload("U1").unwrap().unwrap();
        assert_eq!(
            (up.state, up.part_size, up.s3_upload_id.clone()),
            (UploadState::Creating, 7, None)
        );
        // Part URLs only for `uploading`.
        assert!(!reg.renew_lease("U1", 150, LEASE).unwrap());
        assert!(reg.set_uploading("U1", "s3id", 200).unwrap());
        assert!(!reg.set_uploading("U1", "other", 200).unwrap());
        let parts = vec![(1, "\"a\"".to_string()), (2, "\"b\"".to_string())];
        assert!(mark_finished(&mut reg, "U1", &parts, 10, "cafe", 300));
        assert!(!mark_finished(&mut reg, "U1", &parts, 10, "cafe", 300));
        assert_eq!(reg.next_completion_time().unwrap(), Some(300));
        assert!(reg.next_due_completion(299).unwrap().is_none());
        let due = reg.next_due_completion(300).unwrap().unwrap();
        assert_eq!(due.parts, parts);
        assert_eq!(due.size, Some(10));

        reg.schedule_retry("U1", 1, 1_000, 400).unwrap();
        assert!(reg.next_due_completion(999).unwrap().is_none());
        assert_eq!(reg.next_due_completion(1_000).unwrap().unwrap().attempts, 1);

        assert_eq!(
            reg.record_completed("U1", 1_100).unwrap(),
            CompletedOutcome::Recorded
        );
        assert_eq!(
            reg.record_completed("U1", 1_100).unwrap(),
            CompletedOutcome::NotFinished
        );
        let cache = reg.find_cache(&at("o"), "k").unwrap().unwrap();
        assert_eq!(
            (cache.ulid.as_str(), cache.size, cache.sha256.as_str()),
            ("U1", 10, "cafe")
        );
        assert_eq!(
            reg.get_upload("U1").unwrap().unwrap().state,
            UploadState::Completed
        );
        assert!(reg.next_completion_time().unwrap().is_none());
        // Write-once.
        assert_eq!(
            reg.begin_upload(&at("o"), "k", "U2", 7, 2_000, &rules(100))
                .unwrap(),
            BeginOutcome::Exists
        );
    }

    #[test]
    fn aborting_flags_the_s3_upload_until_confirmed() {
        let (_d, mut reg) = open();
        reg.begin_upload(&at("o"), "k", "U1", 1, 0, &rules(100))
            .unwrap();
        // Without an S3 upload id there is nothing to abort in S3.
        assert!(reg.mark_aborted("U1", &[UploadState::Creating], 1).unwrap());
        assert!(reg.pending_s3_aborts().unwrap().is_empty());
        assert!(!reg.mark_aborted("U1", &[UploadState::Creating], 1).unwrap());

        reg.begin_upload(&at("o"), "k", "U2", 1, 0, &rules(100))
            .unwrap();
        reg.set_uploading("U2", "s3id", 0).unwrap();
        assert!(!reg.mark_aborted("U2", &[UploadState::Creating], 1).unwrap());
        assert!(
            reg.mark_aborted("U2", &[UploadState::Uploading], 1)
                .unwrap()
        );
        assert_eq!(reg.pending_s3_aborts().unwrap().len(), 1);
        reg.s3_aborted("U2").unwrap();
        assert!(reg.pending_s3_aborts().unwrap().is_empty());
        // Aborted rows do not block a new begin.
        assert!(created(
            reg.begin_upload(&at("o"), "k", "U3", 1, 2, &rules(100))
                .unwrap()
        ));
    }

    #[test]
    fn stale_uploads_are_those_idle_since_the_cutoff() {
        let (_d, mut reg) = open();
        reg.begin_upload(&at("o"), "a", "U1", 1, 100, &rules(100))
            .unwrap();
        reg.begin_upload(&at("o"), "b", "U2", 1, 100, &rules(100))
            .unwrap();
        reg.set_uploading("U2", "s3", 100).unwrap();
        reg.renew_lease("U2", 500, LEASE).unwrap();
        let stale: Vec<_> = reg
            .stale_uploads(400)
            .unwrap()
            .into_iter()
            .map(|u| u.ulid)
            .collect();
        assert_eq!(stale, ["U1"]);
    }

    #[test]
    fn a_version_1_registry_migrates_into_the_default_scope() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA_V1).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO caches (owner, key, ulid, size, sha256, created_at, last_used_at)
                 VALUES ('o', 'deps-a', 'U1', 7, 'ab', 100, 100)",
                [],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO uploads (ulid, owner, key, state, part_size, lease_expires_at,
                                      created_at, updated_at)
                 VALUES ('U2', 'o', 'deps-b', 'uploading', 1, 10000, 100, 100)",
                [],
            )
            .unwrap();
        }
        let mut reg = Registry::open(&path).unwrap();
        assert_eq!(reg.schema_version().unwrap(), MIGRATIONS.len() as i64);
        let default = Place {
            owner: "o",
            scope: bmat_wire::DEFAULT_SCOPE,
        };
        let c = reg.find_cache(&default, "deps-a").unwrap().unwrap();
        assert_eq!((c.ulid.as_str(), c.size), ("U1", 7));
        assert_eq!(reg.get_upload("U2").unwrap().unwrap().scope, "default");
        // The live upload still blocks its key in the default scope.
        assert_eq!(
            reg.begin_upload(&default, "deps-b", "U3", 1, 200, &rules(100))
                .unwrap(),
            BeginOutcome::InProgress
        );
        assert_eq!(
            reg.begin_upload(&default, "deps-a", "U4", 1, 200, &rules(100))
                .unwrap(),
            BeginOutcome::Exists
        );
    }

    #[test]
    fn prune_keeps_live_and_unconfirmed_aborts() {
        let (_d, mut reg) = open();
        add_cache(&mut reg, "o", "a", "U1", 1, 100);
        reg.begin_upload(&at("o"), "b", "U2", 1, 100, &rules(100))
            .unwrap();
        reg.set_uploading("U2", "s3", 100).unwrap();
        reg.mark_aborted("U2", &[UploadState::Uploading], 100)
            .unwrap();
        reg.begin_upload(&at("o"), "c", "U3", 1, 100, &rules(100))
            .unwrap();
        assert_eq!(reg.prune_uploads(1_000).unwrap(), 1);
        assert!(reg.get_upload("U1").unwrap().is_none());
        assert!(reg.get_upload("U2").unwrap().is_some());
        assert!(reg.get_upload("U3").unwrap().is_some());
    }
}
