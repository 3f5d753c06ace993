//! Who is asking (DESIGN §6): a bearer token is a job token (static in the config, or
//! minted and kept hashed in the registry) or an operator credential. This module
//! resolves a token to a [`Principal`] and holds the rules of what each may do; the
//! API maps its errors to HTTP statuses.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::registry::{JobTokenRow, Place};

/// What a job token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobGrant {
    pub owner: String,
    /// Written (with `write`) and searched first.
    pub scope: String,
    /// Searched after `scope`, in order; never written.
    pub read_scopes: Vec<String>,
    pub write: bool,
}

impl JobGrant {
    /// Where its caches are written and listed.
    pub fn place(&self) -> Place<'_> {
        Place {
            owner: &self.owner,
            scope: &self.scope,
        }
    }

    /// Its own scope, then its read scopes, each once.
    pub fn search_order(&self) -> Vec<String> {
        let mut order = vec![self.scope.clone()];
        for s in &self.read_scopes {
            if !order.contains(s) {
                order.push(s.clone());
            }
        }
        order
    }

    pub fn require_write(&self) -> Result<(), AuthError> {
        if self.write {
            Ok(())
        } else {
            Err(AuthError::ReadOnly)
        }
    }
}

/// What an operator credential allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorGrant {
    pub name: String,
    /// Exact owners, or prefixes ending in `*`.
    pub owners: Vec<String>,
}

impl OperatorGrant {
    pub fn allows(&self, owner: &str) -> bool {
        self.owners.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => owner.starts_with(prefix),
            None => p == owner,
        })
    }

    pub fn require_owner(&self, owner: &str) -> Result<(), AuthError> {
        if self.allows(owner) {
            Ok(())
        } else {
            Err(AuthError::OwnerNotAllowed {
                operator: self.name.clone(),
                owner: owner.to_owned(),
            })
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Job(JobGrant),
    Operator(OperatorGrant),
}

/// Why a request is refused before any cache is touched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing Authorization header; send `Authorization: Bearer <token>`")]
    MissingHeader,
    #[error("the Authorization header is not `Bearer <token>`")]
    MalformedHeader,
    #[error("unknown token")]
    UnknownToken,
    #[error("job token {id} expired {ago_secs} s ago; ask for a new one")]
    Expired { id: String, ago_secs: i64 },
    #[error("job token {id} was revoked")]
    Revoked { id: String },
    #[error("this token is read-only: it may restore caches but not save or delete them")]
    ReadOnly,
    #[error("this endpoint needs a job token, not an operator credential")]
    NeedsJobToken,
    #[error("this endpoint needs an operator credential, not a job token")]
    NeedsOperator,
    #[error("operator {operator} may not act for owner {owner:?}")]
    OwnerNotAllowed { operator: String, owner: String },
}

/// Hex SHA-256 of a token: how the registry and the config map know it. Comparing
/// digests instead of secrets means lookups reveal nothing through their timing.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh job token: 256 random bits, with a prefix that says what it is (and lets
/// secret scanners find it).
pub fn new_token_secret() -> String {
    format!("bmatjt_{}", hex::encode(rand::random::<[u8; 32]>()))
}

/// The tokens of the config, by hash.
#[derive(Debug, Default)]
pub struct StaticTokens(HashMap<String, Principal>);

impl StaticTokens {
    pub fn from_config(cfg: &Config) -> StaticTokens {
        let jobs = cfg.tokens.iter().map(|t| {
            let grant = JobGrant {
                owner: t.owner.clone(),
                scope: t.scope.clone(),
                read_scopes: t.read_scopes.clone(),
                write: t.write,
            };
            (token_hash(&t.token), Principal::Job(grant))
        });
        let operators = cfg.operators.iter().map(|o| {
            let grant = OperatorGrant {
                name: o.name.clone(),
                owners: o.owners.clone(),
            };
            (token_hash(&o.token), Principal::Operator(grant))
        });
        StaticTokens(jobs.chain(operators).collect())
    }

    pub fn get(&self, hash: &str) -> Option<&Principal> {
        self.0.get(hash)
    }
}

/// A minted token as found in the registry: its grant, unless it expired or was revoked.
pub fn check_job_token(row: JobTokenRow, now_ms: i64) -> Result<Principal, AuthError> {
    if row.revoked_at.is_some() {
        return Err(AuthError::Revoked { id: row.id });
    }
    if row.expires_at <= now_ms {
        return Err(AuthError::Expired {
            ago_secs: (now_ms - row.expires_at).div_euclid(1000),
            id: row.id,
        });
    }
    Ok(Principal::Job(JobGrant {
        owner: row.owner,
        scope: row.scope,
        read_scopes: row.read_scopes,
        write: row.write,
    }))
}

/// The token of an `Authorization` header value.
pub fn bearer(header: Option<&[u8]>) -> Result<&str, AuthError> {
    let value = header.ok_or(AuthError::MissingHeader)?;
    let value = std::str::from_utf8(value).map_err(|_| AuthError::MalformedHeader)?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(AuthError::MalformedHeader),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> JobTokenRow {
        JobTokenRow {
            id: "T".into(),
            owner: "o".into(),
            scope: "refs/pull/1/merge".into(),
            read_scopes: vec!["refs/heads/main".into(), "refs/pull/1/merge".into()],
            write: false,
            minted_by: "ci".into(),
            created_at: 0,
            expires_at: 10_000,
            revoked_at: None,
        }
    }

    #[test]
    fn minted_tokens_live_until_expiry_or_revocation() {
        let Ok(Principal::Job(grant)) = check_job_token(row(), 9_999) else {
            panic!("a live token is refused");
        };
        assert_eq!(
            grant.search_order(),
            ["refs/pull/1/merge", "refs/heads/main"]
        );
        assert_eq!(grant.require_write(), Err(AuthError::ReadOnly));
        assert_eq!(
            check_job_token(row(), 12_500),
            Err(AuthError::Expired {
                id: "T".into(),
                ago_secs: 2
            })
        );
        let revoked = JobTokenRow {
            revoked_at: Some(5),
            ..row()
        };
        assert_eq!(
            check_job_token(revoked, 1),
            Err(AuthError::Revoked { id: "T".into() })
        );
    }

    #[test]
    fn operator_owner_patterns() {
        let op = OperatorGrant {
            name: "ci".into(),
            owners: vec!["acme/*".into(), "solo".into()],
        };
        assert!(op.allows("acme/widgets"));
        assert!(op.allows("solo"));
        assert!(!op.allows("solo2"));
        assert!(!op.allows("acme"));
        assert!(!op.allows("evil/acme/x"));
        let all = OperatorGrant {
            name: "root".into(),
            owners: vec!["*".into()],
        };
        assert!(all.allows("anyone"));
    }

    #[test]
    fn bearer_headers() {
        assert_eq!(bearer(Some(b"Bearer abc")), Ok("abc"));
        assert_eq!(bearer(Some(b"bearer  abc ")), Ok("abc"));
        assert_eq!(bearer(None), Err(AuthError::MissingHeader));
        assert_eq!(bearer(Some(b"Basic abc")), Err(AuthError::MalformedHeader));
        assert_eq!(bearer(Some(b"Bearer ")), Err(AuthError::MalformedHeader));
    }

    #[test]
    fn secrets_are_random_and_hashed_to_hex() {
        let (a, b) = (new_token_secret(), new_token_secret());
        assert_ne!(a, b);
        assert!(a.starts_with("bmatjt_") && a.len() == 7 + 64);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), token_hash(&b));
    }
}
