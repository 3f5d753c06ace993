//! agent-shim against the real stack: forwarding, token injection, socket hygiene,
//! and what a job sees when the signer is gone.

mod common;

use std::os::unix::fs::PermissionsExt;

use bmat_wire::api::{ErrorBody, Health, LookupRequest, LookupResponse};
use common::{http, unix_http};
use xtask::stack::Stack;

const SHIM: &str = "http://agent-shim";

fn lookup(key: &str) -> LookupRequest {
    LookupRequest {
        key: key.to_owned(),
        fallbacks: vec![],
        exclude: vec![],
        formats: vec![],
        for_save: false,
    }
}

#[tokio::test]
async fn forwards_requests_adding_the_token() {
    let stack = Stack::start().expect("stack starts");
    let env = stack.env();
    let shim = unix_http(&env.agent_socket);

    let health = shim
        .get(format!("{SHIM}/v1/health"))
        .send()
        .await
        .expect("health via shim");
    assert_eq!(health.status(), 200);
    assert!(health.json::<Health>().await.expect("health JSON").ok);

    // No token from the client: the shim adds its own.
    let via_shim = shim
        .post(format!("{SHIM}/v1/lookup"))
        .json(&lookup("some-key"))
        .send()
        .await
        .expect("lookup");
    assert_eq!(via_shim.status(), 200);
    let answer: LookupResponse = via_shim.json().await.expect("lookup JSON");
    assert_eq!(answer.hit, None);

    // A token the client made up is replaced, not passed on.
    let forged = shim
        .post(format!("{SHIM}/v1/lookup"))
        .bearer_auth("not-a-real-token")
        .json(&lookup("some-key"))
        .send()
        .await
        .expect("lookup with forged token");
    assert_eq!(forged.status(), 200);

    // The same request straight to the signer, without a token, is refused.
    let direct = http()
        .post(format!("{}/v1/lookup", env.signer_url))
        .json(&lookup("some-key"))
        .send()
        .await;
    let direct = direct.expect("direct lookup");
    assert_eq!(direct.status(), 401);

    // Signer errors pass through unchanged.
    let bad = shim
        .post(format!("{SHIM}/v1/lookup"))
        .json(&lookup("../bad key"))
        .send()
        .await
        .expect("lookup");
    assert!(
        bad.status().is_client_error() && bad.status() != 401,
        "status {}",
        bad.status()
    );
    assert!(
        !bad.json::<ErrorBody>()
            .await
            .expect("error JSON")
            .error
            .is_empty()
    );
}

