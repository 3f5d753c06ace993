//! The registry shared by request handlers and background tasks. SQLite calls are
//! short but blocking, so they run on the blocking pool. Writes go through one
//! connection, one at a time; reads (lookups, token checks, lists) through a pool of
//! read-only connections, so that a request never waits behind another owner's long
//! read or a write in progress (WAL mode lets readers and the writer run together).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use super::error::RegistryError;
use super::schema::Registry;

#[derive(Clone)]
pub struct Db {
    writer: Arc<Mutex<Registry>>,
    readers: Arc<Readers>,
}

/// Idle read connections; a read takes one, or opens one when none is idle.
struct Readers {
    path: Option<PathBuf>,
    idle: Mutex<Vec<Registry>>,
}

/// Idle read connections kept; more may be open while busy.
const MAX_IDLE_READERS: usize = 8;

impl Db {
    pub fn new(reg: Registry) -> Db {
        Db {
            readers: Arc::new(Readers {
                path: reg.path(),
                idle: Mutex::new(Vec::new()),
            }),
            writer: Arc::new(Mutex::new(reg)),
        }
    }

    /// Runs `f` on the writing connection, alone.
    pub async fn run<R, F>(&self, f: F) -> Result<R, RegistryError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Registry) -> Result<R, RegistryError> + Send + 'static,
    {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock rolled its transaction back on unwind;
            // the connection itself is still usable.
            let mut reg = writer.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut reg)
        })
        .await
        .map_err(RegistryError::TaskFailed)?
    }

    /// Runs `f`, which only reads, on a read-only connection, beside other reads and
    /// the writer. (An in-memory registry has no file to share: it reads through the
    /// writer.)
    pub async fn read<R, F>(&self, f: F) -> Result<R, RegistryError>
    where
        R: Send + 'static,
        F: FnOnce(&Registry) -> Result<R, RegistryError> + Send + 'static,
    {
        let Some(path) = self.readers.path.clone() else {
            return self.run(move |r| f(r)).await;
        };
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let idle = readers
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let reg = match idle {
                Some(reg) => reg,
                None => Registry::open_reader(&path)?,
            };
            let out = f(&reg);
            let mut idle = readers.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < MAX_IDLE_READERS {
                idle.push(reg);
            }
            out
        })
        .await
        .map_err(RegistryError::TaskFailed)?
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_does_not_wait_for_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::new(Registry::open(&dir.path().join("r.sqlite")).unwrap());
        // The writer is busy until told otherwise, inside a write transaction.
        let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let writer = tokio::spawn({
            let db = db.clone();
            async move {
                db.run(move |r| {
                    r.conn.execute_batch("BEGIN IMMEDIATE")?;
                    let _ = started_tx.send(());
                    let _ = hold_rx.recv();
                    r.conn.execute_batch("COMMIT")?;
                    Ok(())
                })
                .await
            }
        });
        started_rx.await.unwrap();
        // A generous bound: the read must not need the writer at all.
        let read = tokio::time::timeout(Duration::from_secs(20), db.read(|r| r.ping())).await;
        hold_tx.send(()).unwrap();
        writer.await.unwrap().unwrap();
        assert!(
            matches!(read, Ok(Ok(()))),
            "the read waited for the writer: {read:?}"
        );
    }
}
