//! A registry rebuilt from the bucket (`signer registry rebuild`, docs/design.md,
//! "Registry and S3 layout": the registry is an index): it takes the id of the
//! registry that claimed the prefix, and its caches, their references and the retained
//! objects they read are written in one transaction, into a registry that holds no
//! cache.

use rusqlite::{TransactionBehavior, params};

use super::caches::CacheRow;
use super::error::RegistryError;
use super::refs::{ObjectRef, insert_refs};
use super::schema::Registry;
use super::values::to_i64;

/// A retained object: its size, and the place that pays for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainedObject {
    pub object: String,
    pub owner: String,
    pub scope: String,
    pub size: u64,
}

impl Registry {
    /// How many caches the registry holds.
    pub fn cache_count(&self) -> Result<u64, RegistryError> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM caches", [], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }

    /// Gives this registry the id of the one it is rebuilt for, so that the signer
    /// takes the prefix that registry claimed.
    pub fn set_registry_id(&self, id: &str) -> Result<(), RegistryError> {
        self.conn.execute(
            "UPDATE meta SET value = ?1 WHERE name = 'registry_id'",
            params![id],
        )?;
        Ok(())
    }

    /// Writes the caches (each with the objects it reads) and the retained objects, in
    /// one transaction; false (nothing written) when the registry holds a cache.
    pub fn insert_rebuilt(
        &mut self,
        caches: &[(CacheRow, Vec<ObjectRef>)],
        retained: &[RetainedObject],
        now: i64,
    ) -> Result<bool, RegistryError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let held: bool = tx.query_row("SELECT EXISTS (SELECT 1 FROM caches)", [], |r| r.get(0))?;
        if held {
            return Ok(false);
        }
        {
            let mut insert = tx.prepare(
                "INSERT INTO caches (owner, scope, key, ulid, size, sha256, created_at,
                                     last_used_at, unpacked_size, entries, format, logical_size)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?;
            let signed = |v: Option<u64>| v.map(to_i64).transpose();
            for (c, refs) in caches {
                insert.execute(params![
                    c.owner,
                    c.scope,
                    c.key,
                    c.ulid,
                    to_i64(c.size)?,
                    c.sha256,
                    c.created_at,
                    c.last_used_at,
                    signed(c.extent.unpacked_size)?,
                    signed(c.extent.entries)?,
                    c.format,
                    signed(c.logical_size)?,
                ])?;
                insert_refs(&tx, &c.ulid, refs)?;
            }
            let mut keep = tx.prepare(
                "INSERT INTO retained (object, owner, scope, size, since)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for r in retained {
                keep.execute(params![r.object, r.owner, r.scope, to_i64(r.size)?, now])?;
            }
        }
        tx.commit()?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use bmat_wire::api::Extent;

    use super::*;
    use crate::registry::schema::testing::open;
    use crate::registry::uploads::testing::add_cache;
    use crate::registry::values::Place;

    fn row(key: &str, ulid: &str, format: u8) -> CacheRow {
        CacheRow {
            owner: "o".into(),
            scope: "s".into(),
            key: key.into(),
            ulid: ulid.into(),
            size: 10,
            sha256: "00".into(),
            extent: Extent {
                unpacked_size: Some(30),
                entries: Some(3),
            },
            created_at: 5,
            last_used_at: 5,
            restored_at: None,
            format,
            logical_size: (format == 2).then_some(40),
        }
    }

    #[test]
    fn a_rebuilt_registry_serves_its_caches_references_and_retained_objects() {
        let (_d, mut reg) = open();
        let read = ObjectRef {
            id: "R".into(),
            size: 7,
        };
        let retained = RetainedObject {
            object: "R".into(),
            owner: "o".into(),
            scope: "s".into(),
            size: 7,
        };
        let caches = [
            (row("a", "A", 1), vec![]),
            (row("b", "B", 2), vec![read.clone()]),
        ];
        reg.set_registry_id("their-id").unwrap();
        assert!(reg.insert_rebuilt(&caches, &[retained], 9).unwrap());
        assert_eq!(reg.registry_id().unwrap(), "their-id");
        assert_eq!(reg.cache_count().unwrap(), 2);
        let at = Place {
            owner: "o",
            scope: "s",
        };
        assert_eq!(reg.find_cache(&at, "b").unwrap().unwrap(), caches[1].0);
        assert_eq!(reg.refs_of("B").unwrap(), [read]);
        assert_eq!(reg.retained_bytes("o").unwrap(), [("s".into(), 7)]);
        assert!(reg.object_needed("R", i64::MAX).unwrap());
        assert!(reg.index_needed("A").unwrap());
        assert!(!reg.index_needed("R").unwrap());
        // Never over caches it holds.
        assert!(!reg.insert_rebuilt(&caches, &[], 9).unwrap());
        let (_d, mut reg) = open();
        add_cache(&mut reg, "o", "k", "K", 1, 1);
        assert!(!reg.insert_rebuilt(&caches, &[], 9).unwrap());
        assert_eq!(reg.cache_count().unwrap(), 1);
    }
}
