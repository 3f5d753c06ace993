//! Who may list and drop which caches: a job token in its own owner and scope only; an
//! operator credential in the owners it is allowed, naming them.

use bmat_wire::api::CacheSelector;

use super::error::CacheError;
use crate::auth::Principal;
use crate::names;

/// The owner and scope a caller lists or deletes in. A job token: its own (the
/// selector may only repeat them); an operator: the selector's, for an owner it is
/// allowed (`scope` may be left out to list every scope, never to delete).
pub fn selected(
    caller: &Principal,
    sel: CacheSelector,
    scope_needed: bool,
) -> Result<(String, Option<String>), CacheError> {
    match caller {
        Principal::Job(job) => {
            if sel.owner.as_ref().is_some_and(|o| *o != job.owner)
                || sel.scope.as_ref().is_some_and(|s| *s != job.scope)
            {
                return Err(CacheError::OutsideOwnPlace);
            }
            Ok((job.owner.clone(), Some(job.scope.clone())))
        }
        Principal::Operator(op) => {
            let Some(owner) = sel.owner else {
                return Err(CacheError::OwnerNotNamed);
            };
            names::owner(&owner)?;
            op.require_owner(&owner)?;
            if let Some(scope) = &sel.scope {
                names::scope("scope", scope)?;
            } else if scope_needed {
                return Err(CacheError::ScopeNotNamed);
            }
            Ok((owner, sel.scope))
        }
    }
}

/// A job token must be allowed to write to drop a cache; an operator credential is
/// checked by [`selected`].
pub fn may_drop(caller: &Principal) -> Result<(), CacheError> {
    if let Principal::Job(job) = caller {
        job.require_write()?;
    }
    Ok(())
}
