//! Writes small files on a few threads while the unpacker reads on.
//!
//! Creating a file costs more kernel time than writing its bytes (on this CI VM's
//! ext4, right after many deletions, milliseconds: the inode allocator scans past
//! recently deleted inodes). A tree of many small files is therefore restored
//! faster by creating several at once. The unpacker hands a small file over whole
//! (bytes in memory); big files it streams itself. Every file is created with
//! `O_EXCL | O_NOFOLLOW`, like the unpacker's own, and an entry that may touch a path
//! a writer is working on waits for [`FileWriters::wait_idle`] first.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{Scope, ScopedJoinHandle};

use crate::trees::times::Mtime;

/// Files up to this size are handed over.
pub const SMALL_FILE: u64 = 1 << 20;
/// Threads, and files queued for them (so at most ~THREADS + QUEUE MiB held).
const THREADS: usize = 2;
const QUEUE: usize = 16;

/// One file to create.
pub struct SmallFile {
    pub dest: PathBuf,
    pub data: Vec<u8>,
    pub mode: u32,
    pub mtime: Mtime,
}

#[derive(Default)]
struct Shared {
    /// Files handed over and not yet written, and the first error.
    state: Mutex<(usize, Option<io::Error>)>,
    idle: Condvar,
}

pub struct FileWriters<'scope> {
    to: Option<SyncSender<SmallFile>>,
    shared: Arc<Shared>,
    threads: Vec<ScopedJoinHandle<'scope, ()>>,
}

impl<'scope> FileWriters<'scope> {
    pub fn start<'env>(scope: &'scope Scope<'scope, 'env>) -> Self {
        let (to, from) = sync_channel::<SmallFile>(QUEUE);
        let from = Arc::new(Mutex::new(from));
        let shared = Arc::new(Shared::default());
        let threads = (0..THREADS)
            .map(|_| {
                let from = from.clone();
                let shared = shared.clone();
                scope.spawn(move || work(&from, &shared))
            })
            .collect();
        FileWriters {
            to: Some(to),
            shared,
            threads,
        }
    }

    /// Queues a file; fails with the first error a writer met so far.
    pub fn write(&self, file: SmallFile) -> io::Result<()> {
        self.check()?;
        let Some(to) = &self.to else {
            return Err(io::Error::other("the file writers are stopped"));
        };
        self.lock().0 += 1;
        to.send(file)
            .map_err(|_| io::Error::other("the file writers stopped"))
    }

    /// Waits until every queued file is written; fails with the first error.
    pub fn wait_idle(&self) -> io::Result<()> {
        let mut state = self.lock();
        while state.0 > 0 && state.1.is_none() {
            state = self
                .shared
                .idle
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        drop(state);
        self.check()
    }

    /// Writes everything queued, stops the threads, and reports the first error.
    pub fn finish(mut self) -> io::Result<()> {
        self.to = None;
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                return Err(io::Error::other("a file writer panicked"));
            }
        }
        self.check()
    }

    fn check(&self) -> io::Result<()> {
        match &self.lock().1 {
            Some(e) => Err(io::Error::new(e.kind(), e.to_string())),
            None => Ok(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, Option<io::Error>)> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn work(from: &Mutex<Receiver<SmallFile>>, shared: &Shared) {
    loop {
        let next = from.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(file) = next else { return };
        // A panic must still count the file as done, or `wait_idle` would wait forever.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write_one(&file)))
            .unwrap_or_else(|_| Err(io::Error::other("a file writer panicked")));
        let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.0 -= 1;
        if let Err(e) = result
            && state.1.is_none()
        {
            state.1 = Some(e);
        }
        drop(state);
        shared.idle.notify_all();
    }
}

fn write_one(f: &SmallFile) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&f.dest)?;
    file.write_all(&f.data)?;
    file.set_permissions(fs::Permissions::from_mode(f.mode))?;
    f.mtime.apply_to_file(&file)
}
