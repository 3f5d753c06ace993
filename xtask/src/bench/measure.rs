//! Running measured processes: wall time, CPU time (user + system) and peak RSS.
//!
//! Children are reaped with `wait4`, which hands back each child's CPU time. Their
//! peak resident set comes from GNU time (`/usr/bin/time -f %M`) wrapped around each
//! process: `ru_maxrss` of a direct child of xtask is useless, because Linux carries
//! the parent's high-water mark over `fork`/`exec`, so every child would report at
//! least xtask's own peak. GNU time is small, so what it reports for its child is the
//! child's own. Without GNU time, RSS is reported as 0 (not measured).
//!
//! A pipeline's CPU is the sum over its processes, and so is its peak RSS (they run at
//! the same time, so the sum bounds the peak of the whole). Work done inside xtask
//! itself (the baseline's HTTP transfers) is measured with `getrusage(RUSAGE_SELF)`
//! deltas: nothing else runs in xtask then.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// What one measured step cost.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub wall: Duration,
    /// User + system time of the processes (or of xtask's own threads).
    pub cpu: Duration,
    /// Peak resident set in bytes (0 when not measured, e.g. for in-process work).
    pub max_rss: u64,
}

impl Usage {
    /// Two steps run one after the other: times add up, the peak is the larger one.
    pub fn then(self, next: Usage) -> Usage {
        Usage {
            wall: self.wall + next.wall,
            cpu: self.cpu + next.cpu,
            max_rss: self.max_rss.max(next.max_rss),
        }
    }
}

/// Where a pipeline reads from and writes to.
pub enum Io {
    Null,
    File(File),
}

impl Io {
    pub fn read(path: &Path) -> Result<Io> {
        Ok(Io::File(File::open(path).with_context(|| {
            format!("cannot open {}", path.display())
        })?))
    }

    pub fn create(path: &Path) -> Result<Io> {
        Ok(Io::File(File::create(path).with_context(|| {
            format!("cannot create {}", path.display())
        })?))
    }

    fn stdio(self) -> Stdio {
        match self {
            Io::Null => Stdio::null(),
            Io::File(f) => Stdio::from(f),
        }
    }
}

/// Runs `cmds` as a pipeline (`a | b | …`), stdin from `input`, the last stdout to
/// `output`, every stderr to `log` (appended); fails unless every process exits 0.
pub fn pipeline(cmds: Vec<Command>, input: Io, output: Io, log: &Path) -> Result<Usage> {
    let names: Vec<String> = cmds.iter().map(describe).collect();
    let rss_files: Vec<Option<tempfile::NamedTempFile>> = cmds
        .iter()
        .map(|_| match gnu_time() {
            Some(_) => tempfile::NamedTempFile::new().map(Some),
            None => Ok(None),
        })
        .collect::<io::Result<_>>()?;
    let cmds: Vec<Command> = cmds
        .into_iter()
        .zip(&rss_files)
        .map(|(cmd, rss)| match (gnu_time(), rss) {
            (Some(time), Some(rss)) => with_time(time, &cmd, rss.path()),
            _ => cmd,
        })
        .collect();
    let started = Instant::now();
    let mut running = Running::default();
    let mut next_stdin = Some(input.stdio());
    let count = cmds.len();
    let mut output = Some(output);
    for (i, mut cmd) in cmds.into_iter().enumerate() {
        let last = i + 1 == count;
        let stderr = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        cmd.stdin(next_stdin.take().unwrap_or_else(Stdio::null))
            .stderr(stderr);
        if last {
            cmd.stdout(output.take().map_or_else(Stdio::null, Io::stdio));
        } else {
            cmd.stdout(Stdio::piped());
        }
        let mut child: Child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", names[i]))?;
        if let Some(out) = child.stdout.take() {
            next_stdin = Some(Stdio::from(out));
        }
        running.pids.push(child.id() as libc::pid_t);
    }
    // Drop our ends of the pipes before waiting, or a reader would never see EOF.
    drop(next_stdin);
    let mut usage = Usage::default();
    let mut failures = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let pid = running.pids[i];
        let (status, ru) = wait4(pid).with_context(|| format!("cannot wait for {name}"))?;
        running.reaped.push(pid);
        usage.cpu += cpu_of(&ru);
        if let Some(rss) = &rss_files[i] {
            usage.max_rss += read_rss(rss.path());
        }
        if status != 0 {
            failures.push(format!("{name}: {}", describe_status(status)));
        }
    }
    usage.wall = started.elapsed();
    if !failures.is_empty() {
        bail!(
            "{} failed (see {}): {}",
            names.join(" | "),
            log.display(),
            failures.join("; ")
        );
    }
    Ok(usage)
}

