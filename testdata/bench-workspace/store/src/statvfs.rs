use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::{Error, Result};

/// Bytes an unprivileged user can still write in the filesystem holding `path`
/// (its nearest existing ancestor, so a store not created yet can be asked).
pub fn free_bytes(path: &Path) -> Result<u64> {
    let existing = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("."));
    let bytes = if existing.as_os_str().is_empty() {
        b".".as_slice()
    } else {
        existing.as_os_str().as_bytes()
    };
    let c_path = CString::new(bytes).map_err(|e| Error::Io {
        path: path.to_owned(),
        source: e.into(),
    })?;
    // SAFETY: a zeroed statvfs is a valid value; statvfs fills it.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a pointer to a live statvfs.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut st) } != 0 {
        return Err(Error::Io {
            path: path.to_owned(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}
