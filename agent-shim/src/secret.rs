//! The job's token, kept from the job (docs/design.md, "Trust model"): the shim is the
//! only holder of it in the job's sandbox, and often runs under the job's own uid. So,
//! before anything else runs:
//! - the process is made non-dumpable: `/proc/<pid>/environ`, `mem` and `ptrace` are
//!   then closed to other processes of the same uid (only root, with CAP_SYS_PTRACE,
//!   can still look);
//! - `BMAT_SHIM_TOKEN` is wiped in place and removed from the environment:
//!   `/proc/<pid>/environ` shows the original environment block, which unsetenv alone
//!   leaves intact, so the value's bytes are overwritten first.

use std::ffi::CStr;
use std::path::Path;

use anyhow::{Context, Result, bail};

pub const TOKEN_VAR: &str = "BMAT_SHIM_TOKEN";

/// Marks the process non-dumpable.
pub fn forbid_inspection() -> Result<()> {
    // SAFETY: prctl with PR_SET_DUMPABLE takes one integer argument and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("prctl(PR_SET_DUMPABLE, 0) failed");
    }
    Ok(())
}

/// Takes `BMAT_SHIM_TOKEN` out of the environment: returns it, and leaves neither the
/// variable nor its value's bytes behind.
///
/// Must run while the process has one thread (first thing in `main`): the environment
/// is not thread-safe.
pub fn take_token_from_env() -> Option<String> {
    let value = std::env::var(TOKEN_VAR).ok()?;
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
    Some(value)
}

unsafe extern "C" {
    static environ: *const *const libc::c_char;
}

/// The token from the environment (`from_env`, already taken out of it), else the token
/// file; surrounding whitespace (a file's trailing newline) is trimmed.
pub fn read_token(from_env: Option<String>, file: Option<&Path>) -> Result<String> {
    let (token, source) = match (from_env, file) {
        (Some(t), _) => (t, TOKEN_VAR.to_owned()),
        (None, Some(path)) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read token file {}", path.display()))?,
            path.display().to_string(),
        ),
        (None, None) => bail!("no token: pass --token-file (or set {TOKEN_VAR})"),
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        bail!("the token from {source} is empty");
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comes_from_the_env_first_then_the_file_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        assert_eq!(
            read_token(Some("from-env".into()), Some(&file)).unwrap(),
            "from-env"
        );
        assert_eq!(read_token(None, Some(&file)).unwrap(), "from-file");
    }

    #[test]
    fn missing_or_empty_tokens_name_their_source() {
        let e = read_token(None, None).unwrap_err().to_string();
        assert!(e.contains(TOKEN_VAR) && e.contains("--token-file"), "{e}");
        let e = read_token(None, Some(Path::new("/nonexistent/token")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/token"), "{e}");
        let e = read_token(Some(" \n".into()), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains(TOKEN_VAR) && e.contains("empty"), "{e}");
    }
}