/// CPU time xtask itself has used so far (all its threads).
pub fn self_cpu() -> Duration {
    // SAFETY: getrusage fills the struct it is given; a zeroed rusage is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer cannot fail.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    cpu_of(&ru)
}

/// Measures in-process work: wall and CPU time of xtask while `f` runs.
pub fn in_process<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, Usage)> {
    let (cpu0, t0) = (self_cpu(), Instant::now());
    let value = f()?;
    let usage = Usage {
        wall: t0.elapsed(),
        cpu: self_cpu().saturating_sub(cpu0),
        max_rss: 0,
    };
    Ok((value, usage))
}

/// Flushes dirty pages, so that one step's writes are not paid for by the next one.
pub fn settle() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// Children started by a pipeline that are not reaped yet: killed and reaped on drop,
/// so that an error half-way leaves no process behind.
#[derive(Default)]
struct Running {
    pids: Vec<libc::pid_t>,
    reaped: Vec<libc::pid_t>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for &pid in self.pids.iter().filter(|p| !self.reaped.contains(p)) {
            // SAFETY: the pid is our own unreaped child, so it cannot have been reused.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = wait4(pid);
        }
    }
}

fn wait4(pid: libc::pid_t) -> io::Result<(libc::c_int, libc::rusage)> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: a zeroed rusage is valid; wait4 fills it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to locals.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if rc == pid {
            return Ok((status, ru));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

fn cpu_of(ru: &libc::rusage) -> Duration {
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// GNU time, if installed.
fn gnu_time() -> Option<&'static Path> {
    static TIME: OnceLock<Option<PathBuf>> = OnceLock::new();
    TIME.get_or_init(|| {
        let path = PathBuf::from("/usr/bin/time");
        let out = Command::new(&path).arg("--version").output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        text.contains("GNU").then_some(path)
    })
    .as_deref()
}

/// True when peak RSS can be measured (see the module comment).
pub fn measures_rss() -> bool {
    gnu_time().is_some()
}

/// `cmd` run under GNU time, which writes the child's peak RSS (KiB) to `rss`.
fn with_time(time: &Path, cmd: &Command, rss: &Path) -> Command {
    let mut wrapped = Command::new(time);
    wrapped
        .args(["-f", "%M", "-o"])
        .arg(rss)
        .arg("--")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => wrapped.env(key, v),
            None => wrapped.env_remove(key),
        };
    }
    wrapped
}

/// The peak RSS GNU time wrote (KiB; its last line: a failed command's status line
/// comes first), in bytes; 0 if unreadable.
fn read_rss(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.lines().last().and_then(|l| l.trim().parse::<u64>().ok()))
        .unwrap_or(0)
        * 1024
}

fn describe_status(status: libc::c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("exit status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("wait status {status}")
    }
}

fn describe(cmd: &Command) -> String {
    let mut out = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        out.push(' ');
        out.push_str(&arg.to_string_lossy());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipeline_passes_bytes_and_reports_its_children() {
        // A parent with a large peak: a child's RSS must not include it.
        let ballast = std::hint::black_box(vec![1u8; 256 << 20]);
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let log = dir.path().join("log");
        let mut head = Command::new("head");
        head.args(["-c", "3000000", "/dev/zero"]);
        let mut wc = Command::new("wc");
        wc.arg("-c");
        let usage = pipeline(
            vec![head, wc],
            Io::Null,
            Io::create(&out).expect("create"),
            &log,
        )
        .expect("pipeline");
        assert_eq!(
            std::fs::read_to_string(&out).expect("read").trim(),
            "3000000"
        );
        if measures_rss() {
            // `head` and `wc` are tiny; the test process itself is much larger.
            assert!(usage.max_rss > 0, "{usage:?}");
            assert!(usage.max_rss < 64 << 20, "{usage:?}");
        }
        drop(ballast);
        assert!(usage.wall > Duration::ZERO);
    }

    #[test]
    fn a_failing_process_fails_the_pipeline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log");
        let err = pipeline(vec![Command::new("false")], Io::Null, Io::Null, &log)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("exit status 1"), "{err}");
    }
}
