//! Keeping the prefix's lease (docs/design.md, "Registry and S3 layout"): the running
//! signer renews it every third of `timing.prefix_lease_secs`, takes the prefix later
//! when S3 could not be read at start, and releases it on a clean stop so that a
//! restart need not wait for it to lapse.

use tokio::sync::watch;
use tracing::{info, warn};

use super::claim;
use crate::lease::{self, describe};
use crate::state::{AppState, now_ms};
use crate::tasks::Task;

/// Renews the lease until `shutdown`. A claim found naming another signer loses the
/// lease for good ([`crate::lease::Lease::lose`]): nothing destructive runs from then
/// on, and health says so.
pub async fn run(st: AppState, mut shutdown: watch::Receiver<bool>) {
    let every = st.lease.duration() / 3;
    loop {
        round(&st).await;
        st.tasks.ran(Task::Lease);
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn round(st: &AppState) {
    if st.lease.lost().is_some() {
        return;
    }
    if !st.lease.held() {
        match claim::acquire(st).await {
            Ok(()) => info!("s3.prefix claimed; the reaper runs from now on"),
            Err(e) if e.is_refusal() => st.lease.lose(e.to_string()),
            Err(e) => warn!("{e}; the reaper waits until the prefix is claimed"),
        }
        return;
    }
    let object = st.cfg().s3.claim_object();
    let registry = match lease::read(&st.s3, &object).await {
        Ok(Some(c)) if st.lease.is_ours(&c) => c.registry,
        Ok(Some(c)) => return st.lease.lose(describe(&object, &c, now_ms())),
        // Deleted by someone: written again.
        Ok(None) => match st.db.run(|r| r.registry_id()).await {
            Ok(id) => id,
            Err(e) => return warn!("cannot renew the prefix lease: {e:#}"),
        },
        Err(e) => return warn!("cannot renew the prefix lease: {e}"),
    };
    // Between the read and this write another signer could take the prefix only after
    // a whole lease without a renewal: not while these rounds succeed.
    let claim = st.lease.claim(&registry, now_ms());
    if let Err(e) = st.s3.put_object(&object, claim.to_bytes()).await {
        warn!("cannot renew the prefix lease: {e}");
    }
}

/// On a clean stop: the claim keeps naming this registry but no signer, so the next
/// start takes the prefix at once. Only a claim that still names this instance.
pub async fn release(st: &AppState) {
    if !st.lease.held() {
        return;
    }
    let object = st.cfg().s3.claim_object();
    match lease::read(&st.s3, &object).await {
        Ok(Some(mut c)) if st.lease.is_ours(&c) => {
            c.holder = None;
            match st.s3.put_object(&object, c.to_bytes()).await {
                Ok(()) => info!("prefix lease released"),
                Err(e) => warn!(
                    "cannot release the prefix lease (the next start waits for it to lapse): {e}"
                ),
            }
        }
        Ok(_) => {}
        Err(e) => {
            warn!("cannot release the prefix lease (the next start waits for it to lapse): {e}")
        }
    }
}