#[tokio::test]
async fn socket_is_private_and_replaced_when_stale() {
    let mut stack = Stack::start().expect("stack starts");
    let socket = stack.env().agent_socket.clone();
    let mode = std::fs::metadata(&socket)
        .expect("socket metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");

    // SIGKILL leaves the socket file behind; a new shim must replace it.
    stack.kill_shim().expect("kill shim");
    assert!(socket.exists(), "expected a stale socket after SIGKILL");
    stack
        .start_shim()
        .expect("shim restarts over a stale socket");
    let health = unix_http(&socket)
        .get(format!("{SHIM}/v1/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn signer_down_is_a_502_with_a_json_error() {
    let mut stack = Stack::start().expect("stack starts");
    stack.kill_signer().expect("kill signer");
    let shim = unix_http(&stack.env().agent_socket);
    let answer = shim
        .post(format!("{SHIM}/v1/lookup"))
        .json(&lookup("k"))
        .send()
        .await
        .expect("lookup");
    assert_eq!(answer.status(), 502);
    let body: ErrorBody = answer.json().await.expect("502 body is JSON");
    assert!(body.error.contains("signer unreachable"), "{}", body.error);
    assert!(
        body.error.contains(&stack.env().signer_url),
        "{}",
        body.error
    );

    stack.start_signer().expect("signer restarts");
    let again = shim
        .get(format!("{SHIM}/v1/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(again.status(), 200, "shim recovers once the signer is back");
}

#[tokio::test]
async fn sigterm_removes_the_socket() {
    let mut stack = Stack::start().expect("stack starts");
    let socket = stack.env().agent_socket.clone();
    let status = stack
        .terminate_shim()
        .expect("terminate")
        .expect("shim was running");
    assert!(status.success(), "shim exited with {status}");
    assert!(!socket.exists(), "socket left behind after SIGTERM");
}

/// A shim started by hand (not the stack's), killed when dropped.
struct LooseShim {
    child: std::process::Child,
    socket: std::path::PathBuf,
}

impl Drop for LooseShim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The uid and gid "another process of the job's uid" runs as: nobody when the tests
/// run as root (the shim and the prober then both drop to it), else our own.
fn job_ids() -> Option<(u32, u32)> {
    // SAFETY: getuid cannot fail.
    (unsafe { libc::getuid() } == 0).then_some((65534, 65534))
}

/// A directory the job's uid may create its socket in.
fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    dir
}

/// The shim's command line, under the job's uid when the tests run as root, with its
/// log in `dir` (no token source: the caller adds one).
fn loose_shim_command(
    dir: &std::path::Path,
    signer_url: &str,
    extra: &[&str],
) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let socket = dir.join("shim.sock");
    let mut cmd = std::process::Command::new(
        xtask::stack::bins::workspace_bin("agent-shim").expect("agent-shim binary"),
    );
    cmd.args([
        "--socket",
        &socket.display().to_string(),
        "--signer",
        signer_url,
    ])
    .args(extra)
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null())
    .stderr(std::fs::File::create(dir.join("shim.log")).expect("log file"));
    if let Some((uid, gid)) = job_ids() {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

/// Fd 3 of the child: a pipe holding `token`, the way a job wrapper hands it over
/// (`--token-fd 3`). The pipe is close-on-exec in this process, so a child another
/// test spawns meanwhile never holds its write end open. Keep the returned read end
/// until the child is spawned.
#[must_use]
fn token_on_fd3(cmd: &mut std::process::Command, token: &str) -> std::os::fd::OwnedFd {
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new descriptors into the array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors are new and owned by nothing else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    std::fs::File::from(write)
        .write_all(token.as_bytes())
        .expect("token into the pipe");
    let read_fd = read.as_raw_fd();
    // SAFETY: dup2 is async-signal-safe; the new fd 3 is not close-on-exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(read_fd, 3) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.arg("--token-fd").arg("3");
    read
}

fn start_loose_shim(
    dir: &std::path::Path,
    signer_url: &str,
    token: &str,
    extra: &[&str],
) -> LooseShim {
    let mut cmd = loose_shim_command(dir, signer_url, extra);
    let token_fd = token_on_fd3(&mut cmd, token);
    let child = cmd.spawn().expect("agent-shim starts");
    drop(token_fd);
    let shim = LooseShim {
        child,
        socket: dir.join("shim.sock"),
    };
    common::poll_until_sync(
        "the shim's socket",
        std::time::Duration::from_secs(30),
        || shim.socket.exists(),
    );
    shim
}

/// Runs a shim that must refuse to start: its log. One that starts (it would serve
/// until killed) fails the test once its socket appears.
fn refused_start(dir: &std::path::Path, mut cmd: std::process::Command) -> String {
    let mut child = cmd.spawn().expect("agent-shim runs");
    let socket = dir.join("shim.sock");
    let mut status = None;
    common::poll_until_sync(
        "the shim to exit or listen",
        std::time::Duration::from_secs(30),
        || {
            status = child.try_wait().expect("wait for the shim");
            status.is_some() || socket.exists()
        },
    );
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the shim started and listens on {}", socket.display());
    }
    assert!(status.is_some_and(|s| !s.success()), "{status:?}");
    assert!(!socket.exists(), "a socket was created");
    std::fs::read_to_string(dir.join("shim.log")).expect("shim log")
}

#[test]
fn a_token_in_the_environment_is_refused_and_wiped() {
    let dir = shared_dir();
    let token = "secret-token-that-must-not-leak-0123456789";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token).expect("token file");
    // Alone, and beside a token file: either way the runner exposed it; say so.
    for extra in [
        &[][..],
        &["--token-file", &token_file.display().to_string()],
    ] {
        let mut cmd = loose_shim_command(dir.path(), "http://127.0.0.1:9", extra);
        cmd.env("BMAT_SHIM_TOKEN", token);
        let log = refused_start(dir.path(), cmd);
        assert!(
            log.contains("BMAT_SHIM_TOKEN is set") && log.contains("--token-fd"),
            "{log}"
        );
        assert!(!log.contains(token), "{log}");
    }
}

#[test]
fn a_group_socket_without_an_allow_list_is_refused() {
    let dir = shared_dir();
    let mut cmd = loose_shim_command(dir.path(), "http://127.0.0.1:9", &["--socket-mode", "660"]);
    let _token_fd = token_on_fd3(&mut cmd, "some-token");
    let log = refused_start(dir.path(), cmd);
    assert!(
        log.contains("--socket-mode 660") && log.contains("--allow-uid"),
        "{log}"
    );
}

#[test]
fn the_token_is_out_of_reach_of_other_processes_of_the_jobs_uid() {
    use std::os::unix::process::CommandExt;
    let dir = shared_dir();
    let token = "secret-token-that-must-not-leak-0123456789";
    let shim = start_loose_shim(dir.path(), "http://127.0.0.1:9", token, &[]);
    let pid = shim.child.id();

    for file in ["environ", "mem", "cmdline"] {
        let mut cat = std::process::Command::new("cat");
        cat.arg(format!("/proc/{pid}/{file}"));
        if let Some((uid, gid)) = job_ids() {
            cat.uid(uid).gid(gid);
        }
        let out = cat.output().expect("cat runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains(token), "/proc/{pid}/{file} shows the token");
        if file != "cmdline" {
            assert!(
                !out.status.success(),
                "/proc/{pid}/{file} is readable by the job's uid"
            );
        }
    }
    // Not even root (who may read a non-dumpable process) finds it in the environment
    // block: its bytes were wiped.
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&environ).contains(token));
}

