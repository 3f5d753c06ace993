//! The background tasks that must keep running (the reaper, the completion worker, the
//! prefix lease's renewal):
//! each runs under [`supervise`], which restarts it when it panics, and [`Tasks`]
//! records which are down, for `GET /v1/health`. A task is down from its panic until
//! its restarted run finishes a pass.

use std::any::Any;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tracing::{error, info};

use crate::retry::RetryPolicy;

/// A supervised task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    Reaper,
    Worker,
    Lease,
}

impl Task {
    const ALL: [Task; 3] = [Task::Reaper, Task::Worker, Task::Lease];

    /// As health and the log name it.
    pub fn name(self) -> &'static str {
        match self {
            Task::Reaper => "reaper",
            Task::Worker => "completion worker",
            Task::Lease => "prefix lease renewal",
        }
    }

    fn index(self) -> usize {
        match self {
            Task::Reaper => 0,
            Task::Worker => 1,
            Task::Lease => 2,
        }
    }
}

/// Which tasks are down.
#[derive(Debug, Default)]
pub struct Tasks {
    down: [AtomicBool; 3],
}

impl Tasks {
    /// `task` finished a pass: it is up.
    pub fn ran(&self, task: Task) {
        if self.down[task.index()].swap(false, Ordering::SeqCst) {
            info!("{} is running again", task.name());
        }
    }

    fn died(&self, task: Task) {
        self.down[task.index()].store(true, Ordering::SeqCst);
    }

    fn is_down(&self, task: Task) -> bool {
        self.down[task.index()].load(Ordering::SeqCst)
    }

    /// The names of the tasks that are down (empty: all up).
    pub fn down(&self) -> Vec<&'static str> {
        Task::ALL
            .into_iter()
            .filter(|t| self.is_down(*t))
            .map(Task::name)
            .collect()
    }
}

/// How long a restart waits after a panic: 1 s, doubling while the task keeps dying
/// without finishing a pass, up to a minute.
pub const RESTART: RetryPolicy = RetryPolicy {
    attempts: None,
    base: Duration::from_secs(1),
    cap: Duration::from_secs(60),
    jitter: false,
};

/// Runs `start()` as a task until it returns (it stops when `stop` turns true); a
/// panic marks `task` down in `tasks`, is logged, and a new `start()` runs after
/// `restart`'s delay ([`RESTART`] in the signer).
pub async fn supervise<F, Fut>(
    tasks: std::sync::Arc<Tasks>,
    task: Task,
    mut stop: watch::Receiver<bool>,
    restart: RetryPolicy,
    mut start: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut panics = 0u32;
    loop {
        let outcome = tokio::spawn(start()).await;
        let Err(e) = outcome else { return };
        if !e.is_panic() {
            return;
        }
        // Died again before finishing a pass: wait longer.
        panics = if tasks.is_down(task) {
            panics.saturating_add(1)
        } else {
            1
        };
        tasks.died(task);
        let delay = restart.delay(panics);
        error!(
            "{} panicked: {}; restarting it in {} s",
            task.name(),
            panic_text(e.into_panic()),
            delay.as_secs()
        );
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
    }
}

fn panic_text(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => (*s).to_owned(),
            Err(_) => "(no message)".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU32;

    use super::*;

    /// A task that panics on its first run is restarted; health names it until the
    /// restarted run finishes a pass, then not.
    #[tokio::test]
    async fn a_panicking_task_is_down_until_its_restart_runs_a_pass() {
        let tasks = Arc::new(Tasks::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let runs = Arc::new(AtomicU32::new(0));
        let (pass_tx, mut pass_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let (go_tx, go_rx) = watch::channel(false);
        let at_once = RetryPolicy {
            base: Duration::ZERO,
            ..RESTART
        };
        let sup = tokio::spawn(supervise(tasks.clone(), Task::Reaper, stop_rx, at_once, {
            let (tasks, runs) = (tasks.clone(), runs.clone());
            move || {
                let (tasks, runs, pass_tx, mut go_rx) =
                    (tasks.clone(), runs.clone(), pass_tx.clone(), go_rx.clone());
                async move {
                    if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                        panic!("ttl overflow");
                    }
                    // The restarted run: one pass once the test says go.
                    let _ = go_rx.wait_for(|g| *g).await;
                    tasks.ran(Task::Reaper);
                    let _ = pass_tx.send(());
                    std::future::pending::<()>().await;
                }
            }
        }));
        // Wait until the second run started.
        let restarted = async {
            while runs.load(Ordering::SeqCst) < 2 {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), restarted)
            .await
            .expect("restarted");
        assert_eq!(tasks.down(), ["reaper"]);
        go_tx.send(true).unwrap();
        pass_rx.recv().await.unwrap();
        assert!(tasks.down().is_empty());
        stop_tx.send(true).unwrap();
        sup.abort();
    }
}
