//! Bearer tokens: read from the `Authorization` header, known by their SHA-256 (the
//! config's by a map, minted ones by the registry), minted fresh, and checked for
//! expiry and revocation.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::error::AuthError;
use super::grants::{JobGrant, OperatorGrant, Principal};
use crate::config::Config;
use crate::registry::JobTokenRow;

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

/// The tokens of the config, by hash, and its operators, by name (a minted token is
/// good only while the operator that minted it is in the config and still allowed
/// its owner).
#[derive(Debug, Default)]
pub struct StaticTokens {
    by_hash: HashMap<String, Principal>,
    operators: HashMap<String, Vec<OperatorGrant>>,
}

impl StaticTokens {
    pub fn from_config(cfg: &Config) -> StaticTokens {
        let jobs = cfg.tokens.iter().map(|t| {
            let hash = token_hash(&t.token);
            let grant = JobGrant {
                owner: t.owner.clone(),
                scope: t.scope.clone(),
                read_scopes: t.read_scopes.clone(),
                write: t.write,
                token: hash.clone(),
            };
            (hash, Principal::Job(grant))
        });
        let grants: Vec<(String, OperatorGrant)> = cfg
            .operators
            .iter()
            .map(|o| {
                let grant = OperatorGrant {
                    name: o.name.clone(),
                    owners: o.owners.clone(),
                };
                (token_hash(&o.token), grant)
            })
            .collect();
        let mut operators: HashMap<String, Vec<OperatorGrant>> = HashMap::new();
        for (_, grant) in &grants {
            operators
                .entry(grant.name.clone())
                .or_default()
                .push(grant.clone());
        }
        let by_hash = jobs
            .chain(grants.into_iter().map(|(h, g)| (h, Principal::Operator(g))))
            .collect();
        StaticTokens { by_hash, operators }
    }

    pub fn get(&self, hash: &str) -> Option<&Principal> {
        self.by_hash.get(hash)
    }

    /// Whether an operator named `name` is in the config and may act for `owner`.
    fn operator_allows(&self, name: &str, owner: &str) -> bool {
        self.operators
            .get(name)
            .is_some_and(|grants| grants.iter().any(|g| g.allows(owner)))
    }
}

/// A minted token as found in the registry: its grant, unless it expired, was revoked,
/// or the operator that minted it has left the config (or no longer has its owner).
pub fn check_job_token(
    row: JobTokenRow,
    now_ms: i64,
    config: &StaticTokens,
) -> Result<Principal, AuthError> {
    if row.revoked_at.is_some() {
        return Err(AuthError::Revoked { id: row.id });
    }
    if !config.operator_allows(&row.minted_by, &row.owner) {
        return Err(AuthError::MinterGone {
            id: row.id,
            operator: row.minted_by,
        });
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
        token: row.id,
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

    /// A config whose operator `ci` may act for `owners`.
    fn config(owners: &[&str]) -> StaticTokens {
        let toml = format!(
            "[s3]\nendpoint = \"http://s3\"\nbucket = \"b\"\n\
             [[operators]]\ntoken = \"secret\"\nname = \"ci\"\nowners = {owners:?}\n"
        );
        StaticTokens::from_config(&toml::from_str(&toml).expect("config"))
    }

    #[test]
    fn minted_tokens_die_with_their_operator_or_its_grant_of_the_owner() {
        assert!(check_job_token(row(), 1, &config(&["o"])).is_ok());
        assert!(check_job_token(row(), 1, &config(&["*"])).is_ok());
        for gone in [&["other"][..], &["x*"]] {
            assert_eq!(
                check_job_token(row(), 1, &config(gone)),
                Err(AuthError::MinterGone {
                    id: "T".into(),
                    operator: "ci".into()
                })
            );
        }
        assert_eq!(
            check_job_token(row(), 1, &StaticTokens::default()),
            Err(AuthError::MinterGone {
                id: "T".into(),
                operator: "ci".into()
            })
        );
    }

    #[test]
    fn minted_tokens_live_until_expiry_or_revocation() {
        let ci = config(&["o"]);
        let Ok(Principal::Job(grant)) = check_job_token(row(), 9_999, &ci) else {
            panic!("a live token is refused");
        };
        assert_eq!(
            grant.search_order(),
            ["refs/pull/1/merge", "refs/heads/main"]
        );
        assert_eq!(grant.require_write(), Err(AuthError::ReadOnly));
        assert_eq!(
            check_job_token(row(), 12_500, &ci),
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
            check_job_token(revoked, 1, &ci),
            Err(AuthError::Revoked { id: "T".into() })
        );
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
