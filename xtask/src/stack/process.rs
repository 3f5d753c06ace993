//! One child process of the stack: spawned with its output in a log file, killed with
//! SIGKILL, restartable with the same command line.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

/// How long a child may take to answer after it was spawned.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(50);
const LOG_TAIL_LINES: usize = 20;

pub struct Proc {
    name: &'static str,
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    pub fn new(name: &'static str, program: &Path, log: PathBuf) -> Proc {
        Proc {
            name,
            program: program.to_path_buf(),
            args: Vec::new(),
            envs: Vec::new(),
            log,
            child: None,
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Proc {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Proc {
        self.envs.push((key.into(), value.into()));
        self
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The pid while the child runs (or has exited but was not reaped yet).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Spawns the child. Its stdout and stderr are appended to the log file, so a
    /// restart keeps the earlier run's lines above the new ones.
    pub fn spawn(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("{} is already running; kill it first", self.name);
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open log file {}", self.log.display()))?;
        let log2 = log
            .try_clone()
            .context("cannot duplicate log file handle")?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {} ({})", self.name, self.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL and reap. A no-op when not running.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            // ESRCH (already exited) is fine; wait() reaps either way.
            let _ = child.kill();
            child
                .wait()
                .with_context(|| format!("cannot reap {}", self.name))?;
        }
        Ok(())
    }

    /// Sends `signal` to the running child.
    pub fn signal(&self, signal: libc::c_int) -> Result<()> {
        let child = self
            .child
            .as_ref()
            .with_context(|| format!("{} is not running", self.name))?;
        let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
        // SAFETY: plain syscall on a pid we own and have not reaped yet.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot signal {}", self.name));
        }
        Ok(())
    }

    /// Sends SIGTERM and waits (bounded) for the child to exit; SIGKILL if it does not.
    pub fn terminate(&mut self) -> Result<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
        // SAFETY: plain syscall on a pid we own and have not reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(Some(status));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        self.kill()?;
        bail!(
            "{} did not exit within 10 s of SIGTERM; killed it",
            self.name
        )
    }

    /// `Some(status)` once the child has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// The last lines of the log, for error messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log, LOG_TAIL_LINES)
    }

    /// Polls `check` until it answers `true`, failing early with the log tail when
    /// the child exits and after [`READY_TIMEOUT`].
    pub fn wait_ready<F, Fut>(&mut self, what: &str, mut check: F) -> Result<()>
    where
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = Result<bool>> + Send,
    {
        let name = self.name;
        let started = Instant::now();
        let outcome = block_on(async {
            loop {
                if let Some(status) = self.exited() {
                    return Err(anyhow!("{name} exited during startup ({status})"));
                }
                let last_err = match check().await {
                    Ok(true) => return Ok(()),
                    Ok(false) => "not ready yet".to_owned(),
                    Err(e) => format!("{e:#}"),
                };
                if started.elapsed() > READY_TIMEOUT {
                    return Err(anyhow!(
                        "{name} not ready after {} s waiting for {what} (last: {last_err})",
                        READY_TIMEOUT.as_secs()
                    ));
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        })?;
        outcome.map_err(|e| anyhow!("{e}; log {}:\n{}", self.log.display(), self.log_tail()))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Runs a future to completion on a fresh single-thread runtime in a scoped thread,
/// so the synchronous stack API works both inside and outside a tokio runtime.
/// Processes must never be spawned from inside it: PR_SET_PDEATHSIG is tied to the
/// spawning *thread*, and this one ends right away.
pub fn block_on<F>(fut: F) -> Result<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| -> Result<F::Output> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot build a tokio runtime")?;
            Ok(rt.block_on(fut))
        })
        .join()
        .map_err(|_| anyhow!("readiness check panicked"))?
    })
}

/// Children get their own process group (a Ctrl-C in the terminal reaches only the
/// stack, which then tears them down in order) and, on Linux, SIGKILL when the thread
/// that spawned them dies, so a test process killed outright leaks no servers.
fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id();
    // SAFETY: only async-signal-safe calls (setpgid, prctl, getppid) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            #[cfg(target_os = "linux")]
            {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl.
                if u32::try_from(libc::getppid()).ok() != Some(parent) {
                    return Err(std::io::Error::other("parent exited"));
                }
            }
            #[cfg(not(target_os = "linux"))]
            let _ = parent;
            Ok(())
        });
    }
}

/// The last `lines` lines of a log file (at most its last 16 KiB).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let read = || -> std::io::Result<String> {
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    match read() {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
