//! The registry's connection and schema: opening, the migrations that build the tables
//! (`PRAGMA user_version`), the schema version and the registry's own random id.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use super::error::RegistryError;

/// Version 1: caches and uploads, as the release before scopes created them (also what
/// the migration tests start from).
pub const SCHEMA_V1: &str = r#"
    CREATE TABLE caches (
        id           INTEGER PRIMARY KEY,
        owner        TEXT NOT NULL,
        key          TEXT NOT NULL,
        ulid         TEXT NOT NULL UNIQUE,
        size         INTEGER NOT NULL,
        sha256       TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        last_used_at INTEGER NOT NULL,
        UNIQUE (owner, key)
    );
    CREATE INDEX caches_by_owner_last_used ON caches (owner, last_used_at);
    CREATE INDEX caches_by_last_used ON caches (last_used_at);

    CREATE TABLE uploads (
        ulid             TEXT PRIMARY KEY,
        owner            TEXT NOT NULL,
        key              TEXT NOT NULL,
        s3_upload_id     TEXT,
        state            TEXT NOT NULL
            CHECK (state IN ('creating', 'uploading', 'finished', 'completed', 'aborted')),
        part_size        INTEGER NOT NULL,
        size             INTEGER,
        sha256           TEXT,
        parts_json       TEXT,
        lease_expires_at INTEGER NOT NULL,
        attempts         INTEGER NOT NULL DEFAULT 0,
        next_attempt_at  INTEGER,
        -- 1 while the S3 multipart upload of an aborted row may still exist.
        needs_abort      INTEGER NOT NULL DEFAULT 0,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL
    );
    -- At most one live upload per key: two concurrent begins cannot both win.
    CREATE UNIQUE INDEX uploads_one_live_per_key ON uploads (owner, key)
        WHERE state IN ('creating', 'uploading', 'finished');
    CREATE INDEX uploads_by_state ON uploads (state, next_attempt_at);
    "#;

