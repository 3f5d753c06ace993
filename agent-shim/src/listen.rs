//! The shim's Unix socket: created with its final mode, optionally open only to
//! configured peers (SO_PEERCRED).

use std::collections::BTreeSet;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result, bail};
use tokio::net::{UnixListener, UnixStream};

/// Who may connect, besides the shim's own uid. Empty sets: anyone the socket's mode
/// lets in.
#[derive(Debug, Clone, Default)]
pub struct PeerPolicy {
    pub uids: BTreeSet<u32>,
    /// Matched against the peer's primary gid (SO_PEERCRED carries no supplementary
    /// groups).
    pub gids: BTreeSet<u32>,
}

impl PeerPolicy {
    pub fn is_open(&self) -> bool {
        self.uids.is_empty() && self.gids.is_empty()
    }

    pub fn permits(&self, uid: u32, gid: u32) -> bool {
        // SAFETY: getuid has no failure mode and touches no memory.
        let own = unsafe { libc::getuid() };
        self.is_open() || uid == own || self.uids.contains(&uid) || self.gids.contains(&gid)
    }
}

/// Binds the socket with `mode` from the first instant (no window under a permissive
/// umask), replacing only a stale socket file.
pub fn bind(path: &Path, mode: u32) -> Result<UnixListener> {
    // Only a socket is replaced (one left by a shim that was killed); any other file
    // at that path is somebody's data.
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale socket {}", path.display()))?,
        Ok(_) => bail!(
            "{} exists and is not a socket; not replacing it",
            path.display()
        ),
        Err(_) => {}
    }
    // bind(2) creates the socket file with 0777 & ~umask. The umask is per process; the
    // shim creates no other file meanwhile.
    // SAFETY: umask only swaps the process's file mode mask.
    let old = unsafe { libc::umask(!mode & 0o777) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let listener = bound.with_context(|| format!("cannot listen on {}", path.display()))?;
    // Explicit, whatever the umask let through.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {mode:o} {}", path.display()))?;
    Ok(listener)
}

/// The socket, dropping connections whose peer the policy does not permit.
pub struct PeerCheckedListener {
    inner: UnixListener,
    policy: PeerPolicy,
}

impl PeerCheckedListener {
    pub fn new(inner: UnixListener, policy: PeerPolicy) -> Self {
        PeerCheckedListener { inner, policy }
    }
}

impl axum::serve::Listener for PeerCheckedListener {
    type Io = UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            match io.peer_cred() {
                Ok(cred) if self.policy.permits(cred.uid(), cred.gid()) => return (io, addr),
                Ok(cred) => tracing::warn!(
                    uid = cred.uid(),
                    gid = cred.gid(),
                    pid = cred.pid(),
                    "connection refused: peer not allowed (--allow-uid / --allow-gid)"
                ),
                Err(e) => tracing::warn!("connection refused: cannot read its peer: {e}"),
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_socket_file_is_replaced_and_the_new_one_has_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        // A listener dropped without unlinking leaves a stale socket file, as SIGKILL does.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _listener = rt.block_on(async { bind(&path, 0o600) }).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert!(meta.file_type().is_socket());

        let group = dir.path().join("g.sock");
        let _g = rt.block_on(async { bind(&group, 0o660) }).unwrap();
        assert_eq!(
            std::fs::metadata(&group).unwrap().permissions().mode() & 0o777,
            0o660
        );

        let file = dir.path().join("data");
        std::fs::write(&file, "keep me").unwrap();
        let e = rt
            .block_on(async { bind(&file, 0o600) })
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a socket"), "{e}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
        assert!(
            rt.block_on(async { bind(dir.path(), 0o600) }).is_err(),
            "a directory is not replaced"
        );
    }

    #[test]
    fn peer_policy() {
        // SAFETY: getuid cannot fail.
        let own = unsafe { libc::getuid() };
        let open = PeerPolicy::default();
        assert!(open.permits(12345, 12345));
        let strict = PeerPolicy {
            uids: [1001].into(),
            gids: [2002].into(),
        };
        assert!(strict.permits(1001, 1));
        assert!(strict.permits(7, 2002));
        assert!(strict.permits(own, 1));
        assert!(!strict.permits(own.wrapping_add(5000), 1));
    }
}
