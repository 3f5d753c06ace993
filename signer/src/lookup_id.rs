//! Lookup ids: the signer's own evidence that a job looked a cache up, and when. A hit
//! carries `{issued_at_ms}.{HMAC-SHA256 hex}` over who asked (owner and the job's own
//! scope), the cache (scope, key, SHA-256) and the time, under a key drawn at start. A
//! report echoes it; the time a report is judged by is the one this id proves, never a
//! number the client sends. An id from before a restart no longer verifies: its report
//! is then a hint that drops nothing on a job's word alone.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// What a lookup id vouches for.
#[derive(Debug, Clone, Copy)]
pub struct Looked<'a> {
    pub owner: &'a str,
    /// The scope of the job that looked up (its own scope, not the cache's).
    pub job_scope: &'a str,
    pub cache_scope: &'a str,
    pub key: &'a str,
    pub sha256: &'a str,
}

/// The key lookup ids are signed with (one per signer process): one SHA-256 block, the
/// longest key HMAC uses as it is.
pub struct LookupKey([u8; 64]);

impl LookupKey {
    pub fn random() -> LookupKey {
        let mut key = [0u8; 64];
        rand::rng().fill_bytes(&mut key);
        LookupKey(key)
    }

    /// The id of a lookup of `what` at `issued_at_ms`.
    pub fn issue(&self, what: &Looked<'_>, issued_at_ms: i64) -> String {
        format!(
            "{issued_at_ms}.{}",
            hex::encode(self.mac(what, issued_at_ms).finalize().into_bytes())
        )
    }

    /// The time a lookup id proves for `what`; `None` when it was not issued by this
    /// signer for `what`.
    pub fn verify(&self, what: &Looked<'_>, id: &str) -> Option<i64> {
        let (at, mac) = id.split_once('.')?;
        let at: i64 = at.parse().ok()?;
        let given = hex::decode(mac).ok()?;
        // In constant time, whatever differs first.
        self.mac(what, at).verify_slice(&given).ok()?;
        Some(at)
    }

    fn mac(&self, what: &Looked<'_>, issued_at_ms: i64) -> HmacSha256 {
        let mut mac = HmacSha256::new(&self.0.into());
        for part in [
            what.owner,
            what.job_scope,
            what.cache_scope,
            what.key,
            what.sha256,
        ] {
            mac.update(part.as_bytes());
            mac.update(&[0]);
        }
        mac.update(&issued_at_ms.to_be_bytes());
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOKED: Looked<'static> = Looked {
        owner: "alpha",
        job_scope: "refs/heads/main",
        cache_scope: "refs/heads/main",
        key: "k",
        sha256: "00",
    };

    #[test]
    fn an_id_proves_its_time_for_what_it_was_issued_for_only() {
        let key = LookupKey::random();
        let id = key.issue(&LOOKED, 1234);
        assert_eq!(key.verify(&LOOKED, &id), Some(1234));
        // Another time, another job's scope, another archive, another signer.
        let (_, mac) = id.split_once('.').unwrap();
        assert_eq!(
            key.verify(&LOOKED, &format!("9000000000000000.{mac}")),
            None
        );
        let pr = Looked {
            job_scope: "refs/pull/1/merge",
            ..LOOKED
        };
        assert_eq!(key.verify(&pr, &id), None);
        let other = Looked {
            sha256: "01",
            ..LOOKED
        };
        assert_eq!(key.verify(&other, &id), None);
        assert_eq!(LookupKey::random().verify(&LOOKED, &id), None);
        for junk in ["", "1234", "1234.", "x.00", "1234.zz"] {
            assert_eq!(key.verify(&LOOKED, junk), None, "{junk}");
        }
    }
}
