//! Progress counters and their display: a bar on a terminal (indicatif), a plain
//! line every few seconds otherwise (CI logs).

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

#[derive(Clone)]
pub struct Progress {
    inner: Arc<Inner>,
}

struct Inner {
    /// "saving KEY", "restoring KEY".
    label: String,
    /// Uncompressed (tar) bytes packed or unpacked.
    raw: AtomicU64,
    /// Compressed bytes uploaded or downloaded.
    sent: AtomicU64,
    /// Compressed size, when known (restore).
    total: Option<u64>,
    started: Instant,
}

impl Progress {
    pub fn new(label: impl Into<String>, total: Option<u64>) -> Progress {
        Progress {
            inner: Arc::new(Inner {
                label: label.into(),
                raw: AtomicU64::new(0),
                sent: AtomicU64::new(0),
                total,
                started: Instant::now(),
            }),
        }
    }

    pub fn add_raw(&self, n: u64) {
        self.inner.raw.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_sent(&self, n: u64) {
        self.inner.sent.fetch_add(n, Ordering::Relaxed);
    }

    pub fn raw(&self) -> u64 {
        self.inner.raw.load(Ordering::Relaxed)
    }

    pub fn sent(&self) -> u64 {
        self.inner.sent.load(Ordering::Relaxed)
    }

    pub fn elapsed(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// Shows progress until the returned guard is dropped.
    pub fn display(&self, interval: Duration) -> DisplayGuard {
        let (stop, stopped) = mpsc::channel::<()>();
        let this = self.clone();
        let tty = std::io::stderr().is_terminal();
        let thread = std::thread::spawn(move || {
            if tty {
                this.run_bar(&stopped);
            } else {
                this.run_lines(&stopped, interval);
            }
        });
        DisplayGuard {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The plain progress line: `saving KEY: 120 MiB packed, 40 MiB uploaded, 12 s`
    /// or `restoring KEY: 40 MiB of 100 MiB downloaded, 120 MiB unpacked, 12 s`.
    fn line(&self) -> String {
        let (raw, sent, secs) = (
            human_bytes(self.raw()),
            human_bytes(self.sent()),
            self.elapsed().as_secs(),
        );
        match self.inner.total {
            Some(total) => format!(
                "{}: {sent} of {} downloaded, {raw} unpacked, {secs} s",
                self.inner.label,
                human_bytes(total)
            ),
            None => format!(
                "{}: {raw} packed, {sent} uploaded, {secs} s",
                self.inner.label
            ),
        }
    }

    fn run_lines(&self, stopped: &mpsc::Receiver<()>, interval: Duration) {
        while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
            // A progress line that cannot be written is not worth failing for.
            let _ = crate::output::eprintln(&self.line());
        }
    }

    fn run_bar(&self, stopped: &mpsc::Receiver<()>) {
        let bar = match self.inner.total {
            Some(total) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template(
                    "{spinner} {msg} {bytes} uploaded ({bytes_per_sec}) {elapsed}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        bar.set_message(self.inner.label.clone());
        while let Err(mpsc::RecvTimeoutError::Timeout) =
            stopped.recv_timeout(Duration::from_millis(100))
        {
            bar.set_position(self.sent());
            bar.tick();
        }
        bar.finish_and_clear();
    }
}

pub struct DisplayGuard {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for DisplayGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `512 B`, `3.4 KiB`, `412 MiB`, `1.2 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// `133 MiB/s`.
pub fn human_rate(bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    format!("{}/s", human_bytes((bytes as f64 / secs) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_a_person_writes_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(412 << 20), "412 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(human_rate(100 << 20, Duration::from_secs(2)), "50 MiB/s");
    }
}
