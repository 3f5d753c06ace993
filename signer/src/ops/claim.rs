//! Taking the S3 prefix (docs/design.md, "Registry and S3 layout"). The reaper deletes
//! what its registry does not know under the prefix, so two signers on one prefix
//! would destroy each other's uploads and caches: two registries (a staging copy, a
//! fresh registry beside the old one), and just as well two copies of one registry (a
//! restored backup, a copied file), which share its id. `{prefix}/registry-id` names
//! the registry that owns the prefix and the running signer that holds its lease
//! ([`crate::lease::Claim`]); a signer takes the prefix only when its registry owns it
//! (or `s3.take_over_prefix`) and no other signer holds a live lease on it.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::config::rules::PREFIX_LEASE_SECS;
use crate::lease::{self, Claim};
use crate::s3::S3Error;
use crate::state::{AppState, now_ms};

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(
        "s3.prefix {prefix:?} belongs to another registry ({theirs}; this one is {ours}): two \
         signers on one prefix delete each other's uploads and caches; give this signer a \
         prefix of its own, or set s3.take_over_prefix = true if that registry is gone for good"
    )]
    Foreign {
        prefix: String,
        ours: String,
        theirs: String,
    },
    #[error(
        "s3.prefix {prefix:?} is held by another running signer of registry {registry}: \
         {holder}; two signers on one prefix delete each other's uploads and caches, even on \
         copies of one registry; give this signer a prefix of its own (s3.prefix), or stop the \
         other one first"
    )]
    Held {
        prefix: String,
        registry: String,
        holder: String,
    },
    #[error("cannot check which registry owns s3.prefix {prefix:?}: {source}")]
    S3 {
        prefix: String,
        #[source]
        source: S3Error,
    },
    #[error("cannot read this registry's id: {0:#}")]
    Registry(#[source] crate::registry::RegistryError),
}

impl ClaimError {
    /// Another registry or another signer has the prefix: waiting changes nothing.
    pub fn is_refusal(&self) -> bool {
        matches!(self, ClaimError::Foreign { .. } | ClaimError::Held { .. })
    }
}

/// Takes the prefix for this process. A claim of another registry is refused unless
/// `s3.take_over_prefix`; a claim held by another signer (of any registry) is watched
/// for the length of its lease: renewed meanwhile, it is refused; unchanged, its signer
/// is gone (killed, crashed) and the prefix is taken.
pub async fn acquire(st: &AppState) -> Result<(), ClaimError> {
    let cfg = st.cfg();
    let (prefix, object) = (cfg.s3.prefix.clone(), cfg.s3.claim_object());
    let s3_err = |source| ClaimError::S3 {
        prefix: prefix.clone(),
        source,
    };
    let ours = st
        .db
        .run(|r| r.registry_id())
        .await
        .map_err(ClaimError::Registry)?;
    // The claim first seen under another signer's lease, and since when.
    let mut watching: Option<(Claim, Instant)> = None;
    let taken_from = loop {
        let Some(claim) = lease::read(&st.s3, &object).await.map_err(s3_err)? else {
            break None;
        };
        if claim.registry != ours && !cfg.s3.take_over_prefix {
            return Err(ClaimError::Foreign {
                prefix,
                ours,
                theirs: claim.registry,
            });
        }
        let holder = match &claim.holder {
            Some(h) if !st.lease.is_ours(&claim) => h.clone(),
            // Released by a clean stop, written before leases, or our own.
            _ => break Some(claim),
        };
        let lease_of_holder = Duration::from_secs(
            holder
                .lease_secs
                .clamp(PREFIX_LEASE_SECS.0, PREFIX_LEASE_SECS.1),
        );
        match &watching {
            None => {
                info!(
                    "s3.prefix {prefix:?} is held by {}; waiting up to {} s for its lease to lapse",
                    holder.describe(now_ms()),
                    lease_of_holder.as_secs()
                );
                watching = Some((claim, Instant::now()));
            }
            // Renewed (or taken by yet another signer): it is alive.
            Some((first, _)) if *first != claim => {
                return Err(ClaimError::Held {
                    prefix,
                    registry: claim.registry,
                    holder: holder.describe(now_ms()),
                });
            }
            Some((_, since)) if since.elapsed() >= lease_of_holder => {
                warn!(
                    "the lease of {} on s3.prefix {prefix:?} lapsed without a renewal: taking the prefix",
                    holder.describe(now_ms())
                );
                break Some(claim);
            }
            Some(_) => {}
        }
        // Its holder renews every third of its lease: two looks per renewal.
        tokio::time::sleep(lease_of_holder / 6).await;
    };
    match taken_from {
        Some(c) if c.registry != ours => warn!(
            "taking s3.prefix {prefix:?} over from registry {} (s3.take_over_prefix)",
            c.registry
        ),
        Some(_) => {}
        None => info!("claiming s3.prefix {prefix:?} for registry {ours}"),
    }
    st.s3
        .put_object(&object, st.lease.claim(&ours, now_ms()).to_bytes())
        .await
        .map_err(s3_err)?;
    // S3 has no portable "create if absent": two signers taking the prefix at the same
    // moment both write, and the later write wins. Reading back makes a loser that
    // reads after the winner's write notice now; one that read before it notices at
    // its first renewal (`ops::lease`), having had no time for a reaper pass unless
    // its pass started within that instant.
    let now = lease::read(&st.s3, &object).await.map_err(s3_err)?;
    match now {
        Some(c) if st.lease.is_ours(&c) => {
            st.lease.hold();
            Ok(())
        }
        Some(c) if c.registry != ours => Err(ClaimError::Foreign {
            prefix,
            ours,
            theirs: c.registry,
        }),
        other => Err(ClaimError::Held {
            prefix,
            registry: ours,
            holder: other
                .and_then(|c| c.holder)
                .map_or_else(|| "(claim gone)".to_owned(), |h| h.describe(now_ms())),
        }),
    }
}