/// Each entry upgrades the schema by one version (`PRAGMA user_version`). Entries are
/// only ever appended: a released one is never edited.
pub(super) const MIGRATIONS: &[&str] = &[
    SCHEMA_V1,
    // 2: scopes and job tokens. A cache belongs to (owner, scope, key);
    // rows of version 1 get the scope 'default' (bmat_wire::DEFAULT_SCOPE), which is
    // also the scope of config tokens that name none, so they keep serving. SQLite
    // cannot change a UNIQUE constraint in place: the caches table is rebuilt.
    r#"
    CREATE TABLE caches_v2 (
        id           INTEGER PRIMARY KEY,
        owner        TEXT NOT NULL,
        scope        TEXT NOT NULL,
        key          TEXT NOT NULL,
        ulid         TEXT NOT NULL UNIQUE,
        size         INTEGER NOT NULL,
        sha256       TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        last_used_at INTEGER NOT NULL,
        -- Also the index of exact and prefix lookups (a range scan on key).
        UNIQUE (owner, scope, key)
    );
    INSERT INTO caches_v2 (id, owner, scope, key, ulid, size, sha256, created_at, last_used_at)
        SELECT id, owner, 'default', key, ulid, size, sha256, created_at, last_used_at
        FROM caches;
    DROP TABLE caches;
    ALTER TABLE caches_v2 RENAME TO caches;
    CREATE INDEX caches_by_owner_last_used ON caches (owner, last_used_at);
    CREATE INDEX caches_by_last_used ON caches (last_used_at);

    ALTER TABLE uploads ADD COLUMN scope TEXT NOT NULL DEFAULT 'default';
    DROP INDEX uploads_one_live_per_key;
    CREATE UNIQUE INDEX uploads_one_live_per_key ON uploads (owner, scope, key)
        WHERE state IN ('creating', 'uploading', 'finished');

    -- Only the SHA-256 of a job token is kept; the token itself is shown once.
    CREATE TABLE job_tokens (
        id               TEXT PRIMARY KEY,
        hash             TEXT NOT NULL UNIQUE,
        owner            TEXT NOT NULL,
        scope            TEXT NOT NULL,
        read_scopes_json TEXT NOT NULL,
        write            INTEGER NOT NULL,
        minted_by        TEXT NOT NULL,
        created_at       INTEGER NOT NULL,
        expires_at       INTEGER NOT NULL,
        revoked_at       INTEGER
    );
    CREATE INDEX job_tokens_by_expiry ON job_tokens (expires_at);
    "#,
    // 3: what an archive unpacks to (bytes of its tar stream, entries), as its saver
    // recorded them; NULL for older caches.
    r#"
    ALTER TABLE uploads ADD COLUMN unpacked_size INTEGER;
    ALTER TABLE uploads ADD COLUMN entries INTEGER;
    ALTER TABLE caches ADD COLUMN unpacked_size INTEGER;
    ALTER TABLE caches ADD COLUMN entries INTEGER;
    -- The last restore a job reported as successful.
    ALTER TABLE caches ADD COLUMN restored_at INTEGER;
    -- The newest caches of a place first, for fallback lookups.
    CREATE INDEX caches_by_place_created ON caches (owner, scope, created_at, id);
    "#,
    // 4: when the client finished an upload, the start of the completion worker's
    // retry budget (rows finished before this version count from their creation).
    r#"
    ALTER TABLE uploads ADD COLUMN finished_at INTEGER;
    UPDATE uploads SET finished_at = created_at WHERE state = 'finished';
    "#,
    // 5: the registry's own random id, which it claims its S3 prefix with (see
    // crate::ops::claim).
    r#"
    CREATE TABLE meta (
        name  TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    INSERT INTO meta (name, value) VALUES ('registry_id', lower(hex(randomblob(16))));
    "#,
    // 6: usage counters per owner, scope and hour (see registry::usage); the reaper
    // forgets hours older than a week and a day.
    r#"
    CREATE TABLE usage (
        owner     TEXT NOT NULL,
        scope     TEXT NOT NULL,
        hour      INTEGER NOT NULL, -- Unix time in hours
        hits      INTEGER NOT NULL DEFAULT 0,
        misses    INTEGER NOT NULL DEFAULT 0,
        evictions INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (owner, scope, hour)
    ) WITHOUT ROWID;
    CREATE INDEX usage_by_hour ON usage (hour);
    "#,
    // 7: a refresh (`--refresh-after`): the cache an upload replaces when it
    // completes; its object outlives its row for a grace period (see ops::reaper).
    r#"
    ALTER TABLE uploads ADD COLUMN replaces TEXT;
    CREATE INDEX uploads_by_replaces ON uploads (replaces) WHERE replaces IS NOT NULL;
    "#,
    // 8: content-addressed caches (see registry::refs). A cache's format and logical
    // size (NULL for archives), on the upload from its completion on; the other
    // objects a cache (or the upload that becomes it: same ULID) reads contents from;
    // the objects of deleted caches that live caches still read (retained); and the
    // objects that stopped being needed, kept for the download grace (released),
    // which also takes over a refresh's grace from `uploads.replaces`.
    r#"
    ALTER TABLE caches ADD COLUMN format INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE caches ADD COLUMN logical_size INTEGER;
    ALTER TABLE uploads ADD COLUMN format INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE uploads ADD COLUMN logical_size INTEGER;
    CREATE TABLE refs (
        cache  TEXT NOT NULL,
        object TEXT NOT NULL,
        -- The object's size, as the cache it came from recorded it.
        size   INTEGER NOT NULL,
        PRIMARY KEY (cache, object)
    ) WITHOUT ROWID;
    CREATE INDEX refs_by_object ON refs (object);
    CREATE TABLE retained (
        object TEXT PRIMARY KEY,
        owner  TEXT NOT NULL,
        scope  TEXT NOT NULL,
        size   INTEGER NOT NULL,
        since  INTEGER NOT NULL
    );
    CREATE INDEX retained_by_place ON retained (owner, scope);
    CREATE TABLE released (
        object      TEXT PRIMARY KEY,
        released_at INTEGER NOT NULL
    );
    INSERT INTO released (object, released_at)
        SELECT replaces, max(updated_at) FROM uploads
        WHERE replaces IS NOT NULL AND state = 'completed' GROUP BY replaces;
    DROP INDEX uploads_by_replaces;
    "#,
];

/// One SQLite connection to the registry; the queries of each table group are in the
/// sibling files (`caches`, `uploads`, `tokens`, `usage`).
pub struct Registry {
    pub(super) conn: Connection,
}

impl Registry {
    /// Opens (creating if needed) and migrates the registry.
    pub fn open(path: &Path) -> Result<Registry, RegistryError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| RegistryError::CreateDir {
                dir: dir.to_owned(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(|source| RegistryError::Open {
            path: path.to_owned(),
            source,
        })?;
        let mut reg = Registry { conn };
        reg.configure(path)?;
        reg.migrate(path)?;
        Ok(reg)
    }

    /// A second connection to an opened (and migrated) registry that only reads. In
    /// WAL mode it neither waits for the writer nor makes it wait.
    pub fn open_reader(path: &Path) -> Result<Registry, RegistryError> {
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| RegistryError::OpenReader {
            path: path.to_owned(),
            source,
        })?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Ok(Registry { conn })
    }

    /// The file this registry lives in.
    pub fn path(&self) -> Option<PathBuf> {
        self.conn.path().map(PathBuf::from)
    }

    fn configure(&self, path: &Path) -> Result<(), RegistryError> {
        let setup = |source| RegistryError::Setup {
            path: path.to_owned(),
            source,
        };
        self.conn
            .busy_timeout(Duration::from_secs(5))
            .map_err(setup)?;
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(setup)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(RegistryError::NotWal {
                path: path.to_owned(),
                mode,
            });
        }
        // WAL + NORMAL survives a process crash; only a power loss may lose the last
        // commits, which the registry tolerates (it is an index).
        self.conn
            .execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(setup)
    }

    fn migrate(&mut self, path: &Path) -> Result<(), RegistryError> {
        let setup = |source| RegistryError::Setup {
            path: path.to_owned(),
            source,
        };
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(setup)?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(RegistryError::NewerSchema {
                path: path.to_owned(),
                version,
                known,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(setup)?;
            tx.execute_batch(sql)
                .map_err(|source| RegistryError::Migration {
                    path: path.to_owned(),
                    version: i + 1,
                    source,
                })?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(setup)?;
            tx.commit().map_err(setup)?;
        }
        Ok(())
    }

    pub fn schema_version(&self) -> Result<i64, RegistryError> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// This registry's random id, made when its schema was created or upgraded.
    pub fn registry_id(&self) -> Result<String, RegistryError> {
        Ok(self.conn.query_row(
            "SELECT value FROM meta WHERE name = 'registry_id'",
            [],
            |r| r.get(0),
        )?)
    }

    /// Runs `f` in one read transaction, so that what it reads is one state of the
    /// registry (a cache and its references, not a cache and what remains after it).
    pub fn snapshot<R>(
        &self,
        f: impl FnOnce(&Registry) -> Result<R, RegistryError>,
    ) -> Result<R, RegistryError> {
        let tx = self.conn.unchecked_transaction()?;
        let out = f(self)?;
        tx.finish()?;
        Ok(out)
    }

    /// Cheap liveness check for /v1/health.
    pub fn ping(&self) -> Result<(), RegistryError> {
        self.conn.query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod testing {
    use super::Registry;

    /// A new registry in a directory of its own (made on open).
    pub fn open() -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(&dir.path().join("sub/registry.sqlite")).unwrap();
        (dir, reg)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::open;
    use super::*;

    #[test]
    fn migrations_run_once_and_survive_reopen() {
        let (dir, reg) = open();
        assert_eq!(reg.schema_version().unwrap(), MIGRATIONS.len() as i64);
        let mode: String = reg
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode.to_lowercase(), "wal");
        drop(reg);
        let reg = Registry::open(&dir.path().join("sub/registry.sqlite")).unwrap();
        assert_eq!(reg.schema_version().unwrap(), MIGRATIONS.len() as i64);
    }

    #[test]
    fn the_registry_id_is_random_and_kept() {
        let (dir, reg) = open();
        let id = reg.registry_id().unwrap();
        assert_eq!(id.len(), 32);
        drop(reg);
        let reg = Registry::open(&dir.path().join("sub/registry.sqlite")).unwrap();
        assert_eq!(reg.registry_id().unwrap(), id);
        assert_ne!(open().1.registry_id().unwrap(), id);
    }

    #[test]
    fn newer_schema_is_refused() {
        let (dir, reg) = open();
        reg.conn.pragma_update(None, "user_version", 99).unwrap();
        drop(reg);
        let err = Registry::open(&dir.path().join("sub/registry.sqlite"))
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("99"), "{err:#}");
    }
}
