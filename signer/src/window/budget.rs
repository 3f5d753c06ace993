//! A budget per key and window: each key may spend `limit` in a window that starts
//! with its first spending; past it, [`Budget::spend`] refuses until the window ends.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::make_room;

pub struct Budget<K> {
    window: Duration,
    /// Keys remembered at once; past it the oldest is forgotten (and starts afresh).
    cap: usize,
    spent: Mutex<HashMap<K, Spent>>,
}

struct Spent {
    since: Instant,
    count: u64,
}

impl<K: Eq + Hash + Clone> Budget<K> {
    pub fn new(window: Duration, cap: usize) -> Budget<K> {
        Budget {
            window,
            cap,
            spent: Mutex::new(HashMap::new()),
        }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// Spends one unit of `key`'s budget: false (and nothing spent) when it already
    /// spent `limit` in its current window.
    pub fn spend(&self, key: &K, limit: u64) -> bool {
        let mut spent = self.spent.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = || Spent {
            since: Instant::now(),
            count: 0,
        };
        if !spent.contains_key(key) {
            make_room(&mut spent, self.cap, self.window, |s| s.since);
        }
        let entry = spent.entry(key.clone()).or_insert_with(fresh);
        if entry.since.elapsed() >= self.window {
            *entry = fresh();
        }
        if entry.count >= limit {
            return false;
        }
        entry.count += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_spends_its_own_budget_until_the_window_ends() {
        let b = Budget::new(Duration::from_secs(3600), 10);
        assert!((0..3).all(|_| b.spend(&"a", 3)));
        assert!(!b.spend(&"a", 3));
        assert!(b.spend(&"b", 3), "another key has its own");
        let b = Budget::new(Duration::ZERO, 10);
        assert!((0..5).all(|_| b.spend(&"a", 1)), "a new window each time");
    }

    #[test]
    fn past_its_cap_the_oldest_key_is_forgotten() {
        let b = Budget::new(Duration::from_secs(3600), 2);
        assert!(b.spend(&1, 1));
        assert!(b.spend(&2, 1));
        assert!(b.spend(&3, 1));
        assert_eq!(b.spent.lock().unwrap().len(), 2);
        assert!(!b.spend(&3, 1));
    }
}
