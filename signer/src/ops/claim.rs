//! One registry per S3 prefix. The reaper deletes what its registry does not know
//! under the prefix, so two registries on one prefix (a staging copy, a signer started
//! on a fresh registry beside the old one) would destroy each other's uploads and
//! caches. Each registry has a random id; `{prefix}/registry-id` names the one that
//! owns the prefix, and a signer whose registry is not that one refuses to start.

use tracing::{info, warn};

use crate::s3::S3Error;
use crate::state::AppState;

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
    #[error("cannot check which registry owns s3.prefix {prefix:?}: {source}")]
    S3 {
        prefix: String,
        #[source]
        source: S3Error,
    },
    #[error("cannot read this registry's id: {0:#}")]
    Registry(#[source] crate::registry::RegistryError),
}

/// Claims the prefix for this registry, or confirms the claim. A prefix claimed by
/// another registry is refused unless `s3.take_over_prefix` is set.
pub async fn claim_prefix(st: &AppState) -> Result<(), ClaimError> {
    let prefix = st.cfg().s3.prefix.clone();
    let marker = st.cfg().s3.claim_object();
    let s3_err = |source| ClaimError::S3 {
        prefix: prefix.clone(),
        source,
    };
    let ours = st
        .db
        .run(|r| r.registry_id())
        .await
        .map_err(ClaimError::Registry)?;
    let theirs = match st.s3.get_object(&marker).await {
        Ok(bytes) => Some(String::from_utf8_lossy(&bytes).trim().to_owned()),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(s3_err(e)),
    };
    match theirs {
        Some(theirs) if theirs == ours => return Ok(()),
        Some(theirs) if !st.cfg().s3.take_over_prefix => {
            return Err(ClaimError::Foreign {
                prefix,
                ours,
                theirs,
            });
        }
        Some(theirs) => {
            warn!("taking s3.prefix {prefix:?} over from registry {theirs} (s3.take_over_prefix)")
        }
        None => info!("claiming s3.prefix {prefix:?} for registry {ours}"),
    }
    st.s3
        .put_object(&marker, ours.clone().into_bytes())
        .await
        .map_err(s3_err)?;
    // S3 has no portable "create if absent": two signers starting at the same moment
    // both write, and the later write wins. Reading back makes the loser notice.
    let now = st.s3.get_object(&marker).await.map_err(s3_err)?;
    let now = String::from_utf8_lossy(&now).trim().to_owned();
    if now != ours {
        return Err(ClaimError::Foreign {
            prefix,
            ours,
            theirs: now,
        });
    }
    Ok(())
}