#[test]
fn the_shim_admits_only_allowed_peers() {
    use std::os::unix::process::CommandExt;
    let Some((job_uid, job_gid)) = job_ids() else {
        eprintln!("skipped: needs root to run processes under other uids");
        return;
    };
    let stack = Stack::start().expect("stack starts");
    let dir = shared_dir();
    let shim = start_loose_shim(
        dir.path(),
        &stack.env().signer_url,
        &stack.env().token,
        &["--socket-mode", "660", "--allow-uid", "4242"],
    );
    let mode = std::fs::metadata(&shim.socket)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660, "{mode:o}");

    // bmat as a given uid, in the socket's group: a lookup that misses, or fails.
    let lookup_as = |uid: u32| {
        let mut cmd = common::bmat(&stack);
        // A refused peer is retried like any transport failure: keep that short.
        cmd.env("BMAT_AGENT_SOCKET", &shim.socket)
            .env("BMAT_API_RETRY_SECS", "1")
            .args(["--json", "cache", "restore", "nothing-here"])
            .current_dir(dir.path())
            .uid(uid)
            .gid(job_gid);
        let out = cmd.output().expect("bmat runs");
        let json: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("bmat's JSON outcome");
        json["outcome"].as_str().unwrap_or_default().to_owned()
    };
    assert_eq!(lookup_as(job_uid), "miss", "the shim's own uid is admitted");
    assert_eq!(lookup_as(4242), "miss", "an --allow-uid is admitted");
    assert_eq!(
        lookup_as(4243),
        "failed",
        "a peer the socket's mode lets in but the policy does not is refused"
    );
}

/// Issue 17, point 12, through the shim: slow bodies sent to the shim's socket held
/// every health probe back too. The shim forwards at most `--max-in-flight` requests
/// at once (the rest are answered 429 at once) and wants each body within
/// `--body-timeout-secs` (else 408); health is answered while the slow requests are
/// still open.
#[tokio::test]
async fn slow_bodies_through_the_shim_neither_starve_health_nor_stay_open() {
    let stack = Stack::start_with(|c| c.limits.max_connections = 20).expect("stack");
    let dir = shared_dir();
    let shim = start_loose_shim(
        dir.path(),
        &stack.env().signer_url,
        &stack.env().token,
        &["--max-in-flight", "4", "--body-timeout-secs", "2"],
    );
    let head = common::slow_body_request(None);
    let held = common::hold(40, &head, async || {
        tokio::net::UnixStream::connect(&shim.socket).await
    })
    .await;

    // Answered within the client's own 30 s timeout, while all 40 are still open
    // from the client's side.
    let health = common::unix_http(&shim.socket)
        .get(format!("{SHIM}/v1/health"))
        .send()
        .await
        .expect("the shim answers");
    assert_eq!(health.status(), reqwest::StatusCode::OK);

    common::slow_requests_end(held, 4).await;
}
