//! Lookup ids: the signer's own evidence that a job looked a cache up, and when. A hit
//! carries `{issued_at_ms}.{HMAC-SHA256 hex}` over who asked (owner and the job's own
//! scope), the cache (scope, key, SHA-256) and the time, under a key drawn at start. A
//! report echoes it; the time a report is judged by is the one this id proves, never a
//! number the client sends. An id from before a restart no longer verifies: its report
//! is then a hint that drops nothing on a job's word alone.

use rand::RngCore;
use sha2::{Digest, Sha256};

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

/// The key lookup ids are signed with (one per signer process).
pub struct LookupKey([u8; 32]);

impl LookupKey {
    pub fn random() -> LookupKey {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        LookupKey(key)
    }

    /// The id of a lookup of `what` at `issued_at_ms`.
    pub fn issue(&self, what: &Looked<'_>, issued_at_ms: i64) -> String {
        format!(
            "{issued_at_ms}.{}",
            hex::encode(self.mac(what, issued_at_ms))
        )
    }

    /// The time a lookup id proves for `what`; `None` when it was not issued by this
    /// signer for `what`.
    pub fn verify(&self, what: &Looked<'_>, id: &str) -> Option<i64> {
        let (at, mac) = id.split_once('.')?;
        let at: i64 = at.parse().ok()?;
        let given = hex::decode(mac).ok()?;
        let expected = self.mac(what, at);
        // Compared in full whatever differs first.
        let same = given.len() == expected.len()
            && given
                .iter()
                .zip(expected.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        same.then_some(at)
    }

    fn mac(&self, what: &Looked<'_>, issued_at_ms: i64) -> [u8; 32] {
        let mut message = Vec::new();
        for part in [
            what.owner,
            what.job_scope,
            what.cache_scope,
            what.key,
            what.sha256,
        ] {
            message.extend_from_slice(part.as_bytes());
            message.push(0);
        }
        message.extend_from_slice(&issued_at_ms.to_be_bytes());
        hmac_sha256(&self.0, &message)
    }
}

/// HMAC-SHA256 (RFC 2104) for a key of at most one block.
fn hmac_sha256(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut padded = [0u8; BLOCK];
    padded[..key.len()].copy_from_slice(key);
    let pad = |byte: u8| padded.map(|k| k ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
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
    fn hmac_matches_rfc_4231() {
        // Test case 2's data, under a key of 32 bytes zero-padded as any short key is.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        assert_eq!(
            hex::encode(hmac_sha256(&key, b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

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
