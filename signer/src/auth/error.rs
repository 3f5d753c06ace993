//! Why a token is refused, and why resolving one failed.

use crate::registry::RegistryError;

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
    #[error(
        "job token {id} was minted by operator {operator:?}, who is no longer allowed its owner"
    )]
    MinterGone { id: String, operator: String },
    #[error("this token is read-only: it may restore caches but not save or delete them")]
    ReadOnly,
    #[error("this endpoint needs a job token, not an operator credential")]
    NeedsJobToken,
    #[error("this endpoint needs an operator credential, not a job token")]
    NeedsOperator,
    #[error("operator {operator} may not act for owner {owner:?}")]
    OwnerNotAllowed { operator: String, owner: String },
}

/// Why a bearer token could not be resolved to a principal: it is refused, or the
/// registry that keeps minted tokens failed.
#[derive(Debug, thiserror::Error)]
pub enum PrincipalError {
    #[error(transparent)]
    Refused(#[from] AuthError),
    #[error("the registry failed")]
    Registry(#[from] RegistryError),
}
