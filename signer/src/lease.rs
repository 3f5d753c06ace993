//! This process's lease on its S3 prefix (docs/design.md, "Registry and S3 layout"):
//! what the claim object `{prefix}/registry-id` says, who this signer is (an instance
//! id drawn at each start, so a copy of the registry is still another instance), and
//! whether it holds the prefix. Destructive background work runs only after
//! [`Lease::confirm`] read the claim and found this instance in it.
//!
//! The protocol (taking the prefix, renewing, releasing) is `ops::claim` and
//! `ops::lease`; this module holds only the state they share with the rest.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use tracing::{error, warn};

use crate::s3::{S3Client, S3Error};

/// What `{prefix}/registry-id` holds: the registry that owns the prefix and, while a
/// signer runs on it, that signer's lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub registry: String,
    /// The running signer holding the prefix; none once it stopped cleanly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<Holder>,
}

/// A signer process holding the prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Random, drawn at each start.
    pub instance: String,
    pub host: String,
    pub pid: u32,
    /// Its own clock (Unix ms) at its last renewal: changes at every renewal.
    pub renewed_at_ms: i64,
    /// It renews every third of this; a claim unchanged for this long has lapsed.
    pub lease_secs: u64,
}

impl Claim {
    /// The object's bytes: JSON, or (written before leases) the bare registry id.
    pub fn parse(bytes: &[u8]) -> Claim {
        serde_json::from_slice(bytes).unwrap_or_else(|_| Claim {
            registry: String::from_utf8_lossy(bytes).trim().to_owned(),
            holder: None,
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // A struct of strings and numbers always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl Holder {
    /// For people: which process, and how long before `now_ms` (this host's clock) it
    /// last renewed its lease.
    pub fn describe(&self, now_ms: i64) -> String {
        format!(
            "instance {} on host {} (pid {}), which last renewed its {} s lease {} s ago \
             (by the two hosts' clocks)",
            self.instance,
            self.host,
            self.pid,
            self.lease_secs,
            now_ms.saturating_sub(self.renewed_at_ms).max(0) / 1000
        )
    }
}

/// Reads the claim object; `None` when there is none.
pub async fn read(s3: &S3Client, object: &str) -> Result<Option<Claim>, S3Error> {
    match s3.get_object(object).await {
        Ok(bytes) => Ok(Some(Claim::parse(&bytes))),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Not taken yet (S3 could not be read at start).
    Unsettled,
    Held,
    /// Another instance holds it now (the reason, for the log): this process deletes
    /// and aborts nothing until it is restarted.
    Lost(String),
}

/// This process's side of the lease.
#[derive(Debug)]
pub struct Lease {
    instance: String,
    host: String,
    duration: Duration,
    state: Mutex<State>,
}

impl Lease {
    /// A new instance, holding nothing yet.
    pub fn new(duration: Duration) -> Lease {
        let mut id = [0u8; 16];
        rand::rng().fill_bytes(&mut id);
        Lease {
            instance: hex::encode(id),
            host: host_name(),
            duration,
            state: Mutex::new(State::Unsettled),
        }
    }

    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// The claim naming `registry` and this instance, renewed at `now_ms`.
    pub fn claim(&self, registry: &str, now_ms: i64) -> Claim {
        Claim {
            registry: registry.to_owned(),
            holder: Some(Holder {
                instance: self.instance.clone(),
                host: self.host.clone(),
                pid: std::process::id(),
                renewed_at_ms: now_ms,
                lease_secs: self.duration.as_secs(),
            }),
        }
    }

    /// True when `claim` names this instance.
    pub fn is_ours(&self, claim: &Claim) -> bool {
        claim
            .holder
            .as_ref()
            .is_some_and(|h| h.instance == self.instance)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// This process took the prefix (or renewed it).
    pub fn hold(&self) {
        let mut state = self.state();
        if *state == State::Unsettled {
            *state = State::Held;
        }
    }

    pub fn held(&self) -> bool {
        *self.state() == State::Held
    }

    /// Why this process lost the prefix, if it did.
    pub fn lost(&self) -> Option<String> {
        match &*self.state() {
            State::Lost(why) => Some(why.clone()),
            _ => None,
        }
    }

    /// Another instance holds the prefix now (`why` says which): logged once, and from
    /// now on [`Lease::confirm`] answers false and health says so.
    pub fn lose(&self, why: String) {
        let mut state = self.state();
        if !matches!(*state, State::Lost(_)) {
            error!(
                "{why}: this signer deletes and aborts nothing in S3 from now on; stop one of \
                 the two signers (give each registry a prefix of its own) and restart this one"
            );
            *state = State::Lost(why);
        }
    }

    /// Reads the claim object again: true only when it still names this instance. A
    /// claim naming another instance loses the lease for good. Called before every
    /// destructive background action; S3 has no compare-and-swap, so what remains is
    /// the time between this read and the action (another signer that takes the
    /// prefix meanwhile has waited a whole lease without a renewal, see `ops::claim`).
    pub async fn confirm(&self, s3: &S3Client, object: &str, now_ms: i64) -> bool {
        if !self.held() {
            return false;
        }
        match read(s3, object).await {
            Ok(Some(c)) if self.is_ours(&c) => true,
            Ok(Some(c)) => {
                self.lose(describe(object, &c, now_ms));
                false
            }
            // Deleted by someone: the next renewal writes it again.
            Ok(None) => false,
            Err(e) => {
                warn!(
                    "cannot read the prefix claim {object:?}, doing nothing destructive this time: {e}"
                );
                false
            }
        }
    }
}

/// Who holds the prefix by `claim`, for people.
pub fn describe(object: &str, claim: &Claim, now_ms: i64) -> String {
    match &claim.holder {
        Some(h) => format!(
            "the prefix claim {object:?} names another signer of registry {}: {}",
            claim.registry,
            h.describe(now_ms)
        ),
        None => format!(
            "the prefix claim {object:?} was released by another signer of registry {}",
            claim.registry
        ),
    }
}

/// The host's name, for the claim (to tell an operator where the other signer runs).
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "(unknown)".to_owned();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_from_before_leases_is_a_bare_registry_id_held_by_nobody() {
        let legacy = Claim::parse(b"0123abcd\n");
        assert_eq!(legacy.registry, "0123abcd");
        assert_eq!(legacy.holder, None);
        let lease = Lease::new(Duration::from_secs(30));
        let ours = lease.claim("0123abcd", 1);
        assert_eq!(Claim::parse(&ours.to_bytes()), ours);
        assert!(lease.is_ours(&ours));
        assert!(!Lease::new(Duration::from_secs(30)).is_ours(&ours));
    }

    #[test]
    fn a_lost_lease_stays_lost() {
        let lease = Lease::new(Duration::from_secs(30));
        assert!(!lease.held());
        lease.hold();
        assert!(lease.held());
        lease.lose("taken".to_owned());
        lease.hold();
        assert!(!lease.held());
        assert_eq!(lease.lost().as_deref(), Some("taken"));
    }
}
