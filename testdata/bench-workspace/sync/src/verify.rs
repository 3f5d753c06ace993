//! Checking that a store holds blobs whole.

use bench_store::Store;

use crate::Error;
use crate::pool::for_each_bounded;

#[derive(Debug, Default)]
pub struct Verification {
    pub ok: u64,
    pub missing: Vec<String>,
    pub corrupt: Vec<String>,
    /// Blobs that could not be read at all (I/O), with why.
    pub unreadable: Vec<(String, Error)>,
}

impl Verification {
    pub fn is_ok(&self) -> bool {
        self.missing.is_empty() && self.corrupt.is_empty() && self.unreadable.is_empty()
    }
}

/// Reads, decompresses and hashes every blob of `hashes` in `store`.
pub async fn verify_blobs<I>(store: &Store, hashes: I, concurrency: usize) -> Verification
where
    I: IntoIterator<Item = String>,
{
    let mut out = Verification::default();
    let job = |hash: String| {
        let store = store.clone();
        async move {
            let result = store.get(&hash).await.map(|_| ());
            (hash, result)
        }
    };
    for_each_bounded(hashes, concurrency, job, |joined| match joined {
        Ok((_, Ok(()))) => out.ok += 1,
        Ok((hash, Err(bench_store::Error::NotFound(_)))) => out.missing.push(hash),
        Ok((hash, Err(bench_store::Error::Corrupt { .. }))) => out.corrupt.push(hash),
        Ok((hash, Err(e))) => out.unreadable.push((hash, e.into())),
        Err(e) => out.unreadable.push((String::from("?"), Error::Task(e))),
    })
    .await;
    out.missing.sort();
    out.corrupt.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Options, copy_blobs};

    #[tokio::test]
    async fn copy_then_verify() {
        let base = std::env::temp_dir().join(format!("bench-sync-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (src, dst) = (Store::new(base.join("a"), 3), Store::new(base.join("b"), 3));
        let mut manifest = bench_core::Manifest::default();
        for n in 0..10u8 {
            let data = [n; 100];
            src.put(&data).await.expect("put");
            manifest.add(&format!("file{n}"), &data);
        }
        let mut hashes = crate::blobs_of(&manifest);
        dst.put(&[0; 100]).await.expect("put");
        let missing = bench_core::digest(b"not stored");
        hashes.push(missing.clone());
        let mut events = 0;
        let report = copy_blobs(&src, &dst, hashes.clone(), &Options::default(), |_| {
            events += 1
        })
        .await;
        assert_eq!((report.copied, report.present, events), (9, 1, 11));
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.failed[0].0, missing);

        let check = verify_blobs(&dst, hashes, 3).await;
        assert_eq!((check.ok, check.missing.len()), (10, 1));
        assert!(!check.is_ok());
        let _ = std::fs::remove_dir_all(base);
    }
}
