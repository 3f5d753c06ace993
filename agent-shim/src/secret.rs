//! The job's token, kept from the job (docs/design.md, "Trust model"): the shim is the
//! only holder of it in the job's sandbox, and often runs under the job's own uid.
//!
//! - The process is made non-dumpable before anything else: `/proc/<pid>/environ`,
//!   `mem`, `fd/` and `ptrace` are then closed to other processes of the same uid (only
//!   root, with CAP_SYS_PTRACE, can still look).
//! - The token arrives only through a file (`--token-file`, readable by the shim alone)
//!   or an inherited descriptor (`--token-fd`), read after that. Never through the
//!   environment: a process's environment is readable by every process of its uid from
//!   exec until the process wipes it, and pollers won that race (2 of 30 starts when the
//!   shim still read `BMAT_SHIM_TOKEN`). A token found there is wiped and the shim
//!   refuses to start, so a careless runner learns at once.

use std::ffi::CStr;
use std::io::Read;
use std::os::fd::{FromRawFd, RawFd};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

/// The variable older shims read the token from; now only wiped and refused.
pub const TOKEN_VAR: &str = "BMAT_SHIM_TOKEN";

/// Where the token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    File(PathBuf),
    /// A descriptor the parent left open for the shim (a pipe, or a file only root can
    /// open); read to its end and closed.
    Fd(RawFd),
}

impl TokenSource {
    fn shown(&self) -> String {
        match self {
            TokenSource::File(path) => path.display().to_string(),
            TokenSource::Fd(fd) => format!("descriptor {fd}"),
        }
    }
}

/// Marks the process non-dumpable.
pub fn forbid_inspection() -> Result<()> {
    // SAFETY: prctl with PR_SET_DUMPABLE takes one integer argument and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("prctl(PR_SET_DUMPABLE, 0) failed");
    }
    Ok(())
}

/// Removes `BMAT_SHIM_TOKEN` from the environment, its value's bytes overwritten in
/// place first (`/proc/<pid>/environ` shows the original environment block, which
/// unsetenv alone leaves intact). Returns whether it was there.
///
/// Must run while the process has one thread (first thing in `main`): the environment
/// is not thread-safe.
pub fn scrub_token_from_env() -> bool {
    if std::env::var_os(TOKEN_VAR).is_none() {
        return false;
    }
    let prefix = format!("{TOKEN_VAR}=");
    // SAFETY: single-threaded (see above). `environ` is a NULL-terminated array of
    // pointers to NUL-terminated strings; the value bytes of our variable are
    // overwritten in place, within its own string, before the variable is removed.
    unsafe {
        let mut entry = environ;
        while !(*entry).is_null() {
            let bytes = CStr::from_ptr(*entry).to_bytes();
            if bytes.starts_with(prefix.as_bytes()) {
                let start = (*entry as *mut u8).add(prefix.len());
                std::ptr::write_bytes(start, b'x', bytes.len() - prefix.len());
            }
            entry = entry.add(1);
        }
        std::env::remove_var(TOKEN_VAR);
    }
    true
}

unsafe extern "C" {
    static environ: *const *const libc::c_char;
}

/// The error when the token was offered in the environment (see the module doc).
pub fn refuse_env_token() -> anyhow::Error {
    anyhow::anyhow!(
        "{TOKEN_VAR} is set: a token in the environment is readable by every process of \
         this uid until it is wiped, so the shim does not take it (it was wiped); pass \
         --token-file FILE or --token-fd N instead"
    )
}

/// Reads the token; surrounding whitespace (a file's trailing newline) is trimmed.
pub fn read_token(source: &TokenSource) -> Result<String> {
    let mut token = String::new();
    match source {
        TokenSource::File(path) => {
            token = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read token file {}", path.display()))?;
        }
        TokenSource::Fd(fd) => {
            if *fd <= 2 {
                bail!("--token-fd {fd}: standard input, output and error cannot carry the token");
            }
            // SAFETY: F_GETFD only asks whether the descriptor is open.
            if unsafe { libc::fcntl(*fd, libc::F_GETFD) } == -1 {
                bail!("--token-fd {fd}: no such open descriptor (did the parent pass it on?)");
            }
            // SAFETY: the descriptor is open (checked above), was inherited for the shim
            // alone and nothing else in this process owns it: the File closes it.
            let mut file = unsafe { std::fs::File::from_raw_fd(*fd) };
            file.read_to_string(&mut token)
                .with_context(|| format!("cannot read the token from descriptor {fd}"))?;
        }
    }
    let token = token.trim().to_owned();
    if token.is_empty() {
        bail!("the token from {} is empty", source.shown());
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn tokens_come_from_a_file_or_a_descriptor_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        assert_eq!(read_token(&TokenSource::File(file)).unwrap(), "from-file");

        let mut fds = [0; 2];
        // SAFETY: pipe writes two descriptors into the array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: fds[1] is the pipe's write end, owned by nothing else.
        let mut writer = unsafe { std::fs::File::from_raw_fd(fds[1]) };
        writer.write_all(b" from-fd\n").unwrap();
        drop(writer);
        assert_eq!(read_token(&TokenSource::Fd(fds[0])).unwrap(), "from-fd");
        // SAFETY: F_GETFD only asks whether the descriptor is open.
        assert_eq!(
            unsafe { libc::fcntl(fds[0], libc::F_GETFD) },
            -1,
            "closed after reading"
        );
    }

    #[test]
    fn bad_sources_name_themselves() {
        let e = read_token(&TokenSource::File("/nonexistent/token".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/token"), "{e}");
        let e = read_token(&TokenSource::Fd(0)).unwrap_err().to_string();
        assert!(e.contains("--token-fd 0"), "{e}");
        // Above any descriptor limit, so never open (a closed low number could be reused
        // by a test running beside this one).
        let e = read_token(&TokenSource::Fd(1 << 30))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no such open descriptor"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, " \n").unwrap();
        let e = read_token(&TokenSource::File(empty))
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty"), "{e}");
        assert!(refuse_env_token().to_string().contains("--token-fd"));
    }
}
