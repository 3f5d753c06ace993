//! Verdicts reached once per key and window: the first caller runs the check, those
//! that ask meanwhile wait for its verdict, and later ones get it without a check
//! until the window ends or the key is forgotten. A check that fails leaves no
//! verdict: the next caller (a waiting one included) checks again.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use super::make_room;

pub struct Verdicts<K, V> {
    window: Duration,
    /// Keys remembered at once; past it the oldest is forgotten.
    cap: usize,
    slots: Mutex<HashMap<K, Slot<V>>>,
}

struct Slot<V> {
    since: Instant,
    verdict: Arc<OnceCell<V>>,
}

impl<K: Eq + Hash + Clone, V: Clone> Verdicts<K, V> {
    pub fn new(window: Duration, cap: usize) -> Verdicts<K, V> {
        Verdicts {
            window,
            cap,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The verdict on `key`: the one of this window, else what `check` finds.
    pub async fn get_or_check<E, F, Fut>(&self, key: &K, check: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let verdict = self.slot(key);
        verdict.get_or_try_init(check).await.cloned()
    }

    /// Forgets the verdict on `key` (what it judged has changed or is gone).
    pub fn forget(&self, key: &K) {
        self.lock().remove(key);
    }

    fn slot(&self, key: &K) -> Arc<OnceCell<V>> {
        let mut slots = self.lock();
        if let Some(s) = slots.get(key)
            && s.since.elapsed() < self.window
        {
            return s.verdict.clone();
        }
        slots.remove(key);
        make_room(&mut slots, self.cap, self.window, |s| s.since);
        let verdict = Arc::new(OnceCell::new());
        slots.insert(
            key.clone(),
            Slot {
                since: Instant::now(),
                verdict: verdict.clone(),
            },
        );
        verdict
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Slot<V>>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn one_check_per_key_and_window_however_many_ask_at_once() {
        let v = Arc::new(Verdicts::<&str, bool>::new(Duration::from_secs(3600), 8));
        let checks = Arc::new(AtomicU32::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut asking = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let (v, checks, gate) = (v.clone(), checks.clone(), gate.clone());
            asking.spawn(async move {
                v.get_or_check(&"k", || async move {
                    checks.fetch_add(1, Ordering::SeqCst);
                    gate.notified().await;
                    Ok::<_, ()>(true)
                })
                .await
            });
        }
        while checks.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        while let Some(r) = asking.join_next().await {
            assert_eq!(r.unwrap(), Ok(true));
        }
        assert_eq!(checks.load(Ordering::SeqCst), 1);

        v.forget(&"k");
        let again = v.get_or_check(&"k", || async { Ok::<_, ()>(false) }).await;
        assert_eq!(again, Ok(false), "a forgotten verdict is checked again");
    }

    #[tokio::test]
    async fn a_failed_check_leaves_no_verdict_and_a_window_ends() {
        let v = Verdicts::<u8, bool>::new(Duration::from_secs(3600), 8);
        assert_eq!(
            v.get_or_check(&1, || async { Err("s3 down") }).await,
            Err("s3 down")
        );
        assert_eq!(
            v.get_or_check(&1, || async { Ok::<_, &str>(true) }).await,
            Ok(true)
        );
        let v = Verdicts::<u8, bool>::new(Duration::ZERO, 8);
        assert_eq!(
            v.get_or_check(&1, || async { Ok::<_, ()>(true) }).await,
            Ok(true)
        );
        assert_eq!(
            v.get_or_check(&1, || async { Ok::<_, ()>(false) }).await,
            Ok(false)
        );
    }
}
