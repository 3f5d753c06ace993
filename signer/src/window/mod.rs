//! What the signer remembers for a window of time, in memory and bounded in size (a
//! restart forgets it): how much each key spent of a budget ([`budget`]), and verdicts
//! reached once per key however many ask at once ([`verdicts`]).

pub mod budget;
pub mod verdicts;

pub use budget::Budget;
pub use verdicts::Verdicts;

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Makes room for one more entry in a map bounded to `cap`: drops the entries older
/// than `window`, then, if it is still full, the oldest one.
fn make_room<K: Eq + Hash + Clone, V>(
    map: &mut HashMap<K, V>,
    cap: usize,
    window: Duration,
    since: impl Fn(&V) -> Instant,
) {
    if map.len() < cap {
        return;
    }
    map.retain(|_, v| since(v).elapsed() < window);
    if map.len() < cap {
        return;
    }
    let oldest = map
        .iter()
        .min_by_key(|(_, v)| since(v))
        .map(|(k, _)| k.clone());
    if let Some(k) = oldest {
        map.remove(&k);
    }
}
