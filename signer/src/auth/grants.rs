//! What a token allows: a job token's grant (one owner's scope to write, read scopes
//! to search) or an operator credential's (owners to list, delete and mint for).

use super::error::AuthError;
use crate::names;
use crate::registry::Place;

/// What a job token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobGrant {
    pub owner: String,
    /// Written (with `write`) and searched first.
    pub scope: String,
    /// Searched after `scope`, in order; never written.
    pub read_scopes: Vec<String>,
    pub write: bool,
    /// Which token it is, for per-token budgets: a minted token's id, a config
    /// token's SHA-256.
    pub token: String,
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
        self.owners.iter().any(|p| names::matches(p, owner))
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
