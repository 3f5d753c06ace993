//! Job tokens in the registry: minted by an operator, found by the SHA-256 of the
//! token, revoked by id, forgotten some time after they expired.

use rusqlite::{OptionalExtension, Row, params};

use super::error::RegistryError;
use super::schema::Registry;

/// A job token as the registry keeps it (the hash, never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobTokenRow {
    pub id: String,
    pub owner: String,
    pub scope: String,
    pub read_scopes: Vec<String>,
    pub write: bool,
    pub minted_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

fn token_from_row(r: &Row<'_>) -> rusqlite::Result<JobTokenRow> {
    let read_scopes: String = r.get("read_scopes_json")?;
    let read_scopes = serde_json::from_str(&read_scopes).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
    })?;
    Ok(JobTokenRow {
        id: r.get("id")?,
        owner: r.get("owner")?,
        scope: r.get("scope")?,
        read_scopes,
        write: r.get::<_, i64>("write")? != 0,
        minted_by: r.get("minted_by")?,
        created_at: r.get("created_at")?,
        expires_at: r.get("expires_at")?,
        revoked_at: r.get("revoked_at")?,
    })
}

impl Registry {
    /// Stores a new job token under the hex SHA-256 of its secret.
    pub fn insert_job_token(&self, row: &JobTokenRow, hash: &str) -> Result<(), RegistryError> {
        self.conn.execute(
            "INSERT INTO job_tokens (id, hash, owner, scope, read_scopes_json, write, minted_by,
                                     created_at, expires_at, revoked_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                row.id,
                hash,
                row.owner,
                row.scope,
                serde_json::to_string(&row.read_scopes)?,
                row.write,
                row.minted_by,
                row.created_at,
                row.expires_at,
                row.revoked_at
            ],
        )?;
        Ok(())
    }

    /// The token whose secret hashes to `hash`, expired and revoked ones included (the
    /// caller says which it is).
    pub fn job_token_by_hash(&self, hash: &str) -> Result<Option<JobTokenRow>, RegistryError> {
        Ok(self
            .conn
            .query_row(
                "SELECT * FROM job_tokens WHERE hash = ?1",
                params![hash],
                token_from_row,
            )
            .optional()?)
    }

    pub fn job_token(&self, id: &str) -> Result<Option<JobTokenRow>, RegistryError> {
        Ok(self
            .conn
            .query_row(
                "SELECT * FROM job_tokens WHERE id = ?1",
                params![id],
                token_from_row,
            )
            .optional()?)
    }

    /// Marks the token revoked (the first revocation's time is kept).
    pub fn revoke_job_token(&self, id: &str, now: i64) -> Result<bool, RegistryError> {
        Ok(self.conn.execute(
            "UPDATE job_tokens SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1",
            params![id, now],
        )? > 0)
    }

    /// Forgets tokens that expired before `cutoff`: until then a client still learns
    /// that its token expired or was revoked rather than that it is unknown.
    pub fn prune_job_tokens(&self, cutoff: i64) -> Result<usize, RegistryError> {
        Ok(self.conn.execute(
            "DELETE FROM job_tokens WHERE expires_at < ?1",
            params![cutoff],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_by_hash_revoked_once_and_pruned_after_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(&dir.path().join("r.sqlite")).unwrap();
        let row = JobTokenRow {
            id: "T1".into(),
            owner: "acme/w".into(),
            scope: "refs/pull/1/merge".into(),
            read_scopes: vec!["refs/heads/main".into()],
            write: false,
            minted_by: "ci".into(),
            created_at: 100,
            expires_at: 1_000,
            revoked_at: None,
        };
        reg.insert_job_token(&row, "h1").unwrap();
        assert_eq!(reg.job_token_by_hash("h1").unwrap(), Some(row.clone()));
        assert!(reg.job_token_by_hash("h2").unwrap().is_none());
        assert!(reg.revoke_job_token("T1", 500).unwrap());
        assert!(reg.revoke_job_token("T1", 600).unwrap());
        assert_eq!(reg.job_token("T1").unwrap().unwrap().revoked_at, Some(500));
        assert!(!reg.revoke_job_token("T2", 600).unwrap());
        assert_eq!(reg.prune_job_tokens(1_000).unwrap(), 0);
        assert_eq!(reg.prune_job_tokens(1_001).unwrap(), 1);
        assert!(reg.job_token("T1").unwrap().is_none());
    }
}
