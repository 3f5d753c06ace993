//! Bounded concurrency on a Tokio runtime: at most `limit` tasks in flight.

use std::future::Future;

use tokio::task::{JoinError, JoinSet};

/// Runs `job` on every item, at most `limit` at once, and hands each result to
/// `done` as it finishes (in completion order, not item order).
pub async fn for_each_bounded<I, F, Fut, T>(
    items: I,
    limit: usize,
    job: F,
    mut done: impl FnMut(Result<T, JoinError>),
) where
    I: IntoIterator,
    F: Fn(I::Item) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let limit = limit.max(1);
    let mut set = JoinSet::new();
    for item in items {
        // Wait for a slot before starting the next, so no more than `limit` run
        // and the items are not all turned into tasks up front.
        while set.len() >= limit {
            match set.join_next().await {
                Some(result) => done(result),
                None => break,
            }
        }
        set.spawn(job(item));
    }
    while let Some(result) = set.join_next().await {
        done(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn never_more_than_the_limit() {
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut total = 0;
        let job = |n: usize| {
            let (running, peak) = (Arc::clone(&running), Arc::clone(&peak));
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                running.fetch_sub(1, Ordering::SeqCst);
                n
            }
        };
        for_each_bounded(1..=20, 3, job, |r| total += r.expect("task")).await;
        assert_eq!(total, 210);
        assert!(peak.load(Ordering::SeqCst) <= 3);
    }
}
