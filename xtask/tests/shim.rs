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

fn start_loose_shim(
    dir: &std::path::Path,
    signer_url: &str,
    token: &str,
    extra: &[&str],
) -> LooseShim {
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
    // The hardest case: the token in the environment, as a careless runner passes it.
    .env("BMAT_SHIM_TOKEN", token)
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null())
    .stderr(std::fs::File::create(dir.join("shim.log")).expect("log file"));
    if let Some((uid, gid)) = job_ids() {
        cmd.uid(uid).gid(gid);
    }
    let child = cmd.spawn().expect("agent-shim starts");
    let shim = LooseShim { child, socket };
    common::poll_until_sync(
        "the shim's socket",
        std::time::Duration::from_secs(30),
        || shim.socket.exists(),
    );
    shim
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
